//! An inbound hook's configuration: which form it writes to and how (`action`, `match`), how
//! a payload becomes field values (`mapping`), who may send (`verifications`, API key), how
//! retries are recognised (`idempotency`) and its limits.
//!
//! [`HookConfig::check`] is the save-time gate: every JSONPath is compiled, every field and
//! status resolved against the form, every verification checked, and all problems are
//! reported at once with the path of the setting at fault. [`HookConfig::map_item`] and
//! [`HookConfig::match_key`] are what a request runs through.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::verify::Verification;
use crate::case::check_external_ref;
use crate::event::{check_custom_event_name, is_builtin};
use crate::form::{FieldType, FormSpec};
use crate::mapping::{MappingRule, ResponseMapping, apply_rules, compile_json_path};
use crate::validate::{Mode, check_status, validate_data};
use crate::{FieldError, FieldErrorCode, FormId};

/// Default largest body a hook accepts (1 MiB), and the most any hook may accept.
pub const DEFAULT_BODY_BYTES: u64 = 1024 * 1024;
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default part of a body kept in the request log (256 KiB); a longer body is truncated
/// there and cannot be replayed.
pub const DEFAULT_LOG_BODY_BYTES: u64 = 256 * 1024;
/// How long idempotency keys are kept by default (7 days), and the bounds.
pub const DEFAULT_IDEMPOTENCY_WINDOW_SECS: u64 = 7 * 24 * 3600;
pub const MIN_IDEMPOTENCY_WINDOW_SECS: u64 = 60;
pub const MAX_IDEMPOTENCY_WINDOW_SECS: u64 = 90 * 24 * 3600;
/// The most verifications one hook may combine.
pub const MAX_VERIFICATIONS: usize = 8;
/// Headers that carry a sender's delivery id, looked at in this order.
pub const IDEMPOTENCY_HEADERS: &[&str] = &[
    "idempotency-key",
    "webhook-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
];
/// Longest idempotency key kept as given; longer keys are rejected.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// What every request to a hook does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// Every request (every item of a batch) creates a case.
    #[default]
    Create,
    /// Find the case by the match rule and merge the mapped fields into it.
    Update,
    /// Update the matched case, or create one when nothing matches.
    Upsert,
    /// Emit `event_type` on the matched case, with the payload as the event's data.
    Event,
}

impl HookAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Upsert => "upsert",
            Self::Event => "event",
        }
    }
}

/// How a request names an existing case: the value at `path` in the payload is an external
/// reference of `source`, a value of field `key` (of the hook's form), or a case number.
/// Written `{"external_ref": {"source": "stripe", "path": "$.data.object.id"}}`,
/// `{"field": {"key": "order_id", "path": "$.order.id"}}` or `{"case_number": {"path": "$.ref"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MatchRule {
    ExternalRef { source: String, path: String },
    Field { key: String, path: String },
    CaseNumber { path: String },
}

/// What an `update` hook does when no case matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoMatch {
    /// Answer 404 `no_match` and write nothing.
    #[default]
    Error,
    /// Create a case instead (as `upsert` does).
    Create,
}

/// Payload keys that are not fields of the form, in the default mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKeys {
    /// Refuse the request with `unknown_field` for each (AM System's behaviour).
    #[default]
    Refuse,
    /// Drop them silently.
    Ignore,
}

/// How a payload item becomes field values. With no `rules`, the item's top-level keys are
/// field keys (AM System's "field IDs"). With rules, only the rules fill fields.
/// `static_values` are set on every request, `payload_field` receives the whole item, and
/// `external_refs` give a created or updated case references taken from the payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadMapping {
    /// JSONPath (RFC 9535) rules, as in an endpoint's response mapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MappingRule>,
    /// Field key → value written on every request (after the mapped values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub static_values: BTreeMap<String, Value>,
    /// An `object` field that keeps the whole payload item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_field: Option<String>,
    /// Source → JSONPath: the value found becomes the case's external reference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_refs: BTreeMap<String, String>,
    #[serde(default)]
    pub unknown_keys: UnknownKeys,
}

