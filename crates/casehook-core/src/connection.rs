//! API connections and their operations: the configuration a user saves to call a REST API.
//!
//! A connection is a base URL, default headers, limits, TLS settings and an auth method
//! ([`auth::AuthMethod`]). An operation is a request relative to it: method, path template,
//! headers, query, body template, response mapping and error rules ([`RequestSpec`]). An
//! API-call field's inline `api_config` is the same [`RequestSpec`] with an absolute URL.
//!
//! Everything is checked when saved: templates parse and use only known roots, URLs are
//! http(s), JSONPaths compile under the mapping engine's cost bounds. Pure: no I/O.

pub mod auth;
mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::endpoint::Method;
use crate::error::{FieldError, FieldErrorCode};
use crate::mapping::{MappingRule, ResponseMapping};
use crate::template::{JsonTemplate, Template};

pub use auth::AuthMethod;
pub use rules::{ErrorRule, Failure, StatusMatch, first_failure};

/// Roots a request template may use.
pub const REQUEST_ROOTS: &[&str] = &["data", "case", "event", "secret", "steps"];

/// Default timeout of a connection, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest timeout accepted, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// The most operations one connection may hold.
pub const MAX_OPERATIONS: usize = 100;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_true() -> bool {
    true
}

/// TLS settings for a connection's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Verify the server's certificate (on unless turned off, for test systems only).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Extra trusted roots, PEM (for a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            verify: true,
            ca_pem: None,
        }
    }
}

/// A connection's request rate bound (per process).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell; `per_second` rounded up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// How a body template is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, from a flat object.
    Form,
}

/// A response mapping as written: the full form (`{"rules": [...]}`), a map of field →
/// JSONPath (`{"credit_score": "$.score"}`), or one JSONPath into the field itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MappingSpec {
    Rules(ResponseMapping),
    Path(String),
    Fields(BTreeMap<String, String>),
}

impl MappingSpec {
    /// The rules; `own_field` receives a lone path.
    pub fn rules(&self, own_field: Option<&str>) -> ResponseMapping {
        let rule = |path: &str, field: &str| MappingRule {
            path: path.to_owned(),
            field: field.to_owned(),
            mode: Default::default(),
        };
        match self {
            Self::Rules(r) => r.clone(),
            Self::Path(p) => ResponseMapping {
                rules: own_field.map(|f| rule(p, f)).into_iter().collect(),
            },
            Self::Fields(map) => ResponseMapping {
                rules: map.iter().map(|(f, p)| rule(p, f)).collect(),
            },
        }
    }
}

/// A request template: a connection's operation (with a `path` relative to the connection's
/// base URL), or an API-call field's inline `api_config` (with an absolute `url` and its own
/// `auth`, or a `connection` and a `path`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The connection whose base URL, headers and auth to use (inline `api_config` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Appended to the connection's base URL: `/customers/{data.customer_id}/invoices`.
    /// Placeholder values are percent-encoded as one path segment each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path: Option<Template>,
    /// An absolute URL (inline `api_config` without a connection). Placeholder values are
    /// percent-encoded: as a path segment before `?`, as a query value after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Template>,
    /// Credentials (inline `api_config` without a connection); only `{secret.<name>}`
    /// references, never values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMethod>,
    #[serde(default = "default_get")]
    pub method: Method,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub headers: BTreeMap<String, Template>,
    /// Query parameters (`params` in the API Call field's spelling).
    #[serde(default, alias = "params", skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub query: BTreeMap<String, Template>,
    /// A JSON body template: a string that is exactly one placeholder keeps its JSON type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    #[serde(default)]
    pub body_format: BodyFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mapping: Option<MappingSpec>,
    /// Answers that count as failures although they are 2xx, or 4xx that should be retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_rules: Vec<ErrorRule>,
}

fn default_get() -> Method {
    Method::Get
}

/// A connection's saved configuration. The auth method's secret parts are not part of it:
/// they are sealed apart, and the API shows [`AuthMethod::public_view`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub base_url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub headers: BTreeMap<String, Template>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub operations: BTreeMap<String, RequestSpec>,
}

