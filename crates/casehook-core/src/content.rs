//! What an outgoing webhook sends: the default envelope of an event, or a selection of fields
//! plus custom (templated) fields, and how that content is encoded on the wire (`encode`).
//!
//! The content is configured per endpoint ([`ContentSpec`]), checked once at save time against
//! the forms whose cases it will see ([`ContentSpec::check`]), and built per delivery
//! ([`ContentSpec::build`]). Pure: the caller loads the event and case.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;

use crate::case::Case;
use crate::error::{FieldError, FieldErrorCode};
use crate::event::Event;
use crate::form::FormSpec;
use crate::template::{
    JsonScope, JsonTemplate, JsonTemplateError, Missing, Placeholder, RenderError, RenderedJson,
    SECRET_ROOT, SecretSource, TemplateError,
};

mod encode;

pub use encode::{EncodeError, Protocol, encode, query_pairs};

/// Roots a selected field may start with.
const FIELD_ROOTS: &[&str] = &["event", "case", "data"];

/// Roots a custom field's placeholders may use.
const CUSTOM_ROOTS: &[&str] = &["event", "case", "data", SECRET_ROOT];

/// The keys of the envelope, for checking `event.<key>` references.
const ENVELOPE_KEYS: &[&str] = &[
    "id",
    "type",
    "timestamp",
    "workspace_id",
    "actor",
    "resource_type",
    "resource_id",
    "data",
    "changes",
];

/// The keys of a serialized case, for checking `case.<key>` references.
const CASE_KEYS: &[&str] = &[
    "id",
    "workspace_id",
    "form_id",
    "number",
    "status",
    "data",
    "external_refs",
    "version",
    "created_by",
    "created_at",
    "updated_at",
    "deleted_at",
];

/// The default content of an outgoing webhook:
/// `{"id", "type", "timestamp", "workspace_id", "actor", "resource_type", "resource_id",
/// "data", "changes"?}`. `id` is the event id (stable across retries, a receiver's
/// idempotency key), `timestamp` when the event occurred (RFC 3339, UTC). The resource is the
/// case when the event has one, else the workspace. `changes` (old and new value per field)
/// appears only when the event carries any.
pub fn envelope(event: &Event) -> Value {
    let occurred_at = event.occurred_at.to_offset(UtcOffset::UTC);
    // Formatting fails only for years past 9999, which the store never assigns.
    let timestamp = occurred_at
        .format(&Rfc3339)
        .unwrap_or_else(|_| occurred_at.unix_timestamp().to_string());
    let (resource_type, resource_id) = match event.case_id {
        Some(case_id) => ("case", case_id.to_string()),
        None => ("workspace", event.workspace_id.to_string()),
    };
    let mut envelope = json!({
        "id": event.id.to_string(),
        "type": event.event_type,
        "timestamp": timestamp,
        "workspace_id": event.workspace_id.to_string(),
        "actor": serde_json::to_value(&event.actor).unwrap_or(Value::Null),
        "resource_type": resource_type,
        "resource_id": resource_id,
        "data": event.data,
    });
    if let (Some(changes), Some(map)) = (&event.changes, envelope.as_object_mut())
        && !changes.is_empty()
    {
        map.insert(
            "changes".to_owned(),
            serde_json::to_value(changes).unwrap_or(Value::Null),
        );
    }
    envelope
}

/// One selected field: a dotted path into `{"event": envelope, "case": case, "data": case
/// data}`, written under the path's last name unless renamed. JSON: `"data.customer_id"` or
/// `{"path": "case.number", "as": "case_number"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelector {
    pub path: String,
    /// The output key; the last name of `path` when absent.
    pub rename: Option<String>,
}

impl FieldSelector {
    /// A selector written under the path's last name.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            rename: None,
        }
    }

    /// The key this field is written under.
    pub fn output_key(&self) -> &str {
        self.rename
            .as_deref()
            .unwrap_or_else(|| self.path.rsplit('.').next().unwrap_or(&self.path))
    }
}

impl Serialize for FieldSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.rename {
            None => s.serialize_str(&self.path),
            Some(rename) => SelectorObject {
                path: self.path.clone(),
                rename: rename.clone(),
            }
            .serialize(s),
        }
    }
}

/// The object spelling of a selector.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorObject {
    path: String,
    #[serde(rename = "as")]
    rename: String,
}

impl<'de> Deserialize<'de> for FieldSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SelectorVisitor)
    }
}

/// A visitor rather than an untagged enum, so a malformed selector gets serde's precise
/// message instead of "did not match any variant".
struct SelectorVisitor;

