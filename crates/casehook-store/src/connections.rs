//! API connections as stored: configuration (JSON, checked by the server: base URL, headers,
//! limits, TLS, the auth method without its secrets, and the operations) and the auth
//! method's secrets, sealed.

use casehook_core::{ConnectionId, WorkspaceId};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Conn, Row, args, check_name_free, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A stored connection.
#[derive(Clone, PartialEq)]
pub struct ConnectionRecord {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub config: Value,
    /// The auth method's secrets, sealed.
    pub credentials: Option<Vec<u8>>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for ConnectionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A connection to create; the caller seals the credentials for `id`.
#[derive(Clone, Debug)]
pub struct NewConnection {
    pub id: ConnectionId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub config: Value,
    pub credentials: Option<Vec<u8>>,
}

/// A change to a connection; `credentials: Some(None)` removes them.
#[derive(Clone, Debug, Default)]
pub struct ConnectionChange {
    pub name: Option<String>,
    pub config: Option<Value>,
    pub credentials: Option<Option<Vec<u8>>>,
}

const COLUMNS: &str =
    "id, workspace_id, name, config, credentials, version, created_at, updated_at";

fn connection_from(row: &Row) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        id: ConnectionId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        config: row.json("config")?,
        credentials: row.opt_bytes("credentials")?,
        version: row.i64("version")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
    })
}

async fn get(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    id: ConnectionId,
) -> Result<ConnectionRecord> {
    let row = conn
        .fetch_one(
            &format!(
                "SELECT {COLUMNS} FROM connections WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            ),
            &args![id, workspace],
            "connection",
        )
        .await?;
    connection_from(&row)
}

struct CreateConnection(NewConnection);

impl WriteOp for CreateConnection {
    type Output = ConnectionRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<ConnectionRecord> {
        tx.require_sealing_key().await?;
        let new = &self.0;
        check_name_free(
            &mut tx.conn,
            "connections",
            "a connection",
            new.workspace,
            &new.name,
            None,
        )
        .await?;
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO connections (id, workspace_id, name, config, credentials, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                &args![
                    new.id,
                    new.workspace,
                    new.name.as_str(),
                    new.config.clone(),
                    new.credentials.clone(),
                    now
                ],
            )
            .await?;
        get(&mut tx.conn, new.workspace, new.id).await
    }
}

struct UpdateConnection {
    workspace: WorkspaceId,
    id: ConnectionId,
    change: ConnectionChange,
    expected_version: Option<i64>,
}

impl WriteOp for UpdateConnection {
    type Output = ConnectionRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<ConnectionRecord> {
        tx.require_sealing_key().await?;
        let current = get(&mut tx.conn, self.workspace, self.id).await?;
        if let Some(expected) = self.expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let c = &self.change;
        if let Some(name) = &c.name {
            check_name_free(
                &mut tx.conn,
                "connections",
                "a connection",
                self.workspace,
                name,
                Some(self.id.0),
            )
            .await?;
        }
        let credentials = match &c.credentials {
            Some(s) => s.clone(),
            None => current.credentials.clone(),
        };
        tx.conn
            .execute(
                "UPDATE connections SET name = $1, config = $2, credentials = $3, version = version + 1, updated_at = $4
                 WHERE id = $5 AND workspace_id = $6",
                &args![
                    c.name.clone().unwrap_or(current.name),
                    c.config.clone().unwrap_or(current.config),
                    credentials,
                    now_micros(),
                    self.id,
                    self.workspace
                ],
            )
            .await?;
        get(&mut tx.conn, self.workspace, self.id).await
    }
}

struct DeleteConnection {
    workspace: WorkspaceId,
    id: ConnectionId,
}

impl WriteOp for DeleteConnection {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        get(&mut tx.conn, self.workspace, self.id).await?;
        // The sealed credentials go at once; the row stays so call logs keep their reference.
        tx.conn
            .execute(
                "UPDATE connections SET deleted_at = $1, credentials = NULL, updated_at = $1 WHERE id = $2 AND workspace_id = $3",
                &args![now_micros(), self.id, self.workspace],
            )
            .await?;
        tx.conn
            .execute(
                "DELETE FROM oauth2_refresh_tokens WHERE connection_id = $1 AND workspace_id = $2",
                &args![self.id, self.workspace],
            )
            .await?;
        Ok(())
    }
}

