//! casehook's durable state: one [`Store`] over SQLite (embedded default) or PostgreSQL
//! (scale-out), holding workspaces, API keys, forms, cases, events, the event catalog and
//! the durable job queue.
//!
//! Reads go through a connection pool. Every write goes through the [`writer`] (group
//! commit), and every change is committed in one transaction together with the events it
//! causes and the jobs it enqueues (transactional outbox). This crate knows SQL; it does not
//! know HTTP.

mod actions;
mod api_calls;
mod cases;
mod connections;
mod db;
mod deliveries;
mod endpoints;
mod error;
mod events;
mod forms;
mod inbound;
mod jobs;
mod lite;
mod migrate;
mod notify;
mod pool;
mod processes;
mod schedules;
mod sealed;
mod secrets;
mod workspaces;
mod writer;

use std::sync::Arc;

pub use actions::{ActionChange, ActionRecord, NewAction};
pub use api_calls::{
    API_CALL_QUEUE, ApiCallLogFilter, ApiCallLogRecord, ApiCallOutcome, ApiCallState,
    CachedResponse, NewApiCallLog, OpenRun, RunStage,
};
pub use cases::{CaseFilter, CasePage, CasePatch, NewCase};
pub use connections::{ConnectionChange, ConnectionRecord, NewConnection, RefreshTokenOwner};
pub use db::{Dialect, from_micros, now_micros, to_micros, to_micros_checked};
pub use deliveries::{
    AttemptRecord, AttemptStats, DELIVERY_QUEUE, DeliveryFilter, DeliveryRecord, DispatchBacklog,
    Dispatched, LeasedDelivery, NewAttempt, NewDelivery, Recorded, STATS_SAMPLE, Settlement,
};
pub use endpoints::{EndpointChange, EndpointRecord, HealthMarks, NewEndpoint};
pub use error::{Result, StoreError};
pub use events::{EVENTS_WAKE, EventFilter, EventTypeRecord};
pub use forms::FormRecord;
pub use inbound::{
    Applied, CaseMatch, HookToken, IdempotencyClaim, InboundHookChange, InboundHookRecord,
    InboundItem, InboundRequestFilter, InboundRequestRecord, InboundWrite, NewHookToken,
    NewInboundHook, NewInboundRequest,
};
pub use jobs::{ClaimedJob, JobState, NewJob};
pub use notify::{API_KEYS_CHANGED, FeedNews, INBOUND_HOOKS_CHANGED};
pub use pool::redact_url;
pub use processes::{LiveProcesses, ProcessBeat};
pub use schedules::{DueSchedule, fanout_key, fanout_payload, scheduled_run_key};
pub use sealed::{KeyCheck, Resealed};
pub use secrets::{NewSecret, SecretRecord};
pub use workspaces::{ApiKeyRecord, NewApiKey, Workspace};

use notify::Notifiers;
use pool::{Lease, Pools};
use writer::{SealingKey, Writer};

/// A handle to the database. Cheap to clone; all clones share pools and the writer.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pools: Pools,
    writer: Writer,
    notifiers: Arc<Notifiers>,
    sealing: Arc<SealingKey>,
}

impl Store {
    /// Connect to `url` (`sqlite:PATH?mode=rwc` or `postgres://…`) and apply pending
    /// migrations. Must be called inside a tokio runtime (it starts the writer task).
    ///
    /// Several processes opening one brand-new SQLite file at the same moment can meet
    /// "database is locked" where SQLite's busy handler does not apply (switching the file to
    /// WAL), so such an open is retried for a few seconds.
    pub async fn open(url: &str) -> Result<Self> {
        let mut attempt: u64 = 0;
        loop {
            let opened = async {
                let store = Self::connect(url).await?;
                store.migrate().await?;
                Ok::<_, StoreError>(store)
            }
            .await;
            match opened {
                Err(e) if e.is_sqlite_busy() && attempt < 40 => {
                    attempt += 1;
                    tracing::debug!(attempt, "database locked while opening; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 + 5 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Connect without migrating (for `casehook migrate` and tests of the migrator).
    pub async fn connect(url: &str) -> Result<Self> {
        let pools = Pools::open(url).await?;
        let notifiers = Arc::new(Notifiers::default());
        let sealing = Arc::new(SealingKey::default());
        let writer = Writer::spawn(pools.writer()?, notifiers.clone(), sealing.clone());
        if let Some(pool) = pools.pg_read_pool() {
            tokio::spawn(notify::listen(pool, Arc::downgrade(&notifiers)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pools,
                writer,
                notifiers,
                sealing,
            }),
        })
    }

    /// Apply pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let mut lease = self.inner.pools.acquire_write().await?;
        migrate::run(&mut lease.conn()).await
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.pools.dialect()
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_one("SELECT 1 AS one", &[], "row")
            .await?;
        Ok(())
    }

    /// Close the pools; in-flight writes finish first.
    pub async fn close(&self) {
        self.inner.pools.close().await;
    }

    async fn read(&self) -> Result<Lease<'static>> {
        self.inner.pools.read().await
    }

    fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Whether writes currently fail because the database's storage is full: set by a
    /// write refused for want of room, cleared by the next that commits.
    pub fn storage_full(&self) -> bool {
        self.inner.writer.storage_full()
    }

    fn sealing_key(&self) -> &SealingKey {
        &self.inner.sealing
    }
}

impl Store {
    /// `sqlite` or `postgres`, for readiness output and logs.
    pub fn dialect_name(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}
