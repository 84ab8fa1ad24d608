//! Deliveries of events to endpoints and their attempt log.
//!
//! The dispatcher turns each workspace's event feed into deliveries: it reads events past the
//! workspace's dispatch cursor, decides (outside any transaction) which endpoints want each
//! one, and commits the deliveries, their jobs and the advanced cursor in one transaction that
//! only succeeds if the cursor has not moved meanwhile. Every event is thus fanned out exactly
//! once, even with several processes dispatching the same workspace.
//!
//! Each pending delivery has a job on the `delivery` queue; a worker claims it, sends, and
//! records the attempt, the delivery's new state, the job's fate and the endpoint's health
//! marks in one transaction (`record_attempt`).

use std::collections::HashMap;
use std::time::Duration;

use casehook_core::event::{Actor, ActorKind, Event};
use casehook_core::{AttemptId, CaseId, DeliveryId, EndpointId, EventId, JobId, WorkspaceId};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Arg, Conn, Dialect, Row, args, from_micros, now_micros};
use crate::endpoints::{self, disabled_event};
use crate::error::{Result, StoreError};
use crate::jobs::{ClaimedJob, NewJob, Settle, enqueue, enqueue_leased, settle};
use crate::writer::{Tx, WriteOp};

/// The job queue deliveries run on.
pub const DELIVERY_QUEUE: &str = "delivery";

/// A delivery: one event (or a synthetic test event) to one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    pub event_sequence: i64,
    pub event_type: String,
    pub case_id: Option<CaseId>,
    /// `event`, `retry`, `replay` or `recover`.
    pub origin: String,
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// One HTTP try, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    pub attempt: i64,
    pub started_at: OffsetDateTime,
    pub duration_us: i64,
    /// `{method, url, headers, body}` with secrets redacted.
    pub request: Value,
    pub status: Option<i64>,
    /// `{headers, body_excerpt, truncated}`.
    pub response: Option<Value>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    /// `success`, `retry`, `fail` or `gone`.
    pub verdict: String,
}

/// An attempt to record.
#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub started_at: i64,
    pub duration_us: i64,
    pub request: Value,
    pub status: Option<i64>,
    pub response: Option<Value>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub verdict: String,
}

/// What becomes of a delivery after an attempt.
#[derive(Clone, Debug)]
pub enum Settlement {
    Succeeded,
    /// Try again at this time (microseconds since the epoch).
    RetryAt(i64),
    /// Final failure (dead letter), with the reason.
    Failed(String),
    /// Final failure that also disables the endpoint (410 Gone, or failing for too long).
    FailedAndDisable {
        error: String,
        reason: String,
    },
}

/// A workspace whose feed has events not yet dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchBacklog {
    pub workspace: WorkspaceId,
    pub dispatched: i64,
    pub latest: i64,
}

/// Workspaces with events past their dispatch cursor, narrowed by `$and`; read with
/// [`backlog_from`].
macro_rules! backlog_sql {
    ($and:literal) => {
        concat!(
            "SELECT w.id, COALESCE(d.dispatched, 0) AS dispatched, w.event_counter
             FROM workspaces w LEFT JOIN dispatch_cursors d ON d.workspace_id = w.id
             WHERE w.event_counter > COALESCE(d.dispatched, 0)",
            $and
        )
    };
}

fn backlog_from(row: &Row) -> Result<DispatchBacklog> {
    Ok(DispatchBacklog {
        workspace: WorkspaceId(row.uuid("id")?),
        dispatched: row.i64("dispatched")?,
        latest: row.i64("event_counter")?,
    })
}

/// A delivery the dispatcher decided on.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    pub event_sequence: i64,
    pub event_type: String,
    pub case_id: Option<CaseId>,
}

/// Filters for listing deliveries, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<EndpointId>,
    pub event_id: Option<EventId>,
    pub case_id: Option<CaseId>,
    pub state: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Only deliveries older than this one (the previous page's cursor).
    pub before: Option<DeliveryId>,
    pub limit: i64,
}

/// Success rate and latency of an endpoint's attempts since a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttemptStats {
    pub attempts: i64,
    pub successes: i64,
    /// Durations (µs) of the most recent attempts in the window, ascending; at most
    /// `STATS_SAMPLE` of them, so percentiles stay cheap on a busy endpoint.
    pub durations_us: Vec<i64>,
}

/// How many recent attempts feed the latency percentiles.
pub const STATS_SAMPLE: i64 = 10_000;

const COLUMNS: &str = "id, workspace_id, endpoint_id, event_id, event_sequence, event_type, case_id, origin, state, \
                       attempts, next_attempt_at, last_status, last_error, created_at, updated_at, finished_at";

fn delivery_from(row: &Row) -> Result<DeliveryRecord> {
    delivery_with_id_in(row, "id")
}

/// A delivery from a row whose id is in `id_column` (a join with its event has two ids).
fn delivery_with_id_in(row: &Row, id_column: &str) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: DeliveryId(row.uuid(id_column)?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        endpoint_id: EndpointId(row.uuid("endpoint_id")?),
        event_id: EventId(row.uuid("event_id")?),
        event_sequence: row.i64("event_sequence")?,
        event_type: row.text("event_type")?,
        case_id: row.opt_uuid("case_id")?.map(CaseId),
        origin: row.text("origin")?,
        state: row.text("state")?,
        attempts: row.i64("attempts")?,
        next_attempt_at: row
            .opt_i64("next_attempt_at")?
            .map(from_micros)
            .transpose()?,
        last_status: row.opt_i64("last_status")?,
        last_error: row.opt_text("last_error")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
        finished_at: row.opt_i64("finished_at")?.map(from_micros).transpose()?,
    })
}

