//! API-call fields through the API: their state on a case, running one by hand, dry runs of
//! a field or a connection's operation (nothing written), and the call log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use casehook_core::case::{Case, CaseRef};
use casehook_core::form::FormSpec;
use casehook_core::{ApiCallLogId, ConnectionId, Role};
use casehook_engine::apicall::{self, ConfigError, Resolved, TryOutcome};
use casehook_store::{ApiCallLogFilter, ApiCallLogRecord, ApiCallState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, OptionalJson};
use crate::routes::{parse_id, query_limit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(case_states))
        .routes(routes!(run_field))
        .routes(routes!(dry_run_field))
        .routes(routes!(dry_run_operation))
        .routes(routes!(call_log))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateList {
    /// One per API-call field that has run, is running or waits to (or was overwritten by
    /// hand): its last settled result, and the run under way (`run`: queued, running or
    /// retrying, with the last error and the next try) if there is one.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<ApiCallState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    pub queued: bool,
    pub field: String,
}

/// What a dry run did: the requests sent (secrets redacted), the answer, and what would be
/// written.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    #[schema(value_type = Vec<Object>)]
    pub exchanges: Vec<Value>,
    pub status: Option<u16>,
    #[schema(value_type = Option<Object>)]
    pub response: Option<Value>,
    /// The case fields the answer would set.
    #[schema(value_type = Object)]
    pub mapped: serde_json::Map<String, Value>,
    pub problems: Vec<String>,
    /// Steps of a sequence skipped because their condition was false.
    pub skipped: Vec<String>,
    /// Why the call counts as failed, when it does.
    pub error: Option<String>,
    pub would_retry: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationDryRunBody {
    /// The case whose data fills the templates: an id or `#number`.
    pub case: String,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// A case id.
    pub case: Option<String>,
    pub field: Option<String>,
    /// A connection id.
    pub connection: Option<String>,
    /// Entries older than this one (the previous page's `next_cursor`).
    pub before: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<ApiCallLogRecord>,
    pub next_cursor: Option<String>,
}

async fn case_and_form(
    state: &AppState,
    caller: &Caller,
    case: &str,
) -> ApiResult<(Case, FormSpec)> {
    let case_ref: CaseRef = case.parse().map_err(|_| ApiError::not_found("case"))?;
    let case = state.store.get_case(caller.workspace, case_ref).await?;
    let form = state.store.get_form(caller.workspace, case.form_id).await?;
    Ok((case, form.spec))
}

fn config_error(e: ConfigError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "api_call_not_runnable",
        e.0,
    )
}

/// The API-call fields' states of a case: status, fetched_at, error, attempts, duration,
/// cached, who overwrote a value by hand, and the run under way if one is (`run`).
#[utoipa::path(get, path = "/cases/{case}/api-calls", tag = "api-calls",
    params(("case" = String, Path, description = "case id or #number")),
    responses((status = 200, body = StateList), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn case_states(
    State(state): State<AppState>,
    caller: Caller,
    Path(case): Path<String>,
) -> ApiResult<Json<StateList>> {
    caller.require(Role::Read)?;
    let (case, _) = case_and_form(&state, &caller, &case).await?;
    let items = state
        .store
        .api_call_states(caller.workspace, case.id)
        .await?;
    Ok(Json(StateList { items }))
}

/// Run an API-call field now (member), whatever its trigger. It runs as a job: the answer
/// is 202 and the result lands in the field and its state.
#[utoipa::path(post, path = "/cases/{case}/api-calls/{field}/run", tag = "api-calls",
    params(("case" = String, Path, description = "case id or #number"), ("field" = String, Path)),
    responses((status = 202, body = Queued), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn run_field(
    State(state): State<AppState>,
    caller: Caller,
    Path((case, field)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    caller.require(Role::Member)?;
    let (case, form) = case_and_form(&state, &caller, &case).await?;
    if casehook_core::apicall::spec_of(&form, &field).is_none() {
        return Err(ApiError::not_found("api_call field"));
    }
    state
        .store
        .enqueue_jobs(vec![apicall::manual_job(caller.workspace, case.id, &field)])
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            queued: true,
            field,
        }),
    ))
}

pub(crate) fn dry_run_view(
    resolved: &Resolved,
    form: &FormSpec,
    field: Option<&str>,
    outcome: TryOutcome,
) -> DryRun {
    let (mapped, problems) = match (&outcome.failure, field) {
        (None, Some(field)) => {
            apicall::map_response(resolved, form, field, outcome.response.as_ref())
        }
        (None, None) if !resolved.mapping.rules.is_empty() => {
            let Some(response) = outcome.response.as_ref() else {
                return DryRun {
                    exchanges: exchanges(resolved, &outcome),
                    status: outcome.status,
                    response: None,
                    mapped: serde_json::Map::new(),
                    problems: vec!["the answer is not JSON; nothing mapped".into()],
                    skipped: outcome.skipped.clone(),
                    error: None,
                    would_retry: false,
                };
            };
            let m = resolved.mapping.apply(response, form);
            let problems = m
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            (m.data, problems)
        }
        _ => (serde_json::Map::new(), Vec::new()),
    };
    DryRun {
        exchanges: exchanges(resolved, &outcome),
        status: outcome.status,
        response: outcome.response.clone(),
        mapped,
        problems,
        skipped: outcome.skipped.clone(),
        error: outcome.failure.as_ref().map(|(m, _)| m.clone()),
        would_retry: outcome.failure.as_ref().is_some_and(|(_, r)| *r),
    }
}

