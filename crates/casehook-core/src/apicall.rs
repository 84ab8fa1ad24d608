//! API-call fields: a form field whose value comes from calling an API, configured as the
//! API Call field spec has it (`api_config`, `trigger`, `retry`, `timeout`, `cache_duration`).
//!
//! The configuration lives in the field definition (`FieldDef::api_call`) and is checked
//! with the form: templates may name only the form's fields, mapping rules only its fields,
//! an inline `api_config` may hold credentials only as `{secret.<name>}` references.
//! Whether a named connection or operation exists is the server's check (it needs the
//! store). Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::{MappingSpec, RequestSpec, check_name};
use crate::error::{FieldError, FieldErrorCode};
use crate::form::{FieldType, FormSpec};
use crate::mapping::ResponseMapping;

/// Retries after the first try, when not given.
pub const DEFAULT_RETRY: u32 = 3;
/// The most retries accepted.
pub const MAX_RETRY: u32 = 10;
/// Default timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest cache duration, in seconds (30 days).
pub const MAX_CACHE_SECS: u64 = 30 * 24 * 3600;

/// When a field's API call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// When the case is created.
    OnCreate,
    /// When one of `trigger_fields` changes (any other field when the list is empty).
    OnUpdate,
    /// Only when asked through the API.
    Manual,
    /// On `schedule` (a cron expression), for every case of the form.
    Scheduled,
}

/// One trigger or several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Triggers {
    One(Trigger),
    Many(Vec<Trigger>),
}

impl Default for Triggers {
    fn default() -> Self {
        Self::One(Trigger::OnCreate)
    }
}

impl Triggers {
    pub fn has(&self, t: Trigger) -> bool {
        match self {
            Self::One(one) => *one == t,
            Self::Many(many) => many.contains(&t),
        }
    }
}

/// Where the request comes from: an inline `api_config`, or a connection's operation.
// Parsed once per field and short-lived; boxing `api_config` would change the public shape
// the engine matches on for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Source {
    Inline {
        api_config: RequestSpec,
    },
    Operation {
        connection: String,
        operation: String,
    },
    /// Several requests in order, each seeing the earlier ones' outputs.
    Sequence {
        sequence: Vec<sequence::Step>,
    },
}

/// An API-call field's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApiCallSpec {
    #[serde(flatten)]
    pub source: Source,
    #[serde(flatten)]
    pub settings: Settings,
}

/// Everything but the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub trigger: Triggers,
    /// For `on_update`: the fields whose change runs the call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_fields: Vec<String>,
    /// For `scheduled`: a cron expression with seconds optional (`0 */6 * * *`), in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Retries after the first try, on timeouts, network errors, 429 and 5xx.
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// Per try, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// How long an answer is reused for the same rendered request, in seconds (0: never).
    #[serde(default)]
    pub cache_duration: u64,
    /// Overrides the operation's mapping (or gives the inline one). Without any mapping,
    /// the whole JSON answer is the field's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mapping: Option<MappingSpec>,
}

