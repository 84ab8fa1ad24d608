//! Cases: creation, partial update (merge of `data`, status, external references), soft
//! deletion, lookups and filtered, cursor-paginated lists.
//!
//! Every change writes the case and the events it causes in one transaction (the writer's
//! savepoint), so an accepted change is never without its events and vice versa. Case data
//! arrives here already validated against its form by the caller; what is checked here is
//! what only the database can answer (versions, taken external references, an archived or
//! changed form).

use std::collections::BTreeMap;
use std::sync::Arc;

use casehook_core::case::{Case, Change, Changes, Data, diff, merge};
use casehook_core::event::{Actor, Event, NewEvent};
use casehook_core::{CaseId, EventId, FormId, WorkspaceId, case::CaseRef};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Arg, Conn, Dialect, Row, args, from_micros, now_micros, raw_json};
use crate::error::{Result, StoreError};
use crate::events::{INSERT_EVENT_SQL, append};
use crate::writer::{Tx, WriteOp};

/// A validated case to create.
#[derive(Clone, Debug)]
pub struct NewCase {
    pub workspace: WorkspaceId,
    pub form_id: FormId,
    /// The form version the data was validated against; if the form changed since, the
    /// write is refused (the caller validates again and retries).
    pub form_version: i64,
    pub status: String,
    pub data: Data,
    pub external_refs: BTreeMap<String, String>,
    pub actor: Actor,
    pub skip_triggers: bool,
}

/// A validated partial update. `data` is a merge patch (null clears a field);
/// `external_refs` maps a source to its new reference, or null to remove it.
#[derive(Clone, Debug, Default)]
pub struct CasePatch {
    pub data: Data,
    pub status: Option<String>,
    pub external_refs: BTreeMap<String, Option<String>>,
    /// The form version `data` was validated against; when given and the form has changed
    /// since, the update is refused with `FormChanged` (the caller validates again).
    pub form_version: Option<i64>,
    /// API-call fields this patch overwrites by hand: if their value changes, their state
    /// becomes `manual` (in the same transaction), naming the actor.
    pub overrides: Vec<String>,
}

/// Filters for listing cases. Results are newest first (by number).
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub form_id: Option<FormId>,
    pub status: Option<String>,
    /// Field key → value the field must equal. Keys must be valid field keys (checked by
    /// the caller: they are part of the SQL for SQLite's JSON operator).
    pub data_equals: Vec<(String, Value)>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    pub updated_after: Option<i64>,
    pub updated_before: Option<i64>,
    pub include_deleted: bool,
    /// Only cases numbered below this (the previous page's `next_cursor`).
    pub before_number: Option<i64>,
    pub limit: i64,
}

