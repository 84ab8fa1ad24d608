//! A hook's request log (admin): every request it received, with what became of it, and
//! replay of a logged request (processed again, e.g. after the mapping was fixed).
//!
//! A replay skips the sender checks and the idempotency key (the request passed them when it
//! was received, and running it again is the point) and is logged as a replay of the
//! original. Requests that failed verification, and those whose body was not kept whole, are
//! never replayed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casehook_core::{InboundHookId, InboundRequestId, Role};
use casehook_store::{InboundRequestFilter, InboundRequestRecord, now_micros};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::live::LiveHook;
use super::process::{Flags, Incoming, process};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::{bad_query, cases::resolve_case, parse_id, query_limit, query_time};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests))
        .routes(routes!(get_request))
        .routes(routes!(replay_request))
}

/// A logged request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    #[schema(value_type = String, format = Uuid)]
    pub id: InboundRequestId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: OffsetDateTime,
    pub duration_ms: f64,
    pub source_ip: String,
    /// `skipvalidate`, `skiptriggers`.
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub body_bytes: i64,
    pub body_truncated: bool,
    /// `passed`, `failed` or `not_checked`.
    pub verification: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub status: u16,
    /// `created`, `updated`, `unchanged`, `event`, `mixed`, `duplicate`, `denied`, `invalid`,
    /// `no_match`, `conflict`, `rate_limited`, `too_large`, `disabled` or `error`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub case_id: Option<casehook_core::CaseId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub replay_of: Option<InboundRequestId>,
}

/// A logged request with its headers (secrets redacted), body and answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: RequestView,
    /// `[[name, value], …]`.
    #[schema(value_type = Object)]
    pub headers: Value,
    /// The body as text when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// What the sender was answered.
    #[schema(value_type = Object)]
    pub response: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestList {
    pub items: Vec<RequestView>,
    /// Pass as `before` for the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The answer a replay got, and its entry in the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayResult {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: InboundRequestId,
    pub status: u16,
    #[schema(value_type = Object)]
    pub response: Value,
}

impl From<&InboundRequestRecord> for RequestView {
    fn from(r: &InboundRequestRecord) -> Self {
        Self {
            id: r.id,
            received_at: r.received_at,
            duration_ms: r.duration_us as f64 / 1000.0,
            source_ip: r.source_ip.clone(),
            flags: r.flags.clone(),
            query: r.query.clone(),
            content_type: r.content_type.clone(),
            body_bytes: r.body_bytes,
            body_truncated: r.body_truncated,
            verification: r.verification.clone(),
            verification_error: r.verification_error.clone(),
            idempotency_key: r.idempotency_key.clone(),
            status: r.status,
            outcome: r.outcome.clone(),
            case_id: r.case_id,
            replay_of: r.replay_of,
        }
    }
}

async fn parse_filter(
    state: &AppState,
    caller: &Caller,
    query: &BTreeMap<String, String>,
) -> ApiResult<InboundRequestFilter> {
    let mut filter = InboundRequestFilter {
        limit: 50,
        ..InboundRequestFilter::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "outcome" => filter.outcome = Some(value.clone()),
            "status" => {
                filter.status = Some(
                    value
                        .parse()
                        .map_err(|_| bad_query(name, "must be an HTTP status"))?,
                )
            }
            "case" => {
                filter.case_id = Some(resolve_case(state, caller.workspace, value, true).await?)
            }
            "received_after" => filter.received_after = Some(query_time(name, value)?),
            "received_before" => filter.received_before = Some(query_time(name, value)?),
            "before" => {
                filter.before = Some(
                    value
                        .parse()
                        .map_err(|_| bad_query(name, "must be a cursor from next_cursor"))?,
                )
            }
            "limit" => filter.limit = query_limit(name, value, 500)?,
            _ => return Err(bad_query(name, "is not a filter of inbound requests")),
        }
    }
    Ok(filter)
}

