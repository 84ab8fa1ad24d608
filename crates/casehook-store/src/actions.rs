//! Actions as stored: configuration (JSON, checked by the server: subscriptions, condition,
//! and the call) and the enabled switch. Actions hold no secrets of their own: they use
//! actions and `{secret.<name>}` references.

use casehook_core::{ActionId, WorkspaceId};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Conn, Row, args, check_name_free, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A stored action.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub id: ActionId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub config: Value,
    pub enabled: bool,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An action to create.
#[derive(Clone, Debug)]
pub struct NewAction {
    pub id: ActionId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub config: Value,
    pub enabled: bool,
}

/// A change to an action.
#[derive(Clone, Debug, Default)]
pub struct ActionChange {
    pub name: Option<String>,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
}

const COLUMNS: &str = "id, workspace_id, name, config, enabled, version, created_at, updated_at";

fn action_from(row: &Row) -> Result<ActionRecord> {
    Ok(ActionRecord {
        id: ActionId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        config: row.json("config")?,
        enabled: row.bool("enabled")?,
        version: row.i64("version")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
    })
}

async fn get(conn: &mut Conn<'_>, workspace: WorkspaceId, id: ActionId) -> Result<ActionRecord> {
    let row = conn
        .fetch_one(
            &format!(
                "SELECT {COLUMNS} FROM actions WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            ),
            &args![id, workspace],
            "action",
        )
        .await?;
    action_from(&row)
}

struct CreateAction(NewAction);

impl WriteOp for CreateAction {
    type Output = ActionRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<ActionRecord> {
        let new = &self.0;
        check_name_free(
            &mut tx.conn,
            "actions",
            "an action",
            new.workspace,
            &new.name,
            None,
        )
        .await?;
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO actions (id, workspace_id, name, config, enabled, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                &args![
                    new.id,
                    new.workspace,
                    new.name.as_str(),
                    new.config.clone(),
                    new.enabled,
                    now
                ],
            )
            .await?;
        get(&mut tx.conn, new.workspace, new.id).await
    }
}

struct UpdateAction {
    workspace: WorkspaceId,
    id: ActionId,
    change: ActionChange,
    expected_version: Option<i64>,
}

impl WriteOp for UpdateAction {
    type Output = ActionRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<ActionRecord> {
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
                "actions",
                "an action",
                self.workspace,
                name,
                Some(self.id.0),
            )
            .await?;
        }
        tx.conn
            .execute(
                "UPDATE actions SET name = $1, config = $2, enabled = $3, version = version + 1, updated_at = $4
                 WHERE id = $5 AND workspace_id = $6",
                &args![
                    c.name.clone().unwrap_or(current.name),
                    c.config.clone().unwrap_or(current.config),
                    c.enabled.unwrap_or(current.enabled),
                    now_micros(),
                    self.id,
                    self.workspace
                ],
            )
            .await?;
        get(&mut tx.conn, self.workspace, self.id).await
    }
}

struct DeleteAction {
    workspace: WorkspaceId,
    id: ActionId,
}

impl WriteOp for DeleteAction {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        get(&mut tx.conn, self.workspace, self.id).await?;
        tx.conn
            .execute(
                "UPDATE actions SET deleted_at = $1, enabled = $4, updated_at = $1 WHERE id = $2 AND workspace_id = $3",
                &args![now_micros(), self.id, self.workspace, false],
            )
            .await?;
        Ok(())
    }
}

impl Store {
    pub async fn create_action(&self, new: NewAction) -> Result<ActionRecord> {
        self.writer().run(CreateAction(new)).await
    }

    pub async fn get_action(&self, workspace: WorkspaceId, id: ActionId) -> Result<ActionRecord> {
        let mut lease = self.read().await?;
        get(&mut lease.conn(), workspace, id).await
    }

    /// The live action of the workspace with this name.
    pub async fn find_action(&self, workspace: WorkspaceId, name: &str) -> Result<ActionRecord> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!(
                    "SELECT {COLUMNS} FROM actions WHERE workspace_id = $1 AND name = $2 AND deleted_at IS NULL"
                ),
                &args![workspace, name],
                "action",
            )
            .await?;
        action_from(&row)
    }

    /// The workspace's actions, by name.
    pub async fn list_actions(&self, workspace: WorkspaceId) -> Result<Vec<ActionRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS} FROM actions WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY name"
                ),
                &args![workspace],
            )
            .await?;
        rows.iter().map(action_from).collect()
    }

    pub async fn update_action(
        &self,
        workspace: WorkspaceId,
        id: ActionId,
        change: ActionChange,
        expected_version: Option<i64>,
    ) -> Result<ActionRecord> {
        self.writer()
            .run(UpdateAction {
                workspace,
                id,
                change,
                expected_version,
            })
            .await
    }

    pub async fn delete_action(&self, workspace: WorkspaceId, id: ActionId) -> Result<()> {
        self.writer().run(DeleteAction { workspace, id }).await
    }
}
