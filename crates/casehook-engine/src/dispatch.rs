//! The dispatcher: turns each workspace's event feed into deliveries.
//!
//! Why a dispatcher rather than creating deliveries in the transaction that writes the event:
//! a case write then costs the same whatever the number of endpoints, conditions are
//! evaluated outside the single writer, and a change to an endpoint never races with case
//! writes. The feed is already durable and gap-free, so nothing is lost in between: the
//! dispatch cursor moves in the same transaction as the deliveries it creates, and only if no
//! other dispatcher moved it first (see `Store::commit_dispatch`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use casehook_core::WorkspaceId;
use casehook_core::case::Case;
use casehook_core::case::CaseRef;
use casehook_core::content::envelope;
use casehook_core::event::{ActorKind, Event, MAX_CHAIN};
use casehook_store::{
    DispatchBacklog, EventFilter, FeedNews, LeasedDelivery, NewDelivery, StoreError,
};
use serde_json::Value;

use crate::deliver::{Handed, Work};
use crate::live::LiveEndpoint;
use crate::{Engine, EngineError};

/// Events read per dispatch step.
const CHUNK: i64 = 500;

/// Dispatch cursors remembered at most; past this the memory starts over (each forgotten
/// cursor costs one read the next time its workspace has events).
const MAX_CURSORS: usize = 100_000;

/// What the dispatcher keeps between rounds.
#[derive(Debug, Default)]
pub(crate) struct Dispatcher {
    /// Each workspace's dispatch cursor as this process last saw or moved it. Another
    /// process may have moved it since: the commit then conflicts, and the cursor is read
    /// again.
    cursors: HashMap<WorkspaceId, i64>,
    /// When every workspace was last looked at; `None` forces a look at all of them.
    last_sweep: Option<Instant>,
}

impl Dispatcher {
    /// The next round looks at every workspace (after an error lost the news it took).
    pub(crate) fn sweep_next(&mut self) {
        self.last_sweep = None;
    }

    fn remember(&mut self, workspace: WorkspaceId, cursor: Option<i64>) {
        match cursor {
            Some(cursor) => {
                if self.cursors.len() >= MAX_CURSORS && !self.cursors.contains_key(&workspace) {
                    self.cursors.clear();
                }
                self.cursors.insert(workspace, cursor);
            }
            None => {
                self.cursors.remove(&workspace);
            }
        }
    }

    /// The workspaces to dispatch this round. Every workspace is looked at on the first
    /// round and once per poll interval (the safety net for a missed wake-up from another
    /// process); otherwise only those the store has news of. For a workspace whose events
    /// this process wrote, the news says how far its feed goes and the cursor is known, so
    /// nothing is read.
    async fn backlog(&mut self, engine: &Engine) -> Result<Vec<DispatchBacklog>, EngineError> {
        let store = &engine.inner.store;
        let news = store.take_feed_news();
        let sweep_due = self
            .last_sweep
            .is_none_or(|at| at.elapsed() >= engine.inner.config.poll_interval);
        let news = match news {
            FeedNews::Some(news) if !sweep_due => news,
            _ => {
                self.last_sweep = Some(Instant::now());
                let backlog = store.dispatch_backlog().await?;
                for entry in &backlog {
                    self.remember(entry.workspace, Some(entry.dispatched));
                }
                return Ok(backlog);
            }
        };
        let mut backlog = Vec::with_capacity(news.len());
        for (workspace, latest) in news {
            match (latest, self.cursors.get(&workspace)) {
                (Some(latest), Some(&dispatched)) => {
                    if latest > dispatched {
                        backlog.push(DispatchBacklog {
                            workspace,
                            dispatched,
                            latest,
                        });
                    }
                }
                _ => backlog.extend(store.workspace_backlog(workspace).await?),
            }
        }
        Ok(backlog)
    }
}

/// Where a workspace's dispatch stands after a step.
struct Step {
    /// Deliveries made.
    made: usize,
    /// The cursor, when known (not after another dispatcher moved it).
    cursor: Option<i64>,
    /// Whether the feed is dispatched up to the backlog's `latest`.
    caught_up: bool,
}

