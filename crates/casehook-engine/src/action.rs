//! Actions at work: which events start which actions (their "When" and "If", the way
//! endpoints choose events), and running one: the call (request, operation or sequence)
//! made like an API-call field's, its answer mapped into the case, `api_call.failed` on a
//! final failure.

use std::sync::Arc;
use std::time::Duration;

use casehook_core::action::ActionConfig;
use casehook_core::case::{Case, CaseRef};
use casehook_core::condition::Condition;
use casehook_core::content::envelope;
use casehook_core::event::{Actor, ActorKind, Event, MAX_CHAIN};
use casehook_core::{ActionId, CaseId, WorkspaceId};
use casehook_store::{ActionRecord, ClaimedJob, NewJob, StoreError, now_micros};
use serde_json::{Map, Value, json};

use crate::apicall::{API_CALL_QUEUE, ConfigError};
use crate::{Engine, EngineError};

/// How long a workspace's loaded actions are reused.
const TTL: Duration = Duration::from_secs(1);

/// An action ready to match events.
#[derive(Debug)]
pub struct LiveAction {
    pub record: ActionRecord,
    pub config: ActionConfig,
    pub condition: Option<Condition>,
}

impl LiveAction {
    fn open(record: ActionRecord) -> Result<Self, String> {
        let config = ActionConfig::from_json(&record.config).map_err(|problems| {
            let first = problems
                .first()
                .map(|p| p.message.clone())
                .unwrap_or_default();
            format!("action `{}`: stored configuration: {first}", record.name)
        })?;
        let condition = match config.condition.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(source) => Some(
                Condition::compile(source)
                    .map_err(|e| format!("action `{}`: condition: {e}", record.name))?,
            ),
        };
        Ok(Self {
            record,
            config,
            condition,
        })
    }

    /// The actor of the action's writes and events.
    pub fn actor(&self, chain: u8) -> Actor {
        Actor {
            kind: ActorKind::ApiCall,
            id: Some(format!("action:{}", self.record.id)),
            name: format!("action {}", self.record.name),
            chain,
        }
    }
}

/// The workspace's enabled actions, loaded at most once a second.
#[derive(Debug)]
pub struct ActionCache {
    loaded: moka::sync::Cache<WorkspaceId, Arc<Vec<Arc<LiveAction>>>>,
}

impl Default for ActionCache {
    fn default() -> Self {
        Self {
            loaded: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
        }
    }
}

impl Engine {
    pub(crate) async fn actions(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Arc<Vec<Arc<LiveAction>>>, EngineError> {
        if let Some(list) = self.inner.actions.loaded.get(&workspace) {
            return Ok(list);
        }
        let mut live = Vec::new();
        for record in self.inner.store.list_actions(workspace).await? {
            if !record.enabled {
                continue;
            }
            match LiveAction::open(record) {
                Ok(a) => live.push(Arc::new(a)),
                Err(e) => tracing::error!(error = %e, "an action cannot be used"),
            }
        }
        let list = Arc::new(live);
        self.inner.actions.loaded.insert(workspace, list.clone());
        Ok(list)
    }

    /// Forget the workspace's loaded actions (after a change through the API).
    pub fn forget_actions(&self, workspace: WorkspaceId) {
        self.inner.actions.loaded.invalidate(&workspace);
    }
}

/// What an action job asks for.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct ActionRun {
    action: ActionId,
    case_id: Option<CaseId>,
    event_type: String,
    event: Value,
    chain: u8,
}

/// The action jobs an event starts. `case` is the case as conditions see it.
pub(crate) fn plan(
    actions: &[Arc<LiveAction>],
    event: &Event,
    case: Option<&Value>,
) -> Vec<NewJob> {
    if event.skip_triggers || event.actor.chain > MAX_CHAIN {
        return Vec::new();
    }
    let envelope = envelope(event);
    actions
        .iter()
        .filter(|a| a.record.created_at <= event.occurred_at)
        .filter(|a| a.config.subscriptions.matches(event))
        // An action never reacts to what it did itself.
        .filter(|a| a.actor(0).id != event.actor.id)
        .filter(|a| match &a.condition {
            None => true,
            Some(c) => c.evaluate(&envelope, case).unwrap_or_else(|e| {
                tracing::warn!(action = %a.record.id, event = %event.id, error = %e, "action condition could not be evaluated; not run");
                false
            }),
        })
        .map(|a| NewJob {
            queue: API_CALL_QUEUE.into(),
            workspace: Some(event.workspace_id),
            payload: json!({"action": ActionRun {
                action: a.record.id,
                case_id: event.case_id,
                event_type: event.event_type.clone(),
                event: envelope.clone(),
                chain: event.actor.chain,
            }}),
            due_at: None,
            unique_key: None,
        })
        .collect()
}

