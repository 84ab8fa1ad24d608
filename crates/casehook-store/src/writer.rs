//! The single writer: every change goes through one task that owns the write connection and
//! commits queued operations in batches (group commit).
//!
//! Why: a durable commit costs an fsync. Under concurrent load, operations that arrive while a
//! batch is committing are run together in the next transaction and share one fsync, so
//! throughput grows with concurrency while every acknowledged write is still committed before
//! its caller hears back. On SQLite this is also the single-writer discipline the engine
//! needs; on PostgreSQL it cuts round trips and row-lock hand-offs on the per-workspace
//! counters. One failing operation (a stale version, a taken name) never takes its batch
//! down: on SQLite it rolls back to its own savepoint, on PostgreSQL the batch is re-run one
//! operation at a time (see `run_all`).

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::db::{Conn, Dialect};
use crate::error::{Result, StoreError};
use crate::notify::{Notifiers, Wakes};
use crate::pool::WritePool;

/// At most this many operations share one transaction: bounds the latency a batch adds and
/// the memory it holds.
const MAX_BATCH: usize = 512;
/// Operations waiting for the writer; senders wait when it is full (back-pressure).
const QUEUE_DEPTH: usize = 8192;

/// Which master key this process seals with: set when the key is checked against the
/// database (and when this process re-seals under a new one).
#[derive(Debug, Default)]
pub(crate) struct SealingKey(std::sync::Mutex<Option<Arc<str>>>);

impl SealingKey {
    pub(crate) fn set(&self, fingerprint: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint.into());
    }

    fn current(&self) -> Option<Arc<str>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Tx<'_> {
    /// Refuse to write a sealed value when the database is sealed under another key than
    /// this process's: `casehook secrets rotate-master-key` ran while this server kept
    /// serving, and what it seals now would not open under the key the database uses.
    /// (A process that never checked a key, such as a tool or a test, is not held back.)
    pub(crate) async fn require_sealing_key(&mut self) -> Result<()> {
        let Some(ours) = self.sealing.current() else {
            return Ok(());
        };
        let row = self
            .conn
            .fetch_optional("SELECT fingerprint FROM master_key_check WHERE id = 1", &[])
            .await?;
        match row.map(|r| r.text("fingerprint")).transpose()? {
            Some(theirs) if *theirs != *ours => Err(StoreError::KeyRotated {
                ours: ours.to_string(),
                theirs,
            }),
            _ => Ok(()),
        }
    }
}

/// The transaction an operation runs in.
#[derive(Debug)]
pub struct Tx<'c> {
    pub conn: Conn<'c>,
    /// Job queues that received work in this batch, and event feeds that grew: their
    /// workers are woken after commit.
    pub(crate) woken: Wakes,
    /// The master key this process seals with, looked up only by writes that seal.
    pub(crate) sealing: &'c SealingKey,
}

/// One unit of work for the writer. `run` may be rolled back and run again (a split batch), so
/// it must not have side effects outside the transaction.
pub(crate) trait WriteOp: Send + Sized + 'static {
    type Output: Send + 'static;
    fn run(&mut self, tx: &mut Tx<'_>) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Whether consecutive operations of this kind in a PostgreSQL batch go to `run_set`
    /// together. Worth it for the hot path, where one set-based statement replaces several
    /// round trips per operation.
    const SET_BASED: bool = false;

    /// Run several operations of this kind at once, answering each in order. All or nothing:
    /// an error rolls the batch back and its operations run again one by one through `run`,
    /// which reports each one's own outcome.
    fn run_set(
        ops: &mut [&mut Self],
        tx: &mut Tx<'_>,
    ) -> impl Future<Output = Result<Vec<Self::Output>>> + Send {
        async move {
            let mut outputs = Vec::with_capacity(ops.len());
            for op in ops.iter_mut() {
                outputs.push(op.run(tx).await?);
            }
            Ok(outputs)
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A queued operation with its reply channel, type-erased so one queue carries all kinds.
trait Queued: Send + Any {
    fn run<'a>(&'a mut self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>>;
    fn finish(self: Box<Self>, failure: Option<StoreError>);
    /// The kind of operation, when it can run in a set with others of its kind.
    fn set_kind(&self) -> Option<TypeId>;
    /// Run this operation and `rest` (all of the same `set_kind`) as one set.
    fn run_set<'a>(
        &'a mut self,
        rest: &'a mut [Box<dyn Queued>],
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Result<()>>;
    fn as_any(&mut self) -> &mut dyn Any;
}

struct Pending<O: WriteOp> {
    op: O,
    output: Option<O::Output>,
    /// The answer, and the operation itself: the caller drops it, so that freeing what it
    /// holds (request bodies, case data) is not the writer's work.
    reply: oneshot::Sender<(Result<O::Output>, O)>,
}

impl<O: WriteOp> Queued for Pending<O> {
    fn run<'a>(&'a mut self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.output = Some(self.op.run(tx).await?);
            Ok(())
        })
    }

    fn set_kind(&self) -> Option<TypeId> {
        O::SET_BASED.then(TypeId::of::<O>)
    }

    fn run_set<'a>(
        &'a mut self,
        rest: &'a mut [Box<dyn Queued>],
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut others = Vec::with_capacity(rest.len());
            for other in rest.iter_mut() {
                let other = other
                    .as_any()
                    .downcast_mut::<Self>()
                    .ok_or_else(|| StoreError::Corrupt("mixed operations in one set".into()))?;
                others.push(other);
            }
            let outputs = {
                let mut ops: Vec<&mut O> = Vec::with_capacity(others.len() + 1);
                ops.push(&mut self.op);
                ops.extend(others.iter_mut().map(|p| &mut p.op));
                O::run_set(&mut ops, tx).await?
            };
            if outputs.len() != others.len() + 1 {
                return Err(StoreError::Corrupt(
                    "a set answered the wrong number of operations".into(),
                ));
            }
            let mut outputs = outputs.into_iter();
            self.output = outputs.next();
            for (other, output) in others.into_iter().zip(outputs) {
                other.output = Some(output);
            }
            Ok(())
        })
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn finish(self: Box<Self>, failure: Option<StoreError>) {
        let Pending { op, output, reply } = *self;
        let result = match (failure, output) {
            (Some(e), _) => Err(e),
            (None, Some(out)) => Ok(out),
            (None, None) => Err(StoreError::Corrupt("write finished without output".into())),
        };
        // The caller may have gone away (request cancelled); the write stands regardless.
        let _ = reply.send((result, op));
    }
}

