//! What an endpoint is doing and how to put it right: its health (state and figures over the
//! last hour and day), a synchronous test send, resending one event, and recovering every
//! delivery that failed since a time ("fix the receiver, then replay").

use axum::Json;
use axum::extract::{Path, State};
use casehook_core::event::{Actor, Event};
use casehook_core::{EndpointId, EventId, Role, WorkspaceId};
use casehook_store::{EndpointRecord, NewDelivery, now_micros};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, OptionalJson};
use crate::routes::deliveries::DeliveryView;
use crate::routes::{parse_id, query_time};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(endpoint_health))
        .routes(routes!(test_endpoint))
        .routes(routes!(replay_event))
        .routes(routes!(recover_deliveries))
}

/// Setup (nothing yet), Ready (a test send succeeded), Live (recent success), Attention
/// (failing, or retries pending), Disabled.
pub fn health_state(record: &EndpointRecord, pending_retries: i64) -> &'static str {
    let marks = &record.health;
    if !record.enabled {
        "disabled"
    } else if marks.failing_since.is_some() || pending_retries > 0 {
        "attention"
    } else if marks.last_success_at.is_some() {
        "live"
    } else if marks.tested_at.is_some() {
        "ready"
    } else {
        "setup"
    }
}

/// Attempt figures over a window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowFigures {
    pub attempts: i64,
    pub successes: i64,
    /// Successes / attempts; absent without attempts.
    pub success_rate: Option<f64>,
    /// Latency percentiles in milliseconds, over the most recent attempts of the window
    /// (at most 10,000 of them).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    pub state: &'static str,
    pub pending_retries: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_failure_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    pub last_hour: WindowFigures,
    pub last_day: WindowFigures,
}

fn percentile(sorted_us: &[i64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[index] as f64 / 1000.0)
}

async fn figures(
    state: &AppState,
    ws: WorkspaceId,
    id: EndpointId,
    window_secs: i64,
) -> ApiResult<WindowFigures> {
    let stats = state
        .store
        .attempt_stats(ws, id, now_micros() - window_secs * 1_000_000)
        .await?;
    let d = &stats.durations_us;
    Ok(WindowFigures {
        attempts: stats.attempts,
        successes: stats.successes,
        success_rate: (stats.attempts > 0).then(|| stats.successes as f64 / stats.attempts as f64),
        p50_ms: percentile(d, 50.0),
        p95_ms: percentile(d, 95.0),
        p99_ms: percentile(d, 99.0),
    })
}

