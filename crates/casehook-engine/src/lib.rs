//! casehook's workers: the dispatcher that turns committed events into deliveries, and the
//! delivery workers that send them, retry them and record every attempt.
//!
//! Both are woken by the store the moment new work commits in this process, and poll at a
//! slow pace besides (work committed by other processes on a shared PostgreSQL, retries that
//! come due, leases that run out). Several processes can run workers on one database: the
//! dispatch cursor and the job leases keep them from doing the same work twice.

pub mod action;
pub mod apicall;
mod deliver;
mod dispatch;
mod housekeeping;
pub mod live;
pub mod peers;
mod writeback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::deliver::Handed;
use casehook_core::sealed::MasterKey;
use casehook_outbound::Client;
use casehook_store::{ClaimedJob, DELIVERY_QUEUE, EVENTS_WAKE, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

pub use deliver::{message_id, test_send};
pub use live::{EndpointCache, LiveEndpoint, auth_context, secret_context};

/// What can stop a unit of work.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Endpoint(String),
}

/// How the workers run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Deliveries in flight at once in this process.
    pub delivery_concurrency: usize,
    /// Jobs claimed per round.
    pub claim_batch: i64,
    /// How often to look for work nobody woke us for.
    pub poll_interval: Duration,
    /// How long a claimed delivery stays ours; past it, another worker may take it (a worker
    /// that died mid-send). Longer than the longest endpoint timeout.
    pub lease: Duration,
    /// How long inbound hooks' request log entries are kept.
    pub inbound_log_retention: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            delivery_concurrency: 256,
            claim_batch: 64,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(150),
            inbound_log_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The workers' shared state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    client: Client,
    endpoints: EndpointCache,
    config: EngineConfig,
    /// Delivery slots of this process: a delivery holds one while it is being processed.
    slots: Arc<Semaphore>,
    /// Deliveries the dispatcher created already leased to this process, on their way to
    /// the workers (no claim round in between).
    handoff: mpsc::UnboundedSender<deliver::Handed>,
    handed: Mutex<Option<mpsc::UnboundedReceiver<deliver::Handed>>>,
    /// OAuth 2.0 tokens and Digest nonces of API connections.
    auth: apicall::auth::AuthState,
    /// Connections' own clients (TLS settings) and rate limiters.
    gates: apicall::Gates,
    /// Actions by workspace, briefly reused.
    actions: action::ActionCache,
    /// Forms' API-call fields for planning runs, briefly reused.
    forms: moka::sync::Cache<casehook_core::FormId, apicall::FormApiCalls>,
    /// The processes sharing the database, whose count splits configured limits.
    peers: peers::Peers,
}

