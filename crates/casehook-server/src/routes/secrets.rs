//! `/api/v1/secrets`: workspace secrets (admin). Values go in and never come out: the API
//! shows names, descriptions and dates. Templates use them as `{secret.<name>}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casehook_core::sealed::context;
use casehook_core::{FieldError, FieldErrorCode, Role, SecretId};
use casehook_store::{NewSecret, SecretRecord, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IfMatch, with_etag};

/// The longest secret value, in bytes.
const MAX_VALUE_BYTES: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_secret, list_secrets))
        .routes(routes!(get_secret, put_secret, delete_secret))
}

/// A secret as the API shows it: never its value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How templates refer to it.
    pub reference: String,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretView>,
}

/// A new secret.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecretBody {
    /// 1–64 letters, digits, `_` and `-`.
    pub name: String,
    pub value: String,
    pub description: Option<String>,
}

/// A secret's new value (and description).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecretBody {
    pub value: String,
    pub description: Option<String>,
}

impl std::fmt::Debug for NewSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecretBody")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PutSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretBody").finish_non_exhaustive()
    }
}

fn view(r: SecretRecord) -> SecretView {
    SecretView {
        reference: format!("{{secret.{}}}", r.name),
        name: r.name,
        description: r.description,
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn check(name: &str, value: &str, description: Option<&str>) -> ApiResult<()> {
    let mut problems = Vec::new();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if !name_ok {
        problems.push(FieldError::new(
            "name",
            FieldErrorCode::InvalidDefinition,
            "a secret's name is 1–64 letters, digits, `_` and `-` (it is used as `{secret.<name>}`)",
        ));
    }
    if value.is_empty() {
        problems.push(FieldError::new(
            "value",
            FieldErrorCode::ValueMissing,
            "the value is empty",
        ));
    } else if value.len() > MAX_VALUE_BYTES {
        problems.push(FieldError::new(
            "value",
            FieldErrorCode::InvalidDefinition,
            format!("the value is longer than {MAX_VALUE_BYTES} bytes"),
        ));
    }
    if description.is_some_and(|d| d.chars().count() > 500) {
        problems.push(FieldError::new(
            "description",
            FieldErrorCode::InvalidDefinition,
            "the description is at most 500 characters",
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(problems))
    }
}

fn seal(state: &AppState, id: SecretId, value: &str) -> ApiResult<Vec<u8>> {
    state
        .engine
        .keys()
        .seal(value.as_bytes(), &context::workspace_secret(id))
        .map_err(|e| ApiError::internal(&e))
}

/// Create a secret (admin). The value is never shown again.
#[utoipa::path(post, path = "/secrets", tag = "secrets", request_body = NewSecretBody,
    responses((status = 201, body = SecretView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSecretBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    check(&body.name, &body.value, body.description.as_deref())?;
    let id = SecretId::new();
    let record = state
        .store
        .create_secret(NewSecret {
            id,
            workspace: caller.workspace,
            name: body.name,
            description: body.description,
            sealed: seal(&state, id, &body.value)?,
        })
        .await?;
    tracing::info!(secret = %record.name, by = %caller.key_id, "secret created");
    let version = record.version;
    Ok(with_etag(StatusCode::CREATED, version, view(record)))
}

/// The workspace's secrets: names, descriptions and dates, never values (admin).
#[utoipa::path(get, path = "/secrets", tag = "secrets",
    responses((status = 200, body = SecretList)), security(("api_key" = [])))]
async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<SecretList>> {
    caller.require(Role::Admin)?;
    let items = state
        .store
        .list_secrets(caller.workspace)
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(SecretList { items }))
}

#[utoipa::path(get, path = "/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    responses((status = 200, body = SecretView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let record = state.store.get_secret(caller.workspace, &name).await?;
    let version = record.version;
    Ok(with_etag(StatusCode::OK, version, view(record)))
}

/// Replace a secret's value, or create it under this name (admin). With `If-Match`, only
/// the version you read is replaced.
#[utoipa::path(put, path = "/secrets/{name}", tag = "secrets", request_body = PutSecretBody, params(("name" = String, Path)),
    responses((status = 200, body = SecretView), (status = 201, body = SecretView), (status = 400, body = ErrorBody),
        (status = 412, body = ErrorBody)), security(("api_key" = [])))]
async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<PutSecretBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    check(&name, &body.value, body.description.as_deref())?;
    let (record, status) = match state.store.get_secret(caller.workspace, &name).await {
        Ok(current) => {
            let sealed = seal(&state, current.id, &body.value)?;
            let record = state
                .store
                .replace_secret(
                    caller.workspace,
                    &name,
                    sealed,
                    body.description.map(Some),
                    expected,
                )
                .await?;
            (record, StatusCode::OK)
        }
        Err(StoreError::NotFound(_)) if expected.is_none() => {
            let id = SecretId::new();
            let record = state
                .store
                .create_secret(NewSecret {
                    id,
                    workspace: caller.workspace,
                    name: name.clone(),
                    description: body.description,
                    sealed: seal(&state, id, &body.value)?,
                })
                .await?;
            (record, StatusCode::CREATED)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(secret = %record.name, by = %caller.key_id, "secret replaced");
    let version = record.version;
    Ok(with_etag(status, version, view(record)))
}

/// Delete a secret (admin). Templates that use it fail with a clear error from then on.
#[utoipa::path(delete, path = "/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    state.store.delete_secret(caller.workspace, &name).await?;
    tracing::info!(secret = %name, by = %caller.key_id, "secret deleted");
    Ok(StatusCode::NO_CONTENT)
}
