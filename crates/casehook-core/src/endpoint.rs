//! An outgoing webhook endpoint's configuration: where and how to send, which events it wants
//! ("When" and "If"), what to send, how to retry, and what to write back into the case.
//!
//! [`EndpointConfig::check`] is the save-time gate: it compiles the condition, parses every
//! template and JSONPath and resolves every field against the forms, reporting all problems at
//! once with the field path that holds each. What passes is what the delivery workers run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::Condition;
use crate::content::{ContentSpec, Protocol};
use crate::event::{Event, check_custom_event_name, is_builtin};
use crate::form::FormSpec;
use crate::mapping::ResponseMapping;
use crate::retry::RetryPolicy;
use crate::{FieldError, FieldErrorCode, FormId};

/// Default and bounds of an endpoint's request timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const MAX_TIMEOUT_SECS: u64 = 120;
/// An endpoint failing without a single success for this long is disabled (5 days).
pub const DEFAULT_DISABLE_AFTER_SECS: u64 = 5 * 24 * 3600;

/// The HTTP methods an endpoint may use. GET sends the content as query parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
    Patch,
    Get,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }
}

/// How deliveries of one endpoint are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Deliveries go out as soon as they can (the fastest).
    #[default]
    Unordered,
    /// A case's later event waits while an earlier one to this endpoint is still pending.
    OrderedPerCase,
}

/// "When": the event types an endpoint wants, optionally limited to some forms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscriptions {
    /// Event type patterns: exact names (`case.created`), a family (`case.*`) or every type
    /// (`*`). Empty means every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only events of cases of these forms (any form when empty).
    #[serde(default)]
    pub forms: Vec<FormId>,
}

impl Subscriptions {
    /// Whether the endpoint wants this event, by type and form.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok = self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|p| type_matches(p, &event.event_type));
        let form_ok =
            self.forms.is_empty() || event.form_id.is_some_and(|form| self.forms.contains(&form));
        type_ok && form_ok
    }
}

/// `*` matches everything, `case.*` every type starting with `case.`, anything else itself.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Per-endpoint throughput limits, per server process.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second at most (none when absent).
    pub rate_per_second: Option<u32>,
    /// Requests in flight at once at most (none when absent).
    pub max_in_flight: Option<u32>,
}

/// An endpoint as configured through the API. Credentials and the signing secret are not
/// here: they are stored sealed, apart from the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// What the endpoint is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Extra request headers (static text).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// "If": a CEL expression over `event` and `case`, e.g.
    /// `case.data.amount > 1000 && case.status == "open"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub content: ContentSpec,
    #[serde(default)]
    #[schema(value_type = String)]
    pub protocol: Protocol,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub ordering: Ordering,
    /// JSONPath rules writing a JSON response back into case fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub response_mapping: Option<ResponseMapping>,
    /// Disable the endpoint after it has failed without a success for this long.
    #[serde(default = "default_disable_after")]
    pub disable_after_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_disable_after() -> u64 {
    DEFAULT_DISABLE_AFTER_SECS
}

/// A checked endpoint configuration with its condition compiled, ready to match events.
#[derive(Clone, Debug)]
pub struct CompiledEndpoint {
    pub config: EndpointConfig,
    pub condition: Option<Condition>,
}

fn problem(
    field: impl Into<String>,
    code: FieldErrorCode,
    message: impl Into<String>,
) -> FieldError {
    FieldError {
        field: field.into(),
        code,
        message: message.into(),
    }
}

impl EndpointConfig {
    /// Parse a stored or submitted configuration.
    pub fn from_json(value: Value) -> Result<Self, FieldError> {
        serde_json::from_value(value)
            .map_err(|e| problem("config", FieldErrorCode::InvalidDefinition, e.to_string()))
    }