impl Engine {
    pub fn new(store: Store, client: Client, keys: MasterKey, config: EngineConfig) -> Self {
        let (handoff, handed) = mpsc::unbounded_channel();
        let auth = apicall::auth::AuthState::new(store.clone(), keys.clone());
        Self {
            inner: Arc::new(Inner {
                endpoints: EndpointCache::new(store.clone(), keys),
                store,
                client,
                slots: Arc::new(Semaphore::new(config.delivery_concurrency)),
                config,
                handoff,
                handed: Mutex::new(Some(handed)),
                auth,
                actions: action::ActionCache::default(),
                gates: apicall::Gates::default(),
                forms: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(1))
                    .build(),
                peers: peers::Peers::default(),
            }),
        }
    }

    pub fn endpoints(&self) -> &EndpointCache {
        &self.inner.endpoints
    }

    pub fn keys(&self) -> &MasterKey {
        self.inner.endpoints.keys()
    }

    /// The processes sharing the database (see `peers::run_heartbeat`).
    pub fn peers(&self) -> &peers::Peers {
        &self.inner.peers
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// A form's API-call fields with their parsed configuration, reused for a second, so
    /// that planning runs for an event parses nothing.
    pub(crate) async fn api_call_fields(
        &self,
        workspace: casehook_core::WorkspaceId,
        id: casehook_core::FormId,
    ) -> Result<apicall::FormApiCalls, EngineError> {
        if let Some(fields) = self.inner.forms.get(&id) {
            return Ok(fields);
        }
        let form = self.inner.store.get_form(workspace, id).await?;
        let fields: apicall::FormApiCalls = (form.spec.fields.iter())
            .filter_map(|f| {
                let spec = casehook_core::apicall::spec_of(&form.spec, &f.key)?;
                Some((f.key.clone(), spec))
            })
            .collect();
        self.inner.forms.insert(id, fields.clone());
        Ok(fields)
    }

    /// Start the dispatcher and the delivery workers; they stop when `shutdown` turns true,
    /// letting requests in flight finish (within their timeouts).
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let handed = self
            .inner
            .handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        tasks.spawn(run_dispatcher(self.clone(), shutdown.clone()));
        tasks.spawn(housekeeping::run_housekeeping(
            self.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(run_api_calls(self.clone(), shutdown.clone()));
        tasks.spawn(run_schedules(self.clone(), shutdown.clone()));
        if let Some(handed) = handed {
            tasks.spawn(run_deliveries(self.clone(), handed, shutdown));
        } else {
            tracing::error!(
                "the engine was started twice; the second start runs no delivery workers"
            );
        }
        tasks
    }
}

/// Wait for a wake-up, the poll interval, or shutdown; false on shutdown.
async fn idle(
    wake: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    poll: Duration,
) -> bool {
    tokio::select! {
        _ = wake.changed() => true,
        _ = tokio::time::sleep(poll) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

async fn run_dispatcher(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let mut wake = engine.inner.store.watch_queue(EVENTS_WAKE);
    let mut dispatcher = dispatch::Dispatcher::default();
    loop {
        wake.mark_unchanged();
        if let Err(e) = dispatch::dispatch_all(&engine, &mut dispatcher).await {
            tracing::error!(error = %e, "dispatch failed; trying again shortly");
            // The news taken for this round is gone with it.
            dispatcher.sweep_next();
        }
        if *shutdown.borrow()
            || !idle(&mut wake, &mut shutdown, engine.inner.config.poll_interval).await
        {
            break;
        }
    }
    tracing::debug!("dispatcher stopped");
}

async fn run_deliveries(
    engine: Engine,
    mut handed: mpsc::UnboundedReceiver<deliver::Handed>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = engine.inner.slots.clone();
    let mut wake = engine.inner.store.watch_queue(DELIVERY_QUEUE);
    let mut running = JoinSet::new();
    let spawn = |running: &mut JoinSet<()>, permit: OwnedSemaphorePermit, handed: Handed| {
        let engine = engine.clone();
        running.spawn(async move {
            let id = handed.job.id;
            if let Err(e) = deliver::process(&engine, handed).await {
                // The job's lease runs out and it is tried again.
                tracing::error!(job = %id, error = %e, "delivery could not be processed");
            }
            drop(permit);
        });
    };
    loop {
        if *shutdown.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        // Deliveries the dispatcher leased to us come first: they are already ours.
        while let Ok(job) = handed.try_recv() {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            spawn(&mut running, permit, job);
        }
        let free = i64::try_from(slots.available_permits()).unwrap_or(0);
        if free == 0 {
            // Every slot is busy: wait for one to come free.
            tokio::select! {
                _ = running.join_next() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            continue;
        }
        wake.mark_unchanged();
        let claimed = engine
            .inner
            .store
            .claim_jobs(
                DELIVERY_QUEUE,
                free.min(engine.inner.config.claim_batch),
                engine.inner.config.lease,
            )
            .await;
        let jobs = match claimed {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "claiming deliveries failed");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            let handed_job = tokio::select! {
                _ = wake.changed() => None,
                _ = tokio::time::sleep(engine.inner.config.poll_interval) => None,
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(job) = handed.recv() => Some(job),
            };
            if let Some(job) = handed_job {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                spawn(&mut running, permit, job);
            }
            continue;
        }
        // One read for the batch's deliveries and events; a job left out reads its own.
        let mut works = match engine.inner.store.deliveries_work(&jobs).await {
            Ok(works) => works,
            Err(e) => {
                tracing::warn!(error = %e, "reading claimed deliveries failed; each reads its own");
                HashMap::new()
            }
        };
        for job in jobs {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let work = works
                .remove(&job.id)
                .map(|(delivery, event)| deliver::Work {
                    delivery,
                    event: Arc::new(event),
                });
            spawn(&mut running, permit, Handed { job, work });
        }
    }
    // Deliveries handed to us but not started go back to the queue at once, rather than
    // waiting out their leases; then sends in flight finish and record their attempts.
    handed.close();
    while let Some(unstarted) = handed.recv().await {
        release(&engine, &unstarted.job).await;
    }
    while running.join_next().await.is_some() {}
    tracing::debug!("delivery workers stopped");
}

/// How often due schedules are looked for: runs start within this of their time.
const SCHEDULE_TICK: Duration = Duration::from_secs(1);

/// Start scheduled API-call fields when they come due (in any process sharing the database:
/// each run starts once, see `Store::start_due_schedules`).
async fn run_schedules(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    loop {
        match engine
            .inner
            .store
            .start_due_schedules(apicall::API_CALL_QUEUE, 100)
            .await
        {
            Ok(started) => {
                for due in &started {
                    tracing::debug!(form = %due.form_id, field = %due.field, "scheduled API-call run started");
                }
                if started.len() == 100 {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "starting scheduled API calls failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SCHEDULE_TICK) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// API-call runs in flight at once in this process.
const API_CALL_CONCURRENCY: usize = 64;

async fn run_api_calls(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(API_CALL_CONCURRENCY));
    let mut wake = engine.inner.store.watch_queue(apicall::API_CALL_QUEUE);
    let mut running = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = i64::try_from(slots.available_permits()).unwrap_or(0);
        if free == 0 {
            tokio::select! {
                _ = running.join_next() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            continue;
        }
        wake.mark_unchanged();
        let jobs = match engine
            .inner
            .store
            .claim_jobs(
                apicall::API_CALL_QUEUE,
                free.min(engine.inner.config.claim_batch),
                engine.inner.config.lease,
            )
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "claiming API calls failed");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            if !idle(&mut wake, &mut shutdown, engine.inner.config.poll_interval).await {
                break;
            }
            continue;
        }
        for job in jobs {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let engine = engine.clone();
            running.spawn(async move {
                let id = job.id;
                if let Err(e) = apicall::process(&engine, job).await {
                    tracing::error!(job = %id, error = %e, "API call could not be processed");
                }
                drop(permit);
            });
        }
    }
    while running.join_next().await.is_some() {}
    tracing::debug!("API-call workers stopped");
}

/// Give a leased job back to the queue, due now (a worker that will not run it).
pub(crate) async fn release(engine: &Engine, job: &ClaimedJob) {
    let now = casehook_store::now_micros();
    if let Err(e) = engine
        .inner
        .store
        .retry_job(job, now, "released at shutdown")
        .await
    {
        tracing::warn!(job = %job.id, error = %e, "could not release a job; its lease will run out");
    }
}