fn attempt_from(row: &Row) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        id: AttemptId(row.uuid("id")?),
        delivery_id: DeliveryId(row.uuid("delivery_id")?),
        attempt: row.i64("attempt")?,
        started_at: from_micros(row.i64("started_at")?)?,
        duration_us: row.i64("duration_us")?,
        request: row.json("request")?,
        status: row.opt_i64("status")?,
        response: row.opt_json("response")?,
        error_kind: row.opt_text("error_kind")?,
        error_message: row.opt_text("error_message")?,
        verdict: row.text("verdict")?,
    })
}

async fn get(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    id: DeliveryId,
) -> Result<DeliveryRecord> {
    let row = conn
        .fetch_one(
            &format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1 AND workspace_id = $2"),
            &args![id, workspace],
            "delivery",
        )
        .await?;
    delivery_from(&row)
}

/// A delivery joined with its event, as [`work_from`] reads it; a `WHERE` follows.
const WORK_SELECT: &str = "SELECT e.id, e.sequence, e.workspace_id, e.type, e.case_id, e.form_id, e.actor, e.data,
        e.changes, e.skip_triggers, e.occurred_at, d.id AS delivery_id, d.endpoint_id, d.event_id,
        d.event_sequence, d.event_type, d.origin, d.state, d.attempts, d.next_attempt_at, d.last_status,
        d.last_error, d.created_at, d.updated_at, d.finished_at
 FROM deliveries d JOIN events e ON e.workspace_id = d.workspace_id AND e.sequence = d.event_sequence";

fn work_from(row: &Row) -> Result<(DeliveryRecord, Event)> {
    Ok((
        delivery_with_id_in(row, "delivery_id")?,
        crate::events::event_from(row)?,
    ))
}

/// The workspace and delivery a delivery job names.
fn job_target(job: &ClaimedJob) -> Result<(WorkspaceId, DeliveryId)> {
    let id = job
        .payload
        .get("delivery")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .map(DeliveryId)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("delivery job {} without a delivery id", job.id))
        })?;
    let workspace = job.workspace.ok_or_else(|| {
        StoreError::Corrupt(format!("delivery job {} without a workspace", job.id))
    })?;
    Ok((workspace, id))
}

fn delivery_job(workspace: WorkspaceId, id: DeliveryId, due_at: Option<i64>) -> NewJob {
    NewJob {
        queue: DELIVERY_QUEUE.into(),
        workspace: Some(workspace),
        payload: json!({"delivery": id}),
        due_at,
        unique_key: None,
    }
}

/// Insert a pending delivery and its job (leased to the caller when `lease` is given).
async fn insert_delivery(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    new: &NewDelivery,
    origin: &str,
    lease: Option<Duration>,
) -> Result<(DeliveryId, Option<LeasedDelivery>)> {
    let id = DeliveryId::new();
    let spec = delivery_job(workspace, id, None);
    let (job, leased) = match lease {
        Some(lease) => {
            let claimed = enqueue_leased(tx, &spec, lease).await?;
            (claimed.id, Some(claimed))
        }
        None => (enqueue(tx, &spec).await?, None),
    };
    let now = now_micros();
    tx.conn
        .execute(
            "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_sequence, event_type, case_id,
                                     origin, state, attempts, next_attempt_at, job_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10, $9, $9)",
            &args![
                id,
                workspace,
                new.endpoint_id,
                new.event_id,
                new.event_sequence,
                new.event_type.as_str(),
                new.case_id,
                origin,
                now,
                job
            ],
        )
        .await?;
    let leased = match leased {
        Some(job) => Some(LeasedDelivery {
            job,
            delivery: fresh_record(workspace, id, new, origin, now)?,
        }),
        None => None,
    };
    Ok((id, leased))
}

/// A delivery as it stands right after its insert, without reading it back.
fn fresh_record(
    workspace: WorkspaceId,
    id: DeliveryId,
    new: &NewDelivery,
    origin: &str,
    now: i64,
) -> Result<DeliveryRecord> {
    let at = from_micros(now)?;
    Ok(DeliveryRecord {
        id,
        workspace_id: workspace,
        endpoint_id: new.endpoint_id,
        event_id: new.event_id,
        event_sequence: new.event_sequence,
        event_type: new.event_type.clone(),
        case_id: new.case_id,
        origin: origin.into(),
        state: "pending".into(),
        attempts: 0,
        next_attempt_at: Some(at),
        last_status: None,
        last_error: None,
        created_at: at,
        updated_at: at,
        finished_at: None,
    })
}

struct CommitDispatch {
    workspace: WorkspaceId,
    from: i64,
    to: i64,
    deliveries: Vec<NewDelivery>,
    jobs: Vec<crate::NewJob>,
    lease: Option<Duration>,
}

impl WriteOp for CommitDispatch {
    type Output = Dispatched;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Dispatched> {
        tx.conn
            .execute(
                "INSERT INTO dispatch_cursors (workspace_id, dispatched) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                &args![self.workspace],
            )
            .await?;
        let moved = tx
            .conn
            .execute(
                "UPDATE dispatch_cursors SET dispatched = $1 WHERE workspace_id = $2 AND dispatched = $3",
                &args![self.to, self.workspace, self.from],
            )
            .await?;
        if moved == 0 {
            return Err(StoreError::Conflict(
                "the dispatch cursor moved (another dispatcher got there first)".into(),
            ));
        }
        for job in &self.jobs {
            crate::jobs::enqueue(tx, job).await?;
        }
        if tx.conn.dialect() == Dialect::Postgres && self.deliveries.len() > 1 {
            return insert_set(tx, self.workspace, &self.deliveries, self.lease).await;
        }
        let mut out = Dispatched::default();
        for new in &self.deliveries {
            let (id, leased) =
                insert_delivery(tx, self.workspace, new, "event", self.lease).await?;
            out.deliveries.push(id);
            out.leased.extend(leased);
        }
        Ok(out)
    }
}