/// One page of cases.
#[derive(Clone, Debug)]
pub struct CasePage {
    pub items: Vec<Case>,
    /// Pass as `before_number` for the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

pub(crate) const COLUMNS: &str = "id, workspace_id, form_id, number, status, data, external_refs, version, created_by, \
                       created_at, updated_at, deleted_at";

pub(crate) fn case_from(row: &Row) -> Result<Case> {
    Ok(Case {
        id: CaseId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        form_id: FormId(row.uuid("form_id")?),
        number: row.i64("number")?,
        status: row.text("status")?,
        data: row.decode("data")?,
        external_refs: row.decode("external_refs")?,
        version: row.i64("version")?,
        created_by: row.decode("created_by")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
        deleted_at: row.opt_i64("deleted_at")?.map(from_micros).transpose()?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A live (not deleted) case of the workspace, locked for update on PostgreSQL.
async fn load_for_update(conn: &mut Conn<'_>, workspace: WorkspaceId, id: CaseId) -> Result<Case> {
    let lock = if conn.dialect() == Dialect::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = conn
        .fetch_one(
            &format!("SELECT {COLUMNS} FROM cases WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL{lock}"),
            &args![id, workspace],
            "case",
        )
        .await?;
    case_from(&row)
}

/// Claim an external reference for a case, refusing one already held by another case.
async fn claim_ref(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    case: CaseId,
    source: &str,
    reference: &str,
) -> Result<()> {
    let holder = conn
        .fetch_optional(
            "SELECT c.number FROM case_external_refs r JOIN cases c ON c.id = r.case_id
             WHERE r.workspace_id = $1 AND r.source = $2 AND r.reference = $3 AND r.case_id <> $4",
            &args![workspace, source, reference, case],
        )
        .await?;
    if let Some(row) = holder {
        return Err(StoreError::Conflict(format!(
            "external reference {source}={reference} already belongs to case #{}",
            row.i64("number")?
        )));
    }
    conn.execute(
        "DELETE FROM case_external_refs WHERE case_id = $1 AND source = $2",
        &args![case, source],
    )
    .await?;
    conn.execute(
        "INSERT INTO case_external_refs (workspace_id, source, reference, case_id) VALUES ($1, $2, $3, $4)",
        &args![workspace, source, reference, case],
    )
    .await?;
    Ok(())
}

struct FormState {
    archived: bool,
}

/// Refuse with `FormChanged` when the form is no longer at the version the caller validated
/// against (another process changed it while this one had it cached).
async fn check_form(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    form: FormId,
    validated: i64,
) -> Result<FormState> {
    let row = conn
        .fetch_one(
            "SELECT version, archived_at FROM forms WHERE id = $1 AND workspace_id = $2",
            &args![form, workspace],
            "form",
        )
        .await?;
    if row.i64("version")? != validated {
        return Err(StoreError::FormChanged);
    }
    Ok(FormState {
        archived: row.opt_i64("archived_at")?.is_some(),
    })
}

/// A creation's JSON, serialized on the caller's task before the write is queued: the writer
/// is the one thread every write waits on, so it should only bind text (serializing and
/// copying case data was about a fifth of its time per inbound creation).
#[derive(Debug)]
pub(crate) struct CreationJson {
    data: Arc<RawValue>,
    external_refs: Arc<RawValue>,
    actor: Arc<RawValue>,
}

impl CreationJson {
    pub(crate) fn of(new: &NewCase) -> Result<Self> {
        Ok(Self {
            data: raw_json(&new.data)?,
            external_refs: raw_json(&new.external_refs)?,
            actor: raw_json(&new.actor)?,
        })
    }
}

/// The `case.created` event's data: the case as stored, serialized as [`Case`] is, with the
/// parts the caller serialized copied in as they are.
#[derive(Serialize)]
struct CaseSnapshot<'a> {
    id: CaseId,
    workspace_id: WorkspaceId,
    form_id: FormId,
    number: i64,
    status: &'a str,
    data: &'a RawValue,
    external_refs: &'a RawValue,
    version: i64,
    created_by: &'a RawValue,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl<'a> CaseSnapshot<'a> {
    fn of(
        new: &'a NewCase,
        json: &'a CreationJson,
        id: CaseId,
        number: i64,
        at: i64,
    ) -> Result<Self> {
        let at = from_micros(at)?;
        Ok(Self {
            id,
            workspace_id: new.workspace,
            form_id: new.form_id,
            number,
            status: &new.status,
            data: &json.data,
            external_refs: &json.external_refs,
            version: 1,
            created_by: &json.actor,
            created_at: at,
            updated_at: at,
        })
    }
}

/// What the writer gave a new case.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Created {
    pub(crate) id: CaseId,
    pub(crate) number: i64,
    pub(crate) event_id: EventId,
    pub(crate) sequence: i64,
    /// When it was written, in microseconds: the case's creation and the event's time.
    pub(crate) at: i64,
}

impl Created {
    /// The case and its `case.created` event as stored, built from what was asked (by the
    /// caller, after the write).
    fn case_and_event(&self, new: NewCase) -> Result<(Case, Event)> {
        let at = from_micros(self.at)?;
        let case = Case {
            id: self.id,
            workspace_id: new.workspace,
            form_id: new.form_id,
            number: self.number,
            status: new.status,
            data: new.data,
            external_refs: new.external_refs,
            version: 1,
            created_by: new.actor.clone(),
            created_at: at,
            updated_at: at,
            deleted_at: None,
        };
        let event = Event {
            id: self.event_id,
            sequence: self.sequence,
            workspace_id: new.workspace,
            event_type: "case.created".into(),
            case_id: Some(self.id),
            form_id: Some(new.form_id),
            actor: new.actor,
            data: to_json(&case)?,
            changes: None,
            skip_triggers: new.skip_triggers,
            occurred_at: at,
        };
        Ok((case, event))
    }
}

/// Write a new case and its `case.created` event: the form check, the workspace's counters,
/// the case row, its external references and the event.
pub(crate) async fn insert_case(
    tx: &mut Tx<'_>,
    new: &NewCase,
    json: &CreationJson,
) -> Result<Created> {
    let form = check_form(&mut tx.conn, new.workspace, new.form_id, new.form_version).await?;
    if form.archived {
        return Err(StoreError::FormArchived);
    }
    let id = CaseId::new();
    // The case number and the sequence of its `case.created` event, in one statement.
    let counters = tx
        .conn
        .fetch_one(
            "UPDATE workspaces SET case_counter = case_counter + 1, event_counter = event_counter + 1
             WHERE id = $1 RETURNING case_counter, event_counter",
            &args![new.workspace],
            "workspace",
        )
        .await?;
    let number = counters.i64("case_counter")?;
    let sequence = counters.i64("event_counter")?;
    let at = now_micros();
    tx.conn
        .execute(
            "INSERT INTO cases (id, workspace_id, form_id, number, status, data, external_refs, version,
                                created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)",
            &[
                Arg::from(id),
                Arg::from(new.workspace),
                Arg::from(new.form_id),
                Arg::from(number),
                Arg::from(new.status.as_str()),
                Arg::RawJson(json.data.clone()),
                Arg::RawJson(json.external_refs.clone()),
                Arg::RawJson(json.actor.clone()),
                Arg::from(at),
            ],
        )
        .await?;
    // After the case row (the references point at it); a taken reference rolls the whole
    // operation back, case number included.
    for (source, reference) in &new.external_refs {
        claim_ref(&mut tx.conn, new.workspace, id, source, reference).await?;
    }
    let event_id = EventId::new();
    let snapshot = raw_json(&CaseSnapshot::of(new, json, id, number, at)?)?;
    tx.conn
        .execute(
            INSERT_EVENT_SQL,
            &[
                Arg::from(event_id),
                Arg::from(sequence),
                Arg::from(new.workspace),
                Arg::from("case.created"),
                Arg::from(Some(id)),
                Arg::from(Some(new.form_id)),
                Arg::RawJson(json.actor.clone()),
                Arg::RawJson(snapshot),
                Arg::OptJson(None),
                Arg::from(new.skip_triggers),
                Arg::from(at),
            ],
        )
        .await?;
    tx.woken.feed(new.workspace, sequence);
    Ok(Created {
        id,
        number,
        event_id,
        sequence,
        at,
    })
}

/// One input of [`CREATE_SET_SQL`].
#[derive(Serialize)]
struct SetInput<'a> {
    id: CaseId,
    workspace_id: WorkspaceId,
    form_id: FormId,
    form_version: i64,
    status: &'a str,
    data: &'a RawValue,
    external_refs: &'a RawValue,
    actor: &'a RawValue,
    event_id: EventId,
    /// The snapshot with number 0: the statement sets the number it takes.
    event_data: Arc<RawValue>,
    skip_triggers: bool,
}