impl Store {
    pub async fn create_connection(&self, new: NewConnection) -> Result<ConnectionRecord> {
        self.writer().run(CreateConnection(new)).await
    }

    pub async fn get_connection(
        &self,
        workspace: WorkspaceId,
        id: ConnectionId,
    ) -> Result<ConnectionRecord> {
        let mut lease = self.read().await?;
        get(&mut lease.conn(), workspace, id).await
    }

    /// The live connection of the workspace with this name.
    pub async fn find_connection(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<ConnectionRecord> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!(
                    "SELECT {COLUMNS} FROM connections WHERE workspace_id = $1 AND name = $2 AND deleted_at IS NULL"
                ),
                &args![workspace, name],
                "connection",
            )
            .await?;
        connection_from(&row)
    }

    /// The workspace's connections, by name.
    pub async fn list_connections(&self, workspace: WorkspaceId) -> Result<Vec<ConnectionRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS} FROM connections WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY name"
                ),
                &args![workspace],
            )
            .await?;
        rows.iter().map(connection_from).collect()
    }

    pub async fn update_connection(
        &self,
        workspace: WorkspaceId,
        id: ConnectionId,
        change: ConnectionChange,
        expected_version: Option<i64>,
    ) -> Result<ConnectionRecord> {
        self.writer()
            .run(UpdateConnection {
                workspace,
                id,
                change,
                expected_version,
            })
            .await
    }

    pub async fn delete_connection(&self, workspace: WorkspaceId, id: ConnectionId) -> Result<()> {
        self.writer().run(DeleteConnection { workspace, id }).await
    }

    /// The sealed refresh token last rotated in for `owner` (a live connection, or a
    /// request's own auth), if any.
    pub async fn rotated_refresh_token(&self, owner: RefreshTokenOwner) -> Result<Option<Vec<u8>>> {
        let (workspace, key) = owner.parts();
        let sql = match owner {
            RefreshTokenOwner::Connection(..) => {
                "SELECT t.token FROM oauth2_refresh_tokens t
                 JOIN connections c ON c.id = t.connection_id AND c.workspace_id = t.workspace_id
                 WHERE t.connection_id = $1 AND t.workspace_id = $2 AND c.deleted_at IS NULL"
            }
            RefreshTokenOwner::Inline(..) => {
                "SELECT token FROM oauth2_refresh_tokens WHERE connection_id = $1 AND workspace_id = $2"
            }
        };
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_optional(sql, &args![key, workspace])
            .await?;
        row.map(|r| r.bytes("token")).transpose()
    }

    /// Keep a refresh token rotated in for `owner` (sealed by the caller, context
    /// `connection_refresh_token(key)`) in place of the previous one. Nothing is kept for a
    /// connection deleted meanwhile (`NotFound`).
    pub async fn keep_rotated_refresh_token(
        &self,
        owner: RefreshTokenOwner,
        sealed: Vec<u8>,
    ) -> Result<()> {
        self.writer().run(KeepRefreshToken { owner, sealed }).await
    }
}

/// Whose rotated OAuth 2.0 refresh token is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefreshTokenOwner {
    /// A connection, which must exist.
    Connection(WorkspaceId, ConnectionId),
    /// A request's own auth (no connection), under a key the caller derives from its grant.
    Inline(WorkspaceId, ConnectionId),
}

impl RefreshTokenOwner {
    /// The workspace, and the key the token is kept (and sealed) under.
    pub fn parts(self) -> (WorkspaceId, ConnectionId) {
        match self {
            Self::Connection(ws, id) | Self::Inline(ws, id) => (ws, id),
        }
    }
}

struct KeepRefreshToken {
    owner: RefreshTokenOwner,
    sealed: Vec<u8>,
}

impl WriteOp for KeepRefreshToken {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        tx.require_sealing_key().await?;
        let (workspace, key) = self.owner.parts();
        // A token rotated in by a call racing the connection's deletion is not kept.
        if let RefreshTokenOwner::Connection(..) = self.owner {
            get(&mut tx.conn, workspace, key).await?;
        }
        tx.conn
            .execute(
                "INSERT INTO oauth2_refresh_tokens (connection_id, workspace_id, token, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (connection_id) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at",
                &args![key, workspace, self.sealed.clone(), now_micros()],
            )
            .await?;
        Ok(())
    }
}
