//! A webhook's request body, by its Content-Type, as JSON objects: one object is one case, a
//! JSON array of objects is a batch (one result per item).
//!
//! Accepted bodies:
//!
//! - **JSON** (`application/json`, `text/json`, any `application/*+json`), in UTF-8 (a BOM is
//!   tolerated): an object, or an array of 1 to [`MAX_BATCH_ITEMS`] objects.
//! - **Forms** (`application/x-www-form-urlencoded`) and **multipart forms**
//!   (`multipart/form-data`, text parts only): always one object. Forms cannot nest, so they
//!   are flattened into one level of strings:
//!   - every value is a JSON string (`age=42` → `{"age": "42"}`; validation converts it to a
//!     number when the field is one);
//!   - a name given twice, or written `name[]`, becomes a list of its strings in order
//!     (`tag=a&tag=b` and `tag[]=a` → `{"tag": ["a", "b"]}`, `{"tag": ["a"]}`);
//!   - other brackets are kept as they are: `a[b]=1` → `{"a[b]": "1"}`;
//!   - an empty name is an error; a form without fields is an empty object;
//!   - a multipart part with Content-Type `application/json` holds the JSON it contains;
//!   - a quoted multipart name ends at the next `"` (browsers send a name's `"` as `%22`,
//!     which is kept as it is).
//!
//! Messages are meant for the sender and never echo more than a short piece of the input.

use serde_json::{Map, Value};

use crate::validate::shorten;

mod form;
mod media;
mod multipart;

use media::MediaType;

/// What a request body turned into: one object (one case), or a batch (a JSON array of
/// objects: one result per item).
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A single object: one case.
    One(Map<String, Value>),
    /// A JSON array of 1 to [`MAX_BATCH_ITEMS`] objects, in order.
    Batch(Vec<Map<String, Value>>),
}

impl Payload {
    /// The objects, in order: one for `One`, every item for `Batch`.
    pub fn items(&self) -> Vec<&Map<String, Value>> {
        match self {
            Payload::One(item) => vec![item],
            Payload::Batch(items) => items.iter().collect(),
        }
    }

    /// The objects, in order, taken out of the payload.
    pub fn into_items(self) -> Vec<Map<String, Value>> {
        match self {
            Payload::One(item) => vec![item],
            Payload::Batch(items) => items,
        }
    }

    /// Whether the body was an array (answered with one result per item), even of one item.
    pub fn is_batch(&self) -> bool {
        matches!(self, Payload::Batch(_))
    }
}

/// The most items one batch may carry.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// The media types a sender may use, for messages.
const ACCEPTED: &str =
    "send application/json, application/x-www-form-urlencoded or multipart/form-data";

/// Why a body was refused. [`status`](Self::status) is the HTTP status to answer with and
/// [`code`](Self::code) a stable error code; the message is a sentence for the sender.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The request has no Content-Type header. Code `unsupported_media_type`.
    #[error("no Content-Type header; {ACCEPTED}")]
    MissingContentType,
    /// The Content-Type is not one of the accepted ones, or is malformed (shown shortened).
    /// Code `unsupported_media_type`.
    #[error("Content-Type `{0}` is not accepted; {ACCEPTED}")]
    UnsupportedMediaType(String),
    /// JSON or a form in a charset other than UTF-8. Code `unsupported_media_type`.
    #[error("charset `{charset}` is not accepted for {media_type}; send it in UTF-8")]
    UnsupportedCharset {
        /// The media type, e.g. `application/json`.
        media_type: String,
        /// The charset as given (shortened).
        charset: String,
    },
    /// The body is not JSON; the detail gives serde_json's reason with line and column.
    /// Code `malformed_json`.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A urlencoded form that cannot be read. Code `malformed_form`.
    #[error("{0}")]
    MalformedForm(String),
    /// A multipart body (or its boundary) that cannot be read, or a part that is not a text
    /// field. Code `malformed_multipart`.
    #[error("{0}")]
    MalformedMultipart(String),
    /// The JSON body is neither an object nor an array. Code `not_an_object`.
    #[error("the body is {found}; send a JSON object, or an array of objects")]
    NotAnObject {
        /// What it is instead: `a string`, `a number`, `null`, …
        found: &'static str,
    },
    /// An item of a JSON array is not an object. Code `not_an_object`.
    #[error("the item at index {index} of the array is {found}; every item must be a JSON object")]
    ItemNotAnObject {
        /// The index (from 0) of the first item that is not an object.
        index: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// The JSON body is an empty array. Code `empty_batch`.
    #[error(
        "the body is an empty array; send a JSON object, or an array of 1 to {MAX_BATCH_ITEMS} objects"
    )]
    EmptyBatch,
    /// A value or key holds a NUL character (U+0000), which cannot be stored. Code
    /// `invalid_character`.
    #[error("`{0}` contains a NUL character (U+0000), which cannot be stored; remove it")]
    NulCharacter(String),
    /// The JSON array has more than [`MAX_BATCH_ITEMS`] items. Code `batch_too_large`.
    #[error("the array has {items} items; one batch may carry at most {MAX_BATCH_ITEMS}")]
    BatchTooLarge {
        /// How many items it has.
        items: usize,
    },
}

