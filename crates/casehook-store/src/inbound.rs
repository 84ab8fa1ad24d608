//! Inbound hooks (incoming webhooks): their stored configuration and sealed secrets, the URL
//! tokens that name them, the request log, idempotency keys, and the one write that applies
//! an accepted request.
//!
//! The configuration is stored whole as JSON, checked by the server before it gets here.
//! What only the database can answer is decided here, inside the transaction of the change:
//! which case a request matches, whether its idempotency key was seen (so 100 concurrent
//! retries create one case), and that the case change, its events, the key and the request's
//! log entry commit together or not at all.

use casehook_core::event::{Actor, NewEvent};
use casehook_core::inbound::outcome::{Accepted, ItemAction, ItemOutcome};
use casehook_core::{CaseId, FormId, InboundHookId, InboundRequestId, WorkspaceId};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::cases::{
    COLUMNS as CASE_COLUMNS, CasePatch, CreateCase, NewCase, UpdateCase, case_from,
    data_equals_clause,
};
use crate::db::{Arg, Conn, Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::events::append;
use crate::writer::{Tx, WriteOp};

/// A stored inbound hook.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundHookRecord {
    pub id: InboundHookId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub form_id: FormId,
    pub config: Value,
    /// The verifications' secrets, sealed.
    pub secrets: Option<Vec<u8>>,
    pub enabled: bool,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A URL token: looked up by `hash`, kept `sealed` so admins can read the URL again.
#[derive(Clone, Debug)]
pub struct NewHookToken {
    pub hash: String,
    pub sealed: Vec<u8>,
}

/// A token of a hook as stored: the current one has no expiry.
#[derive(Clone, Debug, PartialEq)]
pub struct HookToken {
    pub sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// An inbound hook to create, with its first URL token.
#[derive(Clone, Debug)]
pub struct NewInboundHook {
    /// Chosen by the caller: secrets are sealed for it before the hook is stored.
    pub id: InboundHookId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub form_id: FormId,
    pub config: Value,
    pub secrets: Option<Vec<u8>>,
    pub enabled: bool,
    pub token: NewHookToken,
}

/// A change to a hook, applied only at `expected_version` when given.
#[derive(Clone, Debug, Default)]
pub struct InboundHookChange {
    pub name: Option<String>,
    pub form_id: Option<FormId>,
    pub config: Option<Value>,
    /// New sealed secrets (`Some(None)` removes them).
    pub secrets: Option<Option<Vec<u8>>>,
    pub enabled: Option<bool>,
}

/// How a request names the case it is about.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseMatch {
    /// The case holding this external reference.
    ExternalRef { source: String, reference: String },
    /// The case of the hook's form whose field `key` equals `value`; `key` is a checked
    /// field key (it becomes part of the SQL on SQLite).
    Field { key: String, value: Value },
    /// The case with this number.
    Number(i64),
}

/// One item of an accepted request, validated against the hook's form.
#[derive(Clone, Debug)]
pub enum InboundItem {
    Create(NewCase),
    /// Merge `patch` into the matched case; without a match, create `or_create` if given,
    /// else fail with `NotFound("case")`.
    Update {
        target: CaseMatch,
        patch: CasePatch,
        actor: Actor,
        skip_triggers: bool,
        or_create: Option<NewCase>,
    },
    /// Emit an event on the matched case (`case_id` and `form_id` are filled in here).
    Event {
        target: CaseMatch,
        event: NewEvent,
    },
}

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

/// A request's idempotency key, kept until `expires_at` (microseconds).
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    pub expires_at: i64,
}

/// An accepted request to apply: every item, its idempotency key and its log entry, in one
/// transaction. The log entry's status, outcome and response are filled in here.
#[derive(Clone, Debug)]
pub struct InboundWrite {
    /// The hook's form: matches only find its cases (the caller validated against it).
    pub form_id: FormId,
    pub items: Vec<InboundItem>,
    pub batch: bool,
    pub idempotency: Option<IdempotencyClaim>,
    pub request: NewInboundRequest,
}

/// What applying a request came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Processed now.
    Done(Accepted),
    /// The idempotency key was already processed: this is the first request's outcome, and
    /// nothing was changed (the duplicate is logged).
    Duplicate(Accepted),
}

const HOOK_COLUMNS: &str =
    "id, workspace_id, name, form_id, config, secrets, enabled, version, created_at, updated_at";