/// Deliveries and their jobs in one PostgreSQL statement: a dispatch of many events costs
/// one round trip instead of two per delivery. (SQLite runs in-process, where statements are
/// cheap, and has no data-modifying CTEs.)
const DISPATCH_SET_SQL: &str = "
WITH input AS (
    SELECT (x->>'id')::uuid AS id, (x->>'job_id')::uuid AS job_id, (x->>'endpoint_id')::uuid AS endpoint_id,
           (x->>'event_id')::uuid AS event_id, (x->>'event_sequence')::bigint AS event_sequence,
           x->>'event_type' AS event_type, (x->>'case_id')::uuid AS case_id
    FROM jsonb_array_elements($1::jsonb) AS t(x)
),
new_jobs AS (
    INSERT INTO jobs (id, queue, workspace_id, payload, state, due_at, lease_token, attempts, created_at, updated_at)
    SELECT job_id, $2, $3, jsonb_build_object('delivery', id::text), $4, $5, $6, $7, $8, $8 FROM input
)
INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_sequence, event_type, case_id, origin, state,
                        attempts, next_attempt_at, job_id, created_at, updated_at)
SELECT id, $3, endpoint_id, event_id, event_sequence, event_type, case_id, 'event', 'pending', 0, $8, job_id, $8, $8
FROM input";

async fn insert_set(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    deliveries: &[NewDelivery],
    lease: Option<Duration>,
) -> Result<Dispatched> {
    let now = now_micros();
    let token = lease.map(|_| uuid::Uuid::new_v4());
    let lease_until =
        lease.map(|l| now.saturating_add(i64::try_from(l.as_micros()).unwrap_or(i64::MAX / 2)));
    let mut out = Dispatched::default();
    let mut input = Vec::with_capacity(deliveries.len());
    for new in deliveries {
        let (id, job) = (DeliveryId::new(), JobId::new());
        input.push(json!({
            "id": id,
            "job_id": job,
            "endpoint_id": new.endpoint_id,
            "event_id": new.event_id,
            "event_sequence": new.event_sequence,
            "event_type": new.event_type,
            "case_id": new.case_id,
        }));
        out.deliveries.push(id);
        if let (Some(token), Some(until)) = (token, lease_until) {
            out.leased.push(LeasedDelivery {
                job: ClaimedJob {
                    id: job,
                    queue: DELIVERY_QUEUE.into(),
                    workspace: Some(workspace),
                    payload: json!({"delivery": id}),
                    attempts: 1,
                    lease_token: token,
                    lease_until: until,
                },
                delivery: fresh_record(workspace, id, new, "event", now)?,
            });
        }
    }
    let (state, attempts) = if token.is_some() {
        ("running", 1_i64)
    } else {
        ("pending", 0)
    };
    let mut params = Vec::from(args![
        Value::Array(input),
        DELIVERY_QUEUE,
        workspace,
        state,
        lease_until.unwrap_or(now)
    ]);
    params.push(Arg::OptUuid(token));
    params.extend(args![attempts, now]);
    let inserted = tx.conn.execute(DISPATCH_SET_SQL, &params).await?;
    if inserted != deliveries.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "dispatch inserted {inserted} deliveries of {}",
            deliveries.len()
        )));
    }
    if token.is_none() {
        tx.woken.queue(DELIVERY_QUEUE);
    }
    Ok(out)
}

/// What a dispatch created.
#[derive(Clone, Debug, Default)]
pub struct Dispatched {
    pub deliveries: Vec<DeliveryId>,
    /// The deliveries' jobs, already leased to the dispatching process (when it asked).
    pub leased: Vec<LeasedDelivery>,
}

/// A delivery created leased to the process that dispatched it: its job, and the delivery
/// as written, so the worker need not read it back.
#[derive(Clone, Debug)]
pub struct LeasedDelivery {
    pub job: ClaimedJob,
    pub delivery: DeliveryRecord,
}

struct RecordAttempt {
    attempts_before: i64,
    job_id: JobId,
    lease_token: uuid::Uuid,
    workspace: WorkspaceId,
    delivery: DeliveryId,
    endpoint: EndpointId,
    attempt: NewAttempt,
    settlement: Settlement,
}

/// The result of recording an attempt.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// False when the job's lease had run out and another worker holds it: the attempt is
    /// logged, but the delivery's state is that worker's to decide.
    pub lease_held: bool,
    /// The `endpoint.disabled` event, when this attempt disabled the endpoint.
    pub disabled: Option<Event>,
}

