//! Error rules: answers that count as failures although HTTP calls them successes (a 200
//! whose body says `"valid": false`), or 4xx answers that deserve another try.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FieldError, FieldErrorCode};

/// A status code (`404`) or a class (`"4xx"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StatusMatch {
    Code(u16),
    Class(String),
}

impl StatusMatch {
    fn matches(&self, status: u16) -> bool {
        match self {
            Self::Code(code) => *code == status,
            Self::Class(class) => class_digit(class).is_some_and(|d| status / 100 == d),
        }
    }
}

/// `5` for `"5xx"`: exactly one digit from 1 to 5, then `xx` (`u16::parse` alone would also
/// take `"+5xx"` and `"05xx"`).
fn class_digit(class: &str) -> Option<u16> {
    match class.as_bytes() {
        [d @ b'1'..=b'5', b'x', b'x'] => Some(u16::from(d - b'0')),
        _ => None,
    }
}

/// One rule: it matches when every condition given holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// Status codes or classes; any status when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<StatusMatch>,
    /// A JSONPath into a JSON body: the rule needs a match (equal to `equals` when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub equals: Option<Value>,
    /// What the failure says in the field's metadata; a description of the rule when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether a matching answer is tried again (as a 5xx would be).
    #[serde(default)]
    pub retry: bool,
}

/// What a matching rule makes of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retry: bool,
}

impl ErrorRule {
    pub(crate) fn check(&self, at: &str) -> Vec<FieldError> {
        let bad = |part: &str, message: String| {
            FieldError::new(
                format!("{at}.{part}"),
                FieldErrorCode::InvalidDefinition,
                message,
            )
        };
        let mut problems = Vec::new();
        for s in &self.status {
            match s {
                StatusMatch::Code(c) if !(100..=599).contains(c) => {
                    problems.push(bad("status", format!("{c} is not an HTTP status")))
                }
                StatusMatch::Class(c) if class_digit(c).is_none() => problems.push(bad(
                    "status",
                    format!("`{c}` is not a status class like `4xx`"),
                )),
                _ => {}
            }
        }
        if self.status.is_empty() && self.path.is_none() {
            problems.push(bad(
                "status",
                "a rule needs a `status` list, a `path`, or both".to_owned(),
            ));
        }
        if self.equals.is_some() && self.path.is_none() {
            problems.push(bad("equals", "`equals` needs a `path`".to_owned()));
        }
        if let Some(path) = &self.path
            && let Err(m) = crate::mapping::compile_json_path(path)
        {
            problems.push(bad("path", m));
        }
        problems
    }

    fn matches(&self, status: u16, body: Option<&Value>) -> bool {
        if !self.status.is_empty() && !self.status.iter().any(|s| s.matches(status)) {
            return false;
        }
        let Some(path) = &self.path else {
            return true;
        };
        let Some(body) = body else {
            return false;
        };
        let Ok(compiled) = crate::mapping::compile_json_path(path) else {
            return false;
        };
        let found = compiled.query(body).all();
        match &self.equals {
            Some(expected) => found.contains(&expected),
            None => !found.is_empty(),
        }
    }

    fn describe(&self, status: u16) -> String {
        match (&self.path, &self.equals) {
            (Some(p), Some(e)) => format!("the answer's `{p}` is {e} (an error rule)"),
            (Some(p), None) => format!("the answer has `{p}` (an error rule)"),
            _ => format!("HTTP {status} (an error rule)"),
        }
    }
}

/// The first rule matching an answer, as a failure.
pub fn first_failure(rules: &[ErrorRule], status: u16, body: Option<&Value>) -> Option<Failure> {
    rules
        .iter()
        .find(|r| r.matches(status, body))
        .map(|r| Failure {
            message: r.message.clone().unwrap_or_else(|| r.describe(status)),
            retry: r.retry,
        })
}
