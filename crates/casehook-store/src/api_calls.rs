//! What API-call fields leave behind: each field's state per case (the metadata users see:
//! status, fetched_at, error, attempts, duration, cached), the log of every HTTP call, and
//! the response cache.
//!
//! A run's outcome is settled in one transaction: the mapped values (a normal case update
//! whose actor is the API call, so it produces `case.updated`), the field's state, and on
//! failure an `api_call.failed` event.

use casehook_core::event::{Actor, Event, NewEvent};
use casehook_core::{ApiCallLogId, CaseId, ConnectionId, WorkspaceId};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::Store;
use crate::cases::{CasePatch, UpdateCase};
use crate::db::{Conn, Dialect, Row, args, from_micros, now_micros};
use crate::error::Result;
use crate::events::append;
use crate::writer::{Tx, WriteOp};

/// The job queue API-call runs (and sequences' actions) go on.
pub const API_CALL_QUEUE: &str = "api_calls";

/// The state of one API-call field of one case.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApiCallState {
    pub field: String,
    /// `ok`, `failed`, `manual` (overwritten by hand), or `pending`: no run has settled
    /// yet, and one is under way (see `run`).
    pub status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fetched_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    pub attempts: i64,
    pub duration_ms: Option<i64>,
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// A run under way and not settled yet, whatever the last settled one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<OpenRun>,
}

/// A run of an API-call field that has not settled: waiting for a worker, in flight, or
/// waiting to try again after a failure that may pass.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OpenRun {
    pub state: RunStage,
    /// `on_create`, `on_update`, `manual` or `scheduled`, as the run was asked for.
    pub trigger: Option<String>,
    /// Tries started so far (the one in flight included).
    pub attempts: i64,
    /// Why the last try failed (`retrying`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next try starts (`queued`, `retrying`).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_try_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
}

/// How far an open run is, furthest along first: of two runs of one field, the one shown
/// is the furthest along, then the oldest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStage {
    Running,
    Retrying,
    Queued,
}

/// The outcome of a run, to settle.
#[derive(Clone, Debug)]
pub struct ApiCallOutcome {
    pub workspace: WorkspaceId,
    pub case_id: CaseId,
    pub field: String,
    /// Values to write (validated against the form at `form_version`); empty on failure.
    pub data: Map<String, Value>,
    pub form_version: i64,
    pub actor: Actor,
    /// `None` on success; the message on failure (the field keeps its value).
    pub error: Option<String>,
    pub attempts: i64,
    pub duration_ms: i64,
    pub cached: bool,
    /// Anything worth showing beside the state (mapping problems, the status code).
    pub detail: Option<Value>,
}

/// One logged HTTP call.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApiCallLogRecord {
    pub id: ApiCallLogId,
    #[serde(skip)]
    pub workspace_id: WorkspaceId,
    pub case_id: Option<CaseId>,
    pub field: Option<String>,
    pub connection_id: Option<ConnectionId>,
    pub operation: Option<String>,
    pub dry_run: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: f64,
    /// Method, URL, headers and body excerpt, secrets redacted.
    pub request: Value,
    pub status: Option<i64>,
    /// Headers and body excerpt, secrets redacted.
    pub response: Option<Value>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// `ok`, `failed` or `retry`.
    pub verdict: String,
}

/// A call to log.
#[derive(Clone, Debug)]
pub struct NewApiCallLog {
    pub workspace: WorkspaceId,
    pub case_id: Option<CaseId>,
    pub field: Option<String>,
    pub connection_id: Option<ConnectionId>,
    pub operation: Option<String>,
    pub dry_run: bool,
    pub started_at: i64,
    pub duration_us: i64,
    pub request: Value,
    pub status: Option<i64>,
    pub response: Option<Value>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub verdict: String,
}

/// A cached answer.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedResponse {
    pub status: i64,
    pub body: Vec<u8>,
    pub stored_at: OffsetDateTime,
}

fn state_from(row: &Row) -> Result<ApiCallState> {
    Ok(ApiCallState {
        field: row.text("field_key")?,
        status: row.text("status")?,
        fetched_at: row.opt_i64("fetched_at")?.map(from_micros).transpose()?,
        error: row.opt_text("error")?,
        attempts: row.i64("attempts")?,
        duration_ms: row.opt_i64("duration_ms")?,
        cached: row.bool("cached")?,
        detail: row.opt_json("detail")?,
        updated_at: from_micros(row.i64("updated_at")?)?,
        run: None,
    })
}