const REQUEST_COLUMNS: &str = "id, hook_id, received_at, duration_us, source_ip, flags, query, content_type, headers, body, \
     body_bytes, body_truncated, verification, verification_error, idempotency_key, status, outcome, response, \
     case_id, replay_of";

fn hook_from(row: &Row) -> Result<InboundHookRecord> {
    Ok(InboundHookRecord {
        id: InboundHookId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        form_id: FormId(row.uuid("form_id")?),
        config: row.json("config")?,
        secrets: row.opt_bytes("secrets")?,
        enabled: row.bool("enabled")?,
        version: row.i64("version")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
    })
}

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

async fn get_hook(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    id: InboundHookId,
) -> Result<InboundHookRecord> {
    let row = conn
        .fetch_one(
            &format!(
                "SELECT {HOOK_COLUMNS} FROM inbound_hooks WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            ),
            &args![id, workspace],
            "inbound hook",
        )
        .await?;
    hook_from(&row)
}

/// Refuse a form that is not the workspace's.
async fn check_form_of(conn: &mut Conn<'_>, workspace: WorkspaceId, form: FormId) -> Result<()> {
    conn.fetch_one(
        "SELECT id FROM forms WHERE id = $1 AND workspace_id = $2",
        &args![form, workspace],
        "form",
    )
    .await?;
    Ok(())
}

async fn insert_token(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    hook: InboundHookId,
    token: &NewHookToken,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO inbound_hook_tokens (token_hash, hook_id, workspace_id, token, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, NULL)",
        &args![token.hash.as_str(), hook, workspace, token.sealed.clone(), now],
    )
    .await?;
    Ok(())
}

struct CreateHook(NewInboundHook);

impl WriteOp for CreateHook {
    type Output = InboundHookRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<InboundHookRecord> {
        let new = &self.0;
        check_form_of(&mut tx.conn, new.workspace, new.form_id).await?;
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO inbound_hooks (id, workspace_id, name, form_id, config, secrets, enabled, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
                &args![
                    new.id,
                    new.workspace,
                    new.name.as_str(),
                    new.form_id,
                    new.config.clone(),
                    new.secrets.clone(),
                    new.enabled,
                    now
                ],
            )
            .await?;
        insert_token(&mut tx.conn, new.workspace, new.id, &new.token, now).await?;
        get_hook(&mut tx.conn, new.workspace, new.id).await
    }
}

struct UpdateHook {
    workspace: WorkspaceId,
    id: InboundHookId,
    change: InboundHookChange,
    expected_version: Option<i64>,
}

impl WriteOp for UpdateHook {
    type Output = InboundHookRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<InboundHookRecord> {
        let current = get_hook(&mut tx.conn, self.workspace, self.id).await?;
        if let Some(expected) = self.expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let c = &self.change;
        if let Some(form) = c.form_id {
            check_form_of(&mut tx.conn, self.workspace, form).await?;
        }
        let secrets = match &c.secrets {
            Some(s) => s.clone(),
            None => current.secrets.clone(),
        };
        tx.conn
            .execute(
                "UPDATE inbound_hooks SET name = $1, form_id = $2, config = $3, secrets = $4, enabled = $5,
                        version = version + 1, updated_at = $6
                 WHERE id = $7 AND workspace_id = $8",
                &args![
                    c.name.clone().unwrap_or(current.name),
                    c.form_id.unwrap_or(current.form_id),
                    c.config.clone().unwrap_or(current.config),
                    secrets,
                    c.enabled.unwrap_or(current.enabled),
                    now_micros(),
                    self.id,
                    self.workspace
                ],
            )
            .await?;
        get_hook(&mut tx.conn, self.workspace, self.id).await
    }
}

struct DeleteHook {
    workspace: WorkspaceId,
    id: InboundHookId,
}

impl WriteOp for DeleteHook {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        get_hook(&mut tx.conn, self.workspace, self.id).await?;
        let now = now_micros();
        tx.conn
            .execute(
                "UPDATE inbound_hooks SET deleted_at = $1, enabled = $2, updated_at = $1 WHERE id = $3 AND workspace_id = $4",
                &args![now, false, self.id, self.workspace],
            )
            .await?;
        // The URL stops working at once; the request log stays readable for the record.
        tx.conn
            .execute(
                "DELETE FROM inbound_hook_tokens WHERE hook_id = $1",
                &args![self.id],
            )
            .await?;
        tx.conn
            .execute(
                "DELETE FROM inbound_idempotency WHERE hook_id = $1",
                &args![self.id],
            )
            .await?;
        Ok(())
    }
}

