//! What a condition runs on and how its failures read: the event and case JSON turned into
//! CEL values (borrowing their strings, nothing copied), and the interpreter's errors turned
//! into sentences that name the problem in the integration's terms.

use std::collections::HashMap;

use cel::ExecutionError;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::{Number, Value};

/// Longest piece of a value echoed in a message.
const MAX_ECHO_CHARS: usize = 60;

/// The envelope, with `changes` present as an object even when the event has none, so that
/// `"status" in event.changes` is false rather than an error.
pub(super) fn event_val(event: &Value) -> Box<dyn Val + '_> {
    let Value::Object(fields) = event else {
        return to_val(event);
    };
    let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = fields
        .iter()
        .filter(|(k, v)| !(k.as_str() == "changes" && v.is_null()))
        .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v)))
        .collect();
    map.entry(CelMapKey::from("changes"))
        .or_insert_with(|| Box::new(CelMap::from(HashMap::new())));
    Box::new(CelMap::from(map))
}

/// The case, or `null` when it is gone.
pub(super) fn case_val(case: Option<&Value>) -> Box<dyn Val + '_> {
    match case {
        Some(v) => to_val(v),
        None => Box::new(CelNull),
    }
}

/// JSON to CEL: integers that fit are `int` (serde would make every positive one a `uint`,
/// and `uint > int` comparisons would then surprise), larger ones `uint`, the rest `double`.
fn to_val(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(to_val).collect::<Vec<_>>()))
        }
        Value::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

fn number(n: &Number) -> Box<dyn Val + 'static> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        // `as_f64` only fails with serde_json's arbitrary precision, where the text is exact.
        let f = n
            .as_f64()
            .or_else(|| n.to_string().parse().ok())
            .unwrap_or(f64::NAN);
        Box::new(CelDouble::from(f))
    }
}

/// A result that is not a boolean, as a message names it.
pub(super) fn describe(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => format!("the number {i}"),
        cel::Value::UInt(u) => format!("the number {u}"),
        cel::Value::Float(f) => format!("the number {f}"),
        cel::Value::String(s) => format!("the text {}", echo(s)),
        cel::Value::Null => "null".to_owned(),
        cel::Value::List(items) if items.len() == 1 => "a list of 1 item".to_owned(),
        cel::Value::List(items) => format!("a list of {} items", items.len()),
        cel::Value::Map(_) => "an object".to_owned(),
        other => kind(&other.type_of().to_string()).to_owned(),
    }
}

/// The interpreter's error, explained. Values are named by their kind only: they come from
/// case data, and a message must neither grow with it nor copy it into logs.
pub(super) fn explain(e: &ExecutionError) -> String {
    use ExecutionError as E;
    match e {
        E::NoSuchKey(key) => format!(
            "no such key `{key}`; when a value may be missing, test it first with has(), as in `has(case.data.{key}) && …`"
        ),
        E::NoSuchOverload(o) => {
            let types: Vec<&str> = o.argument_types().iter().map(|t| kind(t)).collect();
            overload(o.function(), o.is_member_function(), &types)
        }
        E::UnsupportedBinaryOperator(op, a, b) => {
            let (a, b) = (a.type_of().to_string(), b.type_of().to_string());
            let mixed = [a.as_str(), b.as_str()].contains(&"int")
                && [a.as_str(), b.as_str()].contains(&"float");
            let hint = if mixed {
                "; convert the whole number with double(…) first"
            } else {
                ""
            };
            format!("cannot {} {} and {}{hint}", verb(op), kind(&a), kind(&b))
        }
        E::ValuesNotComparable(a, b) => format!(
            "cannot compare {} with {}",
            kind(&a.type_of().to_string()),
            kind(&b.type_of().to_string())
        ),
        E::DivisionByZero(_) => "division by zero".to_owned(),
        E::RemainderByZero(_) => "remainder (%) by zero".to_owned(),
        E::Overflow(op, _, _) => format!("the numbers are too large to {}", verb(op)),
        E::IndexOutOfBounds(i) => format!("index {} is outside the list", index(i)),
        E::FunctionError { function, message } => format!("`{function}` failed: {message}"),
        E::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        E::UndeclaredReference(name) => format!("unknown name `{name}`"),
        E::InvalidArgumentCount { expected, actual } => {
            format!("expected {expected} arguments, got {actual}")
        }
        other => shorten(&other.to_string(), 200),
    }
}

/// No variant of an operator or function takes these kinds of values.
fn overload(function: &str, member: bool, types: &[&str]) -> String {
    match (function, types) {
        ("_._", [target, ..]) => {
            let hint = if *target == "null" {
                " (when the case is gone, `case` is null: test `case != null && …` first)"
            } else {
                ""
            };
            format!("cannot read a field of {target}{hint}")
        }
        ("_[_]", [target, key]) => format!("cannot look up {key} in {target}"),
        ("@in", [_, container]) => format!("`in` needs a list or an object, got {container}"),
        _ => match operator_symbol(function) {
            Some(symbol) => format!("`{symbol}` does not work on {}", types.join(" and ")),
            None if member => match types.split_first() {
                Some((target, args)) => format!(
                    "`{function}` cannot be called on {target} with ({})",
                    args.join(", ")
                ),
                None => format!("`{function}` cannot be called this way"),
            },
            None => format!("`{function}` does not accept ({})", types.join(", ")),
        },
    }
}

fn operator_symbol(function: &str) -> Option<&'static str> {
    Some(match function {
        "_==_" => "==",
        "_!=_" => "!=",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        "_+_" => "+",
        "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        "!_" => "!",
        "-_" => "-",
        "_&&_" => "&&",
        "_||_" => "||",
        "_?_:_" => "? :",
        _ => return None,
    })
}

/// The interpreter's short operation names, as verbs.
fn verb(op: &str) -> &str {
    match op {
        "add" => "add",
        "sub" => "subtract",
        "mul" => "multiply",
        "div" => "divide",
        "rem" => "take the remainder of",
        "negate" => "negate",
        other => other,
    }
}

/// A CEL type name in words.
fn kind(type_name: &str) -> &str {
    match type_name {
        "int" => "a whole number",
        "uint" => "an unsigned number",
        "double" | "float" => "a decimal number",
        "string" => "text",
        "bool" => "true/false",
        "null_type" | "null" => "null",
        "list" => "a list",
        "map" => "an object",
        "bytes" => "bytes",
        other => other,
    }
}

fn index(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => u.to_string(),
        other => kind(&other.type_of().to_string()).to_owned(),
    }
}

fn echo(s: &str) -> String {
    let n = s.chars().count();
    if n > MAX_ECHO_CHARS {
        format!("of {n} characters")
    } else {
        Value::from(s).to_string()
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    } else {
        s.to_owned()
    }
}
