//! Events (the outbox feed) and the workspace's event catalog.
//!
//! Sequence numbers come from a counter on the workspace row, taken inside the transaction
//! that writes the events: on PostgreSQL the row lock orders concurrent writers so sequences
//! become visible in order and without gaps, and a rolled-back write gives its numbers back.

use casehook_core::event::{BUILTIN_EVENT_TYPES, Event, NewEvent};
use casehook_core::{CaseId, EventId, FormId, WorkspaceId};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Arg, Dialect, Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// The wake-up name under which the writer signals committed events (the dispatcher
/// listens with `Store::watch_queue(EVENTS_WAKE)`).
pub const EVENTS_WAKE: &str = "events";

/// Filters for the event feed, oldest first.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only events with a sequence above this (resume where a consumer stopped).
    pub after: Option<i64>,
    /// Only these types (any when empty).
    pub types: Vec<String>,
    pub case_id: Option<CaseId>,
    pub limit: i64,
    /// Leave `data` out (it comes back as null): for consumers that only route events,
    /// which then neither read nor decode the largest column.
    pub without_data: bool,
}

/// An entry of the event catalog.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventTypeRecord {
    pub name: String,
    pub description: String,
    /// JSON Schema of `data` (custom types only; absent = any data).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    pub builtin: bool,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub archived_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, sequence, workspace_id, type, case_id, form_id, actor, data, changes, skip_triggers, occurred_at";

pub(crate) fn event_from(row: &Row) -> Result<Event> {
    Ok(Event {
        id: EventId(row.uuid("id")?),
        sequence: row.i64("sequence")?,
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        event_type: row.text("type")?,
        case_id: row.opt_uuid("case_id")?.map(CaseId),
        form_id: row.opt_uuid("form_id")?.map(FormId),
        actor: row.decode("actor")?,
        data: row.json("data")?,
        changes: row
            .opt_json("changes")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("changes: {e}")))?,
        skip_triggers: row.bool("skip_triggers")?,
        occurred_at: from_micros(row.i64("occurred_at")?)?,
    })
}

/// Append events to the workspace's feed inside the caller's transaction.
pub(crate) async fn append(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = events.len() as i64;
    let last = tx
        .conn
        .fetch_one(
            "UPDATE workspaces SET event_counter = event_counter + $1 WHERE id = $2 RETURNING event_counter",
            &args![count, workspace],
            "workspace",
        )
        .await?
        .i64("event_counter")?;
    append_numbered(tx, workspace, last - count + 1, events).await
}

pub(crate) const INSERT_EVENT_SQL: &str =
    "INSERT INTO events (id, sequence, workspace_id, type, case_id, form_id, actor, data, changes,
                     skip_triggers, occurred_at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Append events whose sequence numbers the caller already took from the workspace's
