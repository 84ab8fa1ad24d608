//! Form definitions: the fields a case of one type carries, their sections and the statuses a
//! case may take, plus the rules that keep a definition coherent (`FormSpec::check`) and the
//! review of an update that could invalidate data already stored (`review_change`).
//!
//! Checking case *data* against a form lives in `validate`; this module only knows about the
//! definition itself.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{FieldError, FieldErrorCode};

/// The longest form name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The status of a new case when neither the request nor the form names one.
pub const DEFAULT_STATUS: &str = "open";

/// The kind of value a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Number,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 timestamp, stored in UTC.
    Datetime,
    Boolean,
    /// One of the field's options.
    Select,
    /// A list of the field's options.
    MultiSelect,
    /// Any JSON array.
    Array,
    /// Any JSON object.
    Object,
    /// An absolute http(s) URL.
    Url,
    /// A value computed by an API call; any JSON value may be set by hand as an override.
    ApiCall,
}

impl FieldType {
    /// Every field type.
    pub const ALL: [FieldType; 11] = [
        FieldType::Text,
        FieldType::Number,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Boolean,
        FieldType::Select,
        FieldType::MultiSelect,
        FieldType::Array,
        FieldType::Object,
        FieldType::Url,
        FieldType::ApiCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Boolean => "boolean",
            Self::Select => "select",
            Self::MultiSelect => "multi_select",
            Self::Array => "array",
            Self::Object => "object",
            Self::Url => "url",
            Self::ApiCall => "api_call",
        }
    }

    /// Whether values of this type are restricted to the field's options.
    pub fn has_options(self) -> bool {
        matches!(self, Self::Select | Self::MultiSelect)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One allowed value of a select or multi-select field. In a definition it may also be
/// written as a bare string (`"gold"`); it is always written back as an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldOption {
    /// The value stored in case data.
    pub value: String,
    /// What a person sees; the value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl FieldOption {
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            label: None,
        }
    }
}

impl<'de> Deserialize<'de> for FieldOption {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OptionVisitor)
    }
}