/// An open API-call job as the run of a field (`None` for a job that is not a field's run,
/// such as a schedule's fan-out or a sequence's action).
fn open_run_from(row: &Row) -> Result<Option<(String, OpenRun)>> {
    let payload = row.json("payload")?;
    let Some(field) = payload.get("field").and_then(Value::as_str) else {
        return Ok(None);
    };
    let attempts = row.i64("attempts")?;
    let due_at = from_micros(row.i64("due_at")?)?;
    let (state, next_try_at) = match (row.text("state")?.as_str(), attempts) {
        ("running", _) => (RunStage::Running, None),
        (_, 0) => (RunStage::Queued, Some(due_at)),
        _ => (RunStage::Retrying, Some(due_at)),
    };
    let run = OpenRun {
        state,
        trigger: payload
            .get("trigger")
            .and_then(Value::as_str)
            .map(str::to_owned),
        attempts,
        last_error: if state == RunStage::Retrying {
            row.opt_text("last_error")?
        } else {
            None
        },
        next_try_at,
        queued_at: from_micros(row.i64("created_at")?)?,
    };
    Ok(Some((field.to_owned(), run)))
}

/// Attach each field's open run to its state; a field with a run and no settled state yet
/// gets a `pending` one.
fn with_open_runs(
    mut states: Vec<ApiCallState>,
    runs: Vec<(String, OpenRun)>,
) -> Vec<ApiCallState> {
    for (field, run) in runs {
        match states.iter_mut().find(|s| s.field == field) {
            Some(state) => {
                let rank = |r: &OpenRun| (r.state, r.queued_at);
                if state
                    .run
                    .as_ref()
                    .is_none_or(|shown| rank(&run) < rank(shown))
                {
                    state.run = Some(run);
                }
            }
            None => states.push(ApiCallState {
                field,
                status: "pending".into(),
                fetched_at: None,
                error: None,
                attempts: 0,
                duration_ms: None,
                cached: false,
                detail: None,
                updated_at: run.queued_at,
                run: Some(run),
            }),
        }
    }
    states.sort_by(|a, b| a.field.cmp(&b.field));
    states
}

fn log_from(row: &Row) -> Result<ApiCallLogRecord> {
    Ok(ApiCallLogRecord {
        id: ApiCallLogId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        case_id: row.opt_uuid("case_id")?.map(CaseId),
        field: row.opt_text("field_key")?,
        connection_id: row.opt_uuid("connection_id")?.map(ConnectionId),
        operation: row.opt_text("operation")?,
        dry_run: row.bool("dry_run")?,
        started_at: from_micros(row.i64("started_at")?)?,
        duration_ms: row.i64("duration_us")? as f64 / 1000.0,
        request: row.json("request")?,
        status: row.opt_i64("status")?,
        response: row.opt_json("response")?,
        error_kind: row.opt_text("error_kind")?,
        error: row.opt_text("error")?,
        verdict: row.text("verdict")?,
    })
}

/// Record a field's state (insert or replace).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn put_state(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    case: CaseId,
    field: &str,
    status: &str,
    fetched_at: Option<i64>,
    error: Option<String>,
    attempts: i64,
    duration_ms: Option<i64>,
    cached: bool,
    detail: Option<Value>,
) -> Result<()> {
    conn.execute(
        "DELETE FROM api_call_states WHERE case_id = $1 AND field_key = $2",
        &args![case, field],
    )
    .await?;
    conn.execute(
        "INSERT INTO api_call_states (workspace_id, case_id, field_key, status, fetched_at, error, attempts, duration_ms, cached, detail, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &args![
            workspace,
            case,
            field,
            status,
            fetched_at,
            error,
            attempts,
            duration_ms,
            cached,
            detail,
            now_micros()
        ],
    )
    .await?;
    Ok(())
}

struct Settle(ApiCallOutcome);