/// Records a set of attempts in one PostgreSQL statement: the attempts, the jobs' fates
/// (only where the lease is still held), the deliveries' states and the endpoints' health
/// marks (one update per endpoint, from the set's outcomes in order). Disabling an endpoint
/// is not done here: a set containing one runs operation by operation.
const RECORD_SET_SQL: &str = "
WITH input AS (
    SELECT (x->>'attempt_id')::uuid AS attempt_id, (x->>'delivery_id')::uuid AS delivery_id,
           (x->>'workspace_id')::uuid AS workspace_id, (x->>'endpoint_id')::uuid AS endpoint_id,
           (x->>'number')::bigint AS number, (x->>'started_at')::bigint AS started_at,
           (x->>'duration_us')::bigint AS duration_us, x->'request' AS request, (x->>'status')::bigint AS status,
           CASE WHEN jsonb_typeof(x->'response') = 'null' THEN NULL ELSE x->'response' END AS response,
           x->>'error_kind' AS error_kind, x->>'error_message' AS error_message, x->>'verdict' AS verdict,
           (x->>'job_id')::uuid AS job_id, (x->>'token')::uuid AS token, x->>'kind' AS kind,
           (x->>'due')::bigint AS due, x->>'state' AS state, (x->>'next')::bigint AS next,
           (x->>'finished')::bigint AS finished, x->>'error' AS error, ord
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, ord)
),
logged AS (
    INSERT INTO delivery_attempts (id, delivery_id, workspace_id, endpoint_id, attempt, started_at, duration_us,
                                   request, status, response, error_kind, error_message, verdict)
    SELECT attempt_id, delivery_id, workspace_id, endpoint_id, number, started_at, duration_us, request, status,
           response, error_kind, error_message, verdict
    FROM input
),
finished_jobs AS (
    DELETE FROM jobs j USING input i
    WHERE i.kind = 'done' AND j.id = i.job_id AND j.lease_token = i.token
    RETURNING j.id
),
retried_jobs AS (
    UPDATE jobs j SET state = 'pending', due_at = i.due, lease_token = NULL, last_error = i.error_message, updated_at = $2
    FROM input i
    WHERE i.kind = 'retry' AND j.id = i.job_id AND j.lease_token = i.token
    RETURNING j.id
),
held AS (SELECT id FROM finished_jobs UNION ALL SELECT id FROM retried_jobs),
settled AS (
    UPDATE deliveries d SET state = i.state, attempts = i.number, next_attempt_at = i.next, last_status = i.status,
           last_error = i.error, finished_at = i.finished, updated_at = $2,
           job_id = CASE WHEN i.state = 'pending' THEN d.job_id ELSE NULL END
    FROM input i
    WHERE d.id = i.delivery_id AND i.job_id IN (SELECT id FROM held)
),
marks AS (
    SELECT (y->>'endpoint_id')::uuid AS endpoint_id, y->>'mode' AS mode
    FROM jsonb_array_elements($3::jsonb) AS u(y)
),
healthy AS (
    UPDATE endpoints e SET last_success_at = $2, failing_since = NULL
    FROM marks m
    WHERE e.id = m.endpoint_id AND m.mode = 'ok'
      AND (e.failing_since IS NOT NULL OR e.last_success_at IS NULL OR e.last_success_at < $4)
),
failing AS (
    UPDATE endpoints e SET last_failure_at = $2,
           failing_since = CASE WHEN m.mode = 'fail_after_success' THEN $2 ELSE COALESCE(e.failing_since, $2) END,
           last_success_at = CASE WHEN m.mode = 'fail_after_success' THEN $2 ELSE e.last_success_at END
    FROM marks m
    WHERE e.id = m.endpoint_id AND m.mode <> 'ok'
)
SELECT i.ord, (i.job_id IN (SELECT id FROM held)) AS held FROM input i ORDER BY i.ord";

impl RecordAttempt {
    /// The delivery's new state, next try, finish time and error after this attempt.
    fn outcome(&self, now: i64) -> (&'static str, Option<i64>, Option<i64>, Option<String>) {
        match &self.settlement {
            Settlement::Succeeded => ("succeeded", None, Some(now), None),
            Settlement::RetryAt(due) => (
                "pending",
                Some(*due),
                None,
                self.attempt.error_message.clone(),
            ),
            Settlement::Failed(error) | Settlement::FailedAndDisable { error, .. } => {
                ("failed", None, Some(now), Some(error.clone()))
            }
        }
    }

    fn input(&self, now: i64) -> Value {
        let (state, next, finished, error) = self.outcome(now);
        let a = &self.attempt;
        let (kind, due) = match &self.settlement {
            Settlement::RetryAt(due) => ("retry", Some(*due)),
            _ => ("done", None),
        };
        json!({
            "attempt_id": AttemptId::new(),
            "delivery_id": self.delivery,
            "workspace_id": self.workspace,
            "endpoint_id": self.endpoint,
            "number": self.attempts_before + 1,
            "started_at": a.started_at,
            "duration_us": a.duration_us,
            "request": a.request,
            "status": a.status,
            "response": a.response,
            "error_kind": a.error_kind,
            "error_message": a.error_message,
            "verdict": a.verdict,
            "job_id": self.job_id,
            "token": self.lease_token,
            "kind": kind,
            "due": due,
            "state": state,
            "next": next,
            "finished": finished,
            "error": error,
        })
    }
}

/// One health update per endpoint from a set's outcomes, in order: `ok` when the last was a
/// success; `fail` when all failed; `fail_after_success` when a success came before the last
/// failure (so the failing period starts now, as it would one by one).
fn health_marks(ops: &[&mut RecordAttempt]) -> Value {
    let mut marks: Vec<(EndpointId, bool, bool)> = Vec::new();
    for op in ops {
        let success = matches!(op.settlement, Settlement::Succeeded);
        match marks.iter_mut().find(|(e, ..)| *e == op.endpoint) {
            Some(mark) => {
                mark.2 |= mark.1;
                mark.1 = success;
            }
            None => marks.push((op.endpoint, success, false)),
        }
    }
    Value::Array(
        marks
            .into_iter()
            .map(|(endpoint, last_ok, had_success)| {
                let mode = match (last_ok, had_success) {
                    (true, _) => "ok",
                    (false, true) => "fail_after_success",
                    (false, false) => "fail",
                };
                json!({"endpoint_id": endpoint, "mode": mode})
            })
            .collect(),
    )
}

