//! Response mappings: JSONPath (RFC 9535) rules that copy values from a JSON response into
//! case fields, as an outgoing webhook's "response mapping" (and later an API-call field's).
//!
//! A rule names a path, a target field and what to do when the path matches several values
//! ([`ArrayMode`]). [`ResponseMapping::check`] vets the rules against the form when an endpoint
//! is saved; [`ResponseMapping::apply`] runs them on a response and returns values already
//! valid for the form (coerced, then checked with [`crate::validate::check_value`]), plus the
//! problems met, which never stop the other rules.
//!
//! Paths are run on responses from systems we do not control, by workers serving every
//! workspace, so a path's cost is bounded when it is saved: at most [`MAX_PATH_BYTES`] bytes,
//! [`MAX_PATH_NESTING`] levels of brackets, [`MAX_DESCENDANTS`] descendant segments (`..`),
//! and `$` only at the start (a `$` inside a filter re-runs a query on the whole response for
//! every candidate, which nests exponentially).
//!
//! Pure: no I/O.

mod coerce;
mod path;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use self::path::compile_path;

use crate::error::{FieldError, FieldErrorCode};
use crate::form::{FieldType, FormSpec};

/// The most rules one mapping may hold.
pub const MAX_RULES: usize = 100;

/// The longest JSONPath accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 512;

/// How deeply brackets and parentheses may nest in a path.
pub const MAX_PATH_NESTING: usize = 8;

/// How many descendant segments (`..`) a path may use; each multiplies the work by the depth
/// of the response.
pub const MAX_DESCENDANTS: usize = 2;

/// The longest `join` separator, in characters.
pub const MAX_SEPARATOR_CHARS: usize = 32;

/// The most sub-paths an `each` rule may map.
pub const MAX_EACH_FIELDS: usize = 50;

/// Parse a JSONPath under the same cost bounds as mapping rules; the error is a sentence
/// naming what is wrong (for save-time checks of paths used elsewhere, such as an inbound
/// hook's match rule).
pub fn compile_json_path(path: &str) -> Result<Arc<JsonPath>, String> {
    compile_path(path).map_err(|e| e.sentence(path))
}

/// Rules that copy values from a response into case fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseMapping {
    /// Run in order; each fills one field.
    #[serde(default)]
    pub rules: Vec<MappingRule>,
}

/// One value (or set of values) to copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// A JSONPath (RFC 9535) into the response, such as `$.data.id` or
    /// `$.items[?@.status == 'open'].id`.
    pub path: String,
    /// The key of the case field that receives the value.
    pub field: String,
    /// What to do with the path's matches; `first` when absent.
    #[serde(default)]
    pub mode: ArrayMode,
}

/// How a rule turns the path's matches (zero, one or many) into one field value. Written as
/// `"first"`, `"all"`, `"count"`, `{"join": {"separator": ", "}}` or
/// `{"each": {"fields": {"$.id": "id"}}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArrayMode {
    /// The first match, converted to the field's type. No match leaves the field unchanged.
    #[default]
    First,
    /// Every match, as a list (array, multi_select or api_call fields). No match gives `[]`.
    All,
    /// How many values matched (number or api_call fields). No match gives 0.
    Count,
    /// The matches as text, joined by `separator` (text or api_call fields). No match leaves
    /// the field unchanged; null matches are skipped.
    Join {
        #[serde(default = "default_separator")]
        separator: String,
    },
    /// Every match turned into an object by sub-paths, for a list of objects (array or
    /// api_call fields). `fields` maps a JSONPath, whose `$` (or `@`) is the matched item, to
    /// the key it fills; a sub-path with no match leaves its key out. No match gives `[]`.
    Each { fields: BTreeMap<String, String> },
}

fn default_separator() -> String {
    ", ".to_owned()
}

impl ArrayMode {
    /// The mode's name, as written in a rule.
    pub fn name(&self) -> &'static str {
        match self {
            Self::First => "first",
            Self::All => "all",
            Self::Count => "count",
            Self::Join { .. } => "join",
            Self::Each { .. } => "each",
        }
    }

    /// Whether the mode's result can go into a field of this type, and if not, what it needs.
    fn fits(&self, t: FieldType) -> Result<(), &'static str> {
        use FieldType as T;
        let (ok, needs) = match self {
            Self::First => (true, ""),
            Self::All => (
                matches!(t, T::Array | T::MultiSelect | T::ApiCall),
                "an array, multi_select or api_call field",
            ),
            Self::Count => (
                matches!(t, T::Number | T::ApiCall),
                "a number or api_call field",
            ),
            Self::Join { .. } => (
                matches!(t, T::Text | T::ApiCall),
                "a text or api_call field",
            ),
            Self::Each { .. } => (
                matches!(t, T::Array | T::ApiCall),
                "an array or api_call field",
            ),
        };
        if ok { Ok(()) } else { Err(needs) }
    }
}

