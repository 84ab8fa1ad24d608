//! Outgoing webhook endpoints: their stored configuration, sealed signing secrets, the
//! enabled/disabled switch and the health marks the delivery workers keep up to date.
//!
//! The configuration is stored whole as JSON, checked by the caller (the server parses it into
//! `casehook_core::endpoint` types before it gets here); this module knows rows, versions and
//! tenancy, not what a condition means. Secrets arrive sealed (encrypted) and leave sealed.

use casehook_core::event::{Actor, Event, NewEvent};
use casehook_core::{EndpointId, WorkspaceId};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::events::append;
use crate::writer::{Tx, WriteOp};

/// A stored endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointRecord {
    pub id: EndpointId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub config: Value,
    /// The current signing secret, sealed.
    pub secret: Vec<u8>,
    /// The previous secret (sealed) and until when it still signs, during a rotation.
    pub previous_secret: Option<(Vec<u8>, OffsetDateTime)>,
    /// Credentials for the receiver, sealed.
    pub auth: Option<Vec<u8>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<OffsetDateTime>,
    pub health: HealthMarks,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What the workers record about an endpoint's recent behaviour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthMarks {
    pub last_success_at: Option<OffsetDateTime>,
    pub last_failure_at: Option<OffsetDateTime>,
    /// Set by the first failure after a success, cleared by the next success.
    pub failing_since: Option<OffsetDateTime>,
    /// When a test send last succeeded.
    pub tested_at: Option<OffsetDateTime>,
}

/// An endpoint to create.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// Chosen by the caller: secrets are sealed for it before the endpoint is stored.
    pub id: EndpointId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub config: Value,
    pub secret: Vec<u8>,
    pub auth: Option<Vec<u8>>,
    pub enabled: bool,
}

const COLUMNS: &str = "id, workspace_id, name, config, secret, previous_secret, previous_secret_until, auth, enabled, \
                       disabled_reason, disabled_at, last_success_at, last_failure_at, failing_since, tested_at, \
                       version, created_at, updated_at";

fn time_opt(row: &Row, col: &str) -> Result<Option<OffsetDateTime>> {
    row.opt_i64(col)?.map(from_micros).transpose()
}

fn endpoint_from(row: &Row) -> Result<EndpointRecord> {
    let previous = match (
        row.opt_bytes("previous_secret")?,
        time_opt(row, "previous_secret_until")?,
    ) {
        (Some(secret), Some(until)) => Some((secret, until)),
        _ => None,
    };
    Ok(EndpointRecord {
        id: EndpointId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        name: row.text("name")?,
        config: row.json("config")?,
        secret: row.bytes("secret")?,
        previous_secret: previous,
        auth: row.opt_bytes("auth")?,
        enabled: row.bool("enabled")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        disabled_at: time_opt(row, "disabled_at")?,
        health: HealthMarks {
            last_success_at: time_opt(row, "last_success_at")?,
            last_failure_at: time_opt(row, "last_failure_at")?,
            failing_since: time_opt(row, "failing_since")?,
            tested_at: time_opt(row, "tested_at")?,
        },
        version: row.i64("version")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
    })
}

pub(crate) async fn get(
    conn: &mut crate::db::Conn<'_>,
    workspace: WorkspaceId,
    id: EndpointId,
) -> Result<EndpointRecord> {
    let row = conn
        .fetch_one(
            &format!(
                "SELECT {COLUMNS} FROM endpoints WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            ),
            &args![id, workspace],
            "endpoint",
        )
        .await?;
    endpoint_from(&row)
}

struct CreateEndpoint(NewEndpoint);

impl WriteOp for CreateEndpoint {
    type Output = EndpointRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<EndpointRecord> {
        tx.require_sealing_key().await?;
        let new = &self.0;
        let id = new.id;
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO endpoints (id, workspace_id, name, config, secret, auth, enabled, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
                &args![
                    id,
                    new.workspace,
                    new.name.as_str(),
                    new.config.clone(),
                    new.secret.clone(),
                    new.auth.clone(),
                    new.enabled,
                    now
                ],
            )
            .await?;
        get(&mut tx.conn, new.workspace, id).await
    }
}

/// A change to an endpoint, applied only at `expected_version` when given.
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    pub name: Option<String>,
    pub config: Option<Value>,
    /// New sealed credentials (`Some(None)` removes them).
    pub auth: Option<Option<Vec<u8>>>,
    /// Enable (clearing the disabled reason) or disable by hand with a reason.
    pub enabled: Option<(bool, Option<String>)>,
    /// A new sealed secret; the current one keeps signing until the given time.
    pub rotate_secret: Option<(Vec<u8>, OffsetDateTime)>,
}

struct UpdateEndpoint {
    workspace: WorkspaceId,
    id: EndpointId,
    change: EndpointChange,
    expected_version: Option<i64>,
    actor: Actor,
}