impl WriteOp for RecordAttempt {
    type Output = Recorded;
    const SET_BASED: bool = true;

    async fn run_set(ops: &mut [&mut Self], tx: &mut Tx<'_>) -> Result<Vec<Recorded>> {
        let disables = ops
            .iter()
            .any(|op| matches!(op.settlement, Settlement::FailedAndDisable { .. }));
        if tx.conn.dialect() != Dialect::Postgres || disables {
            let mut outputs = Vec::with_capacity(ops.len());
            for op in ops.iter_mut() {
                outputs.push(op.run(tx).await?);
            }
            return Ok(outputs);
        }
        let now = now_micros();
        let input = Value::Array(ops.iter().map(|op| op.input(now)).collect());
        let rows = tx
            .conn
            .fetch_all(
                RECORD_SET_SQL,
                &args![input, now, health_marks(ops), now - 1_000_000],
            )
            .await?;
        if rows.len() != ops.len() {
            return Err(StoreError::Corrupt(
                "an attempt set answered the wrong number of rows".into(),
            ));
        }
        rows.iter()
            .map(|row| {
                Ok(Recorded {
                    lease_held: row.bool("held")?,
                    disabled: None,
                })
            })
            .collect()
    }

    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Recorded> {
        let now = now_micros();
        // The worker holds the lease, so the count it read is still the delivery's.
        let number = self.attempts_before + 1;
        let a = &self.attempt;
        let mut params = Vec::from(args![
            AttemptId::new(),
            self.delivery,
            self.workspace,
            self.endpoint,
            number,
            a.started_at,
            a.duration_us,
            a.request.clone()
        ]);
        params.push(Arg::OptI64(a.status));
        params.push(Arg::OptJson(a.response.clone()));
        params.extend(args![
            a.error_kind.clone(),
            a.error_message.clone(),
            a.verdict.as_str()
        ]);
        tx.conn
            .execute(
                "INSERT INTO delivery_attempts (id, delivery_id, workspace_id, endpoint_id, attempt, started_at,
                                                duration_us, request, status, response, error_kind, error_message, verdict)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &params,
            )
            .await?;
        let how = match &self.settlement {
            Settlement::RetryAt(due) => Settle::Retry {
                due_at: *due,
                error: a.error_message.clone(),
            },
            _ => Settle::Complete,
        };
        let settled = settle(tx, self.job_id, self.lease_token, &how).await?;
        if !settled {
            return Ok(Recorded::default());
        }
        let (state, next, finished, error) = self.outcome(now);
        tx.conn
            .execute(
                "UPDATE deliveries SET state = $1, attempts = $2, next_attempt_at = $3, last_status = $4,
                        last_error = $5, finished_at = $6, updated_at = $7,
                        job_id = CASE WHEN $1 = 'pending' THEN job_id ELSE NULL END
                 WHERE id = $8",
                &[
                    Arg::from(state),
                    Arg::from(number),
                    Arg::OptI64(next),
                    Arg::OptI64(a.status),
                    Arg::OptText(error),
                    Arg::OptI64(finished),
                    Arg::from(now),
                    Arg::from(self.delivery),
                ],
            )
            .await?;
        // Health marks; written only when they change, so a busy healthy endpoint's row is
        // not rewritten by every success.
        if matches!(self.settlement, Settlement::Succeeded) {
            tx.conn
                .execute(
                    "UPDATE endpoints SET last_success_at = $1, failing_since = NULL
                     WHERE id = $2 AND (failing_since IS NOT NULL OR last_success_at IS NULL OR last_success_at < $3)",
                    &args![now, self.endpoint, now - 1_000_000],
                )
                .await?;
        } else {
            tx.conn
                .execute(
                    "UPDATE endpoints SET last_failure_at = $1, failing_since = COALESCE(failing_since, $1)
                     WHERE id = $2",
                    &args![now, self.endpoint],
                )
                .await?;
        }
        let mut disabled = None;
        if let Settlement::FailedAndDisable { reason, .. } = &self.settlement {
            let endpoint = endpoints::get(&mut tx.conn, self.workspace, self.endpoint).await?;
            if endpoint.enabled {
                tx.conn
                    .execute(
                        "UPDATE endpoints SET enabled = FALSE, disabled_reason = $1, disabled_at = $2,
                                version = version + 1, updated_at = $2
                         WHERE id = $3",
                        &args![reason.as_str(), now, self.endpoint],
                    )
                    .await?;
                let actor = Actor {
                    kind: ActorKind::System,
                    id: None,
                    name: "delivery worker".into(),
                    chain: 0,
                };
                disabled = Some(disabled_event(tx, &endpoint, reason, actor).await?);
            }
        }
        Ok(Recorded {
            lease_held: true,
            disabled,
        })
    }
}

/// Push a delivery's job to `until` without an attempt (an ordered endpoint waiting for an
/// earlier delivery of the same case).
struct Defer {
    job_id: JobId,
    lease_token: uuid::Uuid,
    delivery: DeliveryId,
    until: i64,
    reason: String,
}