/// How retried requests are recognised: by the senders' delivery-id headers
/// ([`IDEMPOTENCY_HEADERS`]) and/or a JSONPath into the body (e.g. `$.id` for Stripe events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySpec {
    /// Look at the senders' delivery-id headers (default true).
    #[serde(default = "yes")]
    pub headers: bool,
    /// A JSONPath into the body whose value is the key; it wins over the headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How long a key is remembered, in seconds (default 7 days).
    #[serde(default = "default_window")]
    pub window_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_window() -> u64 {
    DEFAULT_IDEMPOTENCY_WINDOW_SECS
}

impl Default for IdempotencySpec {
    fn default() -> Self {
        Self {
            headers: true,
            path: None,
            window_secs: DEFAULT_IDEMPOTENCY_WINDOW_SECS,
        }
    }
}

/// A hook's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookLimits {
    /// Largest body accepted (bytes; default 1 MiB, at most 16 MiB): larger → 413.
    #[serde(default = "default_body")]
    pub body_bytes: u64,
    /// Sustained requests per second (token bucket, per server process); over it → 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Requests allowed in a burst above the rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// How much of each body the request log keeps (bytes; default 256 KiB).
    #[serde(default = "default_log_body")]
    pub log_body_bytes: u64,
}

fn default_body() -> u64 {
    DEFAULT_BODY_BYTES
}

fn default_log_body() -> u64 {
    DEFAULT_LOG_BODY_BYTES
}

impl Default for HookLimits {
    fn default() -> Self {
        Self {
            body_bytes: DEFAULT_BODY_BYTES,
            rate_per_second: None,
            burst: None,
            log_body_bytes: DEFAULT_LOG_BODY_BYTES,
        }
    }
}

/// An inbound hook as configured through the API (its name, enabled switch, URL token and
/// verification secrets are kept apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub form_id: FormId,
    #[serde(default)]
    pub action: HookAction,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_rule: Option<MatchRule>,
    #[serde(default)]
    pub on_no_match: NoMatch,
    /// The custom event type an `event` hook emits (registered in the event catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The status created cases get (default: the form's first), and updated cases move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub mapping: PayloadMapping,
    /// Checks every request must pass, all of them (secrets are kept apart, sealed).
    #[serde(default)]
    pub verifications: Vec<Verification>,
    /// Also require an API key (`Auth-Key` or `Authorization: Bearer`): an `inbound` key of
    /// this hook, or a member or admin key of the workspace.
    #[serde(default)]
    pub require_api_key: bool,
    #[serde(default)]
    pub idempotency: IdempotencySpec,
    #[serde(default)]
    pub limits: HookLimits,
}

/// The case a request names, read from its payload.
#[derive(Clone, Debug, PartialEq)]
pub enum MatchKey {
    ExternalRef { source: String, reference: String },
    Field { key: String, value: Value },
    Number(i64),
}

impl MatchKey {
    /// For messages: "external reference stripe=pi_123", "order_id = 42", "case #7".
    pub fn describe(&self) -> String {
        match self {
            Self::ExternalRef { source, reference } => {
                format!(
                    "external reference {source}={}",
                    crate::validate::shorten(reference)
                )
            }
            Self::Field { key, value } => format!(
                "field {key} = {}",
                crate::validate::shorten(&value.to_string())
            ),
            Self::Number(n) => format!("case #{n}"),
        }
    }
}

/// A payload item turned into field values (not yet validated against the form), and what
/// the mapping could not do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappedItem {
    pub data: Map<String, Value>,
    pub external_refs: BTreeMap<String, String>,
    pub problems: Vec<FieldError>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