impl<'de> Visitor<'de> for SelectorVisitor {
    type Value = FieldSelector;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field path such as \"data.customer_id\", or {\"path\": …, \"as\": …}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSelector, E> {
        Ok(FieldSelector::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSelector, A::Error> {
        let o = SelectorObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(FieldSelector {
            path: o.path,
            rename: Some(o.rename),
        })
    }
}

/// What an endpoint sends. JSON: `{"mode": "envelope"}` (the default), or
/// `{"mode": "fields", "fields": ["data.customer_id", …], "custom": {"source": "casehook",
/// "total": "{data.amount}"}}`.
///
/// In `fields` mode the output is an object: the selected fields in order (a missing value is
/// `null`, so receivers always see the same keys), then the custom fields. A custom value is
/// any JSON; each string in it is a template (`{data.x}`, `{case.number}`, `{event.type}`,
/// `{secret.name}`) whose missing values render empty (or `null` for a string that is exactly
/// one placeholder, which keeps its value's JSON type).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentSpec {
    /// The default envelope (see [`envelope`]).
    #[default]
    Envelope,
    /// Selected fields plus custom ones.
    Fields {
        #[serde(default)]
        fields: Vec<FieldSelector>,
        #[serde(default)]
        custom: BTreeMap<String, Value>,
    },
}

/// Why content could not be built. `check` catches all but a missing secret at save time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("content field `{path}`: {error}")]
    BadPath { path: String, error: TemplateError },
    #[error("custom field `{key}`: {error}")]
    BadCustom {
        key: String,
        error: Box<JsonTemplateError>,
    },
    #[error("custom field `{key}`: {error}")]
    Render {
        key: String,
        error: Box<RenderError>,
    },
    #[error("custom field `{key}` uses `{{secret.{name}}}`, and no such secret is available")]
    SecretUnavailable { key: String, name: String },
    #[error("the case could not be written as JSON: {0}")]
    Case(String),
}