struct RotateToken {
    workspace: WorkspaceId,
    id: InboundHookId,
    token: NewHookToken,
    old_until: i64,
}

impl WriteOp for RotateToken {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        get_hook(&mut tx.conn, self.workspace, self.id).await?;
        let now = now_micros();
        // Tokens rotated out earlier keep their own (earlier) end; none outlives the overlap.
        tx.conn
            .execute(
                "UPDATE inbound_hook_tokens SET expires_at = $1
                 WHERE hook_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
                &args![self.old_until, self.id],
            )
            .await?;
        tx.conn
            .execute(
                "DELETE FROM inbound_hook_tokens WHERE hook_id = $1 AND expires_at <= $2",
                &args![self.id, now],
            )
            .await?;
        insert_token(&mut tx.conn, self.workspace, self.id, &self.token, now).await
    }
}

/// The case a match names, locked for update on PostgreSQL; `None` when there is none.
async fn find_match(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    form: FormId,
    target: &CaseMatch,
) -> Result<Option<casehook_core::case::Case>> {
    let dialect = conn.dialect();
    let lock = if dialect == crate::db::Dialect::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = match target {
        CaseMatch::ExternalRef { source, reference } => {
            conn.fetch_optional(
                &format!(
                    "SELECT {CASE_COLUMNS} FROM cases WHERE workspace_id = $1 AND deleted_at IS NULL AND id =
                       (SELECT case_id FROM case_external_refs WHERE workspace_id = $1 AND source = $2 AND reference = $3){lock}"
                ),
                &args![workspace, source.as_str(), reference.as_str()],
            )
            .await?
        }
        CaseMatch::Number(number) => {
            conn.fetch_optional(
                &format!(
                    "SELECT {CASE_COLUMNS} FROM cases WHERE workspace_id = $1 AND number = $2 AND deleted_at IS NULL{lock}"
                ),
                &args![workspace, *number],
            )
            .await?
        }
        CaseMatch::Field { key, value } => {
            if !casehook_core::form::is_valid_key(key) {
                return Err(StoreError::Conflict(format!("`{key}` is not a field key")));
            }
            let (clause, arg) = data_equals_clause(dialect, key, value);
            // The oldest case wins when several hold the value.
            let sql = format!(
                "SELECT {CASE_COLUMNS} FROM cases WHERE workspace_id = $1 AND form_id = $2 AND deleted_at IS NULL{} ORDER BY number LIMIT 1{lock}",
                clause.replace('?', "$3")
            );
            let params = [Arg::from(workspace), Arg::from(form), arg];
            conn.fetch_optional(&sql, &params).await?
        }
    };
    let Some(row) = row else { return Ok(None) };
    let case = case_from(&row)?;
    if case.form_id != form {
        return Err(StoreError::Conflict(format!(
            "case #{} is a case of another form than this hook's",
            case.number
        )));
    }
    Ok(Some(case))
}

/// Apply one item; every failure is the whole request's (the caller rolls back).
async fn apply_item(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    form: FormId,
    item: &InboundItem,
) -> Result<ItemOutcome> {
    match item {
        InboundItem::Create(new) => create(tx, new).await,
        InboundItem::Update {
            target,
            patch,
            actor,
            skip_triggers,
            or_create,
        } => {
            let Some(case) = find_match(&mut tx.conn, workspace, form, target).await? else {
                return match or_create {
                    Some(new) => create(tx, new).await,
                    None => Err(StoreError::NotFound("case")),
                };
            };
            let mut op = UpdateCase {
                workspace,
                id: case.id,
                patch: patch.clone(),
                expected_version: None,
                actor: actor.clone(),
                skip_triggers: *skip_triggers,
            };
            let (case, events) = op.run(tx).await?;
            Ok(ItemOutcome {
                action: if events.is_empty() {
                    ItemAction::Unchanged
                } else {
                    ItemAction::Updated
                },
                case_id: case.id,
                case_number: case.number,
                event_ids: events.iter().map(|e| e.id).collect(),
            })
        }
        InboundItem::Event { target, event } => {
            let case = find_match(&mut tx.conn, workspace, form, target)
                .await?
                .ok_or(StoreError::NotFound("case"))?;
            let event = NewEvent {
                case_id: Some(case.id),
                form_id: Some(case.form_id),
                ..event.clone()
            };
            let written = append(tx, workspace, vec![event]).await?;
            Ok(ItemOutcome {
                action: ItemAction::Event,
                case_id: case.id,
                case_number: case.number,
                event_ids: written.iter().map(|e| e.id).collect(),
            })
        }
    }
}