impl WriteOp for Settle {
    type Output = (Option<ApiCallState>, Vec<Event>);
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        let o = &self.0;
        let mut events = Vec::new();
        if !o.data.is_empty() {
            let mut update = UpdateCase {
                workspace: o.workspace,
                id: o.case_id,
                patch: CasePatch {
                    data: o.data.clone(),
                    form_version: Some(o.form_version),
                    ..CasePatch::default()
                },
                expected_version: None,
                actor: o.actor.clone(),
                skip_triggers: false,
            };
            events = update.run(tx).await?.1;
        } else {
            // The case must still be there (and the workspace's).
            tx.conn
                .fetch_one(
                    "SELECT id FROM cases WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
                    &args![o.case_id, o.workspace],
                    "case",
                )
                .await?;
        }
        let now = now_micros();
        let (status, fetched_at) = match &o.error {
            None => ("ok", Some(now)),
            Some(_) => ("failed", None),
        };
        // A failure keeps the time of the last good value.
        let fetched_at = match fetched_at {
            Some(t) => Some(t),
            None => tx
                .conn
                .fetch_optional(
                    "SELECT fetched_at FROM api_call_states WHERE case_id = $1 AND field_key = $2",
                    &args![o.case_id, o.field.as_str()],
                )
                .await?
                .and_then(|r| r.opt_i64("fetched_at").ok().flatten()),
        };
        put_state(
            &mut tx.conn,
            o.workspace,
            o.case_id,
            &o.field,
            status,
            fetched_at,
            o.error.clone(),
            o.attempts,
            Some(o.duration_ms),
            o.cached,
            o.detail.clone(),
        )
        .await?;
        if let Some(error) = &o.error {
            let form = tx
                .conn
                .fetch_one(
                    "SELECT form_id FROM cases WHERE id = $1",
                    &args![o.case_id],
                    "case",
                )
                .await?
                .uuid("form_id")?;
            events.extend(
                append(
                    tx,
                    o.workspace,
                    vec![NewEvent {
                        event_type: "api_call.failed".into(),
                        case_id: Some(o.case_id),
                        form_id: Some(casehook_core::FormId(form)),
                        actor: o.actor.clone(),
                        data: serde_json::json!({
                            "field": o.field,
                            "error": error,
                            "attempts": o.attempts,
                            "detail": o.detail,
                        }),
                        changes: None,
                        skip_triggers: false,
                    }],
                )
                .await?,
            );
        }
        let state = tx
            .conn
            .fetch_optional(
                "SELECT * FROM api_call_states WHERE case_id = $1 AND field_key = $2",
                &args![o.case_id, o.field.as_str()],
            )
            .await?;
        Ok((state.as_ref().map(state_from).transpose()?, events))
    }
}

struct LogCall(NewApiCallLog);

impl WriteOp for LogCall {
    type Output = ApiCallLogId;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<ApiCallLogId> {
        let l = &self.0;
        let id = ApiCallLogId::new();
        tx.conn
            .execute(
                "INSERT INTO api_call_log (id, workspace_id, case_id, field_key, connection_id, operation, dry_run,
                                           started_at, duration_us, request, status, response, error_kind, error, verdict)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                &args![
                    id,
                    l.workspace,
                    l.case_id,
                    l.field.clone(),
                    l.connection_id,
                    l.operation.clone(),
                    l.dry_run,
                    l.started_at,
                    l.duration_us,
                    l.request.clone(),
                    l.status,
                    l.response.clone(),
                    l.error_kind.clone(),
                    l.error.clone(),
                    l.verdict.as_str()
                ],
            )
            .await?;
        Ok(id)
    }
}

struct PutCache {
    key: String,
    workspace: WorkspaceId,
    status: i64,
    body: Vec<u8>,
    expires_at: i64,
}

impl WriteOp for PutCache {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        tx.conn
            .execute(
                "DELETE FROM api_call_cache WHERE cache_key = $1",
                &args![self.key.as_str()],
            )
            .await?;
        tx.conn
            .execute(
                "INSERT INTO api_call_cache (cache_key, workspace_id, status, body, stored_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &args![
                    self.key.as_str(),
                    self.workspace,
                    self.status,
                    self.body.clone(),
                    now_micros(),
                    self.expires_at
                ],
            )
            .await?;
        Ok(())
    }
}

struct Prune {
    now: i64,
    log_before: i64,
    limit: i64,
}

impl WriteOp for Prune {
    type Output = u64;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<u64> {
        let cache = tx
            .conn
            .execute(
                "DELETE FROM api_call_cache WHERE cache_key IN
                   (SELECT cache_key FROM api_call_cache WHERE expires_at <= $1 LIMIT $2)",
                &args![self.now, self.limit],
            )
            .await?;
        let log = tx
            .conn
            .execute(
                "DELETE FROM api_call_log WHERE id IN
                   (SELECT id FROM api_call_log WHERE started_at < $1 LIMIT $2)",
                &args![self.log_before, self.limit],
            )
            .await?;
        Ok(cache + log)
    }
}

