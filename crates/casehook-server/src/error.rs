//! `ApiError`: the one error type of the HTTP API, rendered as the stable JSON body
//! `{"error": {"code", "message", "details"}}`. Internal causes are logged with their chain
//! and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use casehook_core::FieldError;
use casehook_store::StoreError;
use serde::Serialize;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorContent,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorContent {
    /// Stable, machine-readable code (`validation_failed`, `not_found`, …).
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.len() {
            1 => format!("1 problem with the request: {}", details[0].message),
            n => format!("{n} problems with the request"),
        };
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            message,
            details,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A failure that is ours, not the client's: logged in full, answered vaguely.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source(), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::FormArchived => ApiError::new(
                StatusCode::CONFLICT,
                "form_archived",
                "the form is archived and takes no new cases",
            ),
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::VersionMismatch { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                e.to_string(),
            ),
            StoreError::Rejected { message, details } => ApiError {
                status: StatusCode::CONFLICT,
                code: "incompatible_change",
                message,
                details,
            },
            StoreError::StorageFull(_) => {
                tracing::error!(error = %e, "a write was refused: the database's storage is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the database's storage is full: nothing of this request was written, and \
                     what was accepted before is kept; try again once there is room",
                )
            }
            StoreError::Closed | StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; try again",
                )
            }
            StoreError::KeyRotated { .. } => {
                tracing::error!(error = %e, "a sealed value was not written");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "master_key_rotated",
                    e.to_string(),
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl ApiError {
    /// The JSON body this error answers with.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": ErrorContent {
            code: self.code.to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorContent {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