impl WriteOp for UpdateEndpoint {
    type Output = EndpointRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<EndpointRecord> {
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
        let now = now_micros();
        let change = &self.change;
        let name = change.name.clone().unwrap_or(current.name.clone());
        let config = change.config.clone().unwrap_or(current.config.clone());
        let auth = change.auth.clone().unwrap_or(current.auth.clone());
        let (secret, previous, previous_until) = match &change.rotate_secret {
            Some((new, until)) => (
                new.clone(),
                Some(current.secret.clone()),
                Some(crate::db::to_micros(*until)),
            ),
            None => (
                current.secret.clone(),
                current.previous_secret.as_ref().map(|(s, _)| s.clone()),
                current
                    .previous_secret
                    .as_ref()
                    .map(|(_, t)| crate::db::to_micros(*t)),
            ),
        };
        let (enabled, reason, disabled_at) = match &change.enabled {
            Some((true, _)) => (true, None, None),
            Some((false, reason)) if current.enabled => (false, reason.clone(), Some(now)),
            _ => (
                current.enabled,
                current.disabled_reason.clone(),
                current.disabled_at.map(crate::db::to_micros),
            ),
        };
        tx.conn
            .execute(
                "UPDATE endpoints SET name = $1, config = $2, secret = $3, previous_secret = $4,
                        previous_secret_until = $5, enabled = $6, disabled_reason = $7, disabled_at = $8,
                        failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
                        version = version + 1, updated_at = $9, auth = $12
                 WHERE id = $10 AND workspace_id = $11",
                &args![
                    name.as_str(),
                    config,
                    secret,
                    previous,
                    previous_until,
                    enabled,
                    reason.clone(),
                    disabled_at,
                    now,
                    self.id,
                    self.workspace,
                    auth
                ],
            )
            .await?;
        if current.enabled && !enabled {
            disabled_event(
                tx,
                &current,
                reason.as_deref().unwrap_or("disabled by hand"),
                self.actor.clone(),
            )
            .await?;
        }
        get(&mut tx.conn, self.workspace, self.id).await
    }
}

/// Emit `endpoint.disabled` so another endpoint can alert on it.
pub(crate) async fn disabled_event(
    tx: &mut Tx<'_>,
    endpoint: &EndpointRecord,
    reason: &str,
    actor: Actor,
) -> Result<Event> {
    let event = NewEvent {
        event_type: "endpoint.disabled".into(),
        case_id: None,
        form_id: None,
        actor,
        data: json!({
            "endpoint_id": endpoint.id,
            "name": endpoint.name,
            "reason": reason,
        }),
        changes: None,
        skip_triggers: false,
    };
    let mut events = append(tx, endpoint.workspace_id, vec![event]).await?;
    events
        .pop()
        .ok_or_else(|| StoreError::Corrupt("no event appended".into()))
}

struct DeleteEndpoint {
    workspace: WorkspaceId,
    id: EndpointId,
}

impl WriteOp for DeleteEndpoint {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let now = now_micros();
        let changed = tx
            .conn
            .execute(
                "UPDATE endpoints SET deleted_at = $1, enabled = FALSE, updated_at = $1
                 WHERE id = $2 AND workspace_id = $3 AND deleted_at IS NULL",
                &args![now, self.id, self.workspace],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound("endpoint"));
        }
        // Pending deliveries of a deleted endpoint are cancelled, and their jobs dropped.
        tx.conn
            .execute(
                "DELETE FROM jobs WHERE id IN (SELECT job_id FROM deliveries
                     WHERE endpoint_id = $1 AND state = 'pending' AND job_id IS NOT NULL)",
                &args![self.id],
            )
            .await?;
        tx.conn
            .execute(
                "UPDATE deliveries SET state = 'cancelled', last_error = 'endpoint deleted', next_attempt_at = NULL,
                        finished_at = $1, updated_at = $1
                 WHERE endpoint_id = $2 AND state = 'pending'",
                &args![now, self.id],
            )
            .await?;
        Ok(())
    }
}

struct MarkTested {
    workspace: WorkspaceId,
    id: EndpointId,
}

impl WriteOp for MarkTested {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        tx.conn
            .execute(
                "UPDATE endpoints SET tested_at = $1 WHERE id = $2 AND workspace_id = $3",
                &args![now_micros(), self.id, self.workspace],
            )
            .await?;
        Ok(())
    }
}

impl Store {
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Result<EndpointRecord> {
        self.writer().run(CreateEndpoint(new)).await
    }

    pub async fn get_endpoint(
        &self,
        workspace: WorkspaceId,
        id: EndpointId,
    ) -> Result<EndpointRecord> {
        let mut lease = self.read().await?;
        get(&mut lease.conn(), workspace, id).await
    }

    /// The workspace's endpoints (not deleted), oldest first.
    pub async fn list_endpoints(&self, workspace: WorkspaceId) -> Result<Vec<EndpointRecord>> {
        let mut lease = self.read().await?;
        let rows = lease
            .conn()
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS} FROM endpoints WHERE workspace_id = $1 AND deleted_at IS NULL
                     ORDER BY created_at, id"
                ),
                &args![workspace],
            )
            .await?;
        rows.iter().map(endpoint_from).collect()
    }

    pub async fn update_endpoint(
        &self,
        workspace: WorkspaceId,
        id: EndpointId,
        change: EndpointChange,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<EndpointRecord> {
        self.writer()
            .run(UpdateEndpoint {
                workspace,
                id,
                change,
                expected_version,
                actor,
            })
            .await
    }

    /// Soft-delete an endpoint and cancel its pending deliveries.
    pub async fn delete_endpoint(&self, workspace: WorkspaceId, id: EndpointId) -> Result<()> {
        self.writer().run(DeleteEndpoint { workspace, id }).await
    }

    /// Record that a test send to the endpoint succeeded (health: Ready).
    pub async fn mark_endpoint_tested(&self, workspace: WorkspaceId, id: EndpointId) -> Result<()> {
        self.writer().run(MarkTested { workspace, id }).await
    }
}
