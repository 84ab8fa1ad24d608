//! API-call fields at work: which events start which calls ([`plan`]), running one call as
//! a job (render, cache, authenticate, send, judge, map, settle), running it by hand, and
//! dry runs that write nothing.
//!
//! A run never blocks or fails a case write: it is a job on the `api_calls` queue, enqueued
//! by the dispatcher in the transaction that moves its cursor past the triggering event.

pub mod auth;
mod call;
mod gates;
pub mod prepare;
mod resolve;

use std::collections::HashMap;
use std::time::Duration;

use casehook_core::apicall::{ApiCallSpec, Trigger};
use casehook_core::case::CaseRef;
use casehook_core::event::{Actor, ActorKind, Event, MAX_CHAIN};
use casehook_core::form::FormSpec;
use casehook_core::{CaseId, FormId, WorkspaceId};
use casehook_outbound::Exchange;
use casehook_store::{ApiCallOutcome, ApiCallState, ClaimedJob, NewJob, StoreError, now_micros};
use serde_json::{Map, Value, json};

use crate::{Engine, EngineError};

pub use casehook_store::API_CALL_QUEUE;

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

/// A form's API-call fields (key and parsed configuration).
pub type FormApiCalls = std::sync::Arc<[(String, ApiCallSpec)]>;

/// The API-call jobs an event starts, given its form's API-call fields.
pub fn plan(event: &Event, fields: &[(String, ApiCallSpec)]) -> Vec<NewJob> {
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
    fields
        .iter()
        .filter(|(key, spec)| {
            if !spec.settings.trigger.has(trigger) {
                return false;
            }
            if trigger == Trigger::OnCreate {
                return true;
            }
            // A field's own write never runs it again.
            if event.actor.kind == ActorKind::ApiCall && event.actor.id.as_deref() == Some(key) {
                return false;
            }
            let watched = &spec.settings.trigger_fields;
            changed.iter().any(|k| {
                if watched.is_empty() {
                    *k != key
                } else {
                    watched.contains(k)
                }
            })
        })
        .map(|(key, _)| NewJob {
            queue: API_CALL_QUEUE.into(),
            workspace: Some(event.workspace_id),
            payload: serde_json::to_value(RunRequest {
                case_id,
                field: key.clone(),
                trigger,
                event_type: Some(event.event_type.clone()),
                chain: event.actor.chain,
            })
            .unwrap_or(Value::Null),
            due_at: None,
            unique_key: None,
        })
        .collect()
}

pub use call::{StepExchange, TryOutcome};
pub use gates::Gates;
pub use resolve::{ConfigError, Resolved, ResolvedStep};

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

pub(crate) fn backoff(attempt: i64) -> Duration {
    let base = Duration::from_secs(1)
        * 2u32.saturating_pow(u32::try_from(attempt.max(1) - 1).unwrap_or(0).min(16));
    let capped = base.min(MAX_BACKOFF);
    // Full jitter in the upper half: spreads retries without making them too eager.
    capped / 2 + Duration::from_millis(rand::random_range(0..=capped.as_millis() as u64 / 2))
}

/// Cases whose scheduled runs one fan-out job enqueues.
const FANOUT_PAGE: i64 = 500;

#[derive(serde::Deserialize)]
struct Fanout {
    form_id: FormId,
    field: String,
    before_number: Option<i64>,
}

/// A scheduled run: enqueue the field's run for one page of the form's cases, and a job
/// for the next page. Pages keep one job small however many cases the form has.
async fn fan_out(
    engine: &Engine,
    job: &ClaimedJob,
    ws: WorkspaceId,
    f: Fanout,
) -> Result<(), EngineError> {
    let store = &engine.inner.store;
    let page = store
        .list_cases(
            ws,
            &casehook_store::CaseFilter {
                form_id: Some(f.form_id),
                before_number: f.before_number,
                limit: FANOUT_PAGE,
                ..casehook_store::CaseFilter::default()
            },
        )
        .await?;
    let mut jobs: Vec<NewJob> = page
        .items
        .iter()
        .map(|case| NewJob {
            queue: API_CALL_QUEUE.into(),
            workspace: Some(ws),
            payload: serde_json::to_value(RunRequest {
                case_id: case.id,
                field: f.field.clone(),
                trigger: Trigger::Scheduled,
                event_type: Some("schedule".into()),
                chain: 0,
            })
            .unwrap_or(Value::Null),
            due_at: None,
            // A case whose previous scheduled run has not finished is left out this time.
            unique_key: Some(casehook_store::scheduled_run_key(case.id, &f.field)),
        })
        .collect();
    if let Some(next) = page.next_cursor {
        jobs.push(NewJob {
            queue: API_CALL_QUEUE.into(),
            workspace: Some(ws),
            payload: casehook_store::fanout_payload(f.form_id, &f.field, Some(next)),
            due_at: None,
            unique_key: Some(casehook_store::fanout_key(f.form_id, &f.field)),
        });
    }
    // The page's runs and the next page go in with this page's end: a crash before it runs
    // the page again, and the next page takes over the run's key (see `fanout_key`).
    store.finish_job_with(job, jobs).await?;
    Ok(())
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
    if let Some(action) = job.payload.get("action") {
        return crate::action::process(engine, &job, ws, action).await;
    }
    if let Some(fanout) = job.payload.get("fanout") {
        return match serde_json::from_value::<Fanout>(fanout.clone()) {
            Ok(f) => fan_out(engine, &job, ws, f).await,
            Err(e) => {
                store
                    .bury_job(&job, &format!("unreadable fan-out: {e}"))
                    .await?;
                Ok(())
            }
        };
    }
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
        unique_key: None,
    }
}

/// The states of a case's API-call fields, by field key.
pub type States = HashMap<String, ApiCallState>;

/// Forms by id, as the dispatcher needs them for planning (keyed with the workspace).
pub type FormKey = (WorkspaceId, FormId);
