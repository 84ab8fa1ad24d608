//! The request log: every request a hook received, whatever became of it, listable with
//! filters; and the pruning of old entries and expired idempotency keys.

use std::sync::{Arc, LazyLock};

use casehook_core::inbound::outcome::Accepted;
use casehook_core::{CaseId, InboundHookId, InboundRequestId, WorkspaceId};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Arg, Conn, Row, args, from_micros, now_micros, raw_json};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// The request log entry of a request.
#[derive(Clone, Debug)]
pub struct NewInboundRequest {
    pub id: InboundRequestId,
    pub workspace: WorkspaceId,
    pub hook_id: InboundHookId,
    /// Microseconds since the epoch.
    pub received_at: i64,
    pub source_ip: String,
    pub flags: Vec<&'static str>,
    /// The query string, secrets already redacted.
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// `[[name, value], …]`, secrets already redacted.
    pub headers: Value,
    pub body: Option<Vec<u8>>,
    pub body_bytes: i64,
    pub body_truncated: bool,
    /// `passed`, `failed` or `not_checked`.
    pub verification: &'static str,
    pub verification_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
    pub outcome: String,
    pub response: Value,
    pub case_id: Option<CaseId>,
    pub replay_of: Option<InboundRequestId>,
}

/// A stored request log entry.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundRequestRecord {
    pub id: InboundRequestId,
    pub hook_id: InboundHookId,
    pub received_at: OffsetDateTime,
    pub duration_us: i64,
    pub source_ip: String,
    pub flags: Vec<String>,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub headers: Value,
    pub body: Option<Vec<u8>>,
    pub body_bytes: i64,
    pub body_truncated: bool,
    pub verification: String,
    pub verification_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
    pub outcome: String,
    pub response: Value,
    pub case_id: Option<CaseId>,
    pub replay_of: Option<InboundRequestId>,
}

/// Filters for a hook's request log, newest first.
#[derive(Clone, Debug, Default)]
pub struct InboundRequestFilter {
    pub outcome: Option<String>,
    pub status: Option<u16>,
    pub case_id: Option<CaseId>,
    pub received_after: Option<i64>,
    pub received_before: Option<i64>,
    /// Only entries older than this one (the previous page's last id).
    pub before: Option<InboundRequestId>,
    pub limit: i64,
}

const REQUEST_COLUMNS: &str = "id, hook_id, received_at, duration_us, source_ip, flags, query, content_type, headers, body, \
     body_bytes, body_truncated, verification, verification_error, idempotency_key, status, outcome, response, \
     case_id, replay_of";

// Built once: this runs in the writer for every request a hook receives.
static INSERT_REQUEST_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO inbound_requests ({REQUEST_COLUMNS}, workspace_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    )
});

fn request_from(row: &Row) -> Result<InboundRequestRecord> {
    let flags = row.text("flags")?;
    Ok(InboundRequestRecord {
        id: InboundRequestId(row.uuid("id")?),
        hook_id: InboundHookId(row.uuid("hook_id")?),
        received_at: from_micros(row.i64("received_at")?)?,
        duration_us: row.i64("duration_us")?,
        source_ip: row.text("source_ip")?,
        flags: flags
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        query: row.opt_text("query")?,
        content_type: row.opt_text("content_type")?,
        headers: row.json("headers")?,
        body: row.opt_bytes("body")?,
        body_bytes: row.i64("body_bytes")?,
        body_truncated: row.bool("body_truncated")?,
        verification: row.text("verification")?,
        verification_error: row.opt_text("verification_error")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        status: u16::try_from(row.i64("status")?)
            .map_err(|_| StoreError::Corrupt("request status out of range".into()))?,
        outcome: row.text("outcome")?,
        response: row.json("response")?,
        case_id: row.opt_uuid("case_id")?.map(CaseId),
        replay_of: row.opt_uuid("replay_of")?.map(InboundRequestId),
    })
}

/// What became of a request, when the write that logs it decides it (otherwise the entry's
/// own fields say).
pub(super) struct Settled<'a> {
    pub status: u16,
    pub outcome: &'a str,
    pub response: Value,
    pub case_id: Option<CaseId>,
}

impl<'a> Settled<'a> {
    /// A request answered with `accepted` (processed now, or the first outcome of its key).
    pub fn answered(accepted: &Accepted, outcome: &'a str) -> Self {
        Self {
            status: 200,
            outcome,
            response: accepted.body(),
            case_id: accepted.items.first().map(|i| i.case_id),
        }
    }
}