/// The handle through which the rest of the store submits writes.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Queued>>,
    health: Arc<WriterHealth>,
}

/// What the writer learnt from its last batch that the rest of the process should know.
#[derive(Debug, Default)]
pub(crate) struct WriterHealth {
    /// The last batch failed for want of room, and none has committed since.
    storage_full: AtomicBool,
}

impl WriterHealth {
    /// After a batch: `full` if a write was refused for want of room, else `wrote` if one
    /// committed (a batch of operations that all failed otherwise proves nothing).
    fn after_batch(&self, full: bool, wrote: bool) {
        if full {
            self.storage_full.store(true, Ordering::Relaxed);
        } else if wrote && self.storage_full.swap(false, Ordering::Relaxed) {
            tracing::info!("the database takes writes again");
        }
    }
}

impl std::fmt::Debug for dyn Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

impl Writer {
    /// Start the writer task on `pool`.
    pub(crate) fn spawn(
        pool: WritePool,
        notifiers: Arc<Notifiers>,
        sealing: Arc<SealingKey>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let health = Arc::new(WriterHealth::default());
        let shared = health.clone();
        match pool {
            // SQLite calls block: give the writer a thread and a small runtime of its own so
            // the server's worker threads never wait on the database.
            WritePool::Lite(_) => {
                let thread = std::thread::Builder::new()
                    .name("casehook-writer".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => {
                                runtime.block_on(writer_loop(pool, rx, notifiers, sealing, shared))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot start the writer's runtime")
                            }
                        }
                    });
                if let Err(e) = thread {
                    // The queue's receiver is gone with the closure: writes answer `Closed`.
                    tracing::error!(error = %e, "cannot start the writer thread");
                }
            }
            WritePool::Shared(_) => {
                tokio::spawn(writer_loop(pool, rx, notifiers, sealing, shared));
            }
        }
        Self { queue, health }
    }

    /// Whether writes currently fail because the database's storage is full.
    pub(crate) fn storage_full(&self) -> bool {
        self.health.storage_full.load(Ordering::Relaxed)
    }

    /// Run `op` in the next batch; returns once its batch is committed (or it failed).
    pub(crate) async fn run<O: WriteOp>(&self, op: O) -> Result<O::Output> {
        // The operation comes back to be dropped here, on the caller's task.
        self.run_returning(op).await.map(|(output, _op)| output)
    }

    /// Like [`Writer::run`], and hands the operation back with its output, for a caller
    /// that builds its answer from what it asked.
    pub(crate) async fn run_returning<O: WriteOp>(&self, op: O) -> Result<(O::Output, O)> {
        let (reply, answer) = oneshot::channel();
        let pending: Box<dyn Queued> = Box::new(Pending {
            op,
            output: None,
            reply,
        });
        self.queue
            .send(pending)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (result, op) = answer.await.map_err(|_| StoreError::Closed)?;
        Ok((result?, op))
    }
}

