//! `/api/v1/actions`: API calls run when events happen (admin) — a request, a connection's
//! operation or a sequence, subscribed to events like an endpoint; and a dry run against a
//! case that writes nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casehook_core::action::ActionConfig;
use casehook_core::case::CaseRef;
use casehook_core::connection::check_name;
use casehook_core::{ActionId, FieldError, FieldErrorCode, Role, WorkspaceId};
use casehook_store::{ActionChange, ActionRecord, NewAction};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IfMatch, OptionalJson, with_etag};
use crate::routes::api_calls::{DryRun, OperationDryRunBody, dry_run_view};
use crate::routes::parse_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_action, list_actions))
        .routes(routes!(get_action, replace_action, delete_action))
        .routes(routes!(dry_run_action))
}

/// An action as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: ActionId,
    pub name: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub config: Value,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionList {
    pub items: Vec<ActionView>,
}

fn view(record: ActionRecord) -> ActionView {
    ActionView {
        id: record.id,
        name: record.name,
        config: record.config,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// Split and check a submitted action against the workspace's forms and connections.
async fn submitted(
    state: &AppState,
    workspace: WorkspaceId,
    body: Value,
) -> ApiResult<(String, ActionConfig, Value)> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    let name = match map.remove("name") {
        Some(Value::String(n)) => n,
        _ => String::new(),
    };
    let mut problems: Vec<FieldError> = check_name("name", &name).into_iter().collect();
    let config_json = Value::Object(map);
    let config = match ActionConfig::from_json(&config_json) {
        Ok(c) => c,
        Err(mut e) => {
            problems.append(&mut e);
            return Err(ApiError::validation(problems));
        }
    };
    let forms: BTreeMap<_, _> = state
        .store
        .list_forms(workspace, false)
        .await?
        .into_iter()
        .map(|f| (f.id, f.spec))
        .collect();
    problems.extend(config.check(&forms));
    // The connections it names must exist: resolving says so precisely.
    if problems.is_empty()
        && let Err(e) = state
            .engine
            .resolve_spec(workspace, config.call.clone(), "")
            .await
    {
        problems.push(FieldError::new("", FieldErrorCode::ValueNotAllowed, e.0));
    }
    if problems.is_empty() {
        Ok((name, config, config_json))
    } else {
        Err(ApiError::validation(problems))
    }
}

/// Create an action (admin).
#[utoipa::path(post, path = "/actions", tag = "actions", request_body = Object,
    responses((status = 201, body = ActionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_action(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let (name, config, json) = submitted(&state, caller.workspace, body).await?;
    let record = state
        .store
        .create_action(NewAction {
            id: ActionId::new(),
            workspace: caller.workspace,
            name,
            config: json,
            enabled: config.enabled,
        })
        .await?;
    state.engine.forget_actions(caller.workspace);
    tracing::info!(action = %record.id, by = %caller.key_id, "action created");
    let version = record.version;
    Ok(with_etag(StatusCode::CREATED, version, view(record)))
}

#[utoipa::path(get, path = "/actions", tag = "actions",
    responses((status = 200, body = ActionList)), security(("api_key" = [])))]
async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ActionList>> {
    caller.require(Role::Admin)?;
    let items = state
        .store
        .list_actions(caller.workspace)
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(ActionList { items }))
}

#[utoipa::path(get, path = "/actions/{id}", tag = "actions", params(("id" = String, Path)),
    responses((status = 200, body = ActionView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: ActionId = parse_id(&id, "action")?;
    let record = state.store.get_action(caller.workspace, id).await?;
    let version = record.version;
    Ok(with_etag(StatusCode::OK, version, view(record)))
}

/// Replace an action (admin); `If-Match` with the version you edited.
#[utoipa::path(put, path = "/actions/{id}", tag = "actions", request_body = Object, params(("id" = String, Path)),
    responses((status = 200, body = ActionView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replace_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: ActionId = parse_id(&id, "action")?;
    let (name, config, json) = submitted(&state, caller.workspace, body).await?;
    let record = state
        .store
        .update_action(
            caller.workspace,
            id,
            ActionChange {
                name: Some(name),
                config: Some(json),
                enabled: Some(config.enabled),
            },
            expected,
        )
        .await?;
    state.engine.forget_actions(caller.workspace);
    let version = record.version;
    Ok(with_etag(StatusCode::OK, version, view(record)))
}

#[utoipa::path(delete, path = "/actions/{id}", tag = "actions", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let id: ActionId = parse_id(&id, "action")?;
    state.store.delete_action(caller.workspace, id).await?;
    state.engine.forget_actions(caller.workspace);
    Ok(StatusCode::NO_CONTENT)
}

/// Run an action's call against a case and show what would happen, writing nothing (admin).
#[utoipa::path(post, path = "/actions/{id}/dry-run", tag = "actions", request_body = OperationDryRunBody,
    params(("id" = String, Path)),
    responses((status = 200, body = DryRun), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn dry_run_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<OperationDryRunBody>,
) -> ApiResult<Json<DryRun>> {
    caller.require(Role::Admin)?;
    let id: ActionId = parse_id(&id, "action")?;
    let record = state.store.get_action(caller.workspace, id).await?;
    let config = ActionConfig::from_json(&record.config).map_err(ApiError::validation)?;
    let case_ref: CaseRef = body.case.parse().map_err(|_| ApiError::not_found("case"))?;
    let case = state.store.get_case(caller.workspace, case_ref).await?;
    let form = state.store.get_form(caller.workspace, case.form_id).await?;
    let engine = &state.engine;
    let not_runnable = |e: casehook_engine::apicall::ConfigError| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "api_call_not_runnable",
            e.0,
        )
    };
    let resolved = engine
        .resolve_spec(caller.workspace, config.call, "")
        .await
        .map_err(not_runnable)?;
    let outcome = engine
        .try_api_call(&case, &resolved, "", Some("manual"), true)
        .await
        .map_err(not_runnable)?;
    engine
        .log_exchanges(&case, None, &resolved, &outcome, true)
        .await;
    Ok(Json(dry_run_view(&resolved, &form.spec, None, outcome)))
}