/// counter (in this transaction), the first being `first`.
pub(crate) async fn append_numbered(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    first: i64,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>> {
    let now = now_micros();
    let occurred_at = from_micros(now)?;
    tx.woken.feed(workspace, first + events.len() as i64 - 1);
    let mut written = Vec::with_capacity(events.len());
    for (offset, new) in events.into_iter().enumerate() {
        let event = Event {
            id: EventId::new(),
            sequence: first + offset as i64,
            workspace_id: workspace,
            event_type: new.event_type,
            case_id: new.case_id,
            form_id: new.form_id,
            actor: new.actor,
            data: new.data,
            changes: new.changes,
            skip_triggers: new.skip_triggers,
            occurred_at,
        };
        let changes = event
            .changes
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let actor =
            serde_json::to_value(&event.actor).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut params = Vec::from(args![
            event.id,
            event.sequence,
            workspace,
            event.event_type.as_str(),
            event.case_id,
            event.form_id,
            actor,
            event.data.clone()
        ]);
        params.push(Arg::OptJson(changes));
        params.extend(args![event.skip_triggers, now]);
        tx.conn.execute(INSERT_EVENT_SQL, &params).await?;
        written.push(event);
    }
    Ok(written)
}

struct Emit {
    workspace: WorkspaceId,
    event: NewEvent,
}

impl WriteOp for Emit {
    type Output = Event;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Event> {
        if let Some(case) = self.event.case_id {
            let row = tx
                .conn
                .fetch_one(
                    "SELECT form_id FROM cases WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
                    &args![case, self.workspace],
                    "case",
                )
                .await?;
            self.event.form_id = Some(FormId(row.uuid("form_id")?));
        }
        let mut events = append(tx, self.workspace, vec![self.event.clone()]).await?;
        events
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no event appended".into()))
    }
}

fn event_type_from(row: &Row) -> Result<EventTypeRecord> {
    Ok(EventTypeRecord {
        name: row.text("name")?,
        description: row.text("description")?,
        schema: row.opt_json("schema")?,
        builtin: false,
        created_at: Some(from_micros(row.i64("created_at")?)?),
        archived_at: row.opt_i64("archived_at")?.map(from_micros).transpose()?,
    })
}

fn builtin_types() -> impl Iterator<Item = EventTypeRecord> {
    BUILTIN_EVENT_TYPES
        .iter()
        .map(|(name, description)| EventTypeRecord {
            name: (*name).into(),
            description: (*description).into(),
            schema: None,
            builtin: true,
            created_at: None,
            archived_at: None,
        })
}

const TYPE_COLUMNS: &str = "name, description, schema, created_at, archived_at";

struct PutEventType {
    workspace: WorkspaceId,
    name: String,
    description: String,
    schema: Option<Value>,
    create: bool,
}

impl WriteOp for PutEventType {
    type Output = EventTypeRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<EventTypeRecord> {
        let now = now_micros();
        let schema = Arg::OptJson(self.schema.clone());
        if self.create {
            let inserted = tx
                .conn
                .execute(
                    "INSERT INTO event_types (workspace_id, name, description, schema, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5)",
                    &[self.workspace.into(), self.name.as_str().into(), self.description.as_str().into(), schema, now.into()],
                )
                .await;
            match inserted {
                Err(e) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict(format!(
                        "event type `{}` already exists",
                        self.name
                    )));
                }
                other => other?,
            };
        } else {
            let changed = tx
                .conn
                .execute(
                    "UPDATE event_types SET description = $1, schema = $2, updated_at = $3, archived_at = NULL
                     WHERE workspace_id = $4 AND name = $5",
                    &[self.description.as_str().into(), schema, now.into(), self.workspace.into(), self.name.as_str().into()],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::NotFound("event type"));
            }
        }
        let row = tx
            .conn
            .fetch_one(
                &format!(
                    "SELECT {TYPE_COLUMNS} FROM event_types WHERE workspace_id = $1 AND name = $2"
                ),
                &args![self.workspace, self.name.as_str()],
                "event type",
            )
            .await?;
        event_type_from(&row)
    }
}

struct ArchiveEventType {
    workspace: WorkspaceId,
    name: String,
}

impl WriteOp for ArchiveEventType {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let changed = tx
            .conn
            .execute(
                "UPDATE event_types SET archived_at = $1 WHERE workspace_id = $2 AND name = $3 AND archived_at IS NULL",
                &args![now_micros(), self.workspace, self.name.as_str()],
            )
            .await?;
        if changed == 0 {
            Err(StoreError::NotFound("event type"))
        } else {
            Ok(())
        }
    }
}