/// PostgreSQL: write a set of creations with one statement ([`CREATE_SET_SQL`]), answering
/// each in order. A refused creation fails the set (the caller runs each alone).
pub(crate) async fn insert_case_set(
    tx: &mut Tx<'_>,
    creations: &[(&NewCase, &CreationJson)],
) -> Result<Vec<Created>> {
    let at = now_micros();
    let mut input = Vec::with_capacity(creations.len());
    for (new, json) in creations {
        let (id, event_id) = (CaseId::new(), EventId::new());
        input.push(SetInput {
            id,
            workspace_id: new.workspace,
            form_id: new.form_id,
            form_version: new.form_version,
            status: &new.status,
            data: &json.data,
            external_refs: &json.external_refs,
            actor: &json.actor,
            event_id,
            event_data: raw_json(&CaseSnapshot::of(new, json, id, 0, at)?)?,
            skip_triggers: new.skip_triggers,
        });
    }
    let rows = tx
        .conn
        .fetch_all(
            CREATE_SET_SQL,
            &[Arg::RawJson(raw_json(&input)?), Arg::from(at)],
        )
        .await?;
    if rows.len() != creations.len() {
        return Err(StoreError::Rejected {
            message: "a creation in the set was refused".into(),
            details: Vec::new(),
        });
    }
    let mut created = Vec::with_capacity(creations.len());
    for (((new, _), row), input) in creations.iter().zip(rows).zip(&input) {
        // After the case rows (the references point at them).
        for (source, reference) in &new.external_refs {
            claim_ref(&mut tx.conn, new.workspace, input.id, source, reference).await?;
        }
        let sequence = row.i64("sequence")?;
        tx.woken.feed(new.workspace, sequence);
        created.push(Created {
            id: input.id,
            number: row.i64("number")?,
            event_id: input.event_id,
            sequence,
            at,
        });
    }
    Ok(created)
}