/// Dispatch the feeds of the workspaces with news (or of all, see `Dispatcher::backlog`) up
/// to where they stood; returns how many deliveries were made.
///
/// Events committed after the caller marked its wake-up as seen wake it again (their news
/// is left before the wake-up), so they need no second look here: a workspace is read
/// again only while it is left behind (a full chunk, or a cursor another dispatcher moved).
pub(crate) async fn dispatch_all(
    engine: &Engine,
    dispatcher: &mut Dispatcher,
) -> Result<usize, EngineError> {
    let mut made = 0;
    let mut backlog = dispatcher.backlog(engine).await?;
    loop {
        let mut behind = Vec::new();
        for entry in backlog {
            let workspace = entry.workspace;
            let step = dispatch_workspace(engine, entry).await?;
            made += step.made;
            dispatcher.remember(workspace, step.cursor);
            if !step.caught_up {
                behind.push(workspace);
            }
        }
        if behind.is_empty() {
            return Ok(made);
        }
        backlog = Vec::with_capacity(behind.len());
        for workspace in behind {
            backlog.extend(engine.inner.store.workspace_backlog(workspace).await?);
        }
    }
}

/// Dispatch one chunk of a workspace's feed.
async fn dispatch_workspace(
    engine: &Engine,
    backlog: DispatchBacklog,
) -> Result<Step, EngineError> {
    let ws = backlog.workspace;
    let actions = engine.actions(ws).await?;
    let read = async |with_data: bool| {
        let filter = EventFilter {
            after: Some(backlog.dispatched),
            limit: CHUNK,
            without_data: !with_data,
            ..EventFilter::default()
        };
        engine.inner.store.list_events(ws, &filter).await
    };
    // Routing needs an event's data only for conditions and for the envelope an action
    // job carries; without either, the largest column is neither read nor decoded. Whether
    // an endpoint has a condition is taken from the previous round's list (with the data
    // when there was none lately), and checked against this round's below.
    // When the deliveries can go to this process's workers with their events in hand
    // (see the lease below), the data is read here once rather than by each worker.
    let mut with_data = !actions.is_empty()
        || engine.inner.endpoints.had_conditions(ws).unwrap_or(true)
        || engine.inner.slots.available_permits() > 0;
    let mut events = read(with_data).await?;
    let Some(last) = events.last().map(|e| e.sequence) else {
        // Nothing visible past the cursor yet: the next wake-up (or poll) looks again.
        return Ok(Step {
            made: 0,
            cursor: Some(backlog.dispatched),
            caught_up: true,
        });
    };
    let caught_up = last >= backlog.latest;
    // The events are routed to the endpoints as listed *after* they were read. Listed
    // before, an endpoint created between the two reads was missing from the list while an
    // event written after its creation was in the read, and that event never reached it.
    // Listed after, every endpoint committed before one of these events is there.
    let endpoints = engine.inner.endpoints.list(ws).await?;
    if !with_data && endpoints.iter().any(|e| e.condition.is_some()) {
        events = read(true).await?;
        events.retain(|e| e.sequence <= last);
        with_data = true;
    }
    let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    let mut plan = Vec::new();
    let mut jobs = Vec::new();
    for event in &events {
        if actions
            .iter()
            .any(|a| a.config.subscriptions.matches(event))
        {
            let case = if actions.iter().any(|a| a.condition.is_some()) {
                case_of(engine, event).await?
            } else {
                None
            };
            jobs.extend(crate::action::plan(&actions, event, case.as_ref()));
        }
        if let Some(form) = event.form_id
            && matches!(event.event_type.as_str(), "case.created" | "case.updated")
        {
            match engine.api_call_fields(ws, form).await {
                Ok(fields) => jobs.extend(crate::apicall::plan(event, &fields)),
                Err(EngineError::Store(StoreError::NotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        if event.skip_triggers {
            continue;
        }
        if event.actor.chain > MAX_CHAIN {
            tracing::warn!(
                sequence = event.sequence,
                event = %event.id,
                chain = event.actor.chain,
                "not sent to any endpoint: it comes from a chain of {} write-backs (loop guard)",
                event.actor.chain
            );
            continue;
        }
        let wanting: Vec<&Arc<LiveEndpoint>> = endpoints
            .iter()
            .filter(|e| wants_by_config(e, event))
            .collect();
        if wanting.is_empty() {
            continue;
        }
        // What a condition sees is built only when some endpoint has one.
        let inputs = if wanting.iter().any(|e| e.condition.is_some()) {
            Some((envelope(event), case_of(engine, event).await?))
        } else {
            None
        };
        for endpoint in wanting {
            let passes = match &inputs {
                Some((envelope, case)) => {
                    passes_condition(endpoint, event, envelope, case.as_ref())
                }
                None => true,
            };
            if passes {
                plan.push(NewDelivery {
                    endpoint_id: endpoint.record.id,
                    event_id: event.id,
                    event_sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    case_id: event.case_id,
                });
            }
        }
    }
    let planned = plan.len();
    // When this process's workers have room for all of them, the deliveries come back
    // leased to us and go straight to the workers.
    let lease = (planned > 0 && planned <= engine.inner.slots.available_permits())
        .then_some(engine.inner.config.lease);
    match engine
        .inner
        .store
        .commit_dispatch(ws, backlog.dispatched, last, plan, jobs, lease)
        .await
    {
        Ok(dispatched) => {
            metrics::counter!("casehook_deliveries_created_total").increment(planned as u64);
            for LeasedDelivery { job, delivery } in dispatched.leased {
                let work = with_data
                    .then(|| event_at(&events, delivery.event_sequence))
                    .flatten()
                    .map(|event| Work { delivery, event });
                // Only fails when the workers have stopped (shutdown): give the job back.
                if let Err(unsent) = engine.inner.handoff.send(Handed { job, work }) {
                    crate::release(engine, &unsent.0.job).await;
                }
            }
            Ok(Step {
                made: planned,
                cursor: Some(last),
                caught_up,
            })
        }
        // Another dispatcher (another process) took these events; read the backlog again.
        Err(StoreError::Conflict(_)) => Ok(Step {
            made: 0,
            cursor: None,
            caught_up: false,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The event of a sequence number among events read in order.
fn event_at(events: &[Arc<Event>], sequence: i64) -> Option<Arc<Event>> {
    let at = events
        .binary_search_by_key(&sequence, |e| e.sequence)
        .ok()?;
    Some(events[at].clone())
}

/// "When", the enabled switch, and the write-back guard: an endpoint never receives the
/// `case.updated` its own response mapping caused, and endpoints created after an event do
/// not receive it.
fn wants_by_config(endpoint: &LiveEndpoint, event: &Event) -> bool {
    endpoint.record.enabled
        && endpoint.record.created_at <= event.occurred_at
        && endpoint.config.subscriptions.matches(event)
        && !(event.actor.kind == ActorKind::Endpoint
            && event.actor.id.as_deref() == Some(endpoint.record.id.to_string().as_str()))
}

/// The case as the condition sees it: the snapshot a case event carries, or (for custom
/// events about a case) the case as it is now.
async fn case_of(engine: &Engine, event: &Event) -> Result<Option<Value>, EngineError> {
    if event.event_type.starts_with("case.") {
        return Ok(Some(event.data.clone()));
    }
    let Some(id) = event.case_id else {
        return Ok(None);
    };
    match engine
        .inner
        .store
        .get_case(event.workspace_id, CaseRef::Id(id))
        .await
    {
        Ok(case) => Ok(Some(case_json(&case))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn case_json(case: &Case) -> Value {
    serde_json::to_value(case).unwrap_or(Value::Null)
}

/// "If". A condition that cannot be evaluated for this event (a missing field, a type
/// mismatch) sends nothing and says why in the log.
fn passes_condition(
    endpoint: &LiveEndpoint,
    event: &Event,
    envelope: &Value,
    case: Option<&Value>,
) -> bool {
    let Some(condition) = &endpoint.condition else {
        return true;
    };
    match condition.evaluate(envelope, case) {
        Ok(pass) => pass,
        Err(e) => {
            tracing::warn!(
                endpoint = %endpoint.record.id,
                event = %event.id,
                sequence = event.sequence,
                error = %e,
                "condition could not be evaluated; the event is not sent to this endpoint"
            );
            metrics::counter!("casehook_condition_errors_total").increment(1);
            false
        }
    }
}