impl PayloadError {
    /// The HTTP status to answer with: 415 when the media type or charset is refused, 400
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            PayloadError::MissingContentType
            | PayloadError::UnsupportedMediaType(_)
            | PayloadError::UnsupportedCharset { .. } => 415,
            _ => 400,
        }
    }

    /// A stable snake_case code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::MissingContentType
            | PayloadError::UnsupportedMediaType(_)
            | PayloadError::UnsupportedCharset { .. } => "unsupported_media_type",
            PayloadError::MalformedJson(_) => "malformed_json",
            PayloadError::MalformedForm(_) => "malformed_form",
            PayloadError::MalformedMultipart(_) => "malformed_multipart",
            PayloadError::NotAnObject { .. } | PayloadError::ItemNotAnObject { .. } => {
                "not_an_object"
            }
            PayloadError::EmptyBatch => "empty_batch",
            PayloadError::BatchTooLarge { .. } => "batch_too_large",
            PayloadError::NulCharacter(_) => "invalid_character",
        }
    }
}

/// Parse a request body by its Content-Type header (`None` when the request has none).
pub fn parse_payload(content_type: Option<&str>, body: &[u8]) -> Result<Payload, PayloadError> {
    let payload = parse_by_type(content_type, body)?;
    for (i, item) in payload.items().into_iter().enumerate() {
        let object = Value::Object(item.clone());
        if let Some(at) = crate::nul::find_nul(&object) {
            let at = if payload.is_batch() {
                format!("[{i}].{at}")
            } else {
                at
            };
            return Err(PayloadError::NulCharacter(shorten(&at)));
        }
    }
    Ok(payload)
}

fn parse_by_type(content_type: Option<&str>, body: &[u8]) -> Result<Payload, PayloadError> {
    let header = content_type.ok_or(PayloadError::MissingContentType)?;
    let media = MediaType::parse(header)
        .map_err(|_| PayloadError::UnsupportedMediaType(shorten(header.trim())))?;
    let essence = media.essence.as_str();
    if essence == "multipart/form-data" {
        return multipart::parse(&media, body).map(Payload::One);
    }
    let json = is_json(essence);
    if !json && essence != "application/x-www-form-urlencoded" {
        return Err(PayloadError::UnsupportedMediaType(shorten(essence)));
    }
    if !media.charset_is_utf8() {
        return Err(PayloadError::UnsupportedCharset {
            media_type: shorten(essence),
            charset: shorten(media.param("charset").unwrap_or_default()),
        });
    }
    if json {
        parse_json(body)
    } else {
        form::parse(body).map(Payload::One)
    }
}

/// Whether a media type (lower case `type/subtype`) is JSON.
fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || essence == "text/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

fn parse_json(body: &[u8]) -> Result<Payload, PayloadError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(PayloadError::MalformedJson("the body is empty".to_owned()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(json_detail(&e)))?;
    let items = match value {
        Value::Object(object) => return Ok(Payload::One(object)),
        Value::Array(items) => items,
        other => {
            return Err(PayloadError::NotAnObject {
                found: kind(&other),
            });
        }
    };
    if items.is_empty() {
        return Err(PayloadError::EmptyBatch);
    }
    if items.len() > MAX_BATCH_ITEMS {
        return Err(PayloadError::BatchTooLarge { items: items.len() });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(object) => Ok(object),
            other => Err(PayloadError::ItemNotAnObject {
                index,
                found: kind(&other),
            }),
        })
        .collect::<Result<_, _>>()
        .map(Payload::Batch)
}

/// serde_json's reason, as `expected `,` or `}` at line 3, column 14`.
fn json_detail(e: &serde_json::Error) -> String {
    let full = e.to_string();
    if e.line() == 0 {
        return full;
    }
    let position = format!(" at line {} column {}", e.line(), e.column());
    let reason = full.strip_suffix(&position).unwrap_or(&full);
    format!("{reason} at line {}, column {}", e.line(), e.column())
}

/// A JSON value's kind, for messages (the value itself is not echoed).
fn kind(v: &Value) -> &'static str {
    match v {
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

#[cfg(test)]
mod proptests;