impl WriteOp for Defer {
    type Output = bool;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<bool> {
        let now = now_micros();
        let how = Settle::Postpone {
            due_at: self.until,
            reason: self.reason.clone(),
        };
        let changed = settle(tx, self.job_id, self.lease_token, &how).await?;
        if changed {
            tx.conn
                .execute(
                    "UPDATE deliveries SET next_attempt_at = $1, updated_at = $2 WHERE id = $3",
                    &args![self.until, now, self.delivery],
                )
                .await?;
        }
        Ok(changed)
    }
}

/// Fail a held delivery without an attempt (its endpoint is disabled or gone).
struct Abandon {
    job_id: JobId,
    lease_token: uuid::Uuid,
    delivery: DeliveryId,
    reason: String,
}

impl WriteOp for Abandon {
    type Output = bool;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<bool> {
        let now = now_micros();
        let changed = settle(tx, self.job_id, self.lease_token, &Settle::Complete).await?;
        if changed {
            tx.conn
                .execute(
                    "UPDATE deliveries SET state = 'failed', last_error = $1, next_attempt_at = NULL, job_id = NULL,
                            finished_at = $2, updated_at = $2
                     WHERE id = $3 AND state = 'pending'",
                    &args![self.reason.as_str(), now, self.delivery],
                )
                .await?;
        }
        Ok(changed)
    }
}

/// Manual recovery operations on deliveries.
enum Manual {
    /// Retry one delivery now (same delivery, same `webhook-id`).
    RetryNow(DeliveryId),
    /// A new delivery of an event to an endpoint.
    Replay(NewDelivery),
    /// Every failed delivery of an endpoint created since a time goes pending again, unless
    /// the same event is already pending for the endpoint.
    Recover { endpoint: EndpointId, since: i64 },
}

struct ManualOp {
    workspace: WorkspaceId,
    what: Manual,
}

impl WriteOp for ManualOp {
    type Output = Vec<DeliveryId>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Vec<DeliveryId>> {
        let ws = self.workspace;
        match &self.what {
            Manual::RetryNow(id) => {
                let delivery = get(&mut tx.conn, ws, *id).await?;
                endpoints::get(&mut tx.conn, ws, delivery.endpoint_id).await?;
                reopen(tx, ws, &delivery, "retry").await?;
                Ok(vec![*id])
            }
            Manual::Replay(new) => {
                endpoints::get(&mut tx.conn, ws, new.endpoint_id).await?;
                Ok(vec![insert_delivery(tx, ws, new, "replay", None).await?.0])
            }
            Manual::Recover { endpoint, since } => {
                endpoints::get(&mut tx.conn, ws, *endpoint).await?;
                let rows = tx
                    .conn
                    .fetch_all(
                        &format!(
                            "SELECT {COLUMNS} FROM deliveries d
                             WHERE d.workspace_id = $1 AND d.endpoint_id = $2 AND d.state = 'failed'
                               AND d.created_at >= $3
                               AND NOT EXISTS (SELECT 1 FROM deliveries p
                                               WHERE p.endpoint_id = d.endpoint_id AND p.event_id = d.event_id
                                                 AND p.state = 'pending')
                             ORDER BY d.event_sequence, d.id"
                        ),
                        &args![ws, *endpoint, *since],
                    )
                    .await?;
                let mut seen = std::collections::HashSet::new();
                let mut ids = Vec::new();
                for row in &rows {
                    let delivery = delivery_from(row)?;
                    // Several failed deliveries of one event (a failed replay): recover one.
                    if seen.insert(delivery.event_id) {
                        reopen(tx, ws, &delivery, "recover").await?;
                        ids.push(delivery.id);
                    }
                }
                Ok(ids)
            }
        }
    }
}

/// Make a delivery due now: reschedule its pending job, or reopen a finished delivery with a
/// new job. Its id (and so its `webhook-id`) stays.
async fn reopen(
    tx: &mut Tx<'_>,
    ws: WorkspaceId,
    delivery: &DeliveryRecord,
    origin: &str,
) -> Result<()> {
    let now = now_micros();
    if delivery.state == "pending" {
        tx.conn
            .execute(
                "UPDATE jobs SET due_at = $1, updated_at = $1
                 WHERE id = (SELECT job_id FROM deliveries WHERE id = $2) AND state = 'pending'",
                &args![now, delivery.id],
            )
            .await?;
        tx.conn
            .execute(
                "UPDATE deliveries SET next_attempt_at = $1, updated_at = $1 WHERE id = $2",
                &args![now, delivery.id],
            )
            .await?;
        tx.woken.queue(DELIVERY_QUEUE);
        return Ok(());
    }
    let job = enqueue(tx, &delivery_job(ws, delivery.id, None)).await?;
    tx.conn
        .execute(
            "UPDATE deliveries SET state = 'pending', origin = $1, next_attempt_at = $2, finished_at = NULL,
                    job_id = $3, updated_at = $2
             WHERE id = $4",
            &args![origin, now, job, delivery.id],
        )
        .await?;
    Ok(())
}

impl Store {
    /// Workspaces with events past their dispatch cursor: one look at every workspace, for
    /// a dispatcher's first round and its periodic sweep (see `take_feed_news` for the rest).
    pub async fn dispatch_backlog(&self) -> Result<Vec<DispatchBacklog>> {
        let mut lease = self.read().await?;
        let rows = lease.conn().fetch_all(backlog_sql!(""), &[]).await?;
        rows.iter().map(backlog_from).collect()
    }

    /// Where one workspace's feed and dispatch cursor stand, if it has events past its cursor.
    pub async fn workspace_backlog(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<DispatchBacklog>> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional(backlog_sql!(" AND w.id = $1"), &args![workspace])
            .await?;
        row.as_ref().map(backlog_from).transpose()
    }