/// What [`ResponseMapping::apply`] produced: values to merge into the case, and what went
/// wrong with the other rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappingResult {
    /// Field key → value, valid for the form. Fields whose rule matched nothing are absent
    /// (left unchanged, not cleared).
    pub data: Map<String, Value>,
    /// One entry per rule that produced nothing, keyed by the target field.
    pub problems: Vec<FieldError>,
}

impl ResponseMapping {
    /// Every problem with the rules at once: paths that do not parse or cost too much,
    /// targets the form lacks, modes that do not fit the target's type, a field mapped twice.
    pub fn check(&self, form: &FormSpec) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.rules.len() > MAX_RULES {
            errors.push(FieldError::new(
                "rules",
                FieldErrorCode::InvalidDefinition,
                format!(
                    "a mapping has at most {MAX_RULES} rules, this one has {}",
                    self.rules.len()
                ),
            ));
        }
        let mut targets: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if let Err(e) = compile_path(&rule.path) {
                errors.push(invalid(format!("{at}.path"), e.sentence(&rule.path)));
            }
            check_target(rule, form, &at, &mut errors);
            if let Some(first) = targets.get(rule.field.as_str()) {
                errors.push(FieldError::new(
                    format!("{at}.field"),
                    FieldErrorCode::DuplicateKey,
                    format!(
                        "field `{}` is already filled by rules[{first}]; map each field once",
                        rule.field
                    ),
                ));
            } else {
                targets.insert(&rule.field, i);
            }
            check_mode(&rule.mode, &at, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Run every rule on `response`. Never fails as a whole and never panics: a rule that
    /// cannot produce a valid value leaves its field out and adds a problem.
    pub fn apply(&self, response: &Value, form: &FormSpec) -> MappingResult {
        apply_rules(&self.rules, response, form)
    }
}

/// [`ResponseMapping::apply`] for rules held elsewhere (an inbound hook's mapping).
pub fn apply_rules(rules: &[MappingRule], response: &Value, form: &FormSpec) -> MappingResult {
    let mut result = MappingResult::default();
    for (i, rule) in rules.iter().take(MAX_RULES).enumerate() {
        if result.data.contains_key(&rule.field) {
            result.problems.push(FieldError::new(
                rule.field.clone(),
                FieldErrorCode::DuplicateKey,
                format!(
                    "rules[{i}] is ignored: an earlier rule already filled `{}`",
                    rule.field
                ),
            ));
            continue;
        }
        match apply_rule(i, rule, response, form) {
            Ok(value) => {
                result.data.insert(rule.field.clone(), value);
            }
            Err(problem) => result.problems.push(problem),
        }
    }
    result
}

/// One rule's value, or the reason it has none.
fn apply_rule(
    i: usize,
    rule: &MappingRule,
    response: &Value,
    form: &FormSpec,
) -> Result<Value, FieldError> {
    let problem = |code, message: String| {
        FieldError::new(
            rule.field.clone(),
            code,
            format!(
                "rules[{i}] (`{}`): {message}",
                crate::validate::shorten(&rule.path)
            ),
        )
    };
    let Some(field) = form.field(&rule.field) else {
        let message = format!("`{}` is not a field of this form", rule.field);
        return Err(problem(FieldErrorCode::UnknownField, message));
    };
    if let Err(needs) = rule.mode.fits(field.field_type) {
        let message = format!(
            "mode `{}` needs {needs}, and `{}` is a {} field",
            rule.mode.name(),
            field.key,
            field.field_type
        );
        return Err(problem(FieldErrorCode::InvalidDefinition, message));
    }
    let path = compile_path(&rule.path)
        .map_err(|e| problem(FieldErrorCode::InvalidDefinition, e.sentence(&rule.path)))?;
    let matches = path.query(response).all();
    let value = match &rule.mode {
        ArrayMode::First => match matches.first() {
            None => return Err(problem(FieldErrorCode::ValueMissing, no_match())),
            Some(Value::Null) => {
                let message = "the value found is null; the field is left unchanged".to_owned();
                return Err(problem(FieldErrorCode::ValueMissing, message));
            }
            Some(v) => Ok(coerce::scalar(field.field_type, v)),
        },
        ArrayMode::All => coerce::list(field.field_type, &matches),
        ArrayMode::Count => Ok(Value::from(matches.len())),
        ArrayMode::Join { separator } => match coerce::join(&matches, separator) {
            Ok(None) => return Err(problem(FieldErrorCode::ValueMissing, no_match())),
            Ok(Some(text)) => Ok(Value::String(text)),
            Err(p) => Err(p),
        },
        ArrayMode::Each { fields } => {
            let sub =
                compile_each(fields).map_err(|e| problem(FieldErrorCode::InvalidDefinition, e))?;
            Ok(each(&matches, &sub))
        }
    };
    let value = value.map_err(|p| problem(p.code, p.message))?;
    coerce::validate(field, value).map_err(|p| problem(p.code, p.message))
}

fn no_match() -> String {
    "the response has no value at this path; the field is left unchanged".to_owned()
}

/// Each matched item as an object of its sub-paths' first matches.
fn each(items: &[&Value], sub: &[(Arc<JsonPath>, &str)]) -> Value {
    let objects = items
        .iter()
        .map(|item| {
            let object: Map<String, Value> = sub
                .iter()
                .filter_map(|(path, key)| {
                    let found = path.query(item).first()?;
                    Some(((*key).to_owned(), found.clone()))
                })
                .collect();
            Value::Object(object)
        })
        .collect();
    Value::Array(objects)
}

/// The `each` sub-paths, parsed; the first error in words.
fn compile_each(fields: &BTreeMap<String, String>) -> Result<Vec<(Arc<JsonPath>, &str)>, String> {
    fields
        .iter()
        .map(|(path, key)| {
            let relative = relative_path(path);
            compile_path(&relative)
                .map(|p| (p, key.as_str()))
                .map_err(|e| format!("in `each`: {}", e.sentence(path)))
        })
        .collect()
}

/// `@.id` reads as `$.id`: in `each`, both name the item.
fn relative_path(path: &str) -> String {
    match path.strip_prefix('@') {
        Some(rest) => format!("${rest}"),
        None => path.to_owned(),
    }
}

fn check_target(rule: &MappingRule, form: &FormSpec, at: &str, errors: &mut Vec<FieldError>) {
    let Some(field) = form.field(&rule.field) else {
        errors.push(FieldError::new(
            format!("{at}.field"),
            FieldErrorCode::UnknownField,
            format!(
                "{} is not a field of this form",
                crate::validate::describe_str(&rule.field)
            ),
        ));
        return;
    };
    if let Err(needs) = rule.mode.fits(field.field_type) {
        errors.push(invalid(
            format!("{at}.mode"),
            format!(
                "mode `{}` needs {needs}; `{}` is a {} field",
                rule.mode.name(),
                field.key,
                field.field_type
            ),
        ));
    }
}

fn check_mode(mode: &ArrayMode, at: &str, errors: &mut Vec<FieldError>) {
    match mode {
        ArrayMode::Join { separator } if separator.chars().count() > MAX_SEPARATOR_CHARS => {
            errors.push(invalid(
                format!("{at}.mode.join.separator"),
                format!("the separator is at most {MAX_SEPARATOR_CHARS} characters"),
            ));
        }
        ArrayMode::Each { fields } => check_each(fields, at, errors),
        _ => {}
    }
}

fn check_each(fields: &BTreeMap<String, String>, at: &str, errors: &mut Vec<FieldError>) {
    let at = format!("{at}.mode.each.fields");
    if fields.is_empty() {
        let message = "`each` needs at least one sub-path, such as {\"$.id\": \"id\"}";
        errors.push(invalid(at.clone(), message));
    }
    if fields.len() > MAX_EACH_FIELDS {
        let message = format!("`each` maps at most {MAX_EACH_FIELDS} sub-paths");
        errors.push(invalid(at.clone(), message));
    }
    let mut keys: HashMap<&str, &str> = HashMap::new();
    for (path, key) in fields {
        let here = format!("{at}[{}]", Value::from(path.as_str()));
        if let Err(e) = compile_path(&relative_path(path)) {
            errors.push(invalid(here.clone(), e.sentence(path)));
        }
        if key.trim().is_empty() {
            errors.push(invalid(here, "the key a sub-path fills must not be empty"));
        } else if let Some(other) = keys.insert(key, path) {
            errors.push(FieldError::new(
                here,
                FieldErrorCode::DuplicateKey,
                format!("key `{key}` is already filled by sub-path `{other}`"),
            ));
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod check_tests;

#[cfg(test)]
mod proptests;
