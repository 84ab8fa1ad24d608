//! Content on the wire: JSON, a JSON array, a form body, or query parameters (for GET).
//!
//! Forms and queries cannot nest, so nested values are flattened in the bracket notation that
//! PHP, Rails and most form parsers read back into structures:
//!
//! - `{"a": {"b": 1}}` → `a[b]=1`; `{"items": [{"sku": "x"}]}` → `items[0][sku]=x`;
//! - strings as they are; numbers as JSON text; booleans `true` / `false`; `null` → empty;
//! - an empty object or array contributes nothing (as PHP's `http_build_query`);
//! - names and values are `application/x-www-form-urlencoded` (brackets become `%5B`/`%5D`,
//!   which every form parser decodes before reading the structure).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::{form_urlencode, to_text};

/// How an endpoint encodes its content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `application/json`, the content as is.
    #[default]
    Json,
    /// `application/json`, the content wrapped in a one-element array (as AM System sends).
    JsonArray,
    /// `application/x-www-form-urlencoded`, flattened with brackets.
    Form,
}

impl Protocol {
    /// The `Content-Type` of a body in this protocol.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Json | Protocol::JsonArray => "application/json",
            Protocol::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// Why content could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "form and query encoding need a JSON object at the top level (names for the values), not {0}"
    )]
    NotAnObject(&'static str),
}

/// The body and its content type.
pub fn encode(value: &Value, protocol: Protocol) -> Result<(&'static str, Vec<u8>), EncodeError> {
    let body = match protocol {
        // `Value`'s Display is compact JSON and cannot fail.
        Protocol::Json => value.to_string().into_bytes(),
        Protocol::JsonArray => Value::Array(vec![value.clone()]).to_string().into_bytes(),
        Protocol::Form => query_pairs(value)?
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes(),
    };
    Ok((protocol.content_type(), body))
}

/// The content as name/value pairs, flattened as a form body is (unencoded: the HTTP client
/// encodes query parameters). For GET requests, which carry the content in the query.
pub fn query_pairs(value: &Value) -> Result<Vec<(String, String)>, EncodeError> {
    let Value::Object(map) = value else {
        return Err(EncodeError::NotAnObject(type_name(value)));
    };
    let mut pairs = Vec::new();
    for (key, v) in map {
        flatten(key.clone(), v, &mut pairs);
    }
    Ok(pairs)
}

fn flatten(name: String, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                flatten(format!("{name}[{key}]"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(format!("{name}[{i}]"), v, out);
            }
        }
        scalar => out.push((name, to_text(scalar))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
