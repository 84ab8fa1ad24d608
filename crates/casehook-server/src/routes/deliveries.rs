//! Deliveries and their attempt log: list with filters, show one with every attempt, and
//! retry one now (same delivery, same `webhook-id`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casehook_core::{CaseId, DeliveryId, EndpointId, EventId, Role};
use casehook_store::{AttemptRecord, DeliveryFilter, DeliveryRecord};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::cases::resolve_case;
use crate::routes::{bad_query, parse_id, query_limit, query_time};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DeliveryId,
    /// The `webhook-id` header every try of this delivery carries.
    pub message_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub endpoint_id: EndpointId,
    #[schema(value_type = String, format = Uuid)]
    pub event_id: EventId,
    pub event_sequence: i64,
    pub event_type: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub case_id: Option<CaseId>,
    /// `event`, `retry`, `replay` or `recover`.
    pub origin: String,
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            message_id: casehook_engine::message_id(&d),
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_sequence: d.event_sequence,
            event_type: d.event_type,
            case_id: d.case_id,
            origin: d.origin,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
            finished_at: d.finished_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    pub duration_ms: f64,
    /// `{method, url, headers, body}`, secrets redacted.
    #[schema(value_type = Object)]
    pub request: Value,
    pub status: Option<i64>,
    /// `{headers, body_excerpt, truncated}`.
    #[schema(value_type = Option<Object>)]
    pub response: Option<Value>,
    /// `dns`, `connect`, `tls`, `timeout`, `http_status`, `blocked_by_ssrf_guard`, …
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub verdict: String,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_us as f64 / 1000.0,
            request: a.request,
            status: a.status,
            response: a.response,
            error_kind: a.error_kind,
            error_message: a.error_message,
            verdict: a.verdict,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

async fn parse_filter(
    state: &AppState,
    caller: &Caller,
    query: &BTreeMap<String, String>,
) -> ApiResult<DeliveryFilter> {
    let mut filter = DeliveryFilter {
        limit: 50,
        ..DeliveryFilter::default()
    };
    let bad = bad_query;
    for (name, value) in query {
        match name.as_str() {
            "endpoint_id" => {
                filter.endpoint_id = Some(
                    value
                        .parse()
                        .map_err(|_| bad(name, "must be an endpoint id"))?,
                )
            }
            "event_id" => {
                filter.event_id = Some(
                    value
                        .parse()
                        .map_err(|_| bad(name, "must be an event id"))?,
                )
            }
            "case" => {
                filter.case_id = Some(resolve_case(state, caller.workspace, value, true).await?)
            }
            "state" => {
                if !["pending", "succeeded", "failed", "cancelled"].contains(&value.as_str()) {
                    return Err(bad(name, "is pending, succeeded, failed or cancelled"));
                }
                filter.state = Some(value.clone());
            }
            "created_after" => filter.created_after = Some(query_time(name, value)?),
            "created_before" => filter.created_before = Some(query_time(name, value)?),
            "before" => {
                filter.before = Some(
                    value
                        .parse()
                        .map_err(|_| bad(name, "must be a cursor from next_cursor"))?,
                )
            }
            "limit" => filter.limit = query_limit(name, value, 500)?,
            _ => return Err(bad(name, "is not a filter of deliveries")),
        }
    }
    Ok(filter)
}

/// Deliveries, newest first, filtered by `endpoint_id`, `event_id`, `case` (id or #N),
/// `state`, `created_after` / `created_before`; paginated with `before`.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries",
    params(("endpoint_id" = Option<String>, Query), ("event_id" = Option<String>, Query), ("case" = Option<String>, Query),
           ("state" = Option<String>, Query), ("created_after" = Option<String>, Query), ("created_before" = Option<String>, Query),
           ("before" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BTreeMap<String, String>>,
) -> ApiResult<Json<DeliveryList>> {
    caller.require(Role::Read)?;
    let filter = parse_filter(&state, &caller, &query).await?;
    let items = state
        .store
        .list_deliveries(caller.workspace, &filter)
        .await?;
    let next_cursor = (items.len() as i64 == filter.limit)
        .then(|| items.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DeliveryList {
        items: items.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    caller.require(Role::Read)?;
    let id: DeliveryId = parse_id(&id, "delivery")?;
    let delivery = state.store.get_delivery(caller.workspace, id).await?;
    let attempts = state.store.list_attempts(caller.workspace, id).await?;
    Ok(Json(DeliveryDetail {
        delivery: delivery.into(),
        attempt_log: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}

/// Retry a delivery now (admin): a pending one skips its wait, a failed one is tried again.
#[utoipa::path(post, path = "/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    caller.require(Role::Admin)?;
    let id: DeliveryId = parse_id(&id, "delivery")?;
    let delivery = state.store.retry_delivery_now(caller.workspace, id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}
