//! API-call fields at work: which events start which calls ([`plan`]), running one call as
//! a job (render, cache, authenticate, send, judge, map, settle), running it by hand, and
//! dry runs that write nothing.
//!
//! A run never blocks or fails a case write: it is a job on the `api_calls` queue, enqueued
//! by the dispatcher in the transaction that moves its cursor past the triggering event.

pub mod auth;
pub mod prepare;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use casehook_core::apicall::{ApiCallSpec, Source, Trigger};
use casehook_core::case::{Case, CaseRef};
use casehook_core::connection::{RequestSpec, first_failure};
use casehook_core::event::{Actor, ActorKind, Event, MAX_CHAIN};
use casehook_core::form::{FieldType, FormSpec};
use casehook_core::{CaseId, FormId, WorkspaceId};
use casehook_outbound::Exchange;
use casehook_store::{
    ApiCallOutcome, ApiCallState, ClaimedJob, NewApiCallLog, NewJob, StoreError, now_micros,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{Engine, EngineError};
use prepare::{LiveConnection, Prepared};

/// The queue API-call runs wait on.
pub const API_CALL_QUEUE: &str = "api_calls";
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a job asks for.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    pub case_id: CaseId,
    pub field: String,
    pub trigger: Trigger,
    /// The triggering event's type, for `{event.type}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The write-back chain of the triggering change.
    #[serde(default)]
    pub chain: u8,
}

/// The API-call jobs an event starts, given its form.
pub fn plan(event: &Event, form: &FormSpec) -> Vec<NewJob> {
    if event.skip_triggers || event.actor.chain > MAX_CHAIN {
        return Vec::new();
    }
    let Some(case_id) = event.case_id else {
        return Vec::new();
    };
    let trigger = match event.event_type.as_str() {
        "case.created" => Trigger::OnCreate,
        "case.updated" => Trigger::OnUpdate,
        _ => return Vec::new(),
    };
    let changed: Vec<&String> = event
        .changes
        .as_ref()
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    form.fields
        .iter()
        .filter(|f| f.field_type == FieldType::ApiCall)
        .filter_map(|f| Some((f, casehook_core::apicall::spec_of(form, &f.key)?)))
        .filter(|(f, spec)| {
            if !spec.settings.trigger.has(trigger) {
                return false;
            }
            if trigger == Trigger::OnCreate {
                return true;
            }
            // A field's own write never runs it again.
            if event.actor.kind == ActorKind::ApiCall && event.actor.id.as_deref() == Some(&f.key) {
                return false;
            }
            let watched = &spec.settings.trigger_fields;
            changed.iter().any(|k| {
                if watched.is_empty() {
                    **k != f.key
                } else {
                    watched.contains(k)
                }
            })
        })
        .map(|(f, _)| NewJob {
            queue: API_CALL_QUEUE.into(),
            workspace: Some(event.workspace_id),
            payload: serde_json::to_value(RunRequest {
                case_id,
                field: f.key.clone(),
                trigger,
                event_type: Some(event.event_type.clone()),
                chain: event.actor.chain,
            })
            .unwrap_or(Value::Null),
            due_at: None,
        })
        .collect()
}

/// The request an API-call field makes, resolved: its template, its connection, and the
/// mapping that applies.
#[derive(Debug)]
pub struct Resolved {
    pub spec: ApiCallSpec,
    pub request: RequestSpec,
    pub connection: Option<Arc<LiveConnection>>,
    pub mapping: casehook_core::mapping::ResponseMapping,
}

/// Why a call could not even be attempted: a configuration problem, never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Engine {
    /// Resolve an API-call field of a form: inline, or through a connection's operation.
    pub async fn resolve_api_call(
        &self,
        workspace: WorkspaceId,
        form: &FormSpec,
        field: &str,
    ) -> Result<Resolved, ConfigError> {
        let spec = casehook_core::apicall::spec_of(form, field).ok_or_else(|| {
            ConfigError(format!("`{field}` is not an API-call field of the form"))
        })?;
        self.resolve_spec(workspace, spec, field).await
    }

    /// Resolve a configuration: its request, connection and mapping (into `field`).
    pub async fn resolve_spec(
        &self,
        workspace: WorkspaceId,
        spec: ApiCallSpec,
        field: &str,
    ) -> Result<Resolved, ConfigError> {
        let (request, connection, op_mapping) = match &spec.source {
            Source::Inline { api_config } => {
                let connection = match &api_config.connection {
                    Some(name) => Some(self.connection(workspace, name).await?),
                    None => None,
                };
                (api_config.clone(), connection, None)
            }
            Source::Operation {
                connection,
                operation,
            } => {
                let live = self.connection(workspace, connection).await?;
                let op = live
                    .config
                    .operations
                    .get(operation)
                    .cloned()
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "the connection `{connection}` has no operation `{operation}`"
                        ))
                    })?;
                let mapping = op.response_mapping.clone();
                (op, Some(live), mapping)
            }
        };
        let mapping = spec.mapping(field, op_mapping.as_ref());
        Ok(Resolved {
            spec,
            request,
            connection,
            mapping,
        })
    }

    async fn connection(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<Arc<LiveConnection>, ConfigError> {
        let record = match self.inner.store.find_connection(workspace, name).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => {
                return Err(ConfigError(format!("there is no connection `{name}`")));
            }
            Err(e) => return Err(ConfigError(format!("loading connection `{name}`: {e}"))),
        };
        LiveConnection::open(record, self.keys())
            .map(Arc::new)
            .map_err(ConfigError)
    }
}

