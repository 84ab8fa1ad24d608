//! Checks on a parsed condition, made once when it is saved: the variables and functions it
//! names, how deeply it nests, and which `case.data` keys it reads. Also turns the parser's
//! messages into sentences for people who are not programmers.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{ParseErrors, Program};

use super::{ConditionError, MAX_DEPTH, MAX_NESTED_MACROS};

/// The variables every condition gets.
pub(super) const VARIABLES: &[&str] = &["event", "case"];

/// The variables a step condition of an API-call sequence gets: also the earlier steps'
/// outputs.
pub(super) const STEP_VARIABLES: &[&str] = &["event", "case", "steps"];

/// Type names, usable as values in `type(x) == string`.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// Functions of the standard environment (with the `regex` feature), global or method.
/// A test calls each of them, so a crate upgrade that drops one is noticed.
pub(super) const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "dyn",
    "type",
    "value",
    "hasValue",
    "or",
    "orValue",
];

/// Functions called on the `optional` namespace: `optional.of(x)`.
const OPTIONAL_FUNCTIONS: &[&str] = &["of", "none", "ofNonZeroValue"];

/// Macros the parser expands when called right; a call left over was called wrong.
const MACROS: &[&str] = &["all", "exists", "exists_one", "map", "filter", "has"];

/// Walk the program; return the `case.data` keys it reads, in order of first use.
pub(super) fn check(
    source: &str,
    program: &Program,
    variables: &'static [&'static str],
) -> Result<Vec<String>, ConditionError> {
    let mut walker = Walker {
        source,
        program,
        variables,
        scopes: Vec::new(),
        macros: 0,
        data_keys: Vec::new(),
    };
    walker.walk(program.expression(), 1)?;
    Ok(walker.data_keys)
}

struct Walker<'a> {
    source: &'a str,
    program: &'a Program,
    /// The free variables allowed.
    variables: &'static [&'static str],
    /// Variables bound by enclosing macros (`x` in `list.all(x, …)`, and the parser's own
    /// accumulator), innermost last.
    scopes: Vec<&'a str>,
    /// How many macros enclose the current node.
    macros: usize,
    data_keys: Vec<String>,
}

