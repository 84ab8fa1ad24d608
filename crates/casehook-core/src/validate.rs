//! Case data against its form: every problem reported at once, and the data normalized for
//! storage (numbers from strings, datetimes in UTC, de-duplicated multi-selects).
//!
//! Only values are judged here; whether the form itself is coherent is `FormSpec::check`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Number, Value};
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::error::{FieldError, FieldErrorCode};
use crate::form::{FieldDef, FieldType, FormSpec};

/// Longest piece of input echoed back in a message; longer values are described, not shown.
pub(crate) const MAX_ECHO_CHARS: usize = 60;

/// Up to this many options are listed in a message; beyond, only their number is given.
const MAX_LISTED_OPTIONS: usize = 10;

const DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Whether the data is that of a new case or a change to an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The whole data of a new case: required fields must be present.
    Create,
    /// A merge patch: only the keys present are touched, and null clears a field.
    Update,
}

/// Why one value was refused, before it is attached to its field.
struct Problem {
    code: FieldErrorCode,
    message: String,
}

/// Validate `input` (the `data` object of a case request) against `form`. Reports ALL
/// problems at once. Returns the normalized data to store, in the order of `input`.
///
/// In `Update` mode a null value is kept as `Null` in the output: it asks the caller to
/// remove the field. `skip_required` waives `field_required` and `value_missing` (for imports
/// and drafts); type problems are always reported.
pub fn validate_data(
    form: &FormSpec,
    input: &Map<String, Value>,
    mode: Mode,
    skip_required: bool,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for (key, value) in input {
        let Some(field) = form.field(key) else {
            let msg = format!("{} is not a field of this form", echo_key(key));
            errors.push(FieldError::new(
                key.clone(),
                FieldErrorCode::UnknownField,
                msg,
            ));
            continue;
        };
        if field.required && !skip_required && is_empty(value) {
            let msg = format!(
                "{key} is required and must not be empty, got {}",
                describe(value)
            );
            errors.push(FieldError::new(
                key.clone(),
                FieldErrorCode::ValueMissing,
                msg,
            ));
            continue;
        }
        if value.is_null() {
            // A new case simply lacks the field; an update must say "clear it" to the caller.
            if mode == Mode::Update {
                out.insert(key.clone(), Value::Null);
            }
            continue;
        }
        match check(field, value) {
            Ok(v) => {
                out.insert(key.clone(), v);
            }
            Err(p) => errors.push(FieldError::new(key.clone(), p.code, p.message)),
        }
    }
    if mode == Mode::Create && !skip_required {
        for f in form
            .fields
            .iter()
            .filter(|f| f.required && !input.contains_key(&f.key))
        {
            let msg = format!("{} is required", f.key);
            errors.push(FieldError::new(
                f.key.clone(),
                FieldErrorCode::FieldRequired,
                msg,
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Check one value against one field definition (used when checking stored data against a
/// changed form). Null is always accepted here; emptiness and `required` are the caller's
/// concern. Returns the normalized value.
pub fn check_value(field: &FieldDef, value: &Value) -> Result<Value, FieldErrorCode> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    check(field, value).map_err(|p| p.code)
}

/// Check a case status against the form's allowed statuses (any non-empty one when the form
/// lists none).
pub fn check_status(form: &FormSpec, status: &str) -> Result<(), FieldError> {
    if status.trim().is_empty() {
        let msg = "status must not be empty";
        return Err(FieldError::new("status", FieldErrorCode::ValueMissing, msg));
    }
    if form.statuses.is_empty() || form.statuses.iter().any(|s| s == status) {
        return Ok(());
    }
    let msg = format!(
        "status must be {}, got {}",
        one_of(form.statuses.iter().map(String::as_str)),
        describe_str(status)
    );
    Err(FieldError::new(
        "status",
        FieldErrorCode::ValueNotAllowed,
        msg,
    ))
}

/// Null, a blank string or an empty list: present, but no value.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Check a non-null value and normalize it.
fn check(field: &FieldDef, v: &Value) -> Result<Value, Problem> {
    let key = &field.key;
    let fail = |code, expected: &str| Problem {
        code,
        message: format!("{key} must be {expected}, got {}", describe(v)),
    };
    use FieldErrorCode as C;
    match field.field_type {
        FieldType::Text => match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(fail(C::WrongType, "a string")),
        },
        FieldType::Number => number(v).ok_or_else(|| fail(C::ValueNotNumeric, "a number")),
        FieldType::Date => match v {
            Value::String(s) if is_date(s) => Ok(v.clone()),
            _ => Err(fail(C::WrongDate, "a date as YYYY-MM-DD")),
        },
        FieldType::Datetime => match v {
            Value::String(s) => datetime_utc(s).map(Value::String),
            _ => None,
        }
        .ok_or_else(|| fail(C::WrongDate, "an RFC 3339 date and time")),
        FieldType::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s == "true" => Ok(Value::Bool(true)),
            Value::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => Err(fail(C::WrongType, "true or false")),
        },
        FieldType::Select => select(field, v),
        FieldType::MultiSelect => multi_select(field, v),
        FieldType::Array => match v {
            Value::Array(_) => Ok(v.clone()),
            _ => Err(fail(C::ValueNotArray, "a list")),
        },
        FieldType::Object => match v {
            Value::Object(_) => Ok(v.clone()),
            _ => Err(fail(C::WrongType, "an object")),
        },
        FieldType::Url => match v {
            Value::String(s) if is_http_url(s) => Ok(v.clone()),
            _ => Err(fail(C::InvalidUrl, "an absolute http or https URL")),
        },
        // A hand-set value overrides whatever the call would compute, so any value goes.
        FieldType::ApiCall => Ok(v.clone()),
    }
}

/// A JSON number as is, or a string holding one (surrounding blanks allowed). Integers stay
/// integers, so "12" is stored as 12 and not 12.0.
fn number(v: &Value) -> Option<Value> {
    let s = match v {
        Value::Number(_) => return Some(v.clone()),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Value::from(u));
    }
    // Rust also reads "inf", "NaN" and overflowing literals such as "1e999" (as infinity);
    // `from_f64` refuses every non-finite result.
    let f = s.parse::<f64>().ok()?;
    Number::from_f64(f).map(Value::Number)
}

/// Exactly `YYYY-MM-DD` and a real calendar day. The shape is checked first because the
/// `[year]` component would also accept a sign.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    shape && Date::parse(s, DATE_FORMAT).is_ok()
}

/// An RFC 3339 timestamp, rewritten in UTC. `None` also when the UTC instant falls outside
/// the years RFC 3339 can write (0000–9999), e.g. "9999-12-31T23:30:00-01:00".
fn datetime_utc(s: &str) -> Option<String> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    t.checked_to_offset(UtcOffset::UTC)?.format(&Rfc3339).ok()
}

