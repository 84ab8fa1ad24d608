//! The `/api/v1` routes, one module per resource collection.

pub mod actions;
pub mod api_calls;
pub mod cases;
pub mod connections;
pub mod deliveries;
pub mod endpoint_health;
pub mod endpoints;
pub mod events;
pub mod forms;
pub mod ops;
pub mod secrets;
pub mod workspaces;

use std::str::FromStr;

use crate::error::{ApiError, ApiResult};

/// An id from a path segment; a malformed id names nothing, so it is a 404 like any other
/// unknown id.
pub(crate) fn parse_id<T: FromStr>(text: &str, what: &str) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::not_found(what))
}

/// A query parameter that is not what it should be: 400 `invalid_query`, naming it.
pub(crate) fn bad_query(name: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalid_query", format!("`{name}`: {why}"))
}

/// A query parameter holding an RFC 3339 time, as stored (microseconds since the epoch).
pub(crate) fn query_time(name: &str, value: &str) -> ApiResult<i64> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(casehook_store::to_micros_checked)
        .ok_or_else(|| {
            bad_query(
                name,
                "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z",
            )
        })
}

/// A page size between 1 and `max`.
pub(crate) fn query_limit(name: &str, value: &str, max: i64) -> ApiResult<i64> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| bad_query(name, &format!("must be 1 to {max}")))
}
