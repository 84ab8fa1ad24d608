//! Request extractors whose failures speak our error format: JSON bodies (400 malformed,
//! 415 wrong content type, 413 too large), query strings, and `If-Match` versions.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::IF_MATCH;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        // PostgreSQL cannot store NUL in text or JSON; refuse it here, on every backend.
        if casehook_core::nul::has_escaped_nul(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_character",
                "the body contains a NUL character (\\u0000), which cannot be stored; remove it",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, as axum's own `Json` requires.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// A JSON request body that may be left out entirely (then `T::default()`), for actions
/// whose options all have defaults (`POST …/test`, `…/disable`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers();
        let has_body = match headers.get(axum::http::header::CONTENT_LENGTH) {
            Some(length) => length != "0",
            None => headers.contains_key(axum::http::header::TRANSFER_ENCODING),
        };
        if !has_body {
            return Ok(OptionalJson(T::default()));
        }
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(OptionalJson(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, sent with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => ApiError::bad_request(
            "invalid_body",
            format!(
                "the body does not have the expected shape: {}",
                source_text(&e)
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts",
            )
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// The innermost message of a rejection (serde's, with line and column), not axum's wrapper.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// A query string.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                "invalid_query",
                format!("bad query string: {}", source_text(&e)),
            )),
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`), when the header is present.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or_default().trim();
        let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
        bare.parse::<i64>().map(|v| IfMatch(Some(v))).map_err(|_| {
            ApiError::bad_request(
                "invalid_if_match",
                format!("If-Match must be a version such as \"3\", got `{text}`"),
            )
        })
    }
}

/// A JSON answer carrying the resource's version as its `ETag`.
pub fn with_etag<T: serde::Serialize>(
    status: StatusCode,
    version: i64,
    body: T,
) -> impl axum::response::IntoResponse {
    (
        status,
        axum::response::AppendHeaders([(axum::http::header::ETAG, etag(version))]),
        axum::Json(body),
    )
}

/// The `ETag` value for a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}