/// Creates a set of cases with their `case.created` events in one PostgreSQL statement: the
/// form checks, the counters of every workspace involved, the cases and the events. A batch
/// of creations then costs one round trip instead of four per case. Any refused input
/// (changed or archived form, unknown form) makes the statement change nothing, so the
/// writer splits the batch and each creation reports its own error through `run`.
const CREATE_SET_SQL: &str = "
WITH input AS (
    SELECT (x->>'id')::uuid AS id, (x->>'workspace_id')::uuid AS workspace_id,
           (x->>'form_id')::uuid AS form_id, (x->>'form_version')::bigint AS form_version,
           x->>'status' AS status, x->'data' AS data, x->'external_refs' AS external_refs,
           x->'actor' AS actor, (x->>'event_id')::uuid AS event_id, x->'event_data' AS event_data,
           (x->>'skip_triggers')::boolean AS skip_triggers, ord
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, ord)
),
refused AS (
    SELECT 1 FROM input i LEFT JOIN forms f ON f.id = i.form_id AND f.workspace_id = i.workspace_id
    WHERE f.id IS NULL OR f.version <> i.form_version OR f.archived_at IS NOT NULL
    LIMIT 1
),
counts AS (SELECT workspace_id, count(*) AS n FROM input GROUP BY workspace_id),
taken AS (
    UPDATE workspaces w SET case_counter = w.case_counter + c.n, event_counter = w.event_counter + c.n
    FROM counts c
    WHERE w.id = c.workspace_id AND NOT EXISTS (SELECT 1 FROM refused)
    RETURNING w.id, w.case_counter - c.n AS case_base, w.event_counter - c.n AS event_base
),
numbered AS (
    SELECT i.*, t.case_base + row_number() OVER win AS number,
           t.event_base + row_number() OVER win AS sequence
    FROM input i JOIN taken t ON t.id = i.workspace_id
    WINDOW win AS (PARTITION BY i.workspace_id ORDER BY i.ord)
),
new_cases AS (
    INSERT INTO cases (id, workspace_id, form_id, number, status, data, external_refs, version,
                       created_by, created_at, updated_at)
    SELECT id, workspace_id, form_id, number, status, data, external_refs, 1, actor, $2, $2
    FROM numbered
),
new_events AS (
    INSERT INTO events (id, sequence, workspace_id, type, case_id, form_id, actor, data, changes,
                        skip_triggers, occurred_at)
    SELECT event_id, sequence, workspace_id, 'case.created', id, form_id, actor,
           jsonb_set(event_data, '{number}', to_jsonb(number)), NULL, skip_triggers, $2
    FROM numbered
)
SELECT ord, number, sequence FROM numbered ORDER BY ord";

