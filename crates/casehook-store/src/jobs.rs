//! The durable job queue that deliveries, API calls and schedules run on.
//!
//! A job is enqueued inside the same transaction as the change that causes it. Workers claim
//! due jobs with a lease: claiming sets the job `running`, moves `due_at` to the end of the
//! lease and stamps a fresh lease token. Only the holder of the current token can complete or
//! reschedule the job; if the worker vanishes, the lease runs out, `due_at` has passed, and
//! the same index scan that finds new work finds the job again. On PostgreSQL the claim uses
//! `FOR UPDATE SKIP LOCKED`, so processes sharing a database never claim the same job; on
//! SQLite claims go through the single writer, which serialises them.

use std::time::Duration;

use casehook_core::{JobId, WorkspaceId};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::Store;
use crate::db::{Dialect, Row, args, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub queue: String,
    pub workspace: Option<WorkspaceId>,
    pub payload: Value,
    /// When it becomes due (microseconds since the epoch); now when absent.
    pub due_at: Option<i64>,
    /// While a job of the same queue holding this key is pending or running, this one is not
    /// enqueued: it would only repeat that one (a scheduled run that has not finished yet).
    pub unique_key: Option<String>,
}

/// A job held under a lease.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    pub id: JobId,
    pub queue: String,
    pub workspace: Option<WorkspaceId>,
    pub payload: Value,
    /// Including this one.
    pub attempts: i64,
    /// Proof of holding the lease; needed to complete or reschedule.
    pub lease_token: Uuid,
    /// When the lease runs out (microseconds since the epoch).
    pub lease_until: i64,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Dead,
}

impl JobState {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "dead" => Ok(Self::Dead),
            other => Err(StoreError::Corrupt(format!("job state `{other}`"))),
        }
    }
}

/// Enqueue inside the caller's transaction; workers of the queue are woken after commit.
pub(crate) async fn enqueue(tx: &mut Tx<'_>, job: &NewJob) -> Result<JobId> {
    insert_job(tx, job).await?.ok_or_else(|| {
        StoreError::Conflict(format!(
            "a {} job with key `{}` has not finished yet",
            job.queue,
            job.unique_key.as_deref().unwrap_or_default()
        ))
    })
}

/// A taken unique key inserts nothing (the only other unique column is the fresh id).
const INSERT_JOB: &str = "INSERT INTO jobs (id, queue, workspace_id, payload, state, due_at, attempts, created_at, updated_at, unique_key)
     VALUES ($1, $2, $3, $4, 'pending', $5, 0, $6, $6, $7) ON CONFLICT DO NOTHING";

/// Insert a pending job; `None` when its unique key is held by a job that has not finished.
pub(crate) async fn insert_job(tx: &mut Tx<'_>, job: &NewJob) -> Result<Option<JobId>> {
    let id = JobId::new();
    let now = now_micros();
    let inserted = tx
        .conn
        .execute(
            INSERT_JOB,
            &args![
                id,
                job.queue.as_str(),
                job.workspace,
                job.payload.clone(),
                job.due_at.unwrap_or(now),
                now,
                job.unique_key.clone()
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    tx.woken.queue(&job.queue);
    Ok(Some(id))
}

/// Enqueue a job already leased to the caller (who will run it at once): no claim and no
/// wake-up needed. If the caller vanishes, the lease runs out like any other.
pub(crate) async fn enqueue_leased(
    tx: &mut Tx<'_>,
    job: &NewJob,
    lease: Duration,
) -> Result<ClaimedJob> {
    let id = JobId::new();
    let now = now_micros();
    let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2));
    let token = Uuid::new_v4();
    tx.conn
        .execute(
            "INSERT INTO jobs (id, queue, workspace_id, payload, state, due_at, lease_token, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'running', $5, $6, 1, $7, $7)",
            &args![id, job.queue.as_str(), job.workspace, job.payload.clone(), until, token, now],
        )
        .await?;
    Ok(ClaimedJob {
        id,
        queue: job.queue.clone(),
        workspace: job.workspace,
        payload: job.payload.clone(),
        attempts: 1,
        lease_token: token,
        lease_until: until,
    })
}