    /// The workspaces whose event feeds grew since the last call (in this process, or in
    /// another one that announced it), or `All` when that is not known; the next call returns
    /// only what comes after. The first call returns `All`. Meant for one dispatcher per
    /// store: two callers would split the news between them.
    pub fn take_feed_news(&self) -> crate::FeedNews {
        self.inner.notifiers.take_feed_news()
    }

    /// Commit the deliveries (and other jobs, such as API calls the events trigger) for the
    /// workspace's events `from+1 ..= to` and move its cursor to `to`; `Conflict` (nothing
    /// written) when the cursor is no longer at `from`. With a
    /// `lease`, the deliveries' jobs come back already leased to the caller, who hands them
    /// to its own workers: no claim round, no wake-up.
    pub async fn commit_dispatch(
        &self,
        workspace: WorkspaceId,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
        jobs: Vec<crate::NewJob>,
        lease: Option<Duration>,
    ) -> Result<Dispatched> {
        self.writer()
            .run(CommitDispatch {
                workspace,
                from,
                to,
                deliveries,
                jobs,
                lease,
            })
            .await
    }

    pub async fn get_delivery(
        &self,
        workspace: WorkspaceId,
        id: DeliveryId,
    ) -> Result<DeliveryRecord> {
        let mut lease = self.read().await?;
        get(&mut lease.conn(), workspace, id).await
    }

