//! The `/api/v1` routes, one module per resource collection.

pub mod cases;
pub mod events;
pub mod forms;
pub mod ops;
pub mod workspaces;

use std::str::FromStr;

use crate::error::{ApiError, ApiResult};

/// An id from a path segment; a malformed id names nothing, so it is a 404 like any other
/// unknown id.
pub(crate) fn parse_id<T: FromStr>(text: &str, what: &str) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::not_found(what))
}