/// The object spelling of an option. A visitor rather than an untagged enum so that a
/// malformed option gets serde's precise message instead of "did not match any variant".
#[derive(Deserialize)]
struct OptionObject {
    value: String,
    #[serde(default)]
    label: Option<String>,
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = FieldOption;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an option: a string or an object with `value` and optional `label`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldOption, E> {
        Ok(FieldOption::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldOption, E> {
        Ok(FieldOption::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldOption, A::Error> {
        let o = OptionObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(FieldOption {
            value: o.value,
            label: o.label,
        })
    }
}

/// One field of a form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(from = "RawFieldDef")]
pub struct FieldDef {
    /// The key of the value in case data: `^[a-z][a-z0-9_]{0,63}$`.
    pub key: String,
    /// What a person sees; the key when absent.
    // `default` only tells the OpenAPI schema that the label is optional: deserializing goes
    // through `RawFieldDef`, which fills in the key.
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether a new case must carry a non-empty value.
    #[serde(default)]
    pub required: bool,
    /// The key of one of the form's sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The allowed values; only for `select` and `multi_select`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<FieldOption>,
    /// Whether a person sees the field when it is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// Configuration of an `api_call` field (see [`crate::apicall::ApiCallSpec`]). The API
    /// Call field spelling, with `api_config`, `trigger`, `retry`, `timeout` and
    /// `cache_duration` beside `key` and `type`, is accepted too and gathered here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub api_call: Option<serde_json::Value>,
}

/// Whether a field shows when empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    AlwaysVisible,
    HideWhenEmpty,
}

/// Keys of an API-call field's configuration that may sit beside `key` and `type`.
const API_CALL_KEYS: &[&str] = &[
    "api_config",
    "connection",
    "operation",
    "trigger",
    "trigger_fields",
    "schedule",
    "retry",
    "timeout",
    "cache_duration",
    "response_mapping",
    "sequence",
];

impl FieldDef {
    /// A field with the given key and type and everything else at its default.
    pub fn new(key: impl Into<String>, field_type: FieldType) -> Self {
        let key = key.into();
        Self {
            label: key.clone(),
            key,
            field_type,
            required: false,
            section: None,
            description: None,
            options: Vec::new(),
            visibility: None,
            api_call: None,
        }
    }
}

/// The wire shape of a field, so that an absent label can default to the key (serde's
/// `default` cannot see sibling fields).
#[derive(Deserialize)]
struct RawFieldDef {
    key: String,
    #[serde(default, alias = "name")]
    label: Option<String>,
    #[serde(rename = "type")]
    field_type: FieldType,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    options: Vec<FieldOption>,
    #[serde(default)]
    visibility: Option<Visibility>,
    #[serde(default)]
    api_call: Option<serde_json::Value>,
    /// Anything else: the API Call field's top-level keys, gathered into `api_call`.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl From<RawFieldDef> for FieldDef {
    fn from(mut r: RawFieldDef) -> Self {
        let top: Vec<(String, serde_json::Value)> = API_CALL_KEYS
            .iter()
            .filter_map(|k| r.rest.remove(*k).map(|v| ((*k).to_owned(), v)))
            .collect();
        if !top.is_empty() {
            let mut merged = match r.api_call.take() {
                Some(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            merged.extend(top);
            r.api_call = Some(serde_json::Value::Object(merged));
        }
        Self {
            label: r.label.unwrap_or_else(|| r.key.clone()),
            key: r.key,
            field_type: r.field_type,
            required: r.required,
            section: r.section,
            description: r.description,
            options: r.options,
            visibility: r.visibility,
            api_call: r.api_call,
        }
    }
}

/// A named group of fields, for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Section {
    /// Same syntax as a field key.
    pub key: String,
    pub label: String,
}

/// A form (case type): its fields and the statuses its cases may take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FormSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub sections: Vec<Section>,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// The allowed case statuses; empty means any non-empty status.
    #[serde(default)]
    pub statuses: Vec<String>,
    /// The status of a new case when the request names none. When absent: the first of
    /// `statuses`, or `"open"` when `statuses` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_status: Option<String>,
}

impl FormSpec {
    /// A form with this name and nothing else.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            sections: Vec::new(),
            fields: Vec::new(),
            statuses: Vec::new(),
            default_status: None,
        }
    }

    /// All definition problems at once (never stops at the first).
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        self.check_name(&mut errors);
        let section_keys = self.check_sections(&mut errors);
        self.check_fields(&section_keys, &mut errors);
        self.check_statuses(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The field with this key.
    pub fn field(&self, key: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// The status of a new case when the request names none.
    pub fn initial_status(&self) -> String {
        self.default_status
            .clone()
            .or_else(|| self.statuses.first().cloned())
            .unwrap_or_else(|| DEFAULT_STATUS.to_owned())
    }

    fn check_name(&self, errors: &mut Vec<FieldError>) {
        if self.name.trim().is_empty() {
            errors.push(invalid("name", "the form name must not be empty"));
        } else if self.name.chars().count() > MAX_NAME_CHARS {
            let msg = format!("the form name must be at most {MAX_NAME_CHARS} characters");
            errors.push(invalid("name", msg));
        }
    }

    /// Checks the sections and returns every declared key, malformed or not, so that a field
    /// naming a malformed section is not reported twice.
    fn check_sections<'a>(&'a self, errors: &mut Vec<FieldError>) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        for (i, s) in self.sections.iter().enumerate() {
            let path = format!("sections[{i}].key");
            let first = seen.insert(s.key.as_str());
            if !is_valid_key(&s.key) {
                errors.push(invalid(path, key_syntax_message("section key", &s.key)));
            } else if !first {
                let msg = format!("section key `{}` is declared more than once", s.key);
                errors.push(FieldError::new(path, FieldErrorCode::DuplicateKey, msg));
            }
        }
        seen
    }

    fn check_fields(&self, sections: &HashSet<&str>, errors: &mut Vec<FieldError>) {
        let mut seen = HashSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            let path = format!("fields[{i}]");
            if !is_valid_key(&f.key) {
                errors.push(invalid(
                    format!("{path}.key"),
                    key_syntax_message("field key", &f.key),
                ));
            } else if !seen.insert(f.key.as_str()) {
                let msg = format!("field key `{}` is declared more than once", f.key);
                errors.push(FieldError::new(
                    format!("{path}.key"),
                    FieldErrorCode::DuplicateKey,
                    msg,
                ));
            }
            if let Some(section) = &f.section
                && !sections.contains(section.as_str())
            {
                let msg = format!(
                    "field `{}` names section `{section}`, which the form does not declare",
                    f.key
                );
                errors.push(invalid(format!("{path}.section"), msg));
            }
            if f.api_call.is_some() && f.field_type != FieldType::ApiCall {
                let msg = format!(
                    "field `{}` is of type {}; only api_call fields take an api_call configuration",
                    f.key, f.field_type
                );
                errors.push(invalid(format!("{path}.api_call"), msg));
            }
            if f.field_type == FieldType::ApiCall {
                self.check_api_call(f, &path, errors);
            }
            check_options(f, &path, errors);
        }
    }

    fn check_api_call(&self, f: &FieldDef, path: &str, errors: &mut Vec<FieldError>) {
        let at = format!("{path}.api_call");
        let Some(config) = &f.api_call else {
            let msg = format!(
                "api_call field `{}` needs an `api_config` (or a `connection` and an `operation`)",
                f.key
            );
            errors.push(invalid(at, msg));
            return;
        };
        match crate::apicall::ApiCallSpec::from_json(config) {
            Ok(spec) => errors.extend(spec.check(&f.key, self, &at)),
            Err(e) => errors.push(invalid(at, format!("field `{}`: {e}", f.key))),
        }
    }

