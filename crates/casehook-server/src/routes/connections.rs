//! `/api/v1/connections`: API connections and their operations (admin). The auth method's
//! credentials are sealed apart from the configuration and shown only as their kind and
//! non-secret parts; a replace without `auth` keeps the stored credentials.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casehook_core::connection::{AuthMethod, ConnectionConfig, check_name};
use casehook_core::sealed::context;
use casehook_core::{ConnectionId, FieldError, FieldErrorCode, Role};
use casehook_store::{ConnectionChange, ConnectionRecord, NewConnection};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IfMatch, with_etag};
use crate::routes::parse_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(
            get_connection,
            replace_connection,
            delete_connection
        ))
}

/// A connection as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: ConnectionId,
    pub name: String,
    /// The auth method without its secrets.
    #[schema(value_type = Object)]
    pub auth: Value,
    #[serde(flatten)]
    pub config: ConnectionConfig,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
}

/// A submitted connection, split and checked.
struct Submitted {
    name: String,
    config: ConnectionConfig,
    /// `None` when the body left `auth` out.
    auth: Option<AuthMethod>,
}

fn submitted(body: Value) -> ApiResult<Submitted> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    let mut problems = Vec::new();
    let name = match map.remove("name") {
        Some(Value::String(n)) => n,
        _ => String::new(),
    };
    problems.extend(check_name("name", &name));
    let auth = match map.remove("auth") {
        None => None,
        Some(v) => match serde_json::from_value::<AuthMethod>(v) {
            Ok(a) => {
                problems.extend(a.check("auth"));
                Some(a)
            }
            Err(e) => {
                problems.push(FieldError::new(
                    "auth",
                    FieldErrorCode::InvalidDefinition,
                    format!("the auth method is not valid: {e}"),
                ));
                None
            }
        },
    };
    let config: ConnectionConfig = match serde_json::from_value(Value::Object(map)) {
        Ok(c) => c,
        Err(e) => {
            problems.push(FieldError::new(
                "",
                FieldErrorCode::InvalidDefinition,
                format!("the connection is not valid: {e}"),
            ));
            return Err(ApiError::validation(problems));
        }
    };
    problems.extend(config.check());
    if problems.is_empty() {
        Ok(Submitted { name, config, auth })
    } else {
        Err(ApiError::validation(problems))
    }
}

fn seal_auth(state: &AppState, id: ConnectionId, auth: &AuthMethod) -> ApiResult<Option<Vec<u8>>> {
    if matches!(auth, AuthMethod::None) {
        return Ok(None);
    }
    let plain = serde_json::to_vec(auth).map_err(|e| ApiError::internal(&e))?;
    state
        .engine
        .keys()
        .seal(&plain, &context::connection_credentials(id))
        .map(Some)
        .map_err(|e| ApiError::internal(&e))
}

fn view(state: &AppState, record: ConnectionRecord) -> ApiResult<ConnectionView> {
    let live = casehook_engine::apicall::prepare::LiveConnection::open(
        record.clone(),
        state.engine.keys(),
    )
    .map_err(|e| ApiError::internal(&std::io::Error::other(e)))?;
    Ok(ConnectionView {
        id: record.id,
        name: record.name,
        auth: live.auth.public_view(),
        config: live.config,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn config_json(config: &ConnectionConfig) -> ApiResult<Value> {
    serde_json::to_value(config).map_err(|e| ApiError::internal(&e))
}

/// Create a connection (admin).
#[utoipa::path(post, path = "/connections", tag = "connections", request_body = Object,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let new = submitted(body)?;
    let id = ConnectionId::new();
    let credentials = seal_auth(&state, id, new.auth.as_ref().unwrap_or(&AuthMethod::None))?;
    let record = state
        .store
        .create_connection(NewConnection {
            id,
            workspace: caller.workspace,
            name: new.name,
            config: config_json(&new.config)?,
            credentials,
        })
        .await?;
    tracing::info!(connection = %id, by = %caller.key_id, "connection created");
    let version = record.version;
    Ok(with_etag(
        StatusCode::CREATED,
        version,
        view(&state, record)?,
    ))
}

#[utoipa::path(get, path = "/connections", tag = "connections",
    responses((status = 200, body = ConnectionList)), security(("api_key" = [])))]
async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ConnectionList>> {
    caller.require(Role::Admin)?;
    let items = state
        .store
        .list_connections(caller.workspace)
        .await?
        .into_iter()
        .map(|r| view(&state, r))
        .collect::<ApiResult<_>>()?;
    Ok(Json(ConnectionList { items }))
}

#[utoipa::path(get, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let record = state.store.get_connection(caller.workspace, id).await?;
    let version = record.version;
    Ok(with_etag(StatusCode::OK, version, view(&state, record)?))
}

/// Replace a connection (admin). Leave `auth` out to keep the stored credentials; send
/// `{"type": "none"}` to remove them. Send `If-Match` with the version you edited.
#[utoipa::path(put, path = "/connections/{id}", tag = "connections", request_body = Object, params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replace_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let new = submitted(body)?;
    let credentials = match &new.auth {
        None => None,
        Some(auth) => Some(seal_auth(&state, id, auth)?),
    };
    let record = state
        .store
        .update_connection(
            caller.workspace,
            id,
            ConnectionChange {
                name: Some(new.name),
                config: Some(config_json(&new.config)?),
                credentials,
            },
            expected,
        )
        .await?;
    tracing::info!(connection = %id, by = %caller.key_id, "connection replaced");
    let version = record.version;
    Ok(with_etag(StatusCode::OK, version, view(&state, record)?))
}

/// Delete a connection (admin); fields that use it fail with a clear error from then on.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    state.store.delete_connection(caller.workspace, id).await?;
    tracing::info!(connection = %id, by = %caller.key_id, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}