/// The API's case creation, as a write.
pub(crate) struct CreateCase {
    new: NewCase,
    json: CreationJson,
}

impl WriteOp for CreateCase {
    type Output = Created;
    const SET_BASED: bool = true;

    async fn run_set(ops: &mut [&mut Self], tx: &mut Tx<'_>) -> Result<Vec<Created>> {
        let creations: Vec<(&NewCase, &CreationJson)> =
            ops.iter().map(|op| (&op.new, &op.json)).collect();
        if tx.conn.dialect() == Dialect::Postgres {
            return insert_case_set(tx, &creations).await;
        }
        let mut created = Vec::with_capacity(creations.len());
        for (new, json) in creations {
            created.push(insert_case(tx, new, json).await?);
        }
        Ok(created)
    }

    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Created> {
        insert_case(tx, &self.new, &self.json).await
    }
}

pub(crate) struct UpdateCase {
    pub(crate) workspace: WorkspaceId,
    pub(crate) id: CaseId,
    pub(crate) patch: CasePatch,
    pub(crate) expected_version: Option<i64>,
    pub(crate) actor: Actor,
    pub(crate) skip_triggers: bool,
}

impl WriteOp for UpdateCase {
    type Output = (Case, Vec<Event>);
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Self::Output> {
        let old = load_for_update(&mut tx.conn, self.workspace, self.id).await?;
        if let Some(expected) = self.expected_version
            && expected != old.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: old.version,
            });
        }
        if let Some(validated) = self.patch.form_version {
            check_form(&mut tx.conn, self.workspace, old.form_id, validated).await?;
        }
        let data = merge(&old.data, &self.patch.data);
        let mut changes = diff(&old.data, &data);
        let mut refs = old.external_refs.clone();
        for (source, reference) in &self.patch.external_refs {
            let before = refs.get(source).cloned();
            match reference {
                Some(r) if before.as_deref() != Some(r.as_str()) => {
                    claim_ref(&mut tx.conn, self.workspace, self.id, source, r).await?;
                    refs.insert(source.clone(), r.clone());
                }
                None if before.is_some() => {
                    tx.conn
                        .execute(
                            "DELETE FROM case_external_refs WHERE case_id = $1 AND source = $2",
                            &args![self.id, source.as_str()],
                        )
                        .await?;
                    refs.remove(source);
                }
                _ => continue,
            }
            let change = Change {
                old: before.map_or(Value::Null, Value::String),
                new: refs.get(source).cloned().map_or(Value::Null, Value::String),
            };
            changes.insert(format!("external_refs.{source}"), change);
        }
        let status = self
            .patch
            .status
            .clone()
            .unwrap_or_else(|| old.status.clone());
        let status_changed = status != old.status;
        if changes.is_empty() && !status_changed {
            return Ok((old, Vec::new()));
        }
        let now = now_micros();
        tx.conn
            .execute(
                "UPDATE cases SET data = $1, status = $2, external_refs = $3, version = version + 1, updated_at = $4
                 WHERE id = $5 AND workspace_id = $6",
                &args![Value::Object(data.clone()), status.as_str(), to_json(&refs)?, now, self.id, self.workspace],
            )
            .await?;
        let case = Case {
            data,
            status: status.clone(),
            external_refs: refs,
            version: old.version + 1,
            updated_at: from_micros(now)?,
            ..old.clone()
        };
        let snapshot = to_json(&case)?;
        let mut events = Vec::new();
        let event = |event_type: &str, changes: Changes| NewEvent {
            event_type: event_type.into(),
            case_id: Some(case.id),
            form_id: Some(case.form_id),
            actor: self.actor.clone(),
            data: snapshot.clone(),
            changes: Some(changes),
            skip_triggers: self.skip_triggers,
        };
        let overridden: Vec<String> = (self.patch.overrides.iter())
            .filter(|f| changes.contains_key(*f))
            .cloned()
            .collect();
        if !changes.is_empty() {
            events.push(event("case.updated", changes));
        }
        if status_changed {
            let change = Change {
                old: Value::String(old.status.clone()),
                new: Value::String(status),
            };
            events.push(event(
                "case.status_changed",
                Changes::from([("status".to_string(), change)]),
            ));
        }
        let events = append(tx, self.workspace, events).await?;
        for field in &overridden {
            {
                crate::api_calls::put_state(
                    &mut tx.conn,
                    self.workspace,
                    self.id,
                    field,
                    "manual",
                    Some(now),
                    None,
                    0,
                    None,
                    false,
                    Some(serde_json::json!({"overridden_by": self.actor})),
                )
                .await?;
            }
        }
        Ok((case, events))
    }
}