fn select(field: &FieldDef, v: &Value) -> Result<Value, Problem> {
    let key = &field.key;
    let expected = one_of(field.options.iter().map(|o| o.value.as_str()));
    let code = match v {
        Value::String(s) if is_option(field, s) => return Ok(v.clone()),
        Value::String(_) => FieldErrorCode::ValueNotAllowed,
        _ => FieldErrorCode::WrongType,
    };
    let message = format!("{key} must be {expected}, got {}", describe(v));
    Err(Problem { code, message })
}

/// A list of option values, duplicates dropped (first occurrence kept). One problem per
/// field: a non-string item outranks a string that is not an option.
fn multi_select(field: &FieldDef, v: &Value) -> Result<Value, Problem> {
    let key = &field.key;
    let Value::Array(items) = v else {
        let message = format!("{key} must be a list of options, got {}", describe(v));
        return Err(Problem {
            code: FieldErrorCode::ValueNotArray,
            message,
        });
    };
    if let Some(bad) = items.iter().find(|i| !i.is_string()) {
        let message = format!(
            "{key} must be a list of strings, got an item {}",
            describe(bad)
        );
        return Err(Problem {
            code: FieldErrorCode::WrongType,
            message,
        });
    }
    let strings = items.iter().filter_map(Value::as_str);
    if let Some(bad) = strings.clone().find(|s| !is_option(field, s)) {
        let expected = one_of(field.options.iter().map(|o| o.value.as_str()));
        let message = format!(
            "each item of {key} must be {expected}, got {}",
            describe_str(bad)
        );
        return Err(Problem {
            code: FieldErrorCode::ValueNotAllowed,
            message,
        });
    }
    let mut kept: Vec<&str> = Vec::with_capacity(items.len());
    for s in strings {
        if !kept.contains(&s) {
            kept.push(s);
        }
    }
    Ok(Value::Array(kept.into_iter().map(Value::from).collect()))
}