async fn writer_loop(
    mut pool: WritePool,
    mut rx: mpsc::Receiver<Box<dyn Queued>>,
    notifiers: Arc<Notifiers>,
    sealing: Arc<SealingKey>,
    health: Arc<WriterHealth>,
) {
    let mut batch: Vec<Box<dyn Queued>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut pool, &mut batch, &sealing, &notifiers, &health).await;
        // After the batch is answered, so that its requests do not wait on the upkeep.
        pool.between_batches();
    }
    tracing::debug!("writer stopped: every store handle is gone");
}

/// Run and commit one batch, answering every operation in it. The workers of what it
/// committed work for (job queues, event feeds) are woken before the operations are
/// answered, so that a caller who sees its write done finds its news posted.
///
/// Operations of one batch may touch several workspaces' counter rows in arrival order, so
/// two PostgreSQL processes can deadlock on them. When the database gives up on a batch that
/// way, each operation is run again in a transaction of its own: one operation locks one
/// workspace, so alone it cannot be part of a cycle.
async fn commit_batch(
    pool: &mut WritePool,
    batch: &mut Vec<Box<dyn Queued>>,
    sealing: &SealingKey,
    notifiers: &Notifiers,
    health: &WriterHealth,
) {
    if let Attempt::Split = attempt(pool, batch, sealing, notifiers, health).await {
        for op in batch.drain(..) {
            attempt(pool, &mut vec![op], sealing, notifiers, health).await;
        }
    }
}

enum Attempt {
    /// Every operation was answered.
    Done,
    /// Nothing was committed or answered: run the operations one by one.
    Split,
}

async fn attempt(
    pool: &mut WritePool,
    batch: &mut Vec<Box<dyn Queued>>,
    sealing: &SealingKey,
    notifiers: &Notifiers,
    health: &WriterHealth,
) -> Attempt {
    let mut lease = match pool.acquire().await {
        Ok(lease) => lease,
        Err(e) => {
            let message = format!("database unavailable: {e}");
            for op in batch.drain(..) {
                op.finish(Some(StoreError::Unavailable(message.clone())));
            }
            return Attempt::Done;
        }
    };
    let mut tx = Tx {
        conn: lease.conn(),
        woken: Wakes::default(),
        sealing,
    };
    let mut failures: Vec<Option<StoreError>> = Vec::with_capacity(batch.len());
    let mut wrote = false;
    let committed = match run_all(&mut tx, batch, &mut failures).await {
        Ok(Ran::Commit) => match announce(&mut tx, &notifiers.origin).await {
            Ok(()) => {
                wrote = true;
                tx.conn.batch("COMMIT").await
            }
            Err(e) => Err(e),
        },
        Ok(Ran::Nothing) => Ok(()),
        Ok(Ran::Split) => return Attempt::Split,
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        let _ = tx.conn.batch("ROLLBACK").await;
        if e.is_transient_conflict() && batch.len() > 1 {
            tracing::debug!(error = %e, size = batch.len(), "batch hit a lock conflict; running its operations one by one");
            return Attempt::Split;
        }
        // The batch is lost as a whole: fail every operation. Out of room, SQLite may have
        // rolled the transaction back itself, so the error at hand may be only the
        // aftermath; an operation's own failure says what happened.
        let full =
            e.is_storage_full() || failures.iter().flatten().any(StoreError::is_storage_full);
        tracing::error!(error = %e, size = batch.len(), storage_full = full, "write batch failed");
        health.after_batch(full, false);
        let message = e.to_string();
        for op in batch.drain(..) {
            op.finish(Some(if full {
                StoreError::StorageFull(message.clone())
            } else {
                StoreError::Unavailable(format!("write failed: {message}"))
            }));
        }
        return Attempt::Done;
    }
    notifiers.wake(&tx.woken);
    let full = failures.iter().flatten().any(StoreError::is_storage_full);
    health.after_batch(full, wrote);
    for (op, failure) in batch.drain(..).zip(failures) {
        op.finish(failure.map(StoreError::named_if_full));
    }
    Attempt::Done
}

/// What running a batch's operations left to do.
enum Ran {
    /// Commit: every operation's own outcome is in `failures`.
    Commit,
    /// Nothing to commit (a lone operation failed and was rolled back).
    Nothing,
    /// Rolled back as a whole; run the operations one by one.
    Split,
}