/// A hook's requests, newest first, filtered by `outcome`, `status`, `case` (id or #N),
/// `received_after` / `received_before`; paginated with `before` (admin).
#[utoipa::path(get, path = "/inbound-hooks/{id}/requests", tag = "inbound-hooks",
    params(("id" = String, Path), ("outcome" = Option<String>, Query), ("status" = Option<u16>, Query),
           ("case" = Option<String>, Query), ("received_after" = Option<String>, Query),
           ("received_before" = Option<String>, Query), ("before" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = RequestList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<BTreeMap<String, String>>,
) -> ApiResult<Json<RequestList>> {
    caller.require(Role::Admin)?;
    let hook: InboundHookId = parse_id(&id, "inbound hook")?;
    state.store.get_inbound_hook(caller.workspace, hook).await?;
    let filter = parse_filter(&state, &caller, &query).await?;
    let records = state
        .store
        .list_inbound_requests(caller.workspace, hook, &filter)
        .await?;
    let next_cursor = (records.len() as i64 == filter.limit)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(RequestList {
        items: records.iter().map(RequestView::from).collect(),
        next_cursor,
    }))
}

/// One logged request, whole (admin).
#[utoipa::path(get, path = "/inbound-hooks/{id}/requests/{request}", tag = "inbound-hooks",
    params(("id" = String, Path), ("request" = String, Path)),
    responses((status = 200, body = RequestDetail), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, request)): Path<(String, String)>,
) -> ApiResult<Json<RequestDetail>> {
    caller.require(Role::Admin)?;
    let hook: InboundHookId = parse_id(&id, "inbound hook")?;
    let request: InboundRequestId = parse_id(&request, "inbound request")?;
    let record = state
        .store
        .get_inbound_request(caller.workspace, hook, request)
        .await?;
    let (body, body_base64) = match &record.body {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => {
                use base64::Engine;
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                )
            }
        },
    };
    Ok(Json(RequestDetail {
        request: RequestView::from(&record),
        headers: record.headers.clone(),
        body,
        body_base64,
        response: record.response.clone(),
    }))
}

/// Process a logged request again (admin), with the hook as it is now. The answer is what
/// the sender would get; the replay is logged, pointing at the original.
#[utoipa::path(post, path = "/inbound-hooks/{id}/requests/{request}/replay", tag = "inbound-hooks",
    params(("id" = String, Path), ("request" = String, Path)),
    responses((status = 200, body = ReplayResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replay_request(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, request)): Path<(String, String)>,
) -> ApiResult<Json<ReplayResult>> {
    caller.require(Role::Admin)?;
    let hook_id: InboundHookId = parse_id(&id, "inbound hook")?;
    let request: InboundRequestId = parse_id(&request, "inbound request")?;
    let original = state
        .store
        .get_inbound_request(caller.workspace, hook_id, request)
        .await?;
    let refuse = |message: &str| ApiError::new(StatusCode::CONFLICT, "not_replayable", message);
    if original.verification == "failed" {
        return Err(refuse(
            "this request failed verification; only verified requests are replayed",
        ));
    }
    let Some(body) = original.body.clone().filter(|_| !original.body_truncated) else {
        return Err(refuse(
            "this request's body was not kept whole (refused before it was read, or longer than the log keeps)",
        ));
    };
    let record = state
        .store
        .get_inbound_hook(caller.workspace, hook_id)
        .await?;
    let hook = Arc::new(LiveHook::build(&state, record)?);
    let headers: Vec<(String, String)> = original
        .headers
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.to_owned(),
                        p.get(1)?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let incoming = Incoming {
        flags: Flags::from_names(&original.flags),
        headers,
        query: original.query.clone(),
        content_type: original.content_type.clone(),
        body_bytes: i64::try_from(body.len()).unwrap_or(i64::MAX),
        body: Some(Bytes::from(body)),
        peer: original
            .source_ip
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        received_at: now_micros(),
        replay_of: Some(original.id),
    };
    let answer = process(&state, &hook, incoming).await;
    tracing::info!(hook = %hook_id, original = %original.id, replay = %answer.request_id, status = answer.status.as_u16(), "inbound request replayed");
    Ok(Json(ReplayResult {
        request_id: answer.request_id,
        status: answer.status.as_u16(),
        response: answer.body,
    }))
}
