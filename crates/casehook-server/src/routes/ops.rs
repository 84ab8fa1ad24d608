//! Operational endpoints outside `/api/v1`'s authentication: liveness, readiness (the
//! database answers and has room for writes) and Prometheus metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::{Json, Router, routing::get};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if state.store.storage_full() {
        // Reads still work, but a process that cannot take writes should get no traffic.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_full",
            "the database's storage is full: writes are refused until there is room",
        ));
    }
    match state.store.ping().await {
        Ok(()) => Ok(Json(
            json!({"status": "ready", "database": state.store.dialect_name()}),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database does not answer",
            ))
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let full = if state.store.storage_full() { 1.0 } else { 0.0 };
    metrics::gauge!("casehook_storage_full").set(full);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