fn exchanges(resolved: &Resolved, outcome: &TryOutcome) -> Vec<Value> {
    outcome
        .exchanges
        .iter()
        .map(|se| {
            let e = &se.exchange;
            json!({
                "step": resolved.steps.get(se.step).map(|s| s.name.as_str()).filter(|n| !n.is_empty()),
                "request": apicall::exchange_request_json(e),
                "status": e.status(),
                "response": e.response.as_ref().map(|r| json!({
                    "headers": r.headers,
                    "body_excerpt": r.body_excerpt,
                })),
                "error": e.failure().map(|f| json!({"kind": f.kind.as_str(), "message": f.message})),
                "duration_ms": e.duration.as_secs_f64() * 1000.0,
            })
        })
        .collect()
}

/// Call an API-call field's API for a case and show what would happen, writing nothing
/// (member). The call is logged as a dry run.
#[utoipa::path(post, path = "/cases/{case}/api-calls/{field}/dry-run", tag = "api-calls",
    params(("case" = String, Path, description = "case id or #number"), ("field" = String, Path)),
    responses((status = 200, body = DryRun), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn dry_run_field(
    State(state): State<AppState>,
    caller: Caller,
    Path((case, field)): Path<(String, String)>,
) -> ApiResult<Json<DryRun>> {
    caller.require(Role::Member)?;
    let (case, form) = case_and_form(&state, &caller, &case).await?;
    if casehook_core::apicall::spec_of(&form, &field).is_none() {
        return Err(ApiError::not_found("api_call field"));
    }
    let engine = &state.engine;
    let resolved = engine
        .resolve_api_call(caller.workspace, &form, &field)
        .await
        .map_err(config_error)?;
    let outcome = engine
        .try_api_call(&case, &resolved, &field, Some("manual"), true)
        .await
        .map_err(config_error)?;
    engine
        .log_exchanges(&case, Some(&field), &resolved, &outcome, true)
        .await;
    Ok(Json(dry_run_view(&resolved, &form, Some(&field), outcome)))
}

/// Call a connection's operation with a case's data and show the answer and what its
/// mapping would write, writing nothing (admin).
#[utoipa::path(post, path = "/connections/{id}/operations/{operation}/dry-run", tag = "api-calls",
    request_body = OperationDryRunBody, params(("id" = String, Path), ("operation" = String, Path)),
    responses((status = 200, body = DryRun), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn dry_run_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, operation)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<OperationDryRunBody>,
) -> ApiResult<Json<DryRun>> {
    caller.require(Role::Admin)?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let record = state.store.get_connection(caller.workspace, id).await?;
    if body.case.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "name the case whose data fills the templates: {\"case\": \"<id or #number>\"}",
        ));
    }
    let (case, form) = case_and_form(&state, &caller, &body.case).await?;
    let spec = casehook_core::apicall::ApiCallSpec::from_json(&json!({
        "connection": record.name,
        "operation": operation,
    }))
    .map_err(|e| config_error(ConfigError(e)))?;
    let engine = &state.engine;
    let resolved = engine
        .resolve_spec(caller.workspace, spec, "")
        .await
        .map_err(config_error)?;
    let outcome = engine
        .try_api_call(&case, &resolved, "", Some("manual"), true)
        .await
        .map_err(config_error)?;
    engine
        .log_exchanges(&case, None, &resolved, &outcome, true)
        .await;
    Ok(Json(dry_run_view(&resolved, &form, None, outcome)))
}

/// The log of API calls (member): every HTTP call of API-call fields, operations and dry
/// runs, with request and answer (secrets redacted), newest first.
#[utoipa::path(get, path = "/api-calls", tag = "api-calls", params(LogQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn call_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    caller.require(Role::Member)?;
    let limit = match &q.limit {
        Some(l) => query_limit("limit", l, 500)?,
        None => 50,
    };
    let filter = ApiCallLogFilter {
        case_id: q.case.as_deref().map(|c| parse_id(c, "case")).transpose()?,
        field: q.field.clone(),
        connection_id: q
            .connection
            .as_deref()
            .map(|c| parse_id(c, "connection"))
            .transpose()?,
        before: q
            .before
            .as_deref()
            .map(|c| parse_id::<ApiCallLogId>(c, "cursor"))
            .transpose()?,
        limit,
    };
    let items = state
        .store
        .list_api_call_log(caller.workspace, &filter)
        .await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id.to_string()))
        .flatten();
    Ok(Json(LogPage { items, next_cursor }))
}
