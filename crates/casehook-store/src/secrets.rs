//! Workspace secrets: named values sealed under the master key, written through the API and
//! read back only by the workers that render `{secret.name}` into requests.
//!
//! Values arrive sealed and leave sealed; this module never sees plaintext.

use casehook_core::{SecretId, WorkspaceId};
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Arg, Conn, Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A secret as stored: its value stays sealed.
#[derive(Clone, PartialEq)]
pub struct SecretRecord {
    pub id: SecretId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub sealed: Vec<u8>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A secret to create or replace (by name). The caller seals the value for `id`; when the
/// name exists already, the existing secret keeps its id and the caller must seal for that
/// one: see [`Store::put_secret`].
#[derive(Clone)]
pub struct NewSecret {
    pub id: SecretId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, workspace_id, name, description, value, version, created_at, updated_at";

fn secret_from(row: &Row) -> Result<SecretRecord> {
    Ok(SecretRecord {
        id: SecretId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        description: row.opt_text("description")?,
        sealed: row.bytes("value")?,
        version: row.i64("version")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
    })
}

async fn by_name(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    name: &str,
) -> Result<Option<SecretRecord>> {
    let row = conn
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM secrets WHERE workspace_id = $1 AND name = $2"),
            &args![workspace, name],
        )
        .await?;
    row.as_ref().map(secret_from).transpose()
}

struct CreateSecret(NewSecret);

impl WriteOp for CreateSecret {
    type Output = SecretRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<SecretRecord> {
        tx.require_sealing_key().await?;
        let new = &self.0;
        if by_name(&mut tx.conn, new.workspace, &new.name)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "a secret named `{}` exists already; replace it with PUT /secrets/{}",
                new.name, new.name
            )));
        }
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO secrets (id, workspace_id, name, description, value, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                &args![
                    new.id,
                    new.workspace,
                    new.name.as_str(),
                    new.description.clone(),
                    new.sealed.clone(),
                    now
                ],
            )
            .await?;
        by_name(&mut tx.conn, new.workspace, &new.name)
            .await?
            .ok_or(StoreError::NotFound("secret"))
    }
}

struct ReplaceSecret {
    workspace: WorkspaceId,
    name: String,
    description: Option<Option<String>>,
    sealed: Vec<u8>,
    expected_version: Option<i64>,
}

impl WriteOp for ReplaceSecret {
    type Output = SecretRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<SecretRecord> {
        tx.require_sealing_key().await?;
        let current = by_name(&mut tx.conn, self.workspace, &self.name)
            .await?
            .ok_or(StoreError::NotFound("secret"))?;
        if let Some(expected) = self.expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let description = self
            .description
            .clone()
            .unwrap_or(current.description.clone());
        tx.conn
            .execute(
                "UPDATE secrets SET value = $1, description = $2, version = version + 1, updated_at = $3
                 WHERE id = $4 AND workspace_id = $5",
                &args![
                    self.sealed.clone(),
                    description,
                    now_micros(),
                    current.id,
                    self.workspace
                ],
            )
            .await?;
        by_name(&mut tx.conn, self.workspace, &self.name)
            .await?
            .ok_or(StoreError::NotFound("secret"))
    }
}

struct DeleteSecret {
    workspace: WorkspaceId,
    name: String,
}

impl WriteOp for DeleteSecret {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let deleted = tx
            .conn
            .execute(
                "DELETE FROM secrets WHERE workspace_id = $1 AND name = $2",
                &args![self.workspace, self.name.as_str()],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound("secret"));
        }
        Ok(())
    }
}

impl Store {
    /// Create a secret; a name in use is a conflict.
    pub async fn create_secret(&self, new: NewSecret) -> Result<SecretRecord> {
        self.writer().run(CreateSecret(new)).await
    }

    /// Replace a secret's value (sealed by the caller for the secret's id, which
    /// [`Store::get_secret`] gives), and its description when given.
    pub async fn replace_secret(
        &self,
        workspace: WorkspaceId,
        name: &str,
        sealed: Vec<u8>,
        description: Option<Option<String>>,
        expected_version: Option<i64>,
    ) -> Result<SecretRecord> {
        self.writer()
            .run(ReplaceSecret {
                workspace,
                name: name.to_owned(),
                description,
                sealed,
                expected_version,
            })
            .await
    }

    pub async fn delete_secret(&self, workspace: WorkspaceId, name: &str) -> Result<()> {
        self.writer()
            .run(DeleteSecret {
                workspace,
                name: name.to_owned(),
            })
            .await
    }

    pub async fn get_secret(&self, workspace: WorkspaceId, name: &str) -> Result<SecretRecord> {
        let mut lease = self.read().await?;
        by_name(&mut lease.conn(), workspace, name)
            .await?
            .ok_or(StoreError::NotFound("secret"))
    }

    /// The workspace's secrets with these names, in one read (those that do not exist are
    /// absent from the answer).
    pub async fn get_secrets(
        &self,
        workspace: WorkspaceId,
        names: &[String],
    ) -> Result<Vec<SecretRecord>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..names.len() + 2).map(|i| format!("${i}")).collect();
        let mut params = args![workspace].to_vec();
        params.extend(names.iter().map(|n| Arg::from(n.as_str())));
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS} FROM secrets WHERE workspace_id = $1 AND name IN ({})",
                    placeholders.join(", ")
                ),
                &params,
            )
            .await?;
        rows.iter().map(secret_from).collect()
    }

    /// The workspace's secrets by name.
    pub async fn list_secrets(&self, workspace: WorkspaceId) -> Result<Vec<SecretRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!("SELECT {COLUMNS} FROM secrets WHERE workspace_id = $1 ORDER BY name"),
                &args![workspace],
            )
            .await?;
        rows.iter().map(secret_from).collect()
    }
}