/// Run a batch's operations in one transaction.
///
/// A batch first runs without savepoints: operations rarely fail, and a savepoint is not
/// free. On PostgreSQL it costs two round trips, more than most operations themselves; on
/// SQLite every page an operation touches first is copied to the statement journal, which
/// measured at a third of the writer's time under inbound load. When an operation fails,
/// the batch is rolled back. PostgreSQL then splits it, each operation running alone; SQLite
/// runs it again in one transaction with a savepoint around each operation, so a failing one
/// rolls back alone and the rest commit. A deadlock splits the batch on both.
async fn run_all(
    tx: &mut Tx<'_>,
    batch: &mut [Box<dyn Queued>],
    failures: &mut Vec<Option<StoreError>>,
) -> Result<Ran> {
    let savepoints = tx.conn.dialect() == Dialect::Sqlite;
    let begin = if savepoints {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    };
    tx.conn.batch(begin).await?;
    if let [op] = batch {
        // Alone in its batch, an operation needs no savepoint: on failure the whole
        // transaction is rolled back instead.
        return match op.run(tx).await {
            Ok(()) => {
                failures.push(None);
                Ok(Ran::Commit)
            }
            Err(e) => {
                // Kept before the rollback, which fails if SQLite already rolled back.
                failures.push(Some(e));
                tx.conn.batch("ROLLBACK").await?;
                tx.woken.clear();
                Ok(Ran::Nothing)
            }
        };
    }
    // The operations of a batch are concurrent (their callers are all waiting on this one
    // commit), so their order within it is free: gathering each set-based kind together
    // makes one statement of all of its operations.
    batch.sort_by_key(|op| op.set_kind());
    let unguarded = run_unguarded(tx, batch, failures).await?;
    if !savepoints || !matches!(unguarded, Ran::Split) {
        return Ok(unguarded);
    }
    // SQLite: an operation failed and the batch was rolled back. Rather than a transaction
    // (and an fsync) per operation, run the batch again with a savepoint around each.
    failures.clear();
    tx.woken.clear();
    tx.conn.batch(begin).await?;
    for op in batch.iter_mut() {
        // Savepoint commands go through `execute`, which prepares once and reuses them.
        tx.conn.execute("SAVEPOINT op", &[]).await?;
        let woken_before = tx.woken.clone();
        match op.run(tx).await {
            Ok(()) => {
                tx.conn.execute("RELEASE SAVEPOINT op", &[]).await?;
                failures.push(None);
            }
            // The database gave up on the whole transaction (deadlock): not this operation's
            // fault, so the batch is split and retried.
            Err(e) if e.is_transient_conflict() => {
                tx.conn.batch("ROLLBACK").await?;
                return Ok(Ran::Split);
            }
            Err(e) => {
                // Kept before the rollback, which fails if SQLite already rolled back the
                // whole transaction (it may, out of room): then the batch fails as one.
                failures.push(Some(e));
                tx.conn.execute("ROLLBACK TO SAVEPOINT op", &[]).await?;
                tx.conn.execute("RELEASE SAVEPOINT op", &[]).await?;
                tx.woken = woken_before;
            }
        }
    }
    Ok(Ran::Commit)
}

/// Run a batch without savepoints: consecutive operations of a set-based kind run as one
/// set, the others one at a time; any failure rolls the batch back (`Ran::Split`).
async fn run_unguarded(
    tx: &mut Tx<'_>,
    batch: &mut [Box<dyn Queued>],
    failures: &mut Vec<Option<StoreError>>,
) -> Result<Ran> {
    let mut start = 0;
    while start < batch.len() {
        let kind = batch[start].set_kind();
        let mut end = start + 1;
        if kind.is_some() {
            while end < batch.len() && batch[end].set_kind() == kind {
                end += 1;
            }
        }
        let (first, rest) = batch[start..end]
            .split_first_mut()
            .ok_or_else(|| StoreError::Corrupt("empty run of operations".into()))?;
        let ran = if rest.is_empty() {
            first.run(tx).await
        } else {
            first.run_set(rest, tx).await
        };
        if let Err(e) = ran {
            // Kept in case the rollback fails (SQLite, out of room, may have rolled back
            // already); a split starts its failures afresh.
            failures.push(Some(e));
            tx.conn.batch("ROLLBACK").await?;
            return Ok(Ran::Split);
        }
        failures.extend((start..end).map(|_| None));
        start = end;
    }
    Ok(Ran::Commit)
}

/// On PostgreSQL, tell other processes which queues got work: a `NOTIFY` sent inside the
/// transaction is delivered when (and only if) it commits. Their listeners wake their
/// workers (see `notify::listen`); polling remains the fallback.
async fn announce(tx: &mut Tx<'_>, origin: &str) -> Result<()> {
    if tx.conn.dialect() != Dialect::Postgres || tx.woken.is_empty() {
        return Ok(());
    }
    tx.conn
        .execute(
            "SELECT pg_notify($1, $2)",
            &crate::db::args![crate::notify::PG_CHANNEL, tx.woken.payload(origin)],
        )
        .await?;
    Ok(())
}