impl HookConfig {
    /// Every problem with the configuration against the hook's form, at once.
    pub fn check(&self, form: &FormSpec) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        self.check_action(form, &mut errors);
        self.check_mapping(form, &mut errors);
        if self.verifications.len() > MAX_VERIFICATIONS {
            errors.push(invalid(
                "verifications",
                format!("a hook combines at most {MAX_VERIFICATIONS} verifications"),
            ));
        }
        for (i, v) in self.verifications.iter().enumerate() {
            errors.extend(v.check(&format!("verifications[{i}]")));
        }
        let idem = &self.idempotency;
        if !(MIN_IDEMPOTENCY_WINDOW_SECS..=MAX_IDEMPOTENCY_WINDOW_SECS).contains(&idem.window_secs)
        {
            errors.push(invalid(
                "idempotency.window_secs",
                format!(
                    "keys are kept {MIN_IDEMPOTENCY_WINDOW_SECS} s to {MAX_IDEMPOTENCY_WINDOW_SECS} s"
                ),
            ));
        }
        if let Some(path) = &idem.path {
            check_path("idempotency.path", path, &mut errors);
        }
        let limits = &self.limits;
        if !(1..=MAX_BODY_BYTES).contains(&limits.body_bytes) {
            errors.push(invalid(
                "limits.body_bytes",
                format!("the body limit is 1 to {MAX_BODY_BYTES} bytes"),
            ));
        }
        if limits.log_body_bytes > limits.body_bytes.max(DEFAULT_LOG_BODY_BYTES) {
            errors.push(invalid(
                "limits.log_body_bytes",
                "the logged part of a body cannot exceed the body limit",
            ));
        }
        if limits.rate_per_second == Some(0) {
            errors.push(invalid(
                "limits.rate_per_second",
                "a rate is at least 1 per second; leave it out for none",
            ));
        }
        if limits.burst == Some(0) || (limits.burst.is_some() && limits.rate_per_second.is_none()) {
            errors.push(invalid(
                "limits.burst",
                "a burst is at least 1, and needs rate_per_second",
            ));
        }
        if self.description.chars().count() > 2000 {
            errors.push(invalid("description", "at most 2000 characters"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_action(&self, form: &FormSpec, errors: &mut Vec<FieldError>) {
        let needs_match = self.action != HookAction::Create;
        match (&self.match_rule, needs_match) {
            (None, true) => errors.push(FieldError::new(
                "match",
                FieldErrorCode::FieldRequired,
                format!(
                    "a `{}` hook needs a match rule to find the case",
                    self.action.as_str()
                ),
            )),
            (Some(_), false) => errors.push(invalid(
                "match",
                "a `create` hook creates a case for every request; use `upsert` to update matched cases",
            )),
            (Some(rule), true) => check_match(rule, form, errors),
            (None, false) => {}
        }
        if self.on_no_match == NoMatch::Create && self.action != HookAction::Update {
            errors.push(invalid(
                "on_no_match",
                "`on_no_match` applies to `update` hooks (`upsert` always creates)",
            ));
        }
        match (&self.event_type, self.action) {
            (None, HookAction::Event) => errors.push(FieldError::new(
                "event_type",
                FieldErrorCode::FieldRequired,
                "an `event` hook names the custom event type it emits",
            )),
            (Some(t), HookAction::Event) => {
                if is_builtin(t) {
                    errors.push(invalid(
                        "event_type",
                        format!("`{t}` is a built-in event type; hooks emit custom types"),
                    ));
                } else if let Err(mut e) = check_custom_event_name(t) {
                    e.field = "event_type".into();
                    errors.push(e);
                }
            }
            (Some(_), _) => errors.push(invalid(
                "event_type",
                "only `event` hooks emit an event type",
            )),
            (None, _) => {}
        }
        if let Some(status) = &self.status {
            if self.action == HookAction::Event {
                errors.push(invalid("status", "an `event` hook does not change cases"));
            } else if let Err(mut e) = check_status(form, status) {
                e.field = "status".into();
                errors.push(e);
            }
        }
    }

    fn check_mapping(&self, form: &FormSpec, errors: &mut Vec<FieldError>) {
        let m = &self.mapping;
        if self.action == HookAction::Event {
            if m != &PayloadMapping::default() {
                errors.push(invalid(
                    "mapping",
                    "an `event` hook sends the payload as the event's data; it has no mapping",
                ));
            }
            return;
        }
        let rules = ResponseMapping {
            rules: m.rules.clone(),
        };
        if let Err(problems) = rules.check(form) {
            errors.extend(problems.into_iter().map(|mut e| {
                e.field = format!("mapping.{}", e.field);
                e
            }));
        }
        if !m.static_values.is_empty() {
            let statics: Map<String, Value> = m
                .static_values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Err(problems) = validate_data(form, &statics, Mode::Update, true) {
                errors.extend(problems.into_iter().map(|mut e| {
                    e.field = format!("mapping.static_values.{}", e.field);
                    e
                }));
            }
        }
        if let Some(key) = &m.payload_field {
            match form.field(key) {
                Some(f) if matches!(f.field_type, FieldType::Object | FieldType::ApiCall) => {}
                Some(f) => errors.push(invalid(
                    "mapping.payload_field",
                    format!(
                        "`{key}` is a {} field; the whole payload needs an object field",
                        f.field_type
                    ),
                )),
                None => errors.push(FieldError::new(
                    "mapping.payload_field",
                    FieldErrorCode::UnknownField,
                    format!("`{key}` is not a field of this form"),
                )),
            }
        }
        for (source, path) in &m.external_refs {
            let at = format!("mapping.external_refs.{source}");
            if let Err(message) = check_external_ref(source, "x") {
                errors.push(invalid(at.clone(), message));
            }
            check_path(&at, path, errors);
        }
    }

    /// The field values of one payload item, before validation against the form.
    pub fn map_item(&self, item: &Map<String, Value>, form: &FormSpec) -> MappedItem {
        let m = &self.mapping;
        let mut out = MappedItem::default();
        // Paths run on a JSON value: build one, once, only for hooks that have paths.
        let whole = if m.rules.is_empty() && m.external_refs.is_empty() {
            Value::Null
        } else {
            Value::Object(item.clone())
        };
        if m.rules.is_empty() {
            for (key, value) in item {
                if m.unknown_keys == UnknownKeys::Ignore && form.field(key).is_none() {
                    continue;
                }
                out.data.insert(key.clone(), value.clone());
            }
        } else {
            let mapped = apply_rules(&m.rules, &whole, form);
            out.data = mapped.data;
            // A rule that found nothing leaves its field out; `required` then speaks for it.
            out.problems = mapped
                .problems
                .into_iter()
                .filter(|p| p.code != FieldErrorCode::ValueMissing)
                .collect();
        }
        for (key, value) in &m.static_values {
            out.data.insert(key.clone(), value.clone());
        }
        if let Some(key) = &m.payload_field {
            out.data.insert(key.clone(), Value::Object(item.clone()));
        }
        for (source, path) in &m.external_refs {
            match first_scalar(path, &whole) {
                Ok(Some(reference)) => match check_external_ref(source, &reference) {
                    Ok(()) => {
                        out.external_refs.insert(source.clone(), reference);
                    }
                    Err(message) => out.problems.push(FieldError::new(
                        format!("external_refs.{source}"),
                        FieldErrorCode::ValueNotAllowed,
                        message,
                    )),
                },
                Ok(None) => {}
                Err(message) => out.problems.push(FieldError::new(
                    format!("external_refs.{source}"),
                    FieldErrorCode::WrongType,
                    message,
                )),
            }
        }
        out
    }

    /// The case an item names, for hooks with a match rule (`None` for `create` hooks).
    pub fn match_key(&self, item: &Map<String, Value>) -> Result<Option<MatchKey>, FieldError> {
        let Some(rule) = &self.match_rule else {
            return Ok(None);
        };
        let whole = Value::Object(item.clone());
        let problem = |code, message: String| FieldError::new("match", code, message);
        let path = match rule {
            MatchRule::ExternalRef { path, .. }
            | MatchRule::Field { path, .. }
            | MatchRule::CaseNumber { path } => path,
        };
        let found =
            first_value(path, &whole).map_err(|m| problem(FieldErrorCode::InvalidDefinition, m))?;
        let Some(value) = found.filter(|v| !v.is_null()) else {
            return Err(problem(
                FieldErrorCode::ValueMissing,
                format!(
                    "the match path `{}` found no value in the payload",
                    crate::validate::shorten(path)
                ),
            ));
        };
        let key = match rule {
            MatchRule::ExternalRef { source, .. } => {
                let reference = scalar_text(&value).ok_or_else(|| {
                    problem(
                        FieldErrorCode::WrongType,
                        format!("the match path `{path}` found a list or object, not a reference"),
                    )
                })?;
                MatchKey::ExternalRef {
                    source: source.clone(),
                    reference,
                }
            }
            MatchRule::Field { key, .. } => MatchKey::Field {
                key: key.clone(),
                value,
            },
            MatchRule::CaseNumber { .. } => {
                let number = match &value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
                    _ => None,
                };
                MatchKey::Number(number.filter(|n| *n > 0).ok_or_else(|| {
                    problem(
                        FieldErrorCode::ValueNotNumeric,
                        format!("the match path `{path}` found no case number"),
                    )
                })?)
            }
        };
        Ok(Some(key))
    }

    /// The idempotency key from the body, when the hook names a path: `Ok(None)` when the
    /// path finds nothing, an error when it finds a list or an object.
    pub fn idempotency_from_body(&self, body: &Value) -> Result<Option<String>, String> {
        let Some(path) = &self.idempotency.path else {
            return Ok(None);
        };
        first_scalar(path, body)
    }
}

fn check_match(rule: &MatchRule, form: &FormSpec, errors: &mut Vec<FieldError>) {
    match rule {
        MatchRule::ExternalRef { source, path } => {
            if let Err(message) = check_external_ref(source, "x") {
                errors.push(invalid("match.external_ref.source", message));
            }
            check_path("match.external_ref.path", path, errors);
        }
        MatchRule::Field { key, path } => {
            match form.field(key) {
                None => errors.push(FieldError::new(
                    "match.field.key",
                    FieldErrorCode::UnknownField,
                    format!("`{key}` is not a field of this form"),
                )),
                Some(f) if !matches!(
                    f.field_type,
                    FieldType::Text | FieldType::Number | FieldType::Select | FieldType::Url | FieldType::Date
                ) =>
                {
                    errors.push(invalid(
                        "match.field.key",
                        format!(
                            "`{key}` is a {} field; match on a text, number, select, url or date field",
                            f.field_type
                        ),
                    ))
                }
                Some(_) => {}
            }
            check_path("match.field.path", path, errors);
        }
        MatchRule::CaseNumber { path } => check_path("match.case_number.path", path, errors),
    }
}

fn check_path(at: &str, path: &str, errors: &mut Vec<FieldError>) {
    if let Err(message) = compile_json_path(path) {
        errors.push(invalid(at, message));
    }
}

fn first_value(path: &str, value: &Value) -> Result<Option<Value>, String> {
    let path = compile_json_path(path)?;
    Ok(path.query(value).all().first().map(|v| (*v).clone()))
}

/// The first value at `path` as text (numbers and booleans written out).
fn first_scalar(path: &str, value: &Value) -> Result<Option<String>, String> {
    match first_value(path, value)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(&v).map(Some).ok_or_else(|| {
            format!(
                "`{}` found a list or object where a single value is needed",
                crate::validate::shorten(path)
            )
        }),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
