//! Inbound hooks as stored: configuration (JSON, checked by the server), sealed secrets,
//! the enabled switch, and the URL tokens that name a hook (looked up by hash, sealed for
//! admins, rotated with an overlap).

use std::collections::HashMap;

use casehook_core::{FormId, InboundHookId, WorkspaceId};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Conn, Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::notify::INBOUND_HOOKS_CHANGED;
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

const HOOK_COLUMNS: &str =
    "id, workspace_id, name, form_id, config, secrets, enabled, version, created_at, updated_at";

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
        tx.woken.queue(INBOUND_HOOKS_CHANGED);
        tx.require_sealing_key().await?;
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
        tx.woken.queue(INBOUND_HOOKS_CHANGED);
        tx.require_sealing_key().await?;
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
        tx.woken.queue(INBOUND_HOOKS_CHANGED);
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
        tx.woken.queue(INBOUND_HOOKS_CHANGED);
        tx.require_sealing_key().await?;
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

    /// The URL tokens that still work of every live hook of the workspace, by hook, newest
    /// first: one query for a listing instead of one per hook.
    pub async fn workspace_inbound_tokens(
        &self,
        workspace: WorkspaceId,
    ) -> Result<HashMap<InboundHookId, Vec<HookToken>>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                "SELECT t.hook_id, t.token, t.created_at, t.expires_at FROM inbound_hook_tokens t
                 JOIN inbound_hooks h ON h.id = t.hook_id AND h.workspace_id = t.workspace_id
                 WHERE t.workspace_id = $1 AND h.deleted_at IS NULL
                   AND (t.expires_at IS NULL OR t.expires_at > $2)
                 ORDER BY t.created_at DESC",
                &args![workspace, now_micros()],
            )
            .await?;
        let mut tokens: HashMap<InboundHookId, Vec<HookToken>> = HashMap::new();
        for row in &rows {
            tokens
                .entry(InboundHookId(row.uuid("hook_id")?))
                .or_default()
                .push(token_from(row)?);
        }
        Ok(tokens)
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
        rows.iter().map(token_from).collect()
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
}

fn token_from(row: &Row) -> Result<HookToken> {
    Ok(HookToken {
        sealed: row.bytes("token")?,
        created_at: from_micros(row.i64("created_at")?)?,
        expires_at: row.opt_i64("expires_at")?.map(from_micros).transpose()?,
    })
}
