//! Forms: create, read, list, replace (guarded against changes that would invalidate stored
//! case data) and archive.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::ETAG;
use axum::response::{AppendHeaders, IntoResponse};
use casehook_core::apicall::Source;
use casehook_core::form::FormSpec;
use casehook_core::{FieldError, FieldErrorCode, FormId, Role, WorkspaceId};
use casehook_store::{FormRecord, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IfMatch, etag};
use crate::routes::parse_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_form, list_forms))
        .routes(routes!(get_form, update_form))
        .routes(routes!(archive_form))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FormList {
    pub items: Vec<FormRecord>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct FormListQuery {
    /// Include archived forms.
    #[serde(default)]
    pub include_archived: bool,
}

fn with_etag(status: StatusCode, form: FormRecord) -> impl IntoResponse {
    (
        status,
        AppendHeaders([(ETAG, etag(form.version))]),
        Json(form),
    )
}

/// The form's own rules, then what needs the workspace: the connections and operations its
/// API-call fields name must exist.
async fn checked(state: &AppState, workspace: WorkspaceId, spec: FormSpec) -> ApiResult<FormSpec> {
    spec.check().map_err(ApiError::validation)?;
    let mut problems = Vec::new();
    for (i, field) in spec.fields.iter().enumerate() {
        let Some(api) = casehook_core::apicall::spec_of(&spec, &field.key) else {
            continue;
        };
        let at = format!("fields[{i}].api_call");
        // Every connection the field names, with its operation and where it is written.
        let mut named: Vec<(String, &String, Option<&String>)> = Vec::new();
        match &api.source {
            Source::Operation {
                connection,
                operation,
            } => named.push((at.clone(), connection, Some(operation))),
            Source::Inline { api_config } => {
                if let Some(c) = &api_config.connection {
                    named.push((format!("{at}.api_config"), c, None));
                }
            }
            Source::Sequence { sequence } => {
                for (j, step) in sequence.iter().enumerate() {
                    let here = format!("{at}.sequence[{j}]");
                    if let Some(c) = &step.connection {
                        named.push((here, c, step.operation.as_ref()));
                    } else if let Some(c) =
                        step.api_config.as_ref().and_then(|a| a.connection.as_ref())
                    {
                        named.push((format!("{here}.api_config"), c, None));
                    }
                }
            }
        }
        for (at, connection, operation) in named {
            match state.store.find_connection(workspace, connection).await {
                Ok(record) => {
                    let has = |op: &str| {
                        record
                            .config
                            .get("operations")
                            .and_then(|ops| ops.get(op))
                            .is_some()
                    };
                    if let Some(op) = operation
                        && !has(op)
                    {
                        problems.push(FieldError::new(
                            format!("{at}.operation"),
                            FieldErrorCode::ValueNotAllowed,
                            format!("the connection `{connection}` has no operation `{op}`"),
                        ));
                    }
                }
                Err(StoreError::NotFound(_)) => problems.push(FieldError::new(
                    format!("{at}.connection"),
                    FieldErrorCode::ValueNotAllowed,
                    format!(
                        "there is no connection `{connection}`; create it at /connections first"
                    ),
                )),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(ApiError::validation(problems))
    }
}

/// Create a form (admin).
#[utoipa::path(post, path = "/forms", tag = "forms", request_body = FormSpec,
    responses((status = 201, body = FormRecord), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn create_form(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<FormSpec>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let form = state
        .store
        .create_form(
            caller.workspace,
            checked(&state, caller.workspace, spec).await?,
        )
        .await?;
    Ok(with_etag(StatusCode::CREATED, form))
}

#[utoipa::path(get, path = "/forms", tag = "forms", params(FormListQuery),
    responses((status = 200, body = FormList)), security(("api_key" = [])))]
async fn list_forms(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<FormListQuery>,
) -> ApiResult<Json<FormList>> {
    caller.require(Role::Read)?;
    Ok(Json(FormList {
        items: state
            .store
            .list_forms(caller.workspace, query.include_archived)
            .await?,
    }))
}

#[utoipa::path(get, path = "/forms/{id}", tag = "forms", params(("id" = String, Path)),
    responses((status = 200, body = FormRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Read)?;
    let id: FormId = parse_id(&id, "form")?;
    Ok(with_etag(
        StatusCode::OK,
        state.store.get_form(caller.workspace, id).await?,
    ))
}

/// Replace a form's definition (admin). Send `If-Match` with the version you edited to
/// avoid overwriting another change; a change that would invalidate stored case data is
/// refused with 409 `incompatible_change`.
#[utoipa::path(put, path = "/forms/{id}", tag = "forms", request_body = FormSpec, params(("id" = String, Path)),
    responses((status = 200, body = FormRecord), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn update_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(version): IfMatch,
    ApiJson(spec): ApiJson<FormSpec>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: FormId = parse_id(&id, "form")?;
    let form = state
        .store
        .update_form(
            caller.workspace,
            id,
            checked(&state, caller.workspace, spec).await?,
            version,
        )
        .await?;
    state.forms.invalidate(&(caller.workspace, id));
    Ok(with_etag(StatusCode::OK, form))
}

/// Archive a form (admin): its cases stay, it takes no new ones.
#[utoipa::path(post, path = "/forms/{id}/archive", tag = "forms", params(("id" = String, Path)),
    responses((status = 200, body = FormRecord), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn archive_form(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: FormId = parse_id(&id, "form")?;
    let form = state.store.archive_form(caller.workspace, id).await?;
    state.forms.invalidate(&(caller.workspace, id));
    Ok(with_etag(StatusCode::OK, form))
}
