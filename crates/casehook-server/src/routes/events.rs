//! The event feed (resumable with `after=<sequence>`), emitting custom events, and the
//! workspace's event catalog.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casehook_core::event::{EventSchema, NewEvent, check_custom_event_name, is_builtin};
use casehook_core::{Role, event::Event};
use casehook_store::{EventFilter, EventTypeRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::cases::resolve_case;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events, emit_event))
        .routes(routes!(list_event_types, create_event_type))
        .routes(routes!(
            get_event_type,
            update_event_type,
            archive_event_type
        ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events with a sequence above this: pass the last sequence you processed.
    after: Option<i64>,
    /// Comma-separated event types.
    #[serde(rename = "type")]
    types: Option<String>,
    /// A case id or #number.
    case: Option<String>,
    /// 1-1000, default 100.
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub items: Vec<Event>,
    /// The sequence of the last item: pass as `after` to continue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitBody {
    /// A custom event type from the catalog.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The case the event is about (id or #number), if any.
    pub case: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema that `data` of emitted events must match.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeUpdate {
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub items: Vec<EventTypeRecord>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct EventTypeQuery {
    #[serde(default)]
    include_archived: bool,
}

/// The workspace's events, oldest first.
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventList>> {
    caller.require(Role::Read)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`limit` must be 1-1000",
        ));
    }
    let case_id = match &query.case {
        Some(case) => Some(resolve_case(&state, caller.workspace, case, true).await?),
        None => None,
    };
    let types = query
        .types
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let filter = EventFilter {
        after: query.after,
        types,
        case_id,
        limit,
        without_data: false,
    };
    let items = state.store.list_events(caller.workspace, &filter).await?;
    let next_after = items.last().map(|e| e.sequence);
    Ok(Json(EventList { items, next_after }))
}

/// Emit a custom event (member); `data` is validated against the type's schema.
#[utoipa::path(post, path = "/events", tag = "events", request_body = EmitBody,
    responses((status = 201, body = Event), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn emit_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmitBody>,
) -> ApiResult<(StatusCode, Json<Event>)> {
    caller.require(Role::Member)?;
    if is_builtin(&body.event_type) {
        return Err(ApiError::bad_request(
            "reserved_event_type",
            format!(
                "`{}` is a built-in event; casehook emits it itself",
                body.event_type
            ),
        ));
    }
    let record = state
        .store
        .get_event_type(caller.workspace, &body.event_type)
        .await
        .map_err(|_| {
            ApiError::bad_request(
                "unknown_event_type",
                format!(
                    "`{}` is not in the event catalog; register it under /api/v1/event-types first",
                    body.event_type
                ),
            )
        })?;
    if record.archived_at.is_some() {
        return Err(ApiError::bad_request(
            "unknown_event_type",
            format!("`{}` is archived", body.event_type),
        ));
    }
    if let Some(schema) = &record.schema {
        EventSchema::compile(schema)
            .map_err(|e| ApiError::validation(vec![e]))?
            .check(&body.data)
            .map_err(ApiError::validation)?;
    }
    let case_id = match &body.case {
        Some(case) => Some(resolve_case(&state, caller.workspace, case, false).await?),
        None => None,
    };
    let event = NewEvent {
        event_type: body.event_type,
        case_id,
        form_id: None,
        actor: caller.actor(),
        data: body.data,
        changes: None,
        skip_triggers: false,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.emit_event(caller.workspace, event).await?),
    ))
}

#[utoipa::path(get, path = "/event-types", tag = "events", params(EventTypeQuery),
    responses((status = 200, body = EventTypeList)), security(("api_key" = [])))]
async fn list_event_types(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventTypeQuery>,
) -> ApiResult<Json<EventTypeList>> {
    caller.require(Role::Read)?;
    Ok(Json(EventTypeList {
        items: state
            .store
            .list_event_types(caller.workspace, query.include_archived)
            .await?,
    }))
}

fn checked_schema(schema: Option<Value>) -> ApiResult<Option<Value>> {
    if let Some(s) = &schema {
        EventSchema::compile(s).map_err(|e| ApiError::validation(vec![e]))?;
    }
    Ok(schema)
}

/// Register a custom event type (admin).
#[utoipa::path(post, path = "/event-types", tag = "events", request_body = EventTypeBody,
    responses((status = 201, body = EventTypeRecord), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_event_type(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EventTypeBody>,
) -> ApiResult<(StatusCode, Json<EventTypeRecord>)> {
    caller.require(Role::Admin)?;
    check_custom_event_name(&body.name).map_err(|e| ApiError::validation(vec![e]))?;
    let schema = checked_schema(body.schema)?;
    let record = state
        .store
        .create_event_type(caller.workspace, &body.name, &body.description, schema)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

#[utoipa::path(get, path = "/event-types/{name}", tag = "events", params(("name" = String, Path)),
    responses((status = 200, body = EventTypeRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<EventTypeRecord>> {
    caller.require(Role::Read)?;
    Ok(Json(
        state.store.get_event_type(caller.workspace, &name).await?,
    ))
}

/// Replace a custom type's description and schema (admin).
#[utoipa::path(put, path = "/event-types/{name}", tag = "events", request_body = EventTypeUpdate, params(("name" = String, Path)),
    responses((status = 200, body = EventTypeRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn update_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<EventTypeUpdate>,
) -> ApiResult<Json<EventTypeRecord>> {
    caller.require(Role::Admin)?;
    if is_builtin(&name) {
        return Err(ApiError::bad_request(
            "reserved_event_type",
            "built-in event types cannot be changed",
        ));
    }
    let schema = checked_schema(body.schema)?;
    Ok(Json(
        state
            .store
            .update_event_type(caller.workspace, &name, &body.description, schema)
            .await?,
    ))
}

/// Archive a custom type (admin): it can no longer be emitted; past events stay.
#[utoipa::path(delete, path = "/event-types/{name}", tag = "events", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn archive_event_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if is_builtin(&name) {
        return Err(ApiError::bad_request(
            "reserved_event_type",
            "built-in event types cannot be archived",
        ));
    }
    state
        .store
        .archive_event_type(caller.workspace, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