/// What one try came to.
pub struct TryOutcome {
    /// The JSON answer, when there is one.
    pub response: Option<Value>,
    pub status: Option<u16>,
    pub cached: bool,
    /// `None` on success.
    pub failure: Option<(String, bool)>,
    pub duration_ms: i64,
    pub exchanges: Vec<Exchange>,
    pub prepared_sensitive: Vec<String>,
}

impl std::fmt::Debug for TryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryOutcome")
            .field("status", &self.status)
            .field("cached", &self.cached)
            .field("failure", &self.failure)
            .field("exchanges", &self.exchanges.len())
            .finish_non_exhaustive()
    }
}

/// The key of a rendered request in the response cache.
fn cache_key(workspace: WorkspaceId, field: &str, p: &Prepared) -> String {
    let mut h = Sha256::new();
    h.update(workspace.as_uuid().as_bytes());
    h.update(field.as_bytes());
    h.update(p.request.method.as_str().as_bytes());
    h.update([0]);
    h.update(p.request.url.as_bytes());
    for (n, v) in &p.request.headers {
        h.update([0]);
        h.update(n.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    h.update([1]);
    h.update(p.request.body.as_deref().unwrap_or_default());
    hex::encode(h.finalize())
}

fn judge(resolved: &Resolved, exchange: &Exchange) -> (Option<Value>, Option<(String, bool)>) {
    let status = exchange.status();
    let body: Option<Value> = exchange
        .full_body()
        .ok()
        .and_then(|b| serde_json::from_slice(b).ok());
    if let Some(status) = status
        && let Some(f) = first_failure(&resolved.request.error_rules, status, body.as_ref())
    {
        return (body, Some((f.message, f.retry)));
    }
    if exchange.is_success() {
        return (body, None);
    }
    let failure = exchange.failure();
    let retry = match status {
        Some(s) => matches!(s, 408 | 425 | 429) || s >= 500,
        None => failure.as_ref().is_some_and(|f| f.is_retryable()),
    };
    let message = failure.map_or_else(|| "the call failed".to_owned(), |f| f.message);
    (body, Some((message, retry)))
}

impl Engine {
    /// Make the call for `case` once (from the cache when allowed), without writing the
    /// result. `dry_run` skips the cache.
    pub async fn try_api_call(
        &self,
        case: &Case,
        resolved: &Resolved,
        field: &str,
        event_type: Option<&str>,
        dry_run: bool,
    ) -> Result<TryOutcome, ConfigError> {
        let ws = case.workspace_id;
        let connection = resolved.connection.as_deref();
        let names = prepare::needed_secrets(&resolved.request, connection);
        let secrets = prepare::load_secrets(&self.inner.store, self.keys(), ws, &names)
            .await
            .map_err(|e| ConfigError(e.0))?;
        let values = prepare::scope_values(
            case,
            event_type.map(|t| json!({"type": t})).as_ref(),
            &json!({}),
        );
        let timeout = Duration::from_millis(resolved.spec.settings.timeout);
        let prepared = prepare::prepare(&resolved.request, connection, &values, &secrets, timeout)
            .map_err(|e| ConfigError(e.0))?;
        let cache_secs = resolved.spec.settings.cache_duration;
        let key = cache_key(ws, field, &prepared);
        if cache_secs > 0 && !dry_run {
            match self.inner.store.cached_response(&key).await {
                Ok(Some(hit)) => {
                    let response: Option<Value> = serde_json::from_slice(&hit.body).ok();
                    return Ok(TryOutcome {
                        response: response
                            .map(|r| casehook_outbound::redact_json(&r, &prepared.sensitive)),
                        status: u16::try_from(hit.status).ok(),
                        cached: true,
                        failure: None,
                        duration_ms: 0,
                        exchanges: Vec::new(),
                        prepared_sensitive: prepared.sensitive,
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "response cache unreadable; calling"),
            }
        }
        let sent = self
            .inner
            .auth
            .send(
                &self.inner.client,
                prepared.request.clone(),
                &prepared.credentials,
            )
            .await;
        let duration_ms = sent
            .exchanges
            .iter()
            .map(|e| e.duration.as_millis() as i64)
            .sum();
        let Some(last) = sent.last() else {
            return Err(ConfigError("no request was made".into()));
        };
        let (response, failure) = judge(resolved, last);
        // An API that echoes a credential (a secret, or a token obtained for this call)
        // must not carry it into case data or answers.
        let mut sensitive = prepared.sensitive;
        sensitive.extend(sent.obtained.iter().cloned());
        let response = response.map(|r| casehook_outbound::redact_json(&r, &sensitive));
        if failure.is_none()
            && cache_secs > 0
            && !dry_run
            && let Ok(body) = last.full_body()
        {
            // A hit is redacted with the secrets only: cache the redacted answer.
            let body = response
                .as_ref()
                .map_or_else(|| body.to_vec(), |r| r.to_string().into_bytes());
            let expires = now_micros() + i64::try_from(cache_secs).unwrap_or(0) * 1_000_000;
            let status = i64::from(last.status().unwrap_or(200));
            if let Err(e) = self
                .inner
                .store
                .cache_response(key, ws, status, body, expires)
                .await
            {
                tracing::warn!(error = %e, "could not cache the response");
            }
        }
        Ok(TryOutcome {
            response,
            status: last.status(),
            cached: false,
            failure,
            duration_ms,
            exchanges: sent.exchanges,
            prepared_sensitive: sensitive,
        })
    }

    /// Log every exchange of a try.
    pub async fn log_exchanges(
        &self,
        case: &Case,
        field: Option<&str>,
        resolved: &Resolved,
        outcome: &TryOutcome,
        dry_run: bool,
    ) {
        let count = outcome.exchanges.len();
        for (i, exchange) in outcome.exchanges.iter().enumerate() {
            let verdict = match (&outcome.failure, i + 1 == count) {
                (None, true) => "ok",
                (Some((_, true)), true) => "retry",
                (Some(_), true) => "failed",
                // Token requests and challenges on the way.
                (_, false) => {
                    if exchange.is_success() {
                        "ok"
                    } else {
                        "failed"
                    }
                }
            };
            let entry = NewApiCallLog {
                workspace: case.workspace_id,
                case_id: Some(case.id),
                field: field.map(str::to_owned),
                connection_id: resolved.connection.as_ref().map(|c| c.record.id),
                operation: match &resolved.spec.source {
                    Source::Operation { operation, .. } => Some(operation.clone()),
                    Source::Inline { .. } => None,
                },
                dry_run,
                started_at: now_micros() - exchange.duration.as_micros() as i64,
                duration_us: exchange.duration.as_micros() as i64,
                request: exchange_request_json(exchange),
                status: exchange.status().map(i64::from),
                response: exchange.response.as_ref().map(|r| {
                    json!({
                        "headers": r.headers,
                        "body_excerpt": r.body_excerpt,
                        "truncated": r.truncated,
                    })
                }),
                error_kind: exchange.failure().map(|f| f.kind.as_str().to_owned()),
                error: exchange.failure().map(|f| f.message),
                verdict: verdict.to_owned(),
            };
            if let Err(e) = self.inner.store.log_api_call(entry).await {
                tracing::warn!(error = %e, "could not log an API call");
            }
        }
    }
}

/// The recorded (redacted) request as JSON.
pub fn exchange_request_json(exchange: &Exchange) -> Value {
    json!({
        "method": exchange.request.method.as_str(),
        "url": exchange.request.url,
        "headers": exchange.request.headers,
        "body_excerpt": exchange.request.body_excerpt,
        "body_len": exchange.request.body_len,
    })
}

/// Map an answer into the field (and others): the mapping's rules, or the whole answer into
/// the field itself.
pub fn map_response(
    resolved: &Resolved,
    form: &FormSpec,
    field: &str,
    response: Option<&Value>,
) -> (Map<String, Value>, Vec<String>) {
    let Some(response) = response else {
        return (
            Map::new(),
            vec!["the answer is not JSON; nothing mapped".into()],
        );
    };
    if resolved.mapping.rules.is_empty() {
        let mut data = Map::new();
        data.insert(field.to_owned(), response.clone());
        return (data, Vec::new());
    }
    let mapped = resolved.mapping.apply(response, form);
    let problems = mapped
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    (mapped.data, problems)
}

fn backoff(attempt: i64) -> Duration {
    let base = Duration::from_secs(1)
        * 2u32.saturating_pow(u32::try_from(attempt.max(1) - 1).unwrap_or(0).min(16));
    let capped = base.min(MAX_BACKOFF);
    // Full jitter in the upper half: spreads retries without making them too eager.
    capped / 2 + Duration::from_millis(rand::random_range(0..=capped.as_millis() as u64 / 2))
}

/// Process one claimed API-call job to its end: settled, retried later, or dropped.
pub(crate) async fn process(engine: &Engine, job: ClaimedJob) -> Result<(), EngineError> {
    let store = &engine.inner.store;
    let Some(ws) = job.workspace else {
        store
            .bury_job(&job, "an API-call job without a workspace")
            .await?;
        return Ok(());
    };
    let run: RunRequest = match serde_json::from_value(job.payload.clone()) {
        Ok(r) => r,
        Err(e) => {
            store
                .bury_job(&job, &format!("unreadable payload: {e}"))
                .await?;
            return Ok(());
        }
    };
    let case = match store.get_case(ws, CaseRef::Id(run.case_id)).await {
        Ok(c) => c,
        Err(StoreError::NotFound(_)) => {
            store.complete_job(&job).await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let form = store.get_form(ws, case.form_id).await?;
    let actor = Actor {
        kind: ActorKind::ApiCall,
        id: Some(run.field.clone()),
        name: format!("api call {}", run.field),
        chain: run.chain.saturating_add(1),
    };
    let settle = |data: Map<String, Value>,
                  error: Option<String>,
                  attempts: i64,
                  duration_ms: i64,
                  cached: bool,
                  detail: Option<Value>| ApiCallOutcome {
        workspace: ws,
        case_id: case.id,
        field: run.field.clone(),
        data,
        form_version: form.version,
        actor: actor.clone(),
        error,
        attempts,
        duration_ms,
        cached,
        detail,
    };
    let resolved = match engine.resolve_api_call(ws, &form.spec, &run.field).await {
        Ok(r) => r,
        Err(ConfigError(message)) => {
            if casehook_core::apicall::spec_of(&form.spec, &run.field).is_none() {
                // The field is gone from the form: nothing to record.
                store.complete_job(&job).await?;
                return Ok(());
            }
            finish(
                engine,
                &job,
                settle(Map::new(), Some(message), job.attempts, 0, false, None),
            )
            .await?;
            return Ok(());
        }
    };
    let outcome = match engine
        .try_api_call(
            &case,
            &resolved,
            &run.field,
            run.event_type.as_deref(),
            false,
        )
        .await
    {
        Ok(o) => o,
        Err(ConfigError(message)) => {
            finish(
                engine,
                &job,
                settle(Map::new(), Some(message), job.attempts, 0, false, None),
            )
            .await?;
            return Ok(());
        }
    };
    engine
        .log_exchanges(&case, Some(&run.field), &resolved, &outcome, false)
        .await;
    let detail = outcome.status.map(|s| json!({"status": s}));
    match &outcome.failure {
        None => {
            let (data, problems) =
                map_response(&resolved, &form.spec, &run.field, outcome.response.as_ref());
            let detail = if problems.is_empty() {
                detail
            } else {
                Some(json!({"status": outcome.status, "mapping_problems": problems}))
            };
            finish(
                engine,
                &job,
                settle(
                    data,
                    None,
                    job.attempts,
                    outcome.duration_ms,
                    outcome.cached,
                    detail,
                ),
            )
            .await
        }
        Some((message, retry)) => {
            let allowed = i64::from(resolved.spec.settings.retry) + 1;
            if *retry && job.attempts < allowed {
                let due = now_micros() + backoff(job.attempts).as_micros() as i64;
                store.retry_job(&job, due, message).await?;
                return Ok(());
            }
            finish(
                engine,
                &job,
                settle(
                    Map::new(),
                    Some(message.clone()),
                    job.attempts,
                    outcome.duration_ms,
                    false,
                    detail,
                ),
            )
            .await
        }
    }
}

async fn finish(
    engine: &Engine,
    job: &ClaimedJob,
    outcome: ApiCallOutcome,
) -> Result<(), EngineError> {
    let store = &engine.inner.store;
    match store.settle_api_call(outcome).await {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        // The form changed meanwhile: the next run maps against the new form.
        Err(StoreError::FormChanged) => {
            store
                .retry_job(job, now_micros(), "the form changed; mapping again")
                .await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    store.complete_job(job).await?;
    Ok(())
}

/// A manual run's job.
pub fn manual_job(workspace: WorkspaceId, case: CaseId, field: &str) -> NewJob {
    NewJob {
        queue: API_CALL_QUEUE.into(),
        workspace: Some(workspace),
        payload: serde_json::to_value(RunRequest {
            case_id: case,
            field: field.to_owned(),
            trigger: Trigger::Manual,
            event_type: None,
            chain: 0,
        })
        .unwrap_or(Value::Null),
        due_at: None,
    }
}

/// The states of a case's API-call fields, by field key.
pub type States = HashMap<String, ApiCallState>;

/// Forms by id, as the dispatcher needs them for planning (keyed with the workspace).
pub type FormKey = (WorkspaceId, FormId);