impl Store {
    /// The event feed, oldest first.
    pub async fn list_events(
        &self,
        workspace: WorkspaceId,
        filter: &EventFilter,
    ) -> Result<Vec<Event>> {
        let mut lease = self.read().await?;
        let columns = match (filter.without_data, lease.conn().dialect()) {
            (false, _) => COLUMNS.to_owned(),
            (true, Dialect::Postgres) => COLUMNS.replace(" data,", " 'null'::jsonb AS data,"),
            (true, Dialect::Sqlite) => COLUMNS.replace(" data,", " 'null' AS data,"),
        };
        let mut sql = format!("SELECT {columns} FROM events WHERE workspace_id = $1");
        let mut params: Vec<Arg> = Vec::from(args![workspace]);
        if let Some(after) = filter.after {
            params.push(after.into());
            sql.push_str(&format!(" AND sequence > ${}", params.len()));
        }
        if let Some(case) = filter.case_id {
            params.push(case.into());
            sql.push_str(&format!(" AND case_id = ${}", params.len()));
        }
        if !filter.types.is_empty() {
            let mut slots = Vec::new();
            for t in &filter.types {
                params.push(t.as_str().into());
                slots.push(format!("${}", params.len()));
            }
            sql.push_str(&format!(" AND type IN ({})", slots.join(", ")));
        }
        params.push(filter.limit.clamp(1, 1000).into());
        sql.push_str(&format!(" ORDER BY sequence LIMIT ${}", params.len()));
        lease
            .conn()
            .fetch_all(&sql, &params)
            .await?
            .iter()
            .map(event_from)
            .collect()
    }

    /// One event of the workspace's feed.
    pub async fn get_event(&self, workspace: WorkspaceId, sequence: i64) -> Result<Event> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM events WHERE workspace_id = $1 AND sequence = $2"),
                &args![workspace, sequence],
                "event",
            )
            .await?;
        event_from(&row)
    }

    /// One event of the workspace's feed, by id.
    pub async fn get_event_by_id(&self, workspace: WorkspaceId, id: EventId) -> Result<Event> {
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM events WHERE id = $1 AND workspace_id = $2"),
                &args![id, workspace],
                "event",
            )
            .await?;
        event_from(&row)
    }

    /// Append a custom event (already validated against its type's schema).
    pub async fn emit_event(&self, workspace: WorkspaceId, event: NewEvent) -> Result<Event> {
        self.writer().run(Emit { workspace, event }).await
    }

    /// Built-in types followed by the workspace's own (archived ones only when asked).
    pub async fn list_event_types(
        &self,
        workspace: WorkspaceId,
        include_archived: bool,
    ) -> Result<Vec<EventTypeRecord>> {
        let filter = if include_archived {
            ""
        } else {
            " AND archived_at IS NULL"
        };
        let mut lease = self.read().await?;
        let custom = lease
            .conn()
            .fetch_all(
                &format!("SELECT {TYPE_COLUMNS} FROM event_types WHERE workspace_id = $1{filter} ORDER BY name"),
                &args![workspace],
            )
            .await?;
        let mut all: Vec<EventTypeRecord> = builtin_types().collect();
        for row in &custom {
            all.push(event_type_from(row)?);
        }
        Ok(all)
    }

    /// One catalog entry, built-in or custom (archived custom ones included).
    pub async fn get_event_type(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<EventTypeRecord> {
        if let Some(builtin) = builtin_types().find(|t| t.name == name) {
            return Ok(builtin);
        }
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!(
                    "SELECT {TYPE_COLUMNS} FROM event_types WHERE workspace_id = $1 AND name = $2"
                ),
                &args![workspace, name],
                "event type",
            )
            .await?;
        event_type_from(&row)
    }

    pub async fn create_event_type(
        &self,
        workspace: WorkspaceId,
        name: &str,
        description: &str,
        schema: Option<Value>,
    ) -> Result<EventTypeRecord> {
        let op = PutEventType {
            workspace,
            name: name.into(),
            description: description.into(),
            schema,
            create: true,
        };
        self.writer().run(op).await
    }

    /// Replace a custom type's description and schema (and un-archive it).
    pub async fn update_event_type(
        &self,
        workspace: WorkspaceId,
        name: &str,
        description: &str,
        schema: Option<Value>,
    ) -> Result<EventTypeRecord> {
        let op = PutEventType {
            workspace,
            name: name.into(),
            description: description.into(),
            schema,
            create: false,
        };
        self.writer().run(op).await
    }

    pub async fn archive_event_type(&self, workspace: WorkspaceId, name: &str) -> Result<()> {
        self.writer()
            .run(ArchiveEventType {
                workspace,
                name: name.into(),
            })
            .await
    }
}