async fn create(tx: &mut Tx<'_>, new: &NewCase) -> Result<ItemOutcome> {
    let (case, event) = CreateCase(new.clone()).run(tx).await?;
    Ok(ItemOutcome {
        action: ItemAction::Created,
        case_id: case.id,
        case_number: case.number,
        event_ids: vec![event.id],
    })
}

impl Store {
    /// Create a hook with its first URL token.
    pub async fn create_inbound_hook(&self, new: NewInboundHook) -> Result<InboundHookRecord> {
        self.writer().run(CreateHook(new)).await
    }

    pub async fn get_inbound_hook(
        &self,
        workspace: WorkspaceId,
        id: InboundHookId,
    ) -> Result<InboundHookRecord> {
        let mut lease = self.read().await?;
        get_hook(&mut lease.conn(), workspace, id).await
    }

    /// The workspace's hooks, oldest first.
    pub async fn list_inbound_hooks(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<InboundHookRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!(
                    "SELECT {HOOK_COLUMNS} FROM inbound_hooks WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
                ),
                &args![workspace],
            )
            .await?;
        rows.iter().map(hook_from).collect()
    }

    pub async fn update_inbound_hook(
        &self,
        workspace: WorkspaceId,
        id: InboundHookId,
        change: InboundHookChange,
        expected_version: Option<i64>,
    ) -> Result<InboundHookRecord> {
        self.writer()
            .run(UpdateHook {
                workspace,
                id,
                change,
                expected_version,
            })
            .await
    }

    /// Delete a hook: its URL stops answering at once; its request log stays.
    pub async fn delete_inbound_hook(
        &self,
        workspace: WorkspaceId,
        id: InboundHookId,
    ) -> Result<()> {
        self.writer().run(DeleteHook { workspace, id }).await
    }

    /// Give a hook a new URL token; the ones in use keep working until `old_until`.
    pub async fn rotate_inbound_token(
        &self,
        workspace: WorkspaceId,
        id: InboundHookId,
        token: NewHookToken,
        old_until: i64,
    ) -> Result<()> {
        self.writer()
            .run(RotateToken {
                workspace,
                id,
                token,
                old_until,
            })
            .await
    }

    /// A hook's URL tokens that still work, newest first.
    pub async fn inbound_tokens(
        &self,
        workspace: WorkspaceId,
        id: InboundHookId,
    ) -> Result<Vec<HookToken>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                "SELECT token, created_at, expires_at FROM inbound_hook_tokens
                 WHERE hook_id = $1 AND workspace_id = $2 AND (expires_at IS NULL OR expires_at > $3)
                 ORDER BY created_at DESC",
                &args![id, workspace, now_micros()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HookToken {
                    sealed: row.bytes("token")?,
                    created_at: from_micros(row.i64("created_at")?)?,
                    expires_at: row.opt_i64("expires_at")?.map(from_micros).transpose()?,
                })
            })
            .collect()
    }

    /// The live hook a URL token (by its hash) names, if the token still works.
    pub async fn find_inbound_hook_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<InboundHookRecord>> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional(
                "SELECT h.id, h.workspace_id, h.name, h.form_id, h.config, h.secrets, h.enabled, h.version,
                        h.created_at, h.updated_at
                 FROM inbound_hook_tokens t JOIN inbound_hooks h ON h.id = t.hook_id
                 WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) AND h.deleted_at IS NULL",
                &args![token_hash, now_micros()],
            )
            .await?;
        row.as_ref().map(hook_from).transpose()
    }

    /// Apply an accepted request: all its items, its idempotency key and its log entry in one
    /// transaction. A key already processed (and not expired) changes nothing and answers the
    /// first request's outcome. Any item's failure fails the whole request
    /// ([`StoreError::Item`] names the item), and nothing of it is written.
    pub async fn apply_inbound(&self, write: InboundWrite) -> Result<Applied> {
        self.writer().run(ApplyInbound(write)).await
    }

    /// Log a request that was not applied (refused, invalid, or failed in the store).
    pub async fn log_inbound_request(&self, request: NewInboundRequest) -> Result<()> {
        self.writer().run(LogRequest(request)).await
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

struct ApplyInbound(InboundWrite);

impl WriteOp for ApplyInbound {
    type Output = Applied;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Applied> {
        let write = &self.0;
        let request = &write.request;
        if let Some(claim) = &write.idempotency
            && let Some(first) = claim_key(tx, request, claim).await?
        {
            let mut logged = request.clone();
            logged.status = 200;
            logged.outcome = "duplicate".into();
            logged.response = first.body();
            logged.case_id = first.items.first().map(|i| i.case_id);
            insert_request(&mut tx.conn, &logged).await?;
            return Ok(Applied::Duplicate(first));
        }
        // A hook deleted through another process may still be cached there for a moment.
        tx.conn
            .fetch_one(
                "SELECT id FROM inbound_hooks WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
                &args![request.hook_id, request.workspace],
                "inbound hook",
            )
            .await?;
        let form = write.form_id;
        let mut items = Vec::with_capacity(write.items.len());
        for (index, item) in write.items.iter().enumerate() {
            let outcome = apply_item(tx, request.workspace, form, item)
                .await
                .map_err(|e| StoreError::Item {
                    index,
                    source: Box::new(e),
                })?;
            items.push(outcome);
        }
        let accepted = Accepted {
            request_id: request.id,
            batch: write.batch,
            items,
        };
        if let Some(claim) = &write.idempotency {
            let stored =
                serde_json::to_value(&accepted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.conn
                .execute(
                    "UPDATE inbound_idempotency SET outcome = $1 WHERE hook_id = $2 AND idem_key = $3",
                    &args![stored, request.hook_id, claim.key.as_str()],
                )
                .await?;
        }
        let mut logged = request.clone();
        logged.status = 200;
        logged.outcome = accepted.summary().into();
        logged.response = accepted.body();
        logged.case_id = accepted.items.first().map(|i| i.case_id);
        insert_request(&mut tx.conn, &logged).await?;
        Ok(Applied::Done(accepted))
    }
}

/// Take the idempotency key for this request. Returns the first request's outcome when the
/// key was already processed within its window. On PostgreSQL a concurrent holder of the same
/// key makes the insert wait for its commit, so the outcome is read once it is there.
async fn claim_key(
    tx: &mut Tx<'_>,
    request: &NewInboundRequest,
    claim: &IdempotencyClaim,
) -> Result<Option<Accepted>> {
    let now = now_micros();
    let taken = tx
        .conn
        .fetch_optional(
            "INSERT INTO inbound_idempotency (hook_id, idem_key, workspace_id, request_id, outcome, created_at, expires_at)
             VALUES ($1, $2, $3, $4, NULL, $5, $6)
             ON CONFLICT (hook_id, idem_key) DO UPDATE SET request_id = excluded.request_id, outcome = NULL,
                 created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE inbound_idempotency.expires_at <= excluded.created_at
             RETURNING request_id",
            &args![
                request.hook_id,
                claim.key.as_str(),
                request.workspace,
                request.id,
                now,
                claim.expires_at
            ],
        )
        .await?;
    if taken.is_some() {
        return Ok(None);
    }
    let row = tx
        .conn
        .fetch_one(
            "SELECT outcome FROM inbound_idempotency WHERE hook_id = $1 AND idem_key = $2",
            &args![request.hook_id, claim.key.as_str()],
            "idempotency key",
        )
        .await?;
    match row.opt_json("outcome")? {
        Some(outcome) => serde_json::from_value(outcome)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("idempotency outcome: {e}"))),
        None => Err(StoreError::Conflict(
            "a request with this idempotency key is being processed; retry shortly".into(),
        )),
    }
}

async fn insert_request(conn: &mut Conn<'_>, r: &NewInboundRequest) -> Result<()> {
    let duration = (now_micros() - r.received_at).max(0);
    conn.execute(
        &format!(
            "INSERT INTO inbound_requests ({REQUEST_COLUMNS}, workspace_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        ),
        &args![
            r.id,
            r.hook_id,
            r.received_at,
            duration,
            r.source_ip.as_str(),
            r.flags.join(","),
            r.query.clone(),
            r.content_type.clone(),
            r.headers.clone(),
            r.body.clone(),
            r.body_bytes,
            r.body_truncated,
            r.verification,
            r.verification_error.clone(),
            r.idempotency_key.clone(),
            i64::from(r.status),
            r.outcome.as_str(),
            r.response.clone(),
            r.case_id,
            r.replay_of,
            r.workspace
        ],
    )
    .await?;
    Ok(())
}

struct LogRequest(NewInboundRequest);

impl WriteOp for LogRequest {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        insert_request(&mut tx.conn, &self.0).await
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