fn claimed_from(row: &Row) -> Result<ClaimedJob> {
    Ok(ClaimedJob {
        id: JobId(row.uuid("id")?),
        queue: row.text("queue")?,
        workspace: row.opt_uuid("workspace_id")?.map(WorkspaceId),
        payload: row.json("payload")?,
        attempts: row.i64("attempts")?,
        lease_token: row.uuid("lease_token")?,
        lease_until: row.i64("due_at")?,
    })
}

struct Enqueue(Vec<NewJob>);

impl WriteOp for Enqueue {
    type Output = Vec<JobId>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Vec<JobId>> {
        insert_all(tx, &self.0).await
    }
}

/// Insert jobs, leaving out those whose unique key is taken; the ids of those inserted.
async fn insert_all(tx: &mut Tx<'_>, jobs: &[NewJob]) -> Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        ids.extend(insert_job(tx, job).await?);
    }
    Ok(ids)
}

/// Finish a job and enqueue the jobs that follow from it, together.
struct FinishWith {
    id: JobId,
    token: Uuid,
    then: Vec<NewJob>,
}

impl WriteOp for FinishWith {
    type Output = Option<Vec<JobId>>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Option<Vec<JobId>>> {
        // Finished first, so a follow-up may take over the finished job's unique key.
        if !settle(tx, self.id, self.token, &Settle::Complete).await? {
            return Ok(None);
        }
        insert_all(tx, &self.then).await.map(Some)
    }
}

struct Claim {
    queue: String,
    max: i64,
    lease: Duration,
}

impl WriteOp for Claim {
    type Output = Vec<ClaimedJob>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Vec<ClaimedJob>> {
        let now = now_micros();
        let lease_until =
            now.saturating_add(i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX / 2));
        let skip_locked = match tx.conn.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', due_at = $1, lease_token = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM jobs WHERE queue = $4 AND state IN ('pending', 'running') AND due_at <= $3
                          ORDER BY due_at LIMIT $5{skip_locked})
             RETURNING id, queue, workspace_id, payload, attempts, lease_token, due_at"
        );
        let rows = tx
            .conn
            .fetch_all(
                &sql,
                &args![
                    lease_until,
                    Uuid::new_v4(),
                    now,
                    self.queue.as_str(),
                    self.max
                ],
            )
            .await?;
        rows.iter().map(claimed_from).collect()
    }
}

/// What to do with a job whose lease the caller holds.
#[derive(Clone, Debug)]
pub(crate) enum Settle {
    /// Done: the job is deleted.
    Complete,
    /// Run again at `due_at`.
    Retry { due_at: i64, error: Option<String> },
    /// Run again at `due_at` without counting this claim as an attempt (the holder did not
    /// try: it was waiting for something).
    Postpone { due_at: i64, reason: String },
    /// Never run again.
    Bury { error: String },
}

/// Settle a job inside the caller's transaction, if the caller still holds its lease
/// (`false`: the lease ran out and someone else holds the job now). Every way a job leaves
/// a worker's hands goes through here.
pub(crate) async fn settle(tx: &mut Tx<'_>, id: JobId, token: Uuid, how: &Settle) -> Result<bool> {
    let now = now_micros();
    let changed = match how {
        Settle::Complete => {
            tx.conn
                .execute("DELETE FROM jobs WHERE id = $1 AND lease_token = $2", &args![id, token])
                .await?
        }
        Settle::Retry { due_at, error } => {
            tx.conn
                .execute(
                    "UPDATE jobs SET state = 'pending', due_at = $1, lease_token = NULL, last_error = $2, updated_at = $3
                     WHERE id = $4 AND lease_token = $5",
                    &args![*due_at, error.clone(), now, id, token],
                )
                .await?
        }
        Settle::Postpone { due_at, reason } => {
            tx.conn
                .execute(
                    "UPDATE jobs SET state = 'pending', due_at = $1, lease_token = NULL, attempts = attempts - 1,
                            last_error = $2, updated_at = $3
                     WHERE id = $4 AND lease_token = $5",
                    &args![*due_at, reason.as_str(), now, id, token],
                )
                .await?
        }
        Settle::Bury { error } => {
            tx.conn
                .execute(
                    "UPDATE jobs SET state = 'dead', lease_token = NULL, last_error = $1, updated_at = $2
                     WHERE id = $3 AND lease_token = $4",
                    &args![error.as_str(), now, id, token],
                )
                .await?
        }
    };
    Ok(changed == 1)
}