fn problem(field: String, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

/// A name of a connection or operation: what `{"connection": …, "operation": …}` refer to.
pub fn check_name(field: &str, name: &str) -> Option<FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    (!ok).then(|| {
        problem(
            field.to_owned(),
            format!("`{name}` is not a valid name: 1–64 letters, digits, `_` and `-`"),
        )
    })
}

impl ConnectionConfig {
    /// Every problem of the configuration, with where it is.
    pub fn check(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        match auth::check_http_url(&self.base_url) {
            Ok(url) if url.query().is_some() => problems.push(problem(
                "base_url".into(),
                "the base URL has no query; give query parameters per operation",
            )),
            Ok(_) => {}
            Err(m) => problems.push(problem("base_url".into(), m)),
        }
        check_headers("headers", &self.headers, &mut problems);
        if !(1_000..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            problems.push(problem(
                "timeout_ms".into(),
                format!("the timeout is 1000 to {MAX_TIMEOUT_MS} ms"),
            ));
        }
        if let Some(limit) = self.rate_limit
            && !(limit.per_second.is_finite() && limit.per_second > 0.0)
        {
            problems.push(problem(
                "rate_limit.per_second".into(),
                "the rate is a positive number of requests per second",
            ));
        }
        if let Some(RateLimit { burst: Some(0), .. }) = self.rate_limit {
            problems.push(problem(
                "rate_limit.burst".into(),
                "a burst is at least 1 (no request could ever go with 0)",
            ));
        }
        if let Some(pem) = &self.tls.ca_pem
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            problems.push(problem(
                "tls.ca_pem".into(),
                "the CA is one or more PEM certificates (-----BEGIN CERTIFICATE-----)",
            ));
        }
        if self.operations.len() > MAX_OPERATIONS {
            problems.push(problem(
                "operations".into(),
                format!("at most {MAX_OPERATIONS} operations"),
            ));
        }
        for (name, op) in &self.operations {
            let at = format!("operations.{name}");
            problems.extend(check_name(&at, name));
            op.check_operation(&at, &mut problems);
        }
        problems
    }
}

impl RequestSpec {
    /// As a connection's operation: a `path`, and no `url`, `auth` or `connection`.
    pub fn check_operation(&self, at: &str, problems: &mut Vec<FieldError>) {
        for (name, given) in [
            ("url", self.url.is_some()),
            ("auth", self.auth.is_some()),
            ("connection", self.connection.is_some()),
        ] {
            if given {
                problems.push(problem(
                    format!("{at}.{name}"),
                    format!("an operation takes its `{name}` from its connection; give a `path`"),
                ));
            }
        }
        match &self.path {
            Some(path) => self.check_path(at, path, problems),
            None => problems.push(problem(
                format!("{at}.path"),
                "an operation needs a `path`, such as `/customers/{data.customer_id}`",
            )),
        }
        self.check_parts(at, problems);
    }

    /// As an inline `api_config`: an absolute `url` (with optional `auth` by secret
    /// references), or a `connection` and a `path`.
    pub fn check_inline(&self, at: &str, problems: &mut Vec<FieldError>) {
        match (&self.connection, &self.url, &self.path) {
            (Some(connection), None, Some(path)) => {
                problems.extend(check_name(&format!("{at}.connection"), connection));
                if self.auth.is_some() {
                    problems.push(problem(
                        format!("{at}.auth"),
                        "the connection's auth is used; remove `auth`",
                    ));
                }
                self.check_path(at, path, problems);
            }
            (None, Some(url), None) => {
                if let Err(e) = url.check_roots(REQUEST_ROOTS) {
                    problems.push(problem(format!("{at}.url"), e.to_string()));
                } else if let Err(m) = check_url_template(url) {
                    problems.push(problem(format!("{at}.url"), m));
                }
                if let Some(auth) = &self.auth {
                    problems.extend(auth.check(&format!("{at}.auth")));
                    problems.extend(auth.check_no_literal_secrets(&format!("{at}.auth")));
                }
            }
            _ => problems.push(problem(
                format!("{at}.url"),
                "give either a `url`, or a `connection` and a `path`",
            )),
        }
        self.check_parts(at, problems);
    }

