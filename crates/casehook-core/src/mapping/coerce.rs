//! Turning what a response holds into what a field accepts: the lenient conversions a
//! mapping makes (numbers into text, "true" into true, a timestamp into its date…), then the
//! strict check of `validate`, so a mapped value is always one the form would accept.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::FieldErrorCode;
use crate::form::{FieldDef, FieldType};
use crate::validate::{check_value, describe, shorten};

/// Up to this many options are listed in a message.
const MAX_LISTED_OPTIONS: usize = 10;

/// Why a value could not be used, before the rule and field are attached.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) code: FieldErrorCode,
    pub(super) message: String,
}

/// One match, converted where the conversion is unambiguous; anything else is passed on
/// unchanged for `validate` to judge.
pub(super) fn scalar(t: FieldType, v: &Value) -> Value {
    use FieldType as T;
    match (t, v) {
        (T::Text | T::Select, Value::Number(n)) => Value::String(n.to_string()),
        (T::Text | T::Select, Value::Bool(b)) => Value::String(b.to_string()),
        (T::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => v.clone(),
        },
        (T::Date, Value::String(s)) => date_of_timestamp(s).map_or_else(|| v.clone(), Value::from),
        (T::MultiSelect, Value::Array(items)) => {
            Value::Array(items.iter().map(option_text).collect())
        }
        _ => v.clone(),
    }
}

/// Option values are text: a number or boolean becomes its text, anything else stays as it
/// is for `validate` to refuse.
fn option_text(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        _ => v.clone(),
    }
}

/// The calendar date an RFC 3339 timestamp was written with (its own offset, not UTC): an
/// API that answers "2024-05-01T23:30:00+02:00" for a due date means the 1st of May.
fn date_of_timestamp(s: &str) -> Option<String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    s.trim().get(..10).map(str::to_owned)
}

/// Every match as one list. A multi_select takes option values, so numbers and booleans
/// become their text; an array or api_call field takes the matches as they are.
pub(super) fn list(t: FieldType, matches: &[&Value]) -> Result<Value, Problem> {
    if t != FieldType::MultiSelect {
        return Ok(Value::Array(matches.iter().map(|v| (*v).clone()).collect()));
    }
    let items = matches
        .iter()
        .map(|v| match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(option_text(v)),
            other => Err(Problem {
                code: FieldErrorCode::WrongType,
                message: format!(
                    "a multi_select field takes text values, and one match is {}",
                    describe(other)
                ),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(items))
}

/// The matches as text joined by `separator`; `None` when nothing but nulls matched.
pub(super) fn join(matches: &[&Value], separator: &str) -> Result<Option<String>, Problem> {
    let mut parts = Vec::with_capacity(matches.len());
    for v in matches {
        match v {
            Value::Null => {}
            Value::String(s) => parts.push(s.clone()),
            Value::Number(n) => parts.push(n.to_string()),
            Value::Bool(b) => parts.push(b.to_string()),
            other => {
                return Err(Problem {
                    code: FieldErrorCode::WrongType,
                    message: format!(
                        "`join` takes text, numbers or true/false, and one match is {}",
                        describe(other)
                    ),
                });
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(separator)))
}

/// The form's own check, with a message that says what the field needs.
pub(super) fn validate(field: &FieldDef, value: Value) -> Result<Value, Problem> {
    check_value(field, &value).map_err(|code| Problem {
        code,
        message: format!(
            "{} does not fit {} field `{}`, which needs {}",
            describe(&value),
            field.field_type,
            field.key,
            needs(field)
        ),
    })
}

fn needs(field: &FieldDef) -> String {
    use FieldType as T;
    match field.field_type {
        T::Text => "text".to_owned(),
        T::Number => "a number".to_owned(),
        T::Date => "a date as YYYY-MM-DD".to_owned(),
        T::Datetime => "an RFC 3339 date and time".to_owned(),
        T::Boolean => "true or false".to_owned(),
        T::Select => format!("one of {}", options(field)),
        T::MultiSelect => format!("a list of {}", options(field)),
        T::Array => "a list".to_owned(),
        T::Object => "an object".to_owned(),
        T::Url => "an absolute http or https URL".to_owned(),
        T::ApiCall => "any value".to_owned(),
    }
}

fn options(field: &FieldDef) -> String {
    let n = field.options.len();
    if n > MAX_LISTED_OPTIONS {
        return format!("its {n} options");
    }
    let listed: Vec<String> = field
        .options
        .iter()
        .map(|o| Value::from(shorten(&o.value)).to_string())
        .collect();
    listed.join(", ")
}