/// Write `r`'s log entry; `headers` is its `headers`, serialized before the write was
/// queued.
pub(super) async fn insert_request(
    conn: &mut Conn<'_>,
    r: &NewInboundRequest,
    headers: Arc<RawValue>,
    settled: Option<Settled<'_>>,
) -> Result<()> {
    let (status, outcome, response, case_id) = match settled {
        Some(s) => (s.status, s.outcome, s.response, s.case_id),
        None => (r.status, r.outcome.as_str(), r.response.clone(), r.case_id),
    };
    let duration = (now_micros() - r.received_at).max(0);
    conn.execute(
        &INSERT_REQUEST_SQL,
        &args![
            r.id,
            r.hook_id,
            r.received_at,
            duration,
            r.source_ip.as_str(),
            r.flags.join(","),
            r.query.clone(),
            r.content_type.clone(),
            headers,
            r.body.clone(),
            r.body_bytes,
            r.body_truncated,
            r.verification,
            r.verification_error.clone(),
            r.idempotency_key.clone(),
            i64::from(status),
            outcome,
            response,
            case_id,
            r.replay_of,
            r.workspace
        ],
    )
    .await?;
    Ok(())
}

struct LogRequest {
    request: NewInboundRequest,
    headers: Arc<RawValue>,
}

impl WriteOp for LogRequest {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        insert_request(&mut tx.conn, &self.request, self.headers.clone(), None).await
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
        let keys = tx
            .conn
            .execute(
                "DELETE FROM inbound_idempotency WHERE (hook_id, idem_key) IN
                   (SELECT hook_id, idem_key FROM inbound_idempotency WHERE expires_at <= $1 LIMIT $2)",
                &args![self.now, self.limit],
            )
            .await?;
        let requests = tx
            .conn
            .execute(
                "DELETE FROM inbound_requests WHERE id IN
                   (SELECT id FROM inbound_requests WHERE received_at < $1 LIMIT $2)",
                &args![self.log_before, self.limit],
            )
            .await?;
        Ok(keys + requests)
    }
}

impl Store {
    /// Log a request that was not applied (refused, invalid, or failed in the store).
    pub async fn log_inbound_request(&self, request: NewInboundRequest) -> Result<()> {
        let headers = raw_json(&request.headers)?;
        self.writer().run(LogRequest { request, headers }).await
    }

    /// A hook's request log, newest first.
    pub async fn list_inbound_requests(
        &self,
        workspace: WorkspaceId,
        hook: InboundHookId,
        filter: &InboundRequestFilter,
    ) -> Result<Vec<InboundRequestRecord>> {
        let mut sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM inbound_requests WHERE workspace_id = $1 AND hook_id = $2"
        );
        let mut params = vec![Arg::from(workspace), Arg::from(hook)];
        let mut push = |clause: &str, arg: Arg| {
            params.push(arg);
            sql.push_str(&format!(" AND {clause} ${}", params.len()));
        };
        if let Some(o) = &filter.outcome {
            push("outcome =", o.as_str().into());
        }
        if let Some(s) = filter.status {
            push("status =", i64::from(s).into());
        }
        if let Some(c) = filter.case_id {
            push("case_id =", c.into());
        }
        if let Some(t) = filter.received_after {
            push("received_at >=", t.into());
        }
        if let Some(t) = filter.received_before {
            push("received_at <", t.into());
        }
        if let Some(r) = filter.before {
            push("id <", r.into());
        }
        params.push(Arg::from(filter.limit));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let mut lease = self.read().await?;
        let rows = lease.conn().fetch_all(&sql, &params).await?;
        rows.iter().map(request_from).collect()
    }

    pub async fn get_inbound_request(
        &self,
        workspace: WorkspaceId,
        hook: InboundHookId,
        id: InboundRequestId,
    ) -> Result<InboundRequestRecord> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM inbound_requests WHERE id = $1 AND workspace_id = $2 AND hook_id = $3"
                ),
                &args![id, workspace, hook],
                "inbound request",
            )
            .await?;
        request_from(&row)
    }

    /// Forget idempotency keys past their window and request log entries received before
    /// `log_before` (microseconds), at most `limit` rows of each per call. Returns how many
    /// rows went.
    pub async fn prune_inbound(&self, log_before: i64, limit: i64) -> Result<u64> {
        self.writer()
            .run(Prune {
                now: now_micros(),
                log_before,
                limit,
            })
            .await
    }
}