fn default_retry() -> u32 {
    DEFAULT_RETRY
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn problem(field: String, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

impl<'de> Deserialize<'de> for ApiCallSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_json(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ApiCallSpec {
    /// Parse a field's `api_call` configuration; the error says what is wrong and where.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("the api_call configuration is an object".to_owned());
        };
        let mut rest = map.clone();
        let source = match (
            rest.remove("api_config"),
            rest.remove("connection"),
            rest.remove("operation"),
            rest.remove("sequence"),
        ) {
            (None, None, None, Some(steps)) => Source::Sequence {
                sequence: serde_json::from_value(steps).map_err(|e| format!("sequence: {e}"))?,
            },
            (Some(config), None, None, None) => Source::Inline {
                api_config: serde_json::from_value(config)
                    .map_err(|e| format!("api_config: {e}"))?,
            },
            (None, Some(Value::String(connection)), Some(Value::String(operation)), None) => {
                Source::Operation {
                    connection,
                    operation,
                }
            }
            _ => {
                return Err(
                    "give one of: an `api_config`, a `connection` and an `operation` (by name), or a `sequence` of steps"
                        .to_owned(),
                );
            }
        };
        let settings = serde_json::from_value(Value::Object(rest)).map_err(|e| e.to_string())?;
        Ok(Self { source, settings })
    }

    /// The mapping that applies, given the operation's own (for operation sources).
    pub fn mapping(&self, own_field: &str, operation: Option<&MappingSpec>) -> ResponseMapping {
        let inline = match &self.source {
            Source::Inline { api_config } => api_config.response_mapping.as_ref(),
            Source::Operation { .. } | Source::Sequence { .. } => None,
        };
        match self
            .settings
            .response_mapping
            .as_ref()
            .or(inline)
            .or(operation)
        {
            Some(spec) => spec.rules(Some(own_field)),
            None => ResponseMapping::default(),
        }
    }

    /// Every problem of the configuration of field `key` in `form`; `at` prefixes the paths.
    pub fn check(&self, key: &str, form: &FormSpec, at: &str) -> Vec<FieldError> {
        let mut problems = Vec::new();
        match &self.source {
            Source::Inline { api_config } => {
                api_config.check_inline(&format!("{at}.api_config"), &mut problems);
                check_data_refs(api_config, form, &format!("{at}.api_config"), &mut problems);
                // Only steps of a sequence have earlier steps.
                sequence::check_step_refs(
                    api_config,
                    &[],
                    &format!("{at}.api_config"),
                    &mut problems,
                );
            }
            Source::Operation {
                connection,
                operation,
            } => {
                problems.extend(check_name(&format!("{at}.connection"), connection));
                problems.extend(check_name(&format!("{at}.operation"), operation));
            }
            Source::Sequence { sequence } => {
                problems.extend(sequence::check(sequence, form, &format!("{at}.sequence")));
            }
        }
        if self.settings.trigger.has(Trigger::Scheduled) {
            match &self.settings.schedule {
                None => problems.push(problem(
                    format!("{at}.schedule"),
                    "a scheduled field needs a `schedule` (cron, e.g. `0 6 * * *`)",
                )),
                Some(s) => {
                    if let Err(m) = crate::schedule::Schedule::parse(s) {
                        problems.push(problem(format!("{at}.schedule"), m));
                    }
                }
            }
        } else if self.settings.schedule.is_some() {
            problems.push(problem(
                format!("{at}.schedule"),
                "`schedule` needs the `scheduled` trigger",
            ));
        }
        for (i, f) in self.settings.trigger_fields.iter().enumerate() {
            if f == key || form.field(f).is_none() {
                problems.push(problem(
                    format!("{at}.trigger_fields[{i}]"),
                    format!("`{f}` is not another field of the form"),
                ));
            }
        }
        if !self.settings.trigger_fields.is_empty() && !self.settings.trigger.has(Trigger::OnUpdate)
        {
            problems.push(problem(
                format!("{at}.trigger_fields"),
                "`trigger_fields` needs the `on_update` trigger",
            ));
        }
        if self.settings.retry > MAX_RETRY {
            problems.push(problem(
                format!("{at}.retry"),
                format!("at most {MAX_RETRY} retries"),
            ));
        }
        if !(100..=crate::connection::MAX_TIMEOUT_MS).contains(&self.settings.timeout) {
            problems.push(problem(
                format!("{at}.timeout"),
                format!(
                    "the timeout is 100 to {} ms",
                    crate::connection::MAX_TIMEOUT_MS
                ),
            ));
        }
        if self.settings.cache_duration > MAX_CACHE_SECS {
            problems.push(problem(
                format!("{at}.cache_duration"),
                format!("at most {MAX_CACHE_SECS} seconds"),
            ));
        }
        // Reported where the mapping is written: the field's own, or the inline config's
        // (whose paths `check_inline` has already compiled: each problem is said once).
        let mapping_at = match &self.source {
            Source::Inline { api_config }
                if self.settings.response_mapping.is_none()
                    && api_config.response_mapping.is_some() =>
            {
                format!("{at}.api_config.response_mapping")
            }
            _ => format!("{at}.response_mapping"),
        };
        if let Err(errors) = self.mapping(key, None).check(form) {
            for mut e in errors {
                e.field = format!("{mapping_at}.{}", e.field);
                if !problems.contains(&e) {
                    problems.push(e);
                }
            }
        }
        problems
    }
}

/// `{data.x}` must name a field of the form.
pub(crate) fn check_data_refs(
    spec: &RequestSpec,
    form: &FormSpec,
    at: &str,
    problems: &mut Vec<FieldError>,
) {
    // Each placeholder with where it is written, relative to `at`.
    let mut templates: Vec<(String, &crate::template::Placeholder)> = Vec::new();
    for (part, t) in [("url", &spec.url), ("path", &spec.path)] {
        if let Some(t) = t {
            templates.extend(t.placeholders().map(|p| (part.to_owned(), p)));
        }
    }
    for (part, map) in [("headers", &spec.headers), ("query", &spec.query)] {
        for (name, t) in map {
            templates.extend(t.placeholders().map(|p| (format!("{part}.{name}"), p)));
        }
    }
    let body = spec
        .body
        .as_ref()
        .and_then(|b| crate::template::JsonTemplate::parse(b).ok());
    if let Some(body) = &body {
        // The body's own paths: `""` (the whole body), `customer.id`, `[0]`, `lines[0]`.
        templates.extend(body.placeholders().into_iter().map(|(path, p)| {
            let sep = if path.is_empty() || path.starts_with('[') {
                ""
            } else {
                "."
            };
            (format!("body{sep}{path}"), p)
        }));
    }
    for (where_, p) in templates {
        if p.root() == "data"
            && let Some(field) = p.path().first()
            && form.field(field).is_none()
        {
            problems.push(problem(
                format!("{at}.{where_}"),
                format!("`{p}` names no field of the form"),
            ));
        }
    }
}

/// Whether a field is an API-call field whose configuration parses.
pub fn spec_of(form: &FormSpec, key: &str) -> Option<ApiCallSpec> {
    let field = form.field(key)?;
    if field.field_type != FieldType::ApiCall {
        return None;
    }
    ApiCallSpec::from_json(field.api_call.as_ref()?).ok()
}
pub mod sequence;

#[cfg(test)]
mod tests;