struct DeleteCase {
    workspace: WorkspaceId,
    id: CaseId,
    expected_version: Option<i64>,
    actor: Actor,
}

impl WriteOp for DeleteCase {
    type Output = Event;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Event> {
        let old = load_for_update(&mut tx.conn, self.workspace, self.id).await?;
        if let Some(expected) = self.expected_version
            && expected != old.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: old.version,
            });
        }
        let now = now_micros();
        tx.conn
            .execute(
                "UPDATE cases SET deleted_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND workspace_id = $3",
                &args![now, self.id, self.workspace],
            )
            .await?;
        // A deleted case releases its external references so a new case may take them.
        tx.conn
            .execute(
                "DELETE FROM case_external_refs WHERE case_id = $1",
                &args![self.id],
            )
            .await?;
        let case = Case {
            deleted_at: Some(from_micros(now)?),
            updated_at: from_micros(now)?,
            version: old.version + 1,
            ..old
        };
        let event = NewEvent {
            event_type: "case.deleted".into(),
            case_id: Some(case.id),
            form_id: Some(case.form_id),
            actor: self.actor.clone(),
            data: to_json(&case)?,
            changes: None,
            skip_triggers: false,
        };
        let mut events = append(tx, self.workspace, vec![event]).await?;
        events
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no event appended".into()))
    }
}

/// `data.<key> = value`, comparing by JSON value on both backends: numbers by numeric value
/// (10 equals 10.0), strings only with strings. `key` is a checked field key.
/// The column and value a case reference names a case by.
fn ref_column(case: CaseRef) -> (&'static str, Arg) {
    match case {
        CaseRef::Id(id) => ("id", id.into()),
        CaseRef::Number(n) => ("number", n.into()),
    }
}

/// The name of the index that finds a workspace's cases of a form by the value of field
/// `key` (a checked field key, at most 64 characters); within PostgreSQL's 63.
fn field_index_name(key: &str) -> String {
    const PREFIX: &str = "cases_by_";
    if PREFIX.len() + key.len() <= 63 {
        return format!("{PREFIX}{key}");
    }
    // FNV-1a: stable across builds and versions, unlike the standard hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{PREFIX}{}_{:08x}", &key[..44], hash & 0xffff_ffff)
}

/// Make sure cases can be found by the value of field `key` (a checked field key) without
/// reading every case of the form: an index on the very expression `data_equals_clause`
/// compares (numbers and strings on SQLite; any JSON value on PostgreSQL), made the first
/// time a match names the field. Runs in the writer's transaction, so a failed batch takes
/// its index with it. Returns the index's name.
pub(crate) async fn ensure_field_index(conn: &mut Conn<'_>, key: &str) -> Result<String> {
    if !casehook_core::form::is_valid_key(key) {
        return Err(StoreError::Conflict(format!("`{key}` is not a field key")));
    }
    let name = field_index_name(key);
    let (exists, create) = match conn.dialect() {
        Dialect::Postgres => (
            "SELECT 1 AS one FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1",
            format!(
                "CREATE INDEX IF NOT EXISTS {name} ON cases (workspace_id, form_id, (data -> '{key}'))"
            ),
        ),
        Dialect::Sqlite => (
            "SELECT 1 AS one FROM sqlite_master WHERE type = 'index' AND name = $1",
            format!(
                "CREATE INDEX IF NOT EXISTS {name} ON cases (workspace_id, form_id, (data ->> '$.{key}'))"
            ),
        ),
    };
    if conn
        .fetch_optional(exists, &args![name.as_str()])
        .await?
        .is_none()
    {
        tracing::info!(index = %name, field = key, "indexing cases by a field that inbound hooks match on");
        conn.batch(&create).await?;
    }
    Ok(name)
}

