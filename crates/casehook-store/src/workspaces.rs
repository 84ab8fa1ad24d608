//! Workspaces (tenants) and their API keys. Keys are stored as a SHA-256 hash of the secret
//! plus a short prefix for recognising them in lists; the secret itself is never stored.

use casehook_core::{ApiKeyId, InboundHookId, Role, WorkspaceId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::notify::API_KEYS_CHANGED;
use crate::writer::{Tx, WriteOp};

/// A tenant.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A stored API key (never the secret).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// The one inbound hook an `inbound` key may post to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub hook_id: Option<InboundHookId>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A key to create: the caller generates the secret and passes only its hash.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub hash: String,
    pub prefix: String,
    /// For `inbound` keys: the hook they may post to.
    pub hook_id: Option<InboundHookId>,
}

const KEY_COLUMNS: &str =
    "id, workspace_id, name, role, key_prefix, hook_id, created_at, revoked_at";

fn workspace_from(row: &Row) -> Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId(row.uuid("id")?),
        name: row.text("name")?,
        created_at: from_micros(row.i64("created_at")?)?,
    })
}

fn key_from(row: &Row) -> Result<ApiKeyRecord> {
    let role = row.text("role")?;
    Ok(ApiKeyRecord {
        id: ApiKeyId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        prefix: row.text("key_prefix")?,
        hook_id: row.opt_uuid("hook_id")?.map(InboundHookId),
        created_at: from_micros(row.i64("created_at")?)?,
        revoked_at: row.opt_i64("revoked_at")?.map(from_micros).transpose()?,
    })
}

async fn insert_key(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    key: &NewApiKey,
) -> Result<ApiKeyRecord> {
    // Caches that hold a miss for this key forget it.
    tx.woken.queue(API_KEYS_CHANGED);
    let id = ApiKeyId::new();
    let inserted = tx
        .conn
        .execute(
            "INSERT INTO api_keys (id, workspace_id, name, role, key_hash, key_prefix, hook_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &args![
                id,
                workspace,
                key.name.as_str(),
                key.role.as_str(),
                key.hash.as_str(),
                key.prefix.as_str(),
                key.hook_id,
                now_micros()
            ],
        )
        .await;
    match inserted {
        Err(e) if e.is_unique_violation() => {
            return Err(StoreError::Conflict("that API key already exists".into()));
        }
        other => other?,
    };
    let row = tx
        .conn
        .fetch_one(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
            &args![id],
            "api key",
        )
        .await?;
    key_from(&row)
}

struct CreateWorkspace {
    name: String,
    first_key: NewApiKey,
}

impl WriteOp for CreateWorkspace {
    type Output = (Workspace, ApiKeyRecord);
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        let id = WorkspaceId::new();
        tx.conn
            .execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)",
                &args![id, self.name.as_str(), now_micros()],
            )
            .await?;
        let row = tx
            .conn
            .fetch_one(
                "SELECT id, name, created_at FROM workspaces WHERE id = $1",
                &args![id],
                "workspace",
            )
            .await?;
        let key = insert_key(tx, id, &self.first_key).await?;
        Ok((workspace_from(&row)?, key))
    }
}

/// Create the first workspace only if there is none, deciding inside the write: SQLite's
/// writer holds the database's write lock, and on PostgreSQL a transaction-scoped advisory
/// lock makes concurrent first starts of several processes take turns.
struct CreateFirstWorkspace(CreateWorkspace);

/// An arbitrary, fixed key for the first-start advisory lock ("cbootstr" in ASCII).
const FIRST_START_LOCK: i64 = 0x6362_6f6f_7473_7472;

impl WriteOp for CreateFirstWorkspace {
    type Output = Option<(Workspace, ApiKeyRecord)>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        if tx.conn.dialect() == crate::db::Dialect::Postgres {
            tx.conn
                .execute("SELECT pg_advisory_xact_lock($1)", &args![FIRST_START_LOCK])
                .await?;
        }
        let existing = tx
            .conn
            .fetch_one("SELECT COUNT(*) AS n FROM workspaces", &[], "count")
            .await?
            .i64("n")?;
        if existing > 0 {
            return Ok(None);
        }
        self.0.run(tx).await.map(Some)
    }
}

struct CreateKey {
    workspace: WorkspaceId,
    key: NewApiKey,
}

impl WriteOp for CreateKey {
    type Output = ApiKeyRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        insert_key(tx, self.workspace, &self.key).await
    }
}

struct RevokeKey {
    workspace: WorkspaceId,
    id: ApiKeyId,
}

impl WriteOp for RevokeKey {
    type Output = ApiKeyRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        tx.woken.queue(API_KEYS_CHANGED);
        tx.conn
            .execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND workspace_id = $3 AND revoked_at IS NULL",
                &args![now_micros(), self.id, self.workspace],
            )
            .await?;
        let row = tx
            .conn
            .fetch_one(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND workspace_id = $2"),
                &args![self.id, self.workspace],
                "api key",
            )
            .await?;
        key_from(&row)
    }
}

impl Store {
    /// How many workspaces exist (zero on the very first start).
    pub async fn workspace_count(&self) -> Result<i64> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_one("SELECT COUNT(*) AS n FROM workspaces", &[], "count")
            .await?
            .i64("n")
    }

    /// Create a workspace together with its first (admin) key, in one transaction.
    pub async fn create_workspace(
        &self,
        name: &str,
        first_key: NewApiKey,
    ) -> Result<(Workspace, ApiKeyRecord)> {
        self.writer()
            .run(CreateWorkspace {
                name: name.to_string(),
                first_key,
            })
            .await
    }

    /// On the very first start: create the workspace and its first key unless a workspace
    /// already exists (also when another process is starting at the same moment).
    pub async fn create_first_workspace(
        &self,
        name: &str,
        first_key: NewApiKey,
    ) -> Result<Option<(Workspace, ApiKeyRecord)>> {
        let op = CreateWorkspace {
            name: name.to_string(),
            first_key,
        };
        self.writer().run(CreateFirstWorkspace(op)).await
    }

    pub async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                "SELECT id, name, created_at FROM workspaces WHERE id = $1",
                &args![id],
                "workspace",
            )
            .await?;
        workspace_from(&row)
    }

    pub async fn create_api_key(
        &self,
        workspace: WorkspaceId,
        key: NewApiKey,
    ) -> Result<ApiKeyRecord> {
        self.writer().run(CreateKey { workspace, key }).await
    }

    pub async fn list_api_keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKeyRecord>> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_all(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id"),
                &args![workspace],
            )
            .await?
            .iter()
            .map(key_from)
            .collect()
    }

    pub async fn get_api_key(&self, workspace: WorkspaceId, id: ApiKeyId) -> Result<ApiKeyRecord> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND workspace_id = $2"),
                &args![id, workspace],
                "api key",
            )
            .await?;
        key_from(&row)
    }

    /// Revoke a key (idempotent); returns it as stored.
    pub async fn revoke_api_key(
        &self,
        workspace: WorkspaceId,
        id: ApiKeyId,
    ) -> Result<ApiKeyRecord> {
        self.writer().run(RevokeKey { workspace, id }).await
    }

    /// The live (not revoked) key with this hash, if any.
    pub async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>> {
        let mut lease = self.read().await?;
        lease
            .conn()
            .fetch_optional(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
                ),
                &args![hash],
            )
            .await?
            .as_ref()
            .map(key_from)
            .transpose()
    }
}