    fn check_path(&self, at: &str, path: &Template, problems: &mut Vec<FieldError>) {
        if !path.as_str().starts_with('/') {
            problems.push(problem(
                format!("{at}.path"),
                "the path starts with `/` (it is appended to the base URL)",
            ));
        }
        if let Err(e) = path.check_roots(REQUEST_ROOTS) {
            problems.push(problem(format!("{at}.path"), e.to_string()));
        }
    }

    /// Template roots, JSONPaths, rules; appends problems found under `at`.
    fn check_parts(&self, at: &str, problems: &mut Vec<FieldError>) {
        check_headers(&format!("{at}.headers"), &self.headers, problems);
        for (name, value) in &self.query {
            if let Err(e) = value.check_roots(REQUEST_ROOTS) {
                problems.push(problem(format!("{at}.query.{name}"), e.to_string()));
            }
        }
        if let Some(body) = &self.body {
            if matches!(self.method, Method::Get) {
                problems.push(problem(
                    format!("{at}.body"),
                    "a GET request has no body; use `query`",
                ));
            }
            match JsonTemplate::parse(body) {
                Ok(t) => {
                    if let Err(e) = t.check_roots(REQUEST_ROOTS) {
                        problems.push(problem(format!("{at}.body"), e.to_string()));
                    }
                }
                Err(e) => problems.push(problem(format!("{at}.body"), e.to_string())),
            }
            if self.body_format == BodyFormat::Form
                && !body
                    .as_object()
                    .is_some_and(|o| o.values().all(|v| !v.is_object() && !v.is_array()))
            {
                problems.push(problem(
                    format!("{at}.body"),
                    "a form body is a flat object of names and values",
                ));
            }
        }
        if let Some(mapping) = &self.response_mapping {
            for (i, rule) in mapping.rules(Some("_")).rules.iter().enumerate() {
                if let Err(m) = crate::mapping::compile_json_path(&rule.path) {
                    problems.push(problem(format!("{at}.response_mapping.rules[{i}].path"), m));
                }
            }
        }
        for (i, rule) in self.error_rules.iter().enumerate() {
            problems.extend(rule.check(&format!("{at}.error_rules[{i}]")));
        }
    }
}

/// A URL template's fixed start must be an absolute http(s) URL: placeholders may fill the
/// path and query, not choose the scheme, host or port. A value rendered into the authority
/// would keep its `.` and `-` (path-segment encoding), so `https://api.example{data.x}` could
/// be sent to any `api.example….` host: the authority must end before the first placeholder.
fn check_url_template(url: &Template) -> Result<(), String> {
    let text = url.as_str();
    let fixed = text.split('{').next().unwrap_or_default();
    let (scheme, rest) = fixed
        .strip_prefix("https://")
        .map(|rest| ("https", rest))
        .or_else(|| fixed.strip_prefix("http://").map(|rest| ("http", rest)))
        .ok_or_else(|| format!("`{text}` does not start with `https://` or `http://`"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{text}` has no host before its first placeholder"));
    }
    let authority = match rest.find(['/', '?', '#']) {
        Some(end) => &rest[..end],
        None if url.placeholders().next().is_some() => {
            return Err(format!(
                "`{text}`: a placeholder may not be part of the host or port; write the host \
                 out and end it with `/` or `?` before the first placeholder"
            ));
        }
        None => rest,
    };
    auth::check_http_url(&format!("{scheme}://{authority}/")).map(|_| ())
}

fn check_headers(at: &str, headers: &BTreeMap<String, Template>, problems: &mut Vec<FieldError>) {
    for (name, value) in headers {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            problems.push(problem(
                format!("{at}.{name}"),
                "a header name is letters, digits, `-` and `_`",
            ));
        }
        if let Err(e) = value.check_roots(REQUEST_ROOTS) {
            problems.push(problem(format!("{at}.{name}"), e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests;