pub(crate) fn data_equals_clause(dialect: Dialect, key: &str, value: &Value) -> (String, Arg) {
    match (dialect, value) {
        (Dialect::Postgres, _) => (format!(" AND data -> '{key}' = ?"), value.clone().into()),
        (Dialect::Sqlite, Value::Number(n)) => (
            format!(
                " AND json_type(data, '$.{key}') IN ('integer', 'real') AND data ->> '$.{key}' = ?"
            ),
            n.as_i64()
                .map_or_else(|| Arg::F64(n.as_f64().unwrap_or(f64::NAN)), Arg::I64),
        ),
        (Dialect::Sqlite, Value::String(s)) => (
            format!(" AND json_type(data, '$.{key}') = 'text' AND data ->> '$.{key}' = ?"),
            s.as_str().into(),
        ),
        (Dialect::Sqlite, _) => (
            format!(" AND data -> '$.{key}' = json(?)"),
            value.clone().into(),
        ),
    }
}

impl Store {
    /// Create a case and its `case.created` event in one transaction.
    pub async fn create_case(&self, new: NewCase) -> Result<(Case, Event)> {
        let json = CreationJson::of(&new)?;
        let (created, op) = self
            .writer()
            .run_returning(CreateCase { new, json })
            .await?;
        created.case_and_event(op.new)
    }

    /// Apply a partial update; returns the case and the events written (none when the patch
    /// changed nothing, in which case the version does not move either).
    pub async fn update_case(
        &self,
        workspace: WorkspaceId,
        id: CaseId,
        patch: CasePatch,
        expected_version: Option<i64>,
        actor: Actor,
        skip_triggers: bool,
    ) -> Result<(Case, Vec<Event>)> {
        self.writer()
            .run(UpdateCase {
                workspace,
                id,
                patch,
                expected_version,
                actor,
                skip_triggers,
            })
            .await
    }

    /// Soft-delete a case, writing `case.deleted`.
    pub async fn delete_case(
        &self,
        workspace: WorkspaceId,
        id: CaseId,
        expected_version: Option<i64>,
        actor: Actor,
    ) -> Result<Event> {
        self.writer()
            .run(DeleteCase {
                workspace,
                id,
                expected_version,
                actor,
            })
            .await
    }