fn is_option(field: &FieldDef, s: &str) -> bool {
    field.options.iter().any(|o| o.value == s)
}

/// An absolute http or https URL with a host, checked strictly: anything a lenient parser
/// would silently "repair" (blanks, control characters, backslashes) is refused, so that
/// what is stored is what every consumer reads the same way.
fn is_http_url(s: &str) -> bool {
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return false;
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Credentials may precede the host; the host is what follows the last '@'.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return false;
        };
        let port_ok = match after.strip_prefix(':') {
            Some(port) => is_port(port),
            None => after.is_empty(),
        };
        return port_ok && ip.parse::<Ipv6Addr>().is_ok();
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => is_port(port) && is_host_name(host),
        None => is_host_name(host_port),
    }
}

fn is_port(p: &str) -> bool {
    (1..=5).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

/// A DNS name (internationalized letters allowed) or a dotted-quad IPv4 address.
fn is_host_name(host: &str) -> bool {
    // A fully qualified name may end in a dot.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().count() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    };
    if !name.split('.').all(label_ok) {
        return false;
    }
    // Browsers read a name whose last label is numeric as an IPv4 address ("1.2.3" or
    // "0x7f.1" included), so such a name is only accepted as a proper dotted quad.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") || last.starts_with("0X")
    {
        return name.parse::<Ipv4Addr>().is_ok();
    }
    true
}

/// "one of a, b, c", or a count when the list is too long for a message.
fn one_of<'a>(values: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = values.len();
    if n > MAX_LISTED_OPTIONS {
        return format!("one of the {n} allowed values");
    }
    let listed: Vec<String> = values.map(quote_cut).collect();
    format!("one of {}", listed.join(", "))
}

/// A value as a message names it: the kind, and the value itself when it is short.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean {b}"),
        Value::Number(n) => format!("a number {n}"),
        Value::String(s) => describe_str(s),
        Value::Array(a) if a.len() == 1 => "a list of 1 item".to_owned(),
        Value::Array(a) => format!("a list of {} items", a.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// Input is echoed only when short: a message must stay readable and must not become a way
/// to copy large payloads into logs.
pub(crate) fn describe_str(s: &str) -> String {
    let n = s.chars().count();
    if n > MAX_ECHO_CHARS {
        format!("a string of {n} characters")
    } else {
        format!("a string {}", Value::from(s))
    }
}

/// At most [`MAX_ECHO_CHARS`] characters of `s`, marked when cut, with any NUL shown as
/// U+FFFD: messages are stored (request logs), and PostgreSQL stores no NUL in text.
pub(crate) fn shorten(s: &str) -> String {
    let shown = |c: char| if c == '\0' { '\u{FFFD}' } else { c };
    if s.chars().count() > MAX_ECHO_CHARS {
        let head: String = s.chars().take(MAX_ECHO_CHARS).map(shown).collect();
        format!("{head}…")
    } else {
        s.chars().map(shown).collect()
    }
}

/// A form-defined value (an option, a status) quoted as JSON, cut when long.
fn quote_cut(s: &str) -> String {
    if s.chars().count() > MAX_ECHO_CHARS {
        let head: String = s.chars().take(MAX_ECHO_CHARS).collect();
        format!("{}…", Value::from(head))
    } else {
        Value::from(s).to_string()
    }
}

fn echo_key(key: &str) -> String {
    let n = key.chars().count();
    if n > MAX_ECHO_CHARS {
        return format!("a key of {n} characters");
    }
    Value::from(key).to_string()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