/// Run one action job to its end.
pub(crate) async fn process(
    engine: &Engine,
    job: &ClaimedJob,
    ws: WorkspaceId,
    payload: &Value,
) -> Result<(), EngineError> {
    let store = &engine.inner.store;
    let run: ActionRun = match serde_json::from_value(payload.clone()) {
        Ok(r) => r,
        Err(e) => {
            store
                .bury_job(job, &format!("unreadable action run: {e}"))
                .await?;
            return Ok(());
        }
    };
    let record = match store.get_action(ws, run.action).await {
        Ok(r) if r.enabled => r,
        Ok(_) | Err(StoreError::NotFound(_)) => {
            store.complete_job(job).await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let action = match LiveAction::open(record) {
        Ok(a) => a,
        Err(e) => {
            store.bury_job(job, &e).await?;
            return Ok(());
        }
    };
    let case = match run.case_id {
        Some(id) => match store.get_case(ws, CaseRef::Id(id)).await {
            Ok(c) => Some(c),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    // An event without a case (a custom event) still runs, with an empty case.
    let case = case.unwrap_or_else(|| empty_case(ws));
    let actor = action.actor(run.chain.saturating_add(1));
    let outcome = async {
        let resolved = engine
            .resolve_spec(ws, action.config.call.clone(), "")
            .await?;
        let outcome = engine
            .try_api_call(&case, &resolved, "", Some(&run.event_type), false)
            .await?;
        Ok::<_, ConfigError>((resolved, outcome))
    }
    .await;
    let (resolved, outcome) = match outcome {
        Ok(o) => o,
        Err(ConfigError(message)) => {
            fail(engine, job, &action, &case, &actor, &message).await?;
            return Ok(());
        }
    };
    engine
        .log_exchanges(&case, None, &resolved, &outcome, false)
        .await;
    match &outcome.failure {
        None => {
            let data = match (&outcome.response, resolved.mapping.rules.is_empty()) {
                (Some(response), false) if run.case_id.is_some() => {
                    let form = store.get_form(ws, case.form_id).await?;
                    let mapped = resolved.mapping.apply(response, &form.spec);
                    for p in &mapped.problems {
                        tracing::info!(action = %action.record.id, field = %p.field, problem = %p.message, "answer value not mapped");
                    }
                    Some((mapped.data, form.version))
                }
                _ => None,
            };
            if let Some((data, form_version)) = data.filter(|(d, _)| !d.is_empty()) {
                write_back(engine, ws, &case, data, form_version, actor).await?;
            }
            store.complete_job(job).await?;
        }
        Some((message, retry)) => {
            let allowed = i64::from(action.config.call.settings.retry) + 1;
            if *retry && job.attempts < allowed {
                let due = now_micros() + crate::apicall::backoff(job.attempts).as_micros() as i64;
                store.retry_job(job, due, message).await?;
                return Ok(());
            }
            fail(engine, job, &action, &case, &actor, message).await?;
        }
    }
    Ok(())
}

async fn write_back(
    engine: &Engine,
    ws: WorkspaceId,
    case: &Case,
    data: Map<String, Value>,
    form_version: i64,
    actor: Actor,
) -> Result<(), EngineError> {
    let patch = casehook_store::CasePatch {
        data,
        form_version: Some(form_version),
        ..casehook_store::CasePatch::default()
    };
    match engine
        .inner
        .store
        .update_case(ws, case.id, patch, None, actor, false)
        .await
    {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => {
            tracing::warn!(case = %case.id, error = %e, "an action's answer could not be written back");
            Ok(())
        }
    }
}

/// A final failure: `api_call.failed` names the action, and the job ends.
async fn fail(
    engine: &Engine,
    job: &ClaimedJob,
    action: &LiveAction,
    case: &Case,
    actor: &Actor,
    message: &str,
) -> Result<(), EngineError> {
    let event = casehook_core::event::NewEvent {
        event_type: "api_call.failed".into(),
        case_id: (case.number > 0).then_some(case.id),
        form_id: (case.number > 0).then_some(case.form_id),
        actor: actor.clone(),
        data: json!({"action": action.record.name, "error": message, "attempts": job.attempts}),
        changes: None,
        skip_triggers: false,
    };
    match engine
        .inner
        .store
        .emit_event(action.record.workspace_id, event)
        .await
    {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    engine.inner.store.complete_job(job).await?;
    Ok(())
}

/// The case templates see when an event has none.
fn empty_case(ws: WorkspaceId) -> Case {
    let now = time::OffsetDateTime::now_utc();
    Case {
        id: CaseId(uuid::Uuid::nil()),
        workspace_id: ws,
        form_id: casehook_core::FormId(uuid::Uuid::nil()),
        number: 0,
        status: String::new(),
        data: Map::new(),
        external_refs: Default::default(),
        version: 0,
        created_by: Actor::system(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}