struct SettleJob {
    id: JobId,
    token: Uuid,
    how: Settle,
}

impl WriteOp for SettleJob {
    type Output = bool;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<bool> {
        settle(tx, self.id, self.token, &self.how).await
    }
}

impl Store {
    /// Enqueue jobs on their own (most jobs are enqueued by the change that causes them).
    /// Returns the ids of the jobs enqueued: a job whose unique key is held by an unfinished
    /// job is left out.
    pub async fn enqueue_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        self.writer().run(Enqueue(jobs)).await
    }

    /// Finish a job and enqueue what follows from it in one transaction (left out as in
    /// [`Store::enqueue_jobs`]). `None`, with nothing enqueued, when the lease was lost: the
    /// job's new holder will do the same.
    pub async fn finish_job_with(
        &self,
        job: &ClaimedJob,
        then: Vec<NewJob>,
    ) -> Result<Option<Vec<JobId>>> {
        self.writer()
            .run(FinishWith {
                id: job.id,
                token: job.lease_token,
                then,
            })
            .await
    }

    /// Claim up to `max` due jobs of `queue`, each leased for `lease`.
    pub async fn claim_jobs(
        &self,
        queue: &str,
        max: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        self.writer()
            .run(Claim {
                queue: queue.into(),
                max: max.max(1),
                lease,
            })
            .await
    }

    /// Finish a job. `false` means the lease was lost (it expired and someone else holds the
    /// job now): the caller's result must be treated as a duplicate.
    pub async fn complete_job(&self, job: &ClaimedJob) -> Result<bool> {
        self.writer()
            .run(SettleJob {
                id: job.id,
                token: job.lease_token,
                how: Settle::Complete,
            })
            .await
    }

    /// Give a job back to run again at `due_at`, recording why.
    pub async fn retry_job(&self, job: &ClaimedJob, due_at: i64, error: &str) -> Result<bool> {
        let how = Settle::Retry {
            due_at,
            error: Some(error.into()),
        };
        self.writer()
            .run(SettleJob {
                id: job.id,
                token: job.lease_token,
                how,
            })
            .await
    }

    /// Stop retrying a job; it stays visible as `dead`.
    pub async fn bury_job(&self, job: &ClaimedJob, error: &str) -> Result<bool> {
        let how = Settle::Bury {
            error: error.into(),
        };
        self.writer()
            .run(SettleJob {
                id: job.id,
                token: job.lease_token,
                how,
            })
            .await
    }

    /// A job's state and attempts, if it still exists (completed jobs are removed).
    pub async fn job_state(&self, id: JobId) -> Result<Option<(JobState, i64)>> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional("SELECT state, attempts FROM jobs WHERE id = $1", &args![id])
            .await?;
        row.map(|r| Ok((JobState::parse(&r.text("state")?)?, r.i64("attempts")?)))
            .transpose()
    }

    /// Jobs of a queue that are pending or running.
    pub async fn open_jobs(&self, queue: &str) -> Result<i64> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_one(
                "SELECT COUNT(*) AS n FROM jobs WHERE queue = $1 AND state IN ('pending', 'running')",
                &args![queue],
                "count",
            )
            .await?
            .i64("n")
    }

    /// A receiver that changes whenever committed work arrives on `queue` in this process.
    pub fn watch_queue(&self, queue: &str) -> watch::Receiver<u64> {
        self.inner.notifiers.subscribe(queue)
    }
}