    /// The delivery a claimed job is for, with its event, in one read.
    pub async fn delivery_work(&self, job: &ClaimedJob) -> Result<(DeliveryRecord, Event)> {
        let (workspace, id) = job_target(job)?;
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("{WORK_SELECT} WHERE d.id = $1 AND d.workspace_id = $2"),
                &args![id, workspace],
                "delivery",
            )
            .await?;
        work_from(&row)
    }

    /// The deliveries of a batch of claimed jobs, with their events, in one read, by job. A
    /// job whose delivery is gone, or whose payload names none, is absent: the caller deals
    /// with it alone ([`Store::delivery_work`] says why).
    pub async fn deliveries_work(
        &self,
        jobs: &[ClaimedJob],
    ) -> Result<HashMap<JobId, (DeliveryRecord, Event)>> {
        let targets: Vec<(JobId, WorkspaceId, DeliveryId)> = jobs
            .iter()
            .filter_map(|job| job_target(job).ok().map(|(ws, id)| (job.id, ws, id)))
            .collect();
        if targets.is_empty() {
            return Ok(HashMap::new());
        }
        let placeholders: Vec<String> = (1..=targets.len()).map(|i| format!("${i}")).collect();
        let params: Vec<Arg> = targets.iter().map(|(_, _, id)| Arg::from(*id)).collect();
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!("{WORK_SELECT} WHERE d.id IN ({})", placeholders.join(", ")),
                &params,
            )
            .await?;
        let mut found: HashMap<DeliveryId, (DeliveryRecord, Event)> = HashMap::new();
        for row in &rows {
            let (delivery, event) = work_from(row)?;
            found.insert(delivery.id, (delivery, event));
        }
        // A job only gets a delivery of its own workspace, whatever its payload says.
        Ok(targets
            .into_iter()
            .filter_map(|(job, workspace, id)| {
                found
                    .remove(&id)
                    .filter(|(delivery, _)| delivery.workspace_id == workspace)
                    .map(|work| (job, work))
            })
            .collect())
    }

    /// The delivery a claimed job is for.
    pub async fn delivery_of_job(&self, job: &ClaimedJob) -> Result<DeliveryRecord> {
        let (workspace, id) = job_target(job)?;
        self.get_delivery(workspace, id).await
    }

    pub async fn list_deliveries(
        &self,
        workspace: WorkspaceId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>> {
        let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE workspace_id = $1");
        let mut params = vec![Arg::from(workspace)];
        let mut push = |clause: &str, arg: Arg| {
            params.push(arg);
            sql.push_str(&format!(" AND {clause} ${}", params.len()));
        };
        if let Some(e) = filter.endpoint_id {
            push("endpoint_id =", e.into());
        }
        if let Some(e) = filter.event_id {
            push("event_id =", e.into());
        }
        if let Some(c) = filter.case_id {
            push("case_id =", c.into());
        }
        if let Some(s) = &filter.state {
            push("state =", s.as_str().into());
        }
        if let Some(t) = filter.created_after {
            push("created_at >=", t.into());
        }
        if let Some(t) = filter.created_before {
            push("created_at <", t.into());
        }
        if let Some(d) = filter.before {
            push("id <", d.into());
        }
        params.push(Arg::from(filter.limit));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let mut lease = self.read().await?;
        let rows = lease.conn().fetch_all(&sql, &params).await?;
        rows.iter().map(delivery_from).collect()
    }

    /// A delivery's attempts, first to last.
    pub async fn list_attempts(
        &self,
        workspace: WorkspaceId,
        delivery: DeliveryId,
    ) -> Result<Vec<AttemptRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                "SELECT id, delivery_id, attempt, started_at, duration_us, request, status, response, error_kind,
                        error_message, verdict
                 FROM delivery_attempts WHERE delivery_id = $1 AND workspace_id = $2 ORDER BY attempt, started_at",
                &args![delivery, workspace],
            )
            .await?;
        rows.iter().map(attempt_from).collect()
    }

    /// Record an attempt of the delivery a worker holds the job of, and settle it.
    pub async fn record_attempt(
        &self,
        job: &ClaimedJob,
        delivery: &DeliveryRecord,
        attempt: NewAttempt,
        settlement: Settlement,
    ) -> Result<Recorded> {
        self.writer()
            .run(RecordAttempt {
                attempts_before: delivery.attempts,
                job_id: job.id,
                lease_token: job.lease_token,
                workspace: delivery.workspace_id,
                delivery: delivery.id,
                endpoint: delivery.endpoint_id,
                attempt,
                settlement,
            })
            .await
    }

    /// Let a held delivery wait until `until` without counting an attempt.
    pub async fn defer_delivery(
        &self,
        job: &ClaimedJob,
        delivery: DeliveryId,
        until: i64,
        reason: &str,
    ) -> Result<bool> {
        self.writer()
            .run(Defer {
                job_id: job.id,
                lease_token: job.lease_token,
                delivery,
                until,
                reason: reason.into(),
            })
            .await
    }

    /// Fail a held delivery without sending it (endpoint disabled or deleted); it can be
    /// recovered later.
    pub async fn abandon_delivery(
        &self,
        job: &ClaimedJob,
        delivery: DeliveryId,
        reason: &str,
    ) -> Result<bool> {
        self.writer()
            .run(Abandon {
                job_id: job.id,
                lease_token: job.lease_token,
                delivery,
                reason: reason.into(),
            })
            .await
    }

    /// The earliest still-pending delivery of the same case to the endpoint that comes
    /// before `sequence`, with when it is next due: what an ordered delivery waits for.
    pub async fn earlier_pending_delivery(
        &self,
        delivery: &DeliveryRecord,
    ) -> Result<Option<(DeliveryId, Option<i64>)>> {
        let Some(case) = delivery.case_id else {
            return Ok(None);
        };
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional(
                "SELECT id, next_attempt_at FROM deliveries
                 WHERE endpoint_id = $1 AND case_id = $2 AND state = 'pending' AND event_sequence < $3
                 ORDER BY event_sequence LIMIT 1",
                &args![delivery.endpoint_id, case, delivery.event_sequence],
            )
            .await?;
        row.map(|r| Ok((DeliveryId(r.uuid("id")?), r.opt_i64("next_attempt_at")?)))
            .transpose()
    }

    /// Retry a delivery now, keeping its id and `webhook-id`.
    pub async fn retry_delivery_now(
        &self,
        workspace: WorkspaceId,
        id: DeliveryId,
    ) -> Result<DeliveryRecord> {
        self.writer()
            .run(ManualOp {
                workspace,
                what: Manual::RetryNow(id),
            })
            .await?;
        self.get_delivery(workspace, id).await
    }

    /// Send an event to an endpoint again, as a new delivery.
    pub async fn replay_event(
        &self,
        workspace: WorkspaceId,
        new: NewDelivery,
    ) -> Result<DeliveryRecord> {
        let ids = self
            .writer()
            .run(ManualOp {
                workspace,
                what: Manual::Replay(new),
            })
            .await?;
        let id = ids
            .first()
            .copied()
            .ok_or_else(|| StoreError::Corrupt("replay created no delivery".into()))?;
        self.get_delivery(workspace, id).await
    }

    /// Reopen every failed delivery of `endpoint` created since `since` (µs), skipping events
    /// already pending for it; returns the reopened deliveries.
    pub async fn recover_failed_deliveries(
        &self,
        workspace: WorkspaceId,
        endpoint: EndpointId,
        since: i64,
    ) -> Result<Vec<DeliveryId>> {
        self.writer()
            .run(ManualOp {
                workspace,
                what: Manual::Recover { endpoint, since },
            })
            .await
    }

    /// Attempt counts and recent latencies of an endpoint since `since` (µs).
    pub async fn attempt_stats(
        &self,
        workspace: WorkspaceId,
        endpoint: EndpointId,
        since: i64,
    ) -> Result<AttemptStats> {
        let mut lease = self.read().await?;
        let mut conn = lease.conn();
        let counts = conn
            .fetch_one(
                "SELECT COUNT(*) AS attempts,
                        COALESCE(SUM(CASE WHEN verdict = 'success' THEN 1 ELSE 0 END), 0) AS successes
                 FROM delivery_attempts WHERE endpoint_id = $1 AND workspace_id = $2 AND started_at >= $3",
                &args![endpoint, workspace, since],
                "stats",
            )
            .await?;
        let rows = conn
            .fetch_all(
                "SELECT duration_us FROM delivery_attempts
                 WHERE endpoint_id = $1 AND workspace_id = $2 AND started_at >= $3
                 ORDER BY started_at DESC LIMIT $4",
                &args![endpoint, workspace, since, STATS_SAMPLE],
            )
            .await?;
        let mut durations = rows
            .iter()
            .map(|r| r.i64("duration_us"))
            .collect::<Result<Vec<_>>>()?;
        durations.sort_unstable();
        Ok(AttemptStats {
            attempts: counts.i64("attempts")?,
            successes: counts.i64("successes")?,
            durations_us: durations,
        })
    }

    /// Whether the endpoint has deliveries waiting for a retry (health: Attention).
    pub async fn pending_retries(
        &self,
        workspace: WorkspaceId,
        endpoint: EndpointId,
    ) -> Result<i64> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_one(
                "SELECT COUNT(*) AS n FROM deliveries
                 WHERE endpoint_id = $1 AND workspace_id = $2 AND state = 'pending' AND attempts > 0",
                &args![endpoint, workspace],
                "count",
            )
            .await?
            .i64("n")
    }
}