    /// A live case by id or number.
    pub async fn get_case(&self, workspace: WorkspaceId, case: CaseRef) -> Result<Case> {
        let (column, arg) = ref_column(case);
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("SELECT {COLUMNS} FROM cases WHERE workspace_id = $1 AND {column} = $2 AND deleted_at IS NULL"),
                &[workspace.into(), arg],
                "case",
            )
            .await?;
        case_from(&row)
    }

    /// The id of a case of the workspace, by id or number; deleted cases too when asked (their
    /// event history stays queryable).
    pub async fn case_id(
        &self,
        workspace: WorkspaceId,
        case: CaseRef,
        include_deleted: bool,
    ) -> Result<CaseId> {
        let (column, arg) = ref_column(case);
        let live = if include_deleted {
            ""
        } else {
            " AND deleted_at IS NULL"
        };
        let mut lease = self.read().await?;
        let row = lease
            .conn()
            .fetch_one(
                &format!("SELECT id FROM cases WHERE workspace_id = $1 AND {column} = $2{live}"),
                &[workspace.into(), arg],
                "case",
            )
            .await?;
        Ok(CaseId(row.uuid("id")?))
    }

    /// The live case holding an external reference.
    pub async fn find_case_by_ref(
        &self,
        workspace: WorkspaceId,
        source: &str,
        reference: &str,
    ) -> Result<Case> {
        let mut lease = self.read().await?;
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let row = lease
            .conn()
            .fetch_one(
                &format!(
                    "SELECT {columns} FROM case_external_refs r JOIN cases c ON c.id = r.case_id
                     WHERE r.workspace_id = $1 AND r.source = $2 AND r.reference = $3 AND c.deleted_at IS NULL"
                ),
                &args![workspace, source, reference],
                "case",
            )
            .await?;
        case_from(&row)
    }

    pub async fn list_cases(
        &self,
        workspace: WorkspaceId,
        filter: &CaseFilter,
    ) -> Result<CasePage> {
        let mut lease = self.read().await?;
        let mut conn = lease.conn();
        let dialect = conn.dialect();
        let mut sql = format!("SELECT {COLUMNS} FROM cases WHERE workspace_id = $1");
        let mut params: Vec<Arg> = Vec::from(args![workspace]);
        let mut push = |sql: &mut String, clause: &str, arg: Arg| {
            params.push(arg);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(form) = filter.form_id {
            push(&mut sql, " AND form_id = ?", form.into());
        }
        if let Some(status) = &filter.status {
            push(&mut sql, " AND status = ?", status.as_str().into());
        }
        for (key, value) in &filter.data_equals {
            if !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(StoreError::Conflict(format!("`{key}` is not a field key")));
            }
            let (clause, arg) = data_equals_clause(dialect, key, value);
            push(&mut sql, &clause, arg);
        }
        let ranges = [
            (filter.created_after, " AND created_at > ?"),
            (filter.created_before, " AND created_at < ?"),
            (filter.updated_after, " AND updated_at > ?"),
            (filter.updated_before, " AND updated_at < ?"),
            (filter.before_number, " AND number < ?"),
        ];
        for (bound, clause) in ranges {
            if let Some(value) = bound {
                push(&mut sql, clause, value.into());
            }
        }
        if !filter.include_deleted {
            sql.push_str(" AND deleted_at IS NULL");
        }
        let limit = filter.limit.clamp(1, 1000);
        push(
            &mut sql,
            " ORDER BY number DESC LIMIT ?",
            (limit + 1).into(),
        );
        let rows = conn.fetch_all(&sql, &params).await?;
        let mut items = rows.iter().map(case_from).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|c| c.number)
        } else {
            None
        };
        Ok(CasePage { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casehook_core::event::ActorKind;

    #[test]
    fn the_creation_snapshot_is_the_case_as_serialized() {
        let mut data = Data::new();
        data.insert("amount".into(), serde_json::json!(1250.5));
        data.insert(
            "note".into(),
            serde_json::json!("Zoë \"quoted\" \u{1F600}\n"),
        );
        data.insert(
            "items".into(),
            serde_json::json!([{"b": 2, "a": [1, null]}]),
        );
        let new = NewCase {
            workspace: WorkspaceId::new(),
            form_id: FormId::new(),
            form_version: 3,
            status: "open".into(),
            data,
            external_refs: BTreeMap::from([("stripe".into(), "cus_1".into())]),
            actor: Actor {
                kind: ActorKind::InboundHook,
                id: Some("h1".into()),
                name: "inbound hook payments".into(),
                chain: 0,
            },
            skip_triggers: false,
        };
        let json = CreationJson::of(&new).expect("serializable");
        let created = Created {
            id: CaseId::new(),
            number: 42,
            event_id: EventId::new(),
            sequence: 99,
            at: 1_764_400_000_123_456,
        };
        let snapshot = CaseSnapshot::of(&new, &json, created.id, created.number, created.at)
            .expect("a snapshot");
        let snapshot = serde_json::to_string(&snapshot).expect("serializable");
        let (case, event) = created.case_and_event(new).expect("the case");
        assert_eq!(
            snapshot,
            serde_json::to_string(&case).expect("serializable")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&snapshot).expect("JSON"),
            event.data
        );
    }
}