    /// Check everything that can be checked at save time against the workspace's `forms`
    /// (id → form), reporting every problem.
    pub fn check(
        &self,
        forms: &BTreeMap<FormId, FormSpec>,
    ) -> Result<CompiledEndpoint, Vec<FieldError>> {
        let mut problems = Vec::new();
        check_url(&self.url, &mut problems);
        for (name, value) in &self.headers {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                problems.push(problem(
                    format!("headers.{name}"),
                    FieldErrorCode::InvalidDefinition,
                    "a header name is letters, digits, `-` and `_`",
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                problems.push(problem(
                    format!("headers.{name}"),
                    FieldErrorCode::InvalidDefinition,
                    "a header value cannot contain line breaks",
                ));
            }
        }
        for (i, pattern) in self.subscriptions.event_types.iter().enumerate() {
            if let Err(message) = check_pattern(pattern) {
                problems.push(problem(
                    format!("subscriptions.event_types[{i}]"),
                    FieldErrorCode::InvalidDefinition,
                    message,
                ));
            }
        }
        for (i, form) in self.subscriptions.forms.iter().enumerate() {
            if !forms.contains_key(form) {
                problems.push(problem(
                    format!("subscriptions.forms[{i}]"),
                    FieldErrorCode::UnknownField,
                    format!("no form {form} in this workspace"),
                ));
            }
        }
        // The forms this endpoint's cases can be of: the listed ones, or all.
        let relevant: Vec<&FormSpec> = if self.subscriptions.forms.is_empty() {
            forms.values().collect()
        } else {
            self.subscriptions
                .forms
                .iter()
                .filter_map(|id| forms.get(id))
                .collect()
        };
        let condition = match self.condition.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(source) => match Condition::compile(source) {
                Ok(condition) => {
                    check_keys_exist(condition.data_keys(), &relevant, "condition", &mut problems);
                    Some(condition)
                }
                Err(e) => {
                    problems.push(problem(
                        "condition",
                        FieldErrorCode::InvalidDefinition,
                        e.to_string(),
                    ));
                    None
                }
            },
        };
        if let Err(errors) = self.content.check(&relevant) {
            problems.extend(errors);
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            problems.push(problem(
                "timeout_secs",
                FieldErrorCode::InvalidDefinition,
                format!("the timeout is 1 to {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        if let Err(e) = self.retry.validate() {
            problems.push(problem(
                "retry",
                FieldErrorCode::InvalidDefinition,
                e.to_string(),
            ));
        }
        if self.limits.rate_per_second == Some(0) || self.limits.max_in_flight == Some(0) {
            problems.push(problem(
                "limits",
                FieldErrorCode::InvalidDefinition,
                "a limit must be at least 1 (leave it out for no limit)",
            ));
        }
        if self.disable_after_secs < 60 {
            problems.push(problem(
                "disable_after_secs",
                FieldErrorCode::InvalidDefinition,
                "disable after at least 60 seconds of failures",
            ));
        }
        if let Some(mapping) = &self.response_mapping {
            check_mapping(mapping, &self.subscriptions.forms, forms, &mut problems);
        }
        if problems.is_empty() {
            Ok(CompiledEndpoint {
                config: self.clone(),
                condition,
            })
        } else {
            Err(problems)
        }
    }
}

fn check_url(url: &str, problems: &mut Vec<FieldError>) {
    let ok = url.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
    }) && !url.chars().any(char::is_whitespace);
    if !ok {
        problems.push(problem(
            "url",
            FieldErrorCode::InvalidUrl,
            "the URL must be an absolute http:// or https:// address",
        ));
    }
}

pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_suffix(".*").unwrap_or(pattern);
    if is_builtin(pattern) || (pattern.ends_with(".*") && !name.contains('*')) {
        return Ok(());
    }
    check_custom_event_name(name)
        .map_err(|_| format!("`{pattern}` is not an event type, a family like `case.*`, or `*`"))
}

fn check_keys_exist(
    keys: &[String],
    forms: &[&FormSpec],
    at: &str,
    problems: &mut Vec<FieldError>,
) {
    for key in keys {
        if !forms.iter().any(|f| f.field(key).is_some()) {
            problems.push(problem(
                at,
                FieldErrorCode::UnknownField,
                format!("no form this endpoint listens to has a field `{key}`"),
            ));
        }
    }
}

fn check_mapping(
    mapping: &ResponseMapping,
    listed: &[FormId],
    forms: &BTreeMap<FormId, FormSpec>,
    problems: &mut Vec<FieldError>,
) {
    if listed.is_empty() {
        problems.push(problem(
            "response_mapping",
            FieldErrorCode::InvalidDefinition,
            "a response mapping writes case fields: limit the endpoint to forms (subscriptions.forms)",
        ));
        return;
    }
    for form in listed.iter().filter_map(|id| forms.get(id)) {
        if let Err(errors) = mapping.check(form) {
            problems.extend(errors.into_iter().map(|mut e| {
                e.field = format!("response_mapping.{}", e.field);
                e
            }));
        }
    }
}

/// Credentials an endpoint presents to its receiver. Stored sealed; the API shows only the
/// kind and the non-secret parts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointAuth {
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// A header carrying a key, e.g. `X-Api-Key: …`.
    ApiKey {
        header: String,
        value: String,
    },
}

impl std::fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl EndpointAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            EndpointAuth::Basic { .. } => "basic",
            EndpointAuth::Bearer { .. } => "bearer",
            EndpointAuth::ApiKey { .. } => "api_key",
        }
    }

    /// The header to send, and the secret values in it (for redaction).
    pub fn header(&self) -> (String, String, Vec<String>) {
        use base64::Engine;
        match self {
            EndpointAuth::Basic { username, password } => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                (
                    "Authorization".into(),
                    format!("Basic {encoded}"),
                    vec![password.clone(), encoded],
                )
            }
            EndpointAuth::Bearer { token } => (
                "Authorization".into(),
                format!("Bearer {token}"),
                vec![token.clone()],
            ),
            EndpointAuth::ApiKey { header, value } => {
                (header.clone(), value.clone(), vec![value.clone()])
            }
        }
    }

    /// What the API may show: the kind and the non-secret parts.
    pub fn public_view(&self) -> Value {
        match self {
            EndpointAuth::Basic { username, .. } => {
                serde_json::json!({"type": "basic", "username": username})
            }
            EndpointAuth::Bearer { .. } => serde_json::json!({"type": "bearer"}),
            EndpointAuth::ApiKey { header, .. } => {
                serde_json::json!({"type": "api_key", "header": header})
            }
        }
    }

    /// Refuse empty secrets and values that cannot go into a header.
    pub fn check(&self) -> Result<(), FieldError> {
        let (name, value, _) = self.header();
        let bad = |m: &str| Err(problem("auth", FieldErrorCode::InvalidDefinition, m));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return bad("the header name is letters, digits, `-` and `_`");
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return bad("credentials cannot contain line breaks");
        }
        match self {
            EndpointAuth::Basic { username, .. }
                if username.is_empty() || username.contains(':') =>
            {
                bad("a basic-auth username is not empty and has no `:`")
            }
            EndpointAuth::Bearer { token } if token.is_empty() => bad("the bearer token is empty"),
            EndpointAuth::ApiKey { value, .. } if value.is_empty() => bad("the API key is empty"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