/// Filters for the call log; newest first.
#[derive(Clone, Debug, Default)]
pub struct ApiCallLogFilter {
    pub case_id: Option<CaseId>,
    pub field: Option<String>,
    pub connection_id: Option<ConnectionId>,
    /// Only entries older than this one (the previous page's last id).
    pub before: Option<ApiCallLogId>,
    pub limit: i64,
}

impl Store {
    /// Settle a run: values, state and (on failure) `api_call.failed`, in one transaction.
    /// Returns the new state and the events written.
    pub async fn settle_api_call(
        &self,
        outcome: ApiCallOutcome,
    ) -> Result<(Option<ApiCallState>, Vec<Event>)> {
        self.writer().run(Settle(outcome)).await
    }

    /// The states of a case's API-call fields, each with its run under way if one is.
    pub async fn api_call_states(
        &self,
        workspace: WorkspaceId,
        case: CaseId,
    ) -> Result<Vec<ApiCallState>> {
        let mut lease = self.read().await?;
        let mut conn = lease.conn();
        let rows = conn
            .fetch_all(
                "SELECT * FROM api_call_states WHERE case_id = $1 AND workspace_id = $2 ORDER BY field_key",
                &args![case, workspace],
            )
            .await?;
        let states = rows.iter().map(state_from).collect::<Result<Vec<_>>>()?;
        // The expression and the queue are spelled as in the partial index (migration 10).
        let case_in_payload = match conn.dialect() {
            Dialect::Sqlite => "json_extract(payload, '$.case_id')",
            Dialect::Postgres => "(payload ->> 'case_id')",
        };
        let jobs = conn
            .fetch_all(
                &format!(
                    "SELECT payload, state, attempts, due_at, last_error, created_at FROM jobs
                     WHERE workspace_id = $1 AND {case_in_payload} = $2 AND queue = '{API_CALL_QUEUE}'
                       AND state IN ('pending', 'running')"
                ),
                &args![workspace, case.as_uuid().to_string()],
            )
            .await?;
        let mut runs = Vec::with_capacity(jobs.len());
        for row in &jobs {
            runs.extend(open_run_from(row)?);
        }
        Ok(with_open_runs(states, runs))
    }

    pub async fn log_api_call(&self, entry: NewApiCallLog) -> Result<ApiCallLogId> {
        self.writer().run(LogCall(entry)).await
    }

    /// The workspace's call log, newest first.
    pub async fn list_api_call_log(
        &self,
        workspace: WorkspaceId,
        filter: &ApiCallLogFilter,
    ) -> Result<Vec<ApiCallLogRecord>> {
        let mut sql = String::from("SELECT * FROM api_call_log WHERE workspace_id = $1");
        let mut params = vec![crate::db::Arg::from(workspace)];
        let mut add = |clause: &str, arg: crate::db::Arg| {
            params.push(arg);
            sql.push_str(&format!(" AND {clause} ${}", params.len()));
        };
        if let Some(case) = filter.case_id {
            add("case_id =", case.into());
        }
        if let Some(field) = &filter.field {
            add("field_key =", field.clone().into());
        }
        if let Some(connection) = filter.connection_id {
            add("connection_id =", connection.into());
        }
        if let Some(before) = filter.before {
            add("id <", before.into());
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            filter.limit.clamp(1, 500)
        ));
        let mut lease = self.read().await?;
        let rows = lease.conn().fetch_all(&sql, &params).await?;
        rows.iter().map(log_from).collect()
    }

    /// A cached answer that has not expired.
    pub async fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional(
                "SELECT status, body, stored_at FROM api_call_cache WHERE cache_key = $1 AND expires_at > $2",
                &args![key, now_micros()],
            )
            .await?;
        row.map(|r| {
            Ok(CachedResponse {
                status: r.i64("status")?,
                body: r.bytes("body")?,
                stored_at: from_micros(r.i64("stored_at")?)?,
            })
        })
        .transpose()
    }

    pub async fn cache_response(
        &self,
        key: String,
        workspace: WorkspaceId,
        status: i64,
        body: Vec<u8>,
        expires_at: i64,
    ) -> Result<()> {
        self.writer()
            .run(PutCache {
                key,
                workspace,
                status,
                body,
                expires_at,
            })
            .await
    }

    /// Delete expired cache entries and log entries older than `log_before`, at most `limit`
    /// of each; how many.
    pub async fn prune_api_calls(&self, log_before: i64, limit: i64) -> Result<u64> {
        self.writer()
            .run(Prune {
                now: now_micros(),
                log_before,
                limit,
            })
            .await
    }
}