/// An endpoint's health: its state and figures over the last hour and day.
#[utoipa::path(get, path = "/endpoints/{id}/health", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = HealthView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn endpoint_health(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<HealthView>> {
    caller.require(Role::Read)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let record = state.store.get_endpoint(caller.workspace, id).await?;
    let pending_retries = state.store.pending_retries(caller.workspace, id).await?;
    Ok(Json(HealthView {
        state: health_state(&record, pending_retries),
        pending_retries,
        last_success_at: record.health.last_success_at,
        last_failure_at: record.health.last_failure_at,
        failing_since: record.health.failing_since,
        last_hour: figures(&state, caller.workspace, id, 3600).await?,
        last_day: figures(&state, caller.workspace, id, 86_400).await?,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    /// The event type of the synthetic event (default `case.created`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Its `data` (default: a small example case).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// What a test send sent and what came back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub success: bool,
    /// `success`, `retry`, `fail` or `gone`: what a real delivery would have made of it.
    pub verdict: String,
    #[schema(value_type = Object)]
    pub request: Value,
    #[schema(value_type = Option<Object>)]
    pub response: Option<Value>,
    pub status: Option<i64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: f64,
}

/// Send a synthetic event to the endpoint now and answer with the exchange (admin). A success
/// marks the endpoint Ready. Nothing is stored besides that mark.
#[utoipa::path(post, path = "/endpoints/{id}/test", tag = "endpoints", params(("id" = String, Path)),
    request_body = TestBody,
    responses((status = 200, body = TestResult), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn test_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<TestBody>,
) -> ApiResult<Json<TestResult>> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let endpoint = state
        .engine
        .endpoints()
        .get(caller.workspace, id)
        .await
        .map_err(engine_error)?;
    let event_type = body.event_type.unwrap_or_else(|| "case.created".into());
    let data = body.data.unwrap_or_else(|| example_case(caller.workspace));
    let event = Event {
        id: EventId::new(),
        sequence: 0,
        workspace_id: caller.workspace,
        event_type,
        case_id: None,
        form_id: None,
        actor: Actor {
            kind: casehook_core::event::ActorKind::System,
            id: None,
            name: "test send".into(),
            chain: 0,
        },
        data,
        changes: None,
        skip_triggers: false,
        occurred_at: OffsetDateTime::now_utc(),
    };
    let outcome = casehook_engine::test_send(&state.engine, &endpoint, &event)
        .await
        .map_err(|e| ApiError::bad_request("test_failed", e))?;
    if outcome.verdict == "success" {
        state
            .store
            .mark_endpoint_tested(caller.workspace, id)
            .await?;
        state.engine.endpoints().forget(id);
    }
    Ok(Json(TestResult {
        success: outcome.verdict == "success",
        verdict: outcome.verdict,
        request: outcome.request,
        response: outcome.response,
        status: outcome.status,
        error_kind: outcome.error_kind,
        error_message: outcome.error_message,
        duration_ms: outcome.duration_us as f64 / 1000.0,
    }))
}

fn example_case(ws: WorkspaceId) -> Value {
    json!({
        "id": "00000000-0000-0000-0000-000000000000",
        "workspace_id": ws,
        "number": 0,
        "status": "open",
        "data": {"example": true},
        "note": "a test send from casehook",
    })
}

pub(crate) fn engine_error(e: casehook_engine::EngineError) -> ApiError {
    match e {
        casehook_engine::EngineError::Store(e) => e.into(),
        casehook_engine::EngineError::Endpoint(message) => {
            ApiError::internal(&std::io::Error::other(message))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The event to send again.
    #[schema(value_type = String, format = Uuid)]
    pub event_id: EventId,
}

/// Send one event to the endpoint again, as a new delivery (admin).
#[utoipa::path(post, path = "/endpoints/{id}/replay", tag = "endpoints", params(("id" = String, Path)),
    request_body = ReplayBody,
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn replay_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> ApiResult<(axum::http::StatusCode, Json<DeliveryView>)> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let event = state
        .store
        .get_event_by_id(caller.workspace, body.event_id)
        .await?;
    let delivery = state
        .store
        .replay_event(
            caller.workspace,
            NewDelivery {
                endpoint_id: id,
                event_id: event.id,
                event_sequence: event.sequence,
                event_type: event.event_type,
                case_id: event.case_id,
            },
        )
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(DeliveryView::from(delivery)),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// Recover deliveries created at or after this time (RFC 3339).
    pub since: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recovered {
    /// How many failed deliveries are pending again.
    pub recovered: usize,
    #[schema(value_type = Vec<String>)]
    pub deliveries: Vec<casehook_core::DeliveryId>,
}

/// Reopen every delivery of the endpoint that failed since a time (admin). Idempotent: an
/// event already pending for the endpoint is not sent twice.
#[utoipa::path(post, path = "/endpoints/{id}/recover", tag = "endpoints", params(("id" = String, Path)),
    request_body = RecoverBody,
    responses((status = 202, body = Recovered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn recover_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> ApiResult<(axum::http::StatusCode, Json<Recovered>)> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let since = query_time("since", &body.since).map_err(|_| {
        ApiError::bad_request(
            "invalid_body",
            "`since` must be an RFC 3339 time such as 2026-01-31T12:00:00Z",
        )
    })?;
    let deliveries = state
        .store
        .recover_failed_deliveries(caller.workspace, id, since)
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(Recovered {
            recovered: deliveries.len(),
            deliveries,
        }),
    ))
}