impl<'a> Walker<'a> {
    fn walk(&mut self, e: &'a IdedExpr, depth: usize) -> Result<(), ConditionError> {
        // Checked before going deeper: this walk is recursive too.
        if depth > MAX_DEPTH {
            return Err(ConditionError::TooDeep { max: MAX_DEPTH });
        }
        let next = depth + 1;
        match &e.expr {
            Expr::Ident(name) => self.ident(e, name),
            Expr::Literal(_) => Ok(()),
            Expr::Select(select) => {
                if let Some(key) = self.data_key_of(&select.operand, &select.field) {
                    self.note_data_key(key);
                }
                self.walk(&select.operand, next)
            }
            Expr::Call(call) => {
                self.call(e, &call.func_name, call.target.as_deref(), &call.args)?;
                if let Some(target) = &call.target
                    && !self.is_optional_namespace(target, &call.func_name)
                {
                    self.walk(target, next)?;
                }
                call.args.iter().try_for_each(|a| self.walk(a, next))
            }
            Expr::List(list) => list.elements.iter().try_for_each(|x| self.walk(x, next)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => {
                    self.walk(&m.key, next)?;
                    self.walk(&m.value, next)
                }
                EntryExpr::StructField(_) => Err(self.unsupported(entry.id, "a message field")),
            }),
            Expr::Comprehension(c) => {
                if self.macros >= MAX_NESTED_MACROS {
                    return Err(ConditionError::TooManyNestedMacros {
                        max: MAX_NESTED_MACROS,
                    });
                }
                // The range and the initial value are outside the macro's own variables.
                self.walk(&c.iter_range, next)?;
                self.walk(&c.accu_init, next)?;
                let bound = self.scopes.len();
                self.scopes.push(&c.iter_var);
                if let Some(v) = &c.iter_var2 {
                    self.scopes.push(v);
                }
                self.scopes.push(&c.accu_var);
                self.macros += 1;
                let inner = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|x| self.walk(x, next));
                self.macros -= 1;
                self.scopes.truncate(bound);
                inner
            }
            Expr::Struct(s) => {
                let what = format!("building a message (`{}{{…}}`)", s.type_name);
                Err(self.unsupported(e.id, &what))
            }
            Expr::Unspecified => Err(self.unsupported(e.id, "this expression")),
        }
    }

    fn ident(&self, e: &IdedExpr, name: &str) -> Result<(), ConditionError> {
        if self.is_bound(name) || self.variables.contains(&name) || TYPE_NAMES.contains(&name) {
            return Ok(());
        }
        let (line, column) = self.position(e.id, 0);
        Err(ConditionError::UnknownVariable {
            name: name.to_owned(),
            line,
            column,
        })
    }

    fn call(
        &mut self,
        e: &IdedExpr,
        name: &str,
        target: Option<&IdedExpr>,
        args: &'a [IdedExpr],
    ) -> Result<(), ConditionError> {
        if is_operator(name) {
            if let Some(key) = self.data_key_in_operator(name, args) {
                self.note_data_key(key);
            }
            return Ok(());
        }
        if FUNCTIONS.contains(&name) {
            return Ok(());
        }
        if let Some(t) = target
            && self.is_optional_namespace(t, name)
        {
            return Ok(());
        }
        // The node's position is its opening parenthesis; the name ends there.
        let (line, column) = self.position(e.id, name.chars().count());
        let hint = if MACROS.contains(&name) {
            if name == "has" {
                "; `has` takes one field, as in `has(case.data.amount)`".to_owned()
            } else {
                format!(
                    "; `{name}` takes a variable name and an expression, as in `list.{name}(x, x > 0)`"
                )
            }
        } else {
            String::new()
        };
        Err(ConditionError::UnknownFunction {
            name: name.to_owned(),
            line,
            column,
            hint,
        })
    }

    fn is_bound(&self, name: &str) -> bool {
        self.scopes.contains(&name)
    }

    /// `optional.of(…)`: `optional` is a namespace there, unless a macro bound that name.
    fn is_optional_namespace(&self, target: &IdedExpr, func: &str) -> bool {
        matches!(&target.expr, Expr::Ident(n) if n == "optional")
            && !self.is_bound("optional")
            && OPTIONAL_FUNCTIONS.contains(&func)
    }

    /// Whether `e` is `case.data` with `case` the variable (not a macro's `case`).
    fn is_case_data(&self, e: &IdedExpr) -> bool {
        let Expr::Select(s) = &e.expr else {
            return false;
        };
        s.field == "data"
            && !s.test
            && matches!(&s.operand.expr, Expr::Ident(n) if n == "case")
            && !self.is_bound("case")
    }

    fn data_key_of(&self, operand: &IdedExpr, field: &'a str) -> Option<&'a str> {
        self.is_case_data(operand).then_some(field)
    }

    /// `case.data["k"]`, `case.data[?"k"]`, `case.data.?k` and `"k" in case.data`.
    fn data_key_in_operator(&self, op: &str, args: &'a [IdedExpr]) -> Option<&'a str> {
        let (container, key) = match (op, args) {
            ("_[_]" | "_[?_]" | "_?._", [container, key]) => (container, key),
            ("@in", [key, container]) => (container, key),
            _ => return None,
        };
        let Expr::Literal(LiteralValue::String(s)) = &key.expr else {
            return None;
        };
        self.is_case_data(container).then(|| s.inner())
    }

    fn note_data_key(&mut self, key: &str) {
        if !self.data_keys.iter().any(|k| k == key) {
            self.data_keys.push(key.to_owned());
        }
    }

    fn unsupported(&self, id: u64, what: &str) -> ConditionError {
        let (line, column) = self.position(id, 0);
        ConditionError::Unsupported {
            what: what.to_owned(),
            line,
            column,
        }
    }

    /// Line and column (from 1) of a node, moved `back` characters to the left.
    fn position(&self, id: u64, back: usize) -> (usize, usize) {
        let offset = self
            .program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        let (line, column) = line_column(self.source, offset);
        (line, column.saturating_sub(back).max(1))
    }
}

/// The parser names operators with punctuation (`_&&_`, `!_`, `@in`); functions never.
fn is_operator(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Line and column (both from 1, the column in characters) of the byte `offset`, which is
/// how the parser records where a node starts.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (at, c) in source.char_indices() {
        if at >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// The first parse error, in words for people who configure integrations.
pub(super) fn syntax_error(errors: &ParseErrors) -> ConditionError {
    let Some(first) = errors.errors.first() else {
        return ConditionError::Syntax {
            line: 1,
            column: 1,
            message: "the condition could not be read".to_owned(),
        };
    };
    // The parser's recursion guard reports itself wrapped, with no usable position.
    if first.msg.contains("Recursion limit") {
        return ConditionError::TooDeep { max: MAX_DEPTH };
    }
    let (line, column) = match first.pos {
        (l, c) if l >= 1 && c >= 1 => (l as usize, c as usize),
        _ => (1, 1),
    };
    ConditionError::Syntax {
        line,
        column,
        message: explain_syntax(&first.msg),
    }
}

/// ANTLR's messages list every token it expected, which helps no one writing a filter; keep
/// what went wrong and add a hint for the usual slips (`=`, `and`, `or`, an open quote).
fn explain_syntax(msg: &str) -> String {
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("token recognition error at: ") {
        let found = unquote(rest);
        return if found.starts_with('=') {
            "unexpected `=`; compare with `==`".to_owned()
        } else if found.starts_with(['"', '\'']) {
            "a text value is not closed; end it with the same quote it starts with".to_owned()
        } else {
            format!("unexpected character {}", quoted(found.trim()))
        };
    }
    for prefix in [
        "mismatched input ",
        "extraneous input ",
        "no viable alternative at input ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let found = rest.split(" expecting").next().map_or(rest, unquote);
            return unexpected(found);
        }
    }
    if let Some(rest) = msg.strip_prefix("missing ") {
        let missing = rest.split(" at ").next().map_or(rest, unquote);
        return format!("missing {}", quoted(missing));
    }
    if msg.contains("has() macro") {
        return "`has` takes one field, as in `has(case.data.amount)`".to_owned();
    }
    msg.to_owned()
}

fn unexpected(found: &str) -> String {
    match found {
        "<EOF>" => "the condition ends too early; something is missing at the end".to_owned(),
        "and" | "AND" => "unexpected `and`; write `&&`".to_owned(),
        "or" | "OR" => "unexpected `or`; write `||`".to_owned(),
        "not" | "NOT" => "unexpected `not`; write `!`".to_owned(),
        _ => format!("unexpected {}", quoted(found)),
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(s)
}

/// A few words of the input, quoted: in backticks, or in double quotes when the input holds
/// a backtick itself.
fn quoted(s: &str) -> String {
    const MAX: usize = 30;
    let mut shown: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        shown.push('…');
    }
    if shown.contains('`') {
        format!("\"{shown}\"")
    } else {
        format!("`{shown}`")
    }
}
