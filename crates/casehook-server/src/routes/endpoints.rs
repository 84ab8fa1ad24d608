//! Outgoing webhook endpoints: create, read, list, replace, delete, enable/disable, and the
//! signing secret (shown on creation and on request to admins, rotatable with an overlap).
//!
//! The request body is flat: `name`, `enabled`, `auth` and `secret` beside the configuration
//! keys (`url`, `method`, `subscriptions`, `condition`, …). The configuration is checked whole
//! against the workspace's forms before anything is stored, and every problem is reported.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casehook_core::endpoint::{EndpointAuth, EndpointConfig};
use casehook_core::signing::SigningSecret;
use casehook_core::{EndpointId, FieldError, FieldErrorCode, Role, WorkspaceId};
use casehook_engine::{auth_context, secret_context};
use casehook_store::{EndpointChange, EndpointRecord, NewEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IfMatch, OptionalJson, with_etag};
use crate::routes::endpoint_health::health_state;
use crate::routes::parse_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, replace_endpoint, delete_endpoint))
        .routes(routes!(enable_endpoint))
        .routes(routes!(disable_endpoint))
        .routes(routes!(get_secret))
        .routes(routes!(rotate_secret))
}

/// An endpoint as the API shows it: never its secret or credentials.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    #[schema(value_type = String, format = Uuid)]
    pub id: EndpointId,
    pub name: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<OffsetDateTime>,
    /// `setup`, `ready`, `live`, `attention` or `disabled`.
    pub health: &'static str,
    /// The kind of credentials and their non-secret parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub auth: Option<Value>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(flatten)]
    pub config: EndpointConfig,
}

/// A new endpoint with its signing secret, shown this once (and later to admins on request).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: receivers verify signatures with it.
    pub secret: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

/// The signing secrets in use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub secret: String,
    /// The previous secret, still signing until `previous_valid_until`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_valid_until: Option<OffsetDateTime>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps signing beside the new one (seconds, default 86400,
    /// at most 7 days; 0 stops it at once).
    pub overlap_secs: Option<u64>,
    /// A `whsec_` secret to use instead of a generated one.
    pub secret: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    /// Why (shown on the endpoint and in the `endpoint.disabled` event).
    pub reason: Option<String>,
}

/// A submitted endpoint: the flat body split into its parts.
struct Submitted {
    name: String,
    enabled: bool,
    /// `None`: not given; `Some(None)`: removed (`"auth": null`).
    auth: Option<Option<EndpointAuth>>,
    secret: Option<SigningSecret>,
    config: EndpointConfig,
}