    fn check_statuses(&self, errors: &mut Vec<FieldError>) {
        let mut seen = HashSet::new();
        for (i, s) in self.statuses.iter().enumerate() {
            let path = format!("statuses[{i}]");
            if s.trim().is_empty() {
                errors.push(invalid(path, "a status must not be empty"));
            } else if !seen.insert(s.as_str()) {
                errors.push(invalid(
                    path,
                    format!("status `{s}` is listed more than once"),
                ));
            }
        }
        let Some(default) = &self.default_status else {
            return;
        };
        if default.trim().is_empty() {
            errors.push(invalid(
                "default_status",
                "the default status must not be empty",
            ));
        } else if !self.statuses.is_empty() && !self.statuses.contains(default) {
            let msg = format!("the default status `{default}` is not one of the form's statuses");
            errors.push(invalid("default_status", msg));
        }
    }
}

fn check_options(f: &FieldDef, path: &str, errors: &mut Vec<FieldError>) {
    if !f.field_type.has_options() {
        if !f.options.is_empty() {
            let msg = format!(
                "field `{}` is of type {}; only select and multi_select fields take options",
                f.key, f.field_type
            );
            errors.push(invalid(format!("{path}.options"), msg));
        }
        return;
    }
    if f.options.is_empty() {
        let msg = format!(
            "{} field `{}` needs at least one option",
            f.field_type, f.key
        );
        errors.push(invalid(format!("{path}.options"), msg));
    }
    let mut seen = HashSet::new();
    for (j, o) in f.options.iter().enumerate() {
        let opath = format!("{path}.options[{j}].value");
        // A blank option could never be chosen: validation treats a blank value as missing.
        if o.value.trim().is_empty() {
            errors.push(invalid(
                opath,
                format!("field `{}` has an empty option value", f.key),
            ));
        } else if !seen.insert(o.value.as_str()) {
            let msg = format!(
                "field `{}` lists option `{}` more than once",
                f.key, o.value
            );
            errors.push(invalid(opath, msg));
        }
    }
}

/// Whether `s` matches `^[a-z][a-z0-9_]{0,63}$`: safe in JSON paths, SQL and templates alike.
pub fn is_valid_key(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'a'..=b'z'))
        && b.len() <= 64
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

fn key_syntax_message(what: &str, key: &str) -> String {
    // Keys are short by rule; a long one is shown cut, so a message stays one line.
    let shown: String = key.chars().take(64).collect();
    let more = if key.chars().count() > 64 { "…" } else { "" };
    format!(
        "{what} `{shown}{more}` must start with a-z and contain only a-z, 0-9 and _ (at most 64 characters)"
    )
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(path, FieldErrorCode::InvalidDefinition, message)
}

/// What a form update changes that could invalidate stored case data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FormChangeReview {
    /// Keys whose type changed, or whose options lost values, in a way stored data may not fit.
    pub narrowed: Vec<String>,
    /// Keys of fields the update removes.
    pub removed: Vec<String>,
}

impl FormChangeReview {
    pub fn is_empty(&self) -> bool {
        self.narrowed.is_empty() && self.removed.is_empty()
    }

    /// The review as `incompatible_change` problems, for refusing the update.
    pub fn errors(&self) -> Vec<FieldError> {
        let narrowed = self.narrowed.iter().map(|k| {
            let msg =
                format!("changing field `{k}` could invalidate values already stored in cases");
            FieldError::new(k.clone(), FieldErrorCode::IncompatibleChange, msg)
        });
        let removed = self.removed.iter().map(|k| {
            let msg = format!("removing field `{k}` would orphan values already stored in cases");
            FieldError::new(k.clone(), FieldErrorCode::IncompatibleChange, msg)
        });
        narrowed.chain(removed).collect()
    }
}

/// What changes between `old` and `new` that could invalidate case data stored under `old`.
///
/// A changed `required` flag is never reported: stored cases are not re-validated for required
/// fields (only new cases and updates that touch the field are), so making a field required
/// cannot invalidate anything already stored.
pub fn review_change(old: &FormSpec, new: &FormSpec) -> FormChangeReview {
    let mut review = FormChangeReview::default();
    for o in &old.fields {
        match new.field(&o.key) {
            None => review.removed.push(o.key.clone()),
            Some(n) if narrows(o, n) => review.narrowed.push(o.key.clone()),
            Some(_) => {}
        }
    }
    review
}

fn narrows(old: &FieldDef, new: &FieldDef) -> bool {
    if old.field_type != new.field_type {
        return !is_safe_widening(old.field_type, new.field_type);
    }
    if old.field_type.has_options() {
        let kept: HashSet<&str> = new.options.iter().map(|o| o.value.as_str()).collect();
        return old.options.iter().any(|o| !kept.contains(o.value.as_str()));
    }
    false
}

/// Type changes that can never invalidate a stored value, kept deliberately small. Each old
/// type stores a plain JSON string, which `text` accepts as is. Everything else counts as
/// narrowing, including a change to `api_call`: it would accept any value, but it turns
/// entered data into a "manual override" of a computed value, which is a change of meaning.
fn is_safe_widening(from: FieldType, to: FieldType) -> bool {
    use FieldType::*;
    matches!((from, to), (Select | Date | Datetime | Url, Text))
}

#[cfg(test)]
mod tests;