impl ContentSpec {
    /// Save-time check against the forms whose cases this content will see: every path and
    /// template parses, uses a known root (`event`, `case`, `data`, and `secret` in custom
    /// fields), names a known envelope or case key, and every `data.<field>` is a field of at
    /// least one of `forms`; output keys are unique. All problems are reported, with paths
    /// such as `content.fields[1]` and `content.custom.total`.
    pub fn check(&self, forms: &[&FormSpec]) -> Result<(), Vec<FieldError>> {
        let ContentSpec::Fields { fields, custom } = self else {
            return Ok(());
        };
        let mut errors = Vec::new();
        let mut keys: BTreeMap<&str, String> = BTreeMap::new();
        for (i, selector) in fields.iter().enumerate() {
            let at = format!("content.fields[{i}]");
            match Placeholder::parse(&selector.path) {
                Ok(p) => check_placeholder(&p, FIELD_ROOTS, forms, &at, &mut errors),
                Err(e) => errors.push(invalid(&at, format!("`{}`: {e}", selector.path))),
            }
            check_key(selector.output_key(), at, &mut keys, &mut errors);
        }
        for (key, value) in custom {
            let at = format!("content.custom.{key}");
            match JsonTemplate::parse(value) {
                Ok(t) => {
                    for (path, p) in t.placeholders() {
                        let at = if path.is_empty() {
                            at.clone()
                        } else {
                            format!("{at}.{path}")
                        };
                        check_placeholder(p, CUSTOM_ROOTS, forms, &at, &mut errors);
                    }
                }
                Err(e) => errors.push(invalid(&at, e.to_string())),
            }
            check_key(key, at, &mut keys, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The names of the secrets the custom fields use, so a caller can check they exist.
    pub fn secret_names(&self) -> Vec<String> {
        let ContentSpec::Fields { custom, .. } = self else {
            return Vec::new();
        };
        let mut names: Vec<String> = custom
            .values()
            .filter_map(|v| JsonTemplate::parse(v).ok())
            .flat_map(|t| {
                t.placeholders()
                    .into_iter()
                    .filter(|(_, p)| p.root() == SECRET_ROOT)
                    .filter_map(|(_, p)| p.path().first().cloned())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The content of one delivery, without secrets (a `{secret.…}` placeholder is an
    /// error here; use [`ContentSpec::build_with_secrets`]).
    pub fn build(&self, event: &Event, case: Option<&Case>) -> Result<Value, ContentError> {
        let none = |_: &str| None;
        self.build_with_secrets(event, case, &none).map(|r| r.value)
    }

    /// The content of one delivery, with `{secret.name}` resolved through `secrets`; the
    /// secret values used come back for redaction. `data` is the case's data (absent without
    /// a case); `event` is the envelope.
    pub fn build_with_secrets(
        &self,
        event: &Event,
        case: Option<&Case>,
        secrets: &dyn SecretSource,
    ) -> Result<RenderedJson, ContentError> {
        let ContentSpec::Fields { fields, custom } = self else {
            return Ok(RenderedJson {
                value: envelope(event),
                secrets_used: Vec::new(),
            });
        };
        let context = context(event, case)?;
        let mut out = Map::new();
        for selector in fields {
            let p = Placeholder::parse(&selector.path).map_err(|error| ContentError::BadPath {
                path: selector.path.clone(),
                error,
            })?;
            let value = context
                .get(p.root())
                .and_then(|root| crate::template::lookup_path(root, p.path()))
                .cloned()
                .unwrap_or(Value::Null);
            out.insert(selector.output_key().to_owned(), value);
        }
        let mut secrets_used = Vec::new();
        let context = Value::Object(context);
        for (key, value) in custom {
            let rendered = render_custom(key, value, &context, secrets)?;
            for s in rendered.secrets_used {
                if !secrets_used.contains(&s) {
                    secrets_used.push(s);
                }
            }
            out.insert(key.clone(), rendered.value);
        }
        Ok(RenderedJson {
            value: Value::Object(out),
            secrets_used,
        })
    }
}

/// `{"event": envelope, "case": case, "data": case data}`; without a case, only `event`.
fn context(event: &Event, case: Option<&Case>) -> Result<Map<String, Value>, ContentError> {
    let mut context = Map::new();
    context.insert("event".to_owned(), envelope(event));
    if let Some(case) = case {
        let value = serde_json::to_value(case).map_err(|e| ContentError::Case(e.to_string()))?;
        context.insert("case".to_owned(), value);
        context.insert("data".to_owned(), Value::Object(case.data.clone()));
    }
    Ok(context)
}

/// Secret lookups that remember which names had no value: rendering with `Missing::Empty`
/// would otherwise send an empty string where a deleted secret was meant.
struct Tracking<'a> {
    inner: &'a dyn SecretSource,
    unavailable: RefCell<Vec<String>>,
}

impl SecretSource for Tracking<'_> {
    fn secret(&self, name: &str) -> Option<String> {
        let value = self.inner.secret(name);
        if value.is_none() {
            self.unavailable.borrow_mut().push(name.to_owned());
        }
        value
    }
}

fn render_custom(
    key: &str,
    value: &Value,
    context: &Value,
    secrets: &dyn SecretSource,
) -> Result<RenderedJson, ContentError> {
    let template = JsonTemplate::parse(value).map_err(|error| ContentError::BadCustom {
        key: key.to_owned(),
        error: Box::new(error),
    })?;
    let tracking = Tracking {
        inner: secrets,
        unavailable: RefCell::new(Vec::new()),
    };
    let scope = JsonScope::new(context).with_secrets(&tracking);
    let rendered =
        template
            .render(&scope, Missing::Empty)
            .map_err(|error| ContentError::Render {
                key: key.to_owned(),
                error: Box::new(error),
            })?;
    if let Some(name) = tracking.unavailable.into_inner().into_iter().next() {
        return Err(ContentError::SecretUnavailable {
            key: key.to_owned(),
            name,
        });
    }
    Ok(rendered)
}

fn invalid(at: &str, message: String) -> FieldError {
    FieldError::new(at, FieldErrorCode::InvalidDefinition, message)
}

fn check_key<'a>(
    key: &'a str,
    at: String,
    seen: &mut BTreeMap<&'a str, String>,
    errors: &mut Vec<FieldError>,
) {
    if key.is_empty() {
        errors.push(invalid(&at, "the output key must not be empty".to_owned()));
    } else if let Some(first) = seen.get(key) {
        let msg = format!(
            "the output key `{key}` is already produced by `{first}`; rename one with \"as\""
        );
        errors.push(FieldError::new(at, FieldErrorCode::DuplicateKey, msg));
    } else {
        seen.insert(key, at);
    }
}

fn check_placeholder(
    p: &Placeholder,
    roots: &[&str],
    forms: &[&FormSpec],
    at: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Err(e) = crate::template::check_root(p, roots) {
        errors.push(invalid(at, e.to_string()));
        return;
    }
    let path = p.path();
    let data_key = match (p.root(), path) {
        ("data", [key, ..]) => Some(key),
        ("case", [first, key, ..]) if first == "data" => Some(key),
        ("case", [first, ..]) if !CASE_KEYS.contains(&first.as_str()) => {
            let msg = format!(
                "`{p}`: a case has no `{first}`; use one of {}",
                list(CASE_KEYS)
            );
            errors.push(invalid(at, msg));
            None
        }
        ("event", [first, ..]) if !ENVELOPE_KEYS.contains(&first.as_str()) => {
            let msg = format!(
                "`{p}`: the event envelope has no `{first}`; use one of {}",
                list(ENVELOPE_KEYS)
            );
            errors.push(invalid(at, msg));
            None
        }
        (SECRET_ROOT, [_]) => None,
        (SECRET_ROOT, _) => {
            let msg = format!("`{p}`: name one secret, as in `{{secret.api_key}}`");
            errors.push(invalid(at, msg));
            None
        }
        _ => None,
    };
    if let Some(key) = data_key
        && !forms.iter().any(|f| f.field(key).is_some())
    {
        let msg = format!("`{p}`: no form this endpoint listens to has a field `{key}`");
        errors.push(FieldError::new(at, FieldErrorCode::UnknownField, msg));
    }
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