fn invalid(field: &str, code: FieldErrorCode, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// Split and check a submitted body: every problem at once, as `validation_failed`.
async fn submitted(state: &AppState, workspace: WorkspaceId, body: Value) -> ApiResult<Submitted> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    let mut problems = Vec::new();
    let name = match map.remove("name") {
        Some(Value::String(name)) if !name.trim().is_empty() && name.len() <= 200 => {
            name.trim().to_string()
        }
        _ => {
            problems.push(invalid(
                "name",
                FieldErrorCode::FieldRequired,
                "a name of 1 to 200 characters is required",
            ));
            String::new()
        }
    };
    let enabled = match map.remove("enabled") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            problems.push(invalid(
                "enabled",
                FieldErrorCode::WrongType,
                "`enabled` is true or false",
            ));
            true
        }
    };
    let auth = match map.remove("auth") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => match serde_json::from_value::<EndpointAuth>(value) {
            Ok(auth) => {
                if let Err(e) = auth.check() {
                    problems.push(e);
                }
                Some(Some(auth))
            }
            Err(e) => {
                problems.push(invalid(
                    "auth",
                    FieldErrorCode::InvalidDefinition,
                    e.to_string(),
                ));
                None
            }
        },
    };
    let secret = match map.remove("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match SigningSecret::parse(&s) {
            Ok(secret) => Some(secret),
            Err(e) => {
                problems.push(invalid(
                    "secret",
                    FieldErrorCode::InvalidDefinition,
                    e.to_string(),
                ));
                None
            }
        },
        Some(_) => {
            problems.push(invalid(
                "secret",
                FieldErrorCode::WrongType,
                "the secret is a `whsec_…` string",
            ));
            None
        }
    };
    // Keys of the view that may come back in a PUT of what was read: ignore them.
    for key in [
        "id",
        "health",
        "version",
        "created_at",
        "updated_at",
        "disabled_reason",
        "disabled_at",
    ] {
        map.remove(key);
    }
    let config = match EndpointConfig::from_json(Value::Object(map)) {
        Ok(config) => Some(config),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    if let Some(config) = &config {
        let forms = state
            .store
            .list_forms(workspace, true)
            .await?
            .into_iter()
            .map(|f| (f.id, f.spec))
            .collect::<BTreeMap<_, _>>();
        if let Err(errors) = config.check(&forms) {
            problems.extend(errors);
        }
        if !config.content.secret_names().is_empty() {
            problems.push(invalid(
                "content",
                FieldErrorCode::InvalidDefinition,
                "`{secret.…}` placeholders are not available in webhook content yet",
            ));
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok(Submitted {
            name,
            enabled,
            auth,
            secret,
            config,
        }),
        _ => Err(ApiError::validation(problems)),
    }
}

fn config_json(config: &EndpointConfig) -> ApiResult<Value> {
    serde_json::to_value(config).map_err(|e| ApiError::internal(&e))
}

fn seal(state: &AppState, plaintext: &[u8], context: &str) -> ApiResult<Vec<u8>> {
    state
        .engine
        .keys()
        .seal(plaintext, context)
        .map_err(|e| ApiError::internal(&e))
}

/// The view of a stored endpoint.
pub(crate) async fn view(state: &AppState, record: EndpointRecord) -> ApiResult<EndpointView> {
    let config = EndpointConfig::from_json(record.config.clone())
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.message)))?;
    let auth = match &record.auth {
        None => None,
        Some(sealed) => {
            let plain = state
                .engine
                .keys()
                .open(sealed, &auth_context(record.id))
                .map_err(|e| ApiError::internal(&e))?;
            let auth: EndpointAuth =
                serde_json::from_slice(&plain).map_err(|e| ApiError::internal(&e))?;
            Some(auth.public_view())
        }
    };
    let pending_retries = state
        .store
        .pending_retries(record.workspace_id, record.id)
        .await?;
    Ok(EndpointView {
        id: record.id,
        name: record.name.clone(),
        enabled: record.enabled,
        disabled_reason: record.disabled_reason.clone(),
        disabled_at: record.disabled_at,
        health: health_state(&record, pending_retries),
        auth,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
        config,
    })
}

/// Create an endpoint (admin). The answer carries its signing secret.
#[utoipa::path(post, path = "/endpoints", tag = "endpoints", request_body = Object,
    responses((status = 201, body = CreatedEndpoint), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let new = submitted(&state, caller.workspace, body).await?;
    let secret = new.secret.unwrap_or_else(SigningSecret::generate);
    // The sealing context names the endpoint, so its id is chosen before it is stored.
    let id = EndpointId::new();
    let auth = match &new.auth {
        Some(Some(auth)) => Some(seal(
            &state,
            &serde_json::to_vec(auth).map_err(|e| ApiError::internal(&e))?,
            &auth_context(id),
        )?),
        _ => None,
    };
    let record = state
        .store
        .create_endpoint(NewEndpoint {
            id,
            workspace: caller.workspace,
            name: new.name,
            config: config_json(&new.config)?,
            secret: seal(&state, secret.to_whsec().as_bytes(), &secret_context(id))?,
            auth,
            enabled: new.enabled,
        })
        .await?;
    let version = record.version;
    let endpoint = view(&state, record).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        version,
        CreatedEndpoint {
            endpoint,
            secret: secret.to_whsec(),
        },
    ))
}

#[utoipa::path(get, path = "/endpoints", tag = "endpoints",
    responses((status = 200, body = EndpointList)), security(("api_key" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<EndpointList>> {
    caller.require(Role::Read)?;
    let mut items = Vec::new();
    for record in state.store.list_endpoints(caller.workspace).await? {
        items.push(view(&state, record).await?);
    }
    Ok(Json(EndpointList { items }))
}

#[utoipa::path(get, path = "/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Read)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let record = state.store.get_endpoint(caller.workspace, id).await?;
    let version = record.version;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&state, record).await?,
    ))
}

/// Replace an endpoint's configuration (admin). `auth` absent keeps the credentials, `null`
/// removes them. Send `If-Match` with the version you edited.
#[utoipa::path(put, path = "/endpoints/{id}", tag = "endpoints", request_body = Object, params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replace_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(version): IfMatch,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    state.store.get_endpoint(caller.workspace, id).await?;
    let new = submitted(&state, caller.workspace, body).await?;
    if new.secret.is_some() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "change the secret with POST /endpoints/{id}/secret/rotate",
        ));
    }
    let auth = match &new.auth {
        None => None,
        Some(None) => Some(None),
        Some(Some(auth)) => Some(Some(seal(
            &state,
            &serde_json::to_vec(auth).map_err(|e| ApiError::internal(&e))?,
            &auth_context(id),
        )?)),
    };
    let change = EndpointChange {
        name: Some(new.name),
        config: Some(config_json(&new.config)?),
        auth,
        enabled: Some((new.enabled, None)),
        rotate_secret: None,
    };
    let record = state
        .store
        .update_endpoint(caller.workspace, id, change, version, caller.actor())
        .await?;
    state.engine.endpoints().forget(id);
    let version = record.version;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&state, record).await?,
    ))
}

