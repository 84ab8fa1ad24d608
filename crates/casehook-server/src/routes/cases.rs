//! Cases: create, read (by id or `#N`), list with filters and a cursor, partial update
//! guarded by `If-Match`, status change, soft delete, and lookup by external reference.
//! Data is validated against the case's form here, all problems reported at once; the
//! store writes the change and its events in one transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::ETAG;
use axum::response::{AppendHeaders, IntoResponse};
use casehook_core::case::{Case, CaseRef, Data, check_external_ref};
use casehook_core::form::is_valid_key;
use casehook_core::validate::{Mode, check_status, validate_data};
use casehook_core::{CaseId, FieldError, FieldErrorCode, FormId, Role, WorkspaceId};
use casehook_store::{CaseFilter, CasePatch, FormRecord, NewCase, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IfMatch, etag};
use crate::routes::{bad_query, query_limit, query_time};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_case, list_cases))
        .routes(routes!(get_case, update_case, delete_case))
        .routes(routes!(change_status))
        .routes(routes!(case_by_ref))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCaseBody {
    pub form_id: FormId,
    /// Defaults to the form's initial status.
    pub status: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Data,
    /// Identifiers of this case in other systems, e.g. `{"stripe": "cus_123"}`.
    #[serde(default)]
    pub external_refs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CasePatchBody {
    /// Merge patch: keys present replace the field, `null` clears it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Data,
    pub status: Option<String>,
    /// Source → new reference, or `null` to remove it.
    #[serde(default)]
    pub external_refs: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseList {
    pub items: Vec<Case>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters for listing cases (newest first). Besides these, `data.<field>=<value>` keeps
/// cases whose field equals the value (parsed as JSON when it is JSON, else a string).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[allow(dead_code)]
pub struct CaseListParams {
    form_id: Option<String>,
    status: Option<String>,
    /// RFC 3339 timestamps bounding creation and last update.
    created_after: Option<String>,
    created_before: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    include_deleted: Option<bool>,
    cursor: Option<String>,
    /// 1-1000, default 50.
    limit: Option<i64>,
}

fn case_response(status: StatusCode, case: Case) -> impl IntoResponse {
    (
        status,
        AppendHeaders([(ETAG, etag(case.version))]),
        Json(case),
    )
}

fn parse_case_ref(text: &str) -> ApiResult<CaseRef> {
    text.parse::<CaseRef>()
        .map_err(|_| ApiError::not_found("case"))
}

fn ref_errors<'a>(refs: impl Iterator<Item = (&'a String, Option<&'a String>)>) -> Vec<FieldError> {
    refs.filter_map(|(source, reference)| {
        let reference = reference.map_or("-", String::as_str);
        check_external_ref(source, reference).err().map(|message| {
            FieldError::new(
                format!("external_refs.{source}"),
                FieldErrorCode::ValueNotAllowed,
                message,
            )
        })
    })
    .collect()
}

/// Create a case (member). Every problem with the data is reported at once.
#[utoipa::path(post, path = "/cases", tag = "cases", request_body = NewCaseBody,
    responses((status = 201, body = Case), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewCaseBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Member)?;
    let case = with_current_form(&state, caller.workspace, body.form_id, |form| {
        let (body, caller, state) = (&body, &caller, &state);
        async move {
            if form.archived_at.is_some() {
                return Err(StoreError::FormArchived.into());
            }
            let mut errors = Vec::new();
            let data =
                validate_data(&form.spec, &body.data, Mode::Create, false).unwrap_or_else(|e| {
                    errors.extend(e);
                    Data::new()
                });
            let status = body
                .status
                .clone()
                .unwrap_or_else(|| form.spec.initial_status());
            errors.extend(check_status(&form.spec, &status).err());
            errors.extend(ref_errors(
                body.external_refs.iter().map(|(s, r)| (s, Some(r))),
            ));
            if !errors.is_empty() {
                return Err(ApiError::validation(errors));
            }
            let new = NewCase {
                workspace: caller.workspace,
                form_id: form.id,
                form_version: form.version,
                status,
                data,
                external_refs: body.external_refs.clone(),
                actor: caller.actor(),
                skip_triggers: false,
            };
            Ok(state
                .store
                .create_case(new)
                .await
                .map(|(case, _event)| case))
        }
    })
    .await?;
    Ok(case_response(StatusCode::CREATED, case))
}

/// Validate and write against the form as this process has it cached. The store refuses the
/// write with `FormChanged` if another process changed the form since; then the cache entry
/// is dropped and the work runs once more against the current form.
///
/// `work` answers the outer error for refusals found while validating, and the store's
/// result inside.
async fn with_current_form<T, F, Fut>(
    state: &AppState,
    workspace: WorkspaceId,
    form: FormId,
    mut work: F,
) -> ApiResult<T>
where
    F: FnMut(Arc<FormRecord>) -> Fut,
    Fut: Future<Output = ApiResult<Result<T, StoreError>>>,
{
    let mut retried = false;
    loop {
        let current = state.form(workspace, form).await?;
        match work(current).await? {
            Ok(done) => return Ok(done),
            Err(StoreError::FormChanged) if !retried => {
                state.forms.invalidate(&(workspace, form));
                retried = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[utoipa::path(get, path = "/cases", tag = "cases", params(CaseListParams),
    responses((status = 200, body = CaseList), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BTreeMap<String, String>>,
) -> ApiResult<Json<CaseList>> {
    caller.require(Role::Read)?;
    let filter = parse_filter(&query)?;
    let page = state.store.list_cases(caller.workspace, &filter).await?;
    Ok(Json(CaseList {
        items: page.items,
        next_cursor: page.next_cursor.map(|n| n.to_string()),
    }))
}

fn parse_filter(query: &BTreeMap<String, String>) -> ApiResult<CaseFilter> {
    let mut filter = CaseFilter {
        limit: 50,
        ..CaseFilter::default()
    };
    let bad = bad_query;
    for (name, value) in query {
        match name.as_str() {
            "form_id" => {
                filter.form_id = Some(value.parse().map_err(|_| bad(name, "must be a form id"))?)
            }
            "status" => filter.status = Some(value.clone()),
            "created_after" => filter.created_after = Some(query_time(name, value)?),
            "created_before" => filter.created_before = Some(query_time(name, value)?),
            "updated_after" => filter.updated_after = Some(query_time(name, value)?),
            "updated_before" => filter.updated_before = Some(query_time(name, value)?),
            "include_deleted" => {
                filter.include_deleted = value
                    .parse()
                    .map_err(|_| bad(name, "must be true or false"))?
            }
            "cursor" => {
                filter.before_number = Some(
                    value
                        .parse()
                        .map_err(|_| bad(name, "is not a cursor from this API"))?,
                )
            }
            "limit" => filter.limit = query_limit(name, value, 1000)?,
            other => match other.strip_prefix("data.") {
                Some(key) if is_valid_key(key) => {
                    let parsed = serde_json::from_str::<Value>(value)
                        .unwrap_or_else(|_| Value::String(value.clone()));
                    filter.data_equals.push((key.to_string(), parsed));
                }
                Some(_) => return Err(bad(name, "is not a field key")),
                None => return Err(bad(name, "unknown parameter")),
            },
        }
    }
    Ok(filter)
}

/// One case, by id or by number (`#12`, URL-encoded as `%2312`, or plain `12`).
#[utoipa::path(get, path = "/cases/{case}", tag = "cases", params(("case" = String, Path, description = "case id or #number")),
    responses((status = 200, body = Case), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Read)?;
    let case = state
        .store
        .get_case(caller.workspace, parse_case_ref(&case)?)
        .await?;
    Ok(case_response(StatusCode::OK, case))
}

/// Change fields, status or external references (member). Send `If-Match: "<version>"` to
/// refuse the change (412) when someone else changed the case first.
#[utoipa::path(patch, path = "/cases/{case}", tag = "cases", request_body = CasePatchBody,
    params(("case" = String, Path, description = "case id or #number")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn update_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
    IfMatch(version): IfMatch,
    ApiJson(body): ApiJson<CasePatchBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Member)?;
    let case = apply_patch(&state, &caller, &case, body, version).await?;
    Ok(case_response(StatusCode::OK, case))
}

/// Change only the status (member).
#[utoipa::path(post, path = "/cases/{case}/status", tag = "cases", request_body = StatusBody,
    params(("case" = String, Path, description = "case id or #number")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
    IfMatch(version): IfMatch,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Member)?;
    let patch = CasePatchBody {
        status: Some(body.status),
        ..CasePatchBody::default()
    };
    let case = apply_patch(&state, &caller, &case, patch, version).await?;
    Ok(case_response(StatusCode::OK, case))
}

async fn apply_patch(
    state: &AppState,
    caller: &Caller,
    case: &str,
    body: CasePatchBody,
    version: Option<i64>,
) -> ApiResult<Case> {
    let current = state
        .store
        .get_case(caller.workspace, parse_case_ref(case)?)
        .await?;
    let body = &body;
    with_current_form(
        state,
        caller.workspace,
        current.form_id,
        |form| async move {
            let mut errors = Vec::new();
            let data =
                validate_data(&form.spec, &body.data, Mode::Update, false).unwrap_or_else(|e| {
                    errors.extend(e);
                    Data::new()
                });
            if let Some(status) = &body.status {
                errors.extend(check_status(&form.spec, status).err());
            }
            errors.extend(ref_errors(
                body.external_refs.iter().map(|(s, r)| (s, r.as_ref())),
            ));
            if !errors.is_empty() {
                return Err(ApiError::validation(errors));
            }
            let overrides = data
                .keys()
                .filter(|k| {
                    form.spec
                        .field(k)
                        .is_some_and(|f| f.field_type == casehook_core::form::FieldType::ApiCall)
                })
                .cloned()
                .collect();
            let patch = CasePatch {
                data,
                status: body.status.clone(),
                external_refs: body.external_refs.clone(),
                form_version: Some(form.version),
                overrides,
            };
            let written = state
                .store
                .update_case(
                    caller.workspace,
                    current.id,
                    patch,
                    version,
                    caller.actor(),
                    false,
                )
                .await;
            Ok(written.map(|(case, _events)| case))
        },
    )
    .await
}

/// Soft-delete a case (member), writing a `case.deleted` event. Answers with the case as
/// deleted.
#[utoipa::path(delete, path = "/cases/{case}", tag = "cases", params(("case" = String, Path, description = "case id or #number")),
    responses((status = 200, body = Case), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn delete_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
    IfMatch(version): IfMatch,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Member)?;
    let current = state
        .store
        .get_case(caller.workspace, parse_case_ref(&case)?)
        .await?;
    let event = state
        .store
        .delete_case(caller.workspace, current.id, version, caller.actor())
        .await?;
    Ok(Json(event.data))
}

/// The case holding an external reference, e.g. `/cases/by-ref/stripe/cus_123`.
#[utoipa::path(get, path = "/cases/by-ref/{source}/{reference}", tag = "cases",
    params(("source" = String, Path), ("reference" = String, Path)),
    responses((status = 200, body = Case), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn case_by_ref(
    State(state): State<AppState>,
    caller: Caller,
    Path((source, reference)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Read)?;
    let case = state
        .store
        .find_case_by_ref(caller.workspace, &source, &reference)
        .await?;
    Ok(case_response(StatusCode::OK, case))
}

/// Resolve a case reference to the id of a case of the workspace (404 otherwise, for ids and
/// numbers alike); deleted cases only when `include_deleted`.
pub(crate) async fn resolve_case(
    state: &AppState,
    workspace: WorkspaceId,
    text: &str,
    include_deleted: bool,
) -> ApiResult<CaseId> {
    Ok(state
        .store
        .case_id(workspace, parse_case_ref(text)?, include_deleted)
        .await?)
}
