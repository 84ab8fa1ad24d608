//! Workspaces (tenants) and API keys. A key only ever sees its own workspace; creating a
//! workspace answers with the new workspace's first admin key, shown once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casehook_core::{ApiKeyId, Role, WorkspaceId};
use casehook_store::{ApiKeyRecord, Workspace};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, generate_key};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::parse_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace, list_workspaces))
        .routes(routes!(get_workspace))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(get_api_key, revoke_api_key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    pub name: String,
}

/// A key with its secret: the only time the secret is ever shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    /// The secret. Store it now: it cannot be shown again.
    pub key: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWorkspace {
    pub workspace: Workspace,
    pub api_key: IssuedKey,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    pub items: Vec<Workspace>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyRecord>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    /// For an `inbound` key (and only for one): the inbound hook it may post to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub hook_id: Option<casehook_core::InboundHookId>,
}

fn check_name(name: &str, what: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{what} name must be 1-200 characters"),
        ));
    }
    Ok(())
}

/// Create a workspace and its first admin key (admin only).
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = NewWorkspace,
    responses((status = 201, body = CreatedWorkspace), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewWorkspace>,
) -> ApiResult<(StatusCode, Json<CreatedWorkspace>)> {
    caller.require(Role::Admin)?;
    check_name(&body.name, "workspace")?;
    let key = generate_key("admin", Role::Admin, None);
    let (workspace, record) = state
        .store
        .create_workspace(body.name.trim(), key.stored)
        .await?;
    tracing::info!(workspace = %workspace.id, by = %caller.key_id, "workspace created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWorkspace {
            workspace,
            api_key: IssuedKey {
                record,
                key: key.secret,
            },
        }),
    ))
}

/// The workspaces this key can see: its own.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces",
    responses((status = 200, body = WorkspaceList)), security(("api_key" = [])))]
async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WorkspaceList>> {
    caller.require(Role::Read)?;
    let own = state.store.get_workspace(caller.workspace).await?;
    Ok(Json(WorkspaceList { items: vec![own] }))
}

#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = Workspace), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Workspace>> {
    caller.require(Role::Read)?;
    let id: WorkspaceId = parse_id(&id, "workspace")?;
    if id != caller.workspace {
        return Err(ApiError::not_found("workspace"));
    }
    Ok(Json(state.store.get_workspace(id).await?))
}

/// Create an API key in the caller's workspace (admin only).
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = NewKey,
    responses((status = 201, body = IssuedKey), (status = 403, body = ErrorBody)), security(("api_key" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewKey>,
) -> ApiResult<(StatusCode, Json<IssuedKey>)> {
    caller.require(Role::Admin)?;
    check_name(&body.name, "key")?;
    match (body.role, body.hook_id) {
        (Role::Inbound, Some(hook)) => {
            state.store.get_inbound_hook(caller.workspace, hook).await?;
        }
        (Role::Inbound, None) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "an `inbound` key names the hook it may post to in `hook_id`",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "only `inbound` keys are limited to a hook; leave `hook_id` out",
            ));
        }
        (_, None) => {}
    }
    let mut key = generate_key(body.name.trim(), body.role, None);
    key.stored.hook_id = body.hook_id;
    let record = state
        .store
        .create_api_key(caller.workspace, key.stored)
        .await?;
    tracing::info!(key = %record.id, role = %record.role, by = %caller.key_id, "api key created");
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            record,
            key: key.secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api-keys", tag = "api-keys",
    responses((status = 200, body = ApiKeyList)), security(("api_key" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ApiKeyList>> {
    caller.require(Role::Admin)?;
    Ok(Json(ApiKeyList {
        items: state.store.list_api_keys(caller.workspace).await?,
    }))
}

#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    caller.require(Role::Admin)?;
    let id: ApiKeyId = parse_id(&id, "api key")?;
    Ok(Json(state.store.get_api_key(caller.workspace, id).await?))
}

/// Revoke a key: it stops working at once, on every server sharing the database.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn revoke_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    caller.require(Role::Admin)?;
    let id: ApiKeyId = parse_id(&id, "api key")?;
    let record = state.store.revoke_api_key(caller.workspace, id).await?;
    tracing::info!(key = %record.id, by = %caller.key_id, "api key revoked");
    Ok(Json(record))
}