/// Delete an endpoint (admin); its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    state.store.delete_endpoint(caller.workspace, id).await?;
    state.engine.endpoints().forget(id);
    Ok(StatusCode::NO_CONTENT)
}

async fn switch(
    state: &AppState,
    caller: &Caller,
    id: &str,
    on: bool,
    reason: Option<String>,
) -> ApiResult<EndpointView> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(id, "endpoint")?;
    let change = EndpointChange {
        enabled: Some((
            on,
            reason.or_else(|| Some(format!("disabled by {}", caller.actor().name))),
        )),
        ..EndpointChange::default()
    };
    let record = state
        .store
        .update_endpoint(caller.workspace, id, change, None, caller.actor())
        .await?;
    state.engine.endpoints().forget(id);
    view(state, record).await
}

/// Enable an endpoint (admin). Deliveries that failed while it was disabled can be recovered.
#[utoipa::path(post, path = "/endpoints/{id}/enable", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn enable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(switch(&state, &caller, &id, true, None).await?))
}

/// Disable an endpoint (admin): emits `endpoint.disabled`.
#[utoipa::path(post, path = "/endpoints/{id}/disable", tag = "endpoints", params(("id" = String, Path)),
    request_body = DisableBody,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn disable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<DisableBody>,
) -> ApiResult<Json<EndpointView>> {
    let reason = body.reason;
    Ok(Json(switch(&state, &caller, &id, false, reason).await?))
}

fn open_secret(state: &AppState, sealed: &[u8], id: EndpointId) -> ApiResult<String> {
    state
        .engine
        .keys()
        .open_text(sealed, &secret_context(id))
        .map_err(|e| ApiError::internal(&e))
}

/// The endpoint's signing secrets (admin).
#[utoipa::path(get, path = "/endpoints/{id}/secret", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = SecretView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SecretView>> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let record = state.store.get_endpoint(caller.workspace, id).await?;
    secret_view(&state, &record).map(Json)
}

fn secret_view(state: &AppState, record: &EndpointRecord) -> ApiResult<SecretView> {
    let live_previous = record
        .previous_secret
        .as_ref()
        .filter(|(_, until)| *until > OffsetDateTime::now_utc());
    Ok(SecretView {
        secret: open_secret(state, &record.secret, record.id)?,
        previous_secret: live_previous
            .map(|(sealed, _)| open_secret(state, sealed, record.id))
            .transpose()?,
        previous_valid_until: live_previous.map(|(_, until)| *until),
    })
}

/// Rotate the signing secret (admin): the old one keeps signing beside the new one for the
/// overlap, so receivers can switch without losing a message.
#[utoipa::path(post, path = "/endpoints/{id}/secret/rotate", tag = "endpoints", params(("id" = String, Path)),
    request_body = RotateBody,
    responses((status = 200, body = SecretView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> ApiResult<Json<SecretView>> {
    caller.require(Role::Admin)?;
    let id: EndpointId = parse_id(&id, "endpoint")?;
    let overlap = body.overlap_secs.unwrap_or(86_400);
    if overlap > 7 * 86_400 {
        return Err(ApiError::validation(vec![invalid(
            "overlap_secs",
            FieldErrorCode::InvalidDefinition,
            "the overlap is at most 7 days (604800 seconds)",
        )]));
    }
    let secret = match body.secret {
        None => SigningSecret::generate(),
        Some(s) => SigningSecret::parse(&s).map_err(|e| {
            ApiError::validation(vec![invalid(
                "secret",
                FieldErrorCode::InvalidDefinition,
                e.to_string(),
            )])
        })?,
    };
    let until =
        OffsetDateTime::now_utc() + time::Duration::seconds(i64::try_from(overlap).unwrap_or(0));
    let change = EndpointChange {
        rotate_secret: Some((
            seal(&state, secret.to_whsec().as_bytes(), &secret_context(id))?,
            until,
        )),
        ..EndpointChange::default()
    };
    let record = state
        .store
        .update_endpoint(caller.workspace, id, change, None, caller.actor())
        .await?;
    state.engine.endpoints().forget(id);
    secret_view(&state, &record).map(Json)
}
