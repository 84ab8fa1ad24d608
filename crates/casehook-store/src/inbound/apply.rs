//! The one write that applies an accepted request: its items (all or nothing), its
//! idempotency key and its request log entry, in one transaction. Which case a request
//! matches and whether its key was seen are decided here, inside that transaction, so 100
//! concurrent retries create one case.

use std::sync::Arc;

use casehook_core::event::{Actor, NewEvent};
use casehook_core::inbound::outcome::{Accepted, ItemAction, ItemOutcome};
use casehook_core::{FormId, InboundHookId, WorkspaceId};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Store;
use crate::cases::{
    COLUMNS as CASE_COLUMNS, CasePatch, CreationJson, NewCase, UpdateCase, case_from,
    data_equals_clause, ensure_field_index, insert_case,
};
use crate::db::{Arg, Conn, Dialect, args, now_micros, raw_json};
use crate::error::{Result, StoreError};
use crate::events::append;
use crate::writer::{Tx, WriteOp};

use super::apply_set;
use super::log::{NewInboundRequest, Settled, insert_request};

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
// Items live for one request and are consumed by one write; boxing the larger variant would
// only add an allocation per item.
#[allow(clippy::large_enum_variant)]
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

/// A hook deleted through another process may still be cached there for a moment: its
/// requests are refused inside the write.
pub(super) async fn check_hook_alive(
    conn: &mut Conn<'_>,
    hook: InboundHookId,
    workspace: WorkspaceId,
) -> Result<()> {
    conn.fetch_one(
        "SELECT id FROM inbound_hooks WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        &args![hook, workspace],
        "inbound hook",
    )
    .await?;
    Ok(())
}

/// The case a match names, locked for update on PostgreSQL; `None` when there is none.
async fn find_match(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    form: FormId,
    target: &CaseMatch,
) -> Result<Option<casehook_core::case::Case>> {
    let dialect = conn.dialect();
    let lock = if dialect == Dialect::Postgres {
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
            // Also refuses anything but a field key (the key becomes part of the SQL).
            let index = ensure_field_index(conn, key).await?;
            // SQLite's planner would rather walk the form's cases in number order (the ORDER
            // BY) than use the field's index; the index answers strings and numbers.
            let hint = match (dialect, value) {
                (Dialect::Sqlite, Value::String(_) | Value::Number(_)) => {
                    format!(" INDEXED BY {index}")
                }
                _ => String::new(),
            };
            let (clause, arg) = data_equals_clause(dialect, key, value);
            // The oldest case wins when several hold the value.
            let sql = format!(
                "SELECT {CASE_COLUMNS} FROM cases{hint} WHERE workspace_id = $1 AND form_id = $2 AND deleted_at IS NULL{} ORDER BY number LIMIT 1{lock}",
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
/// `creation` is the JSON of the case it creates, if it may create one.
async fn apply_item(
    tx: &mut Tx<'_>,
    workspace: WorkspaceId,
    form: FormId,
    item: &InboundItem,
    creation: Option<&CreationJson>,
) -> Result<ItemOutcome> {
    match (item, creation) {
        (InboundItem::Create(new), Some(json)) => create(tx, new, json).await,
        (InboundItem::Create(_), None) => Err(missing_creation()),
        (
            InboundItem::Update {
                target,
                patch,
                actor,
                skip_triggers,
                or_create,
            },
            creation,
        ) => {
            let Some(case) = find_match(&mut tx.conn, workspace, form, target).await? else {
                return match (or_create, creation) {
                    (Some(new), Some(json)) => create(tx, new, json).await,
                    (Some(_), None) => Err(missing_creation()),
                    (None, _) => Err(StoreError::NotFound("case")),
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
        (InboundItem::Event { target, event }, _) => {
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

fn missing_creation() -> StoreError {
    StoreError::Corrupt("an item that creates a case came without its JSON".into())
}

async fn create(tx: &mut Tx<'_>, new: &NewCase, json: &CreationJson) -> Result<ItemOutcome> {
    let created = insert_case(tx, new, json).await?;
    Ok(ItemOutcome {
        action: ItemAction::Created,
        case_id: created.id,
        case_number: created.number,
        event_ids: vec![created.event_id],
    })
}

/// An accepted request, with the JSON of every case it may create serialized on the
/// caller's task.
pub(super) struct ApplyInbound {
    pub(super) write: InboundWrite,
    /// Per item: the JSON of the case it creates (`Create`, `Update` with `or_create`).
    pub(super) creations: Vec<Option<CreationJson>>,
    /// The log entry's headers.
    headers: Arc<RawValue>,
}

impl ApplyInbound {
    fn new(write: InboundWrite) -> Result<Self> {
        let creations = write
            .items
            .iter()
            .map(|item| match item {
                InboundItem::Create(new)
                | InboundItem::Update {
                    or_create: Some(new),
                    ..
                } => CreationJson::of(new).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let headers = raw_json(&write.request.headers)?;
        Ok(Self {
            write,
            creations,
            headers,
        })
    }

    /// Write the request's log entry, settled.
    async fn log(&self, tx: &mut Tx<'_>, settled: Settled<'_>) -> Result<()> {
        let headers = self.headers.clone();
        insert_request(&mut tx.conn, &self.write.request, headers, Some(settled)).await
    }
}

impl WriteOp for ApplyInbound {
    type Output = Applied;
    const SET_BASED: bool = true;

    async fn run_set(ops: &mut [&mut Self], tx: &mut Tx<'_>) -> Result<Vec<Applied>> {
        let writes: Vec<&ApplyInbound> = ops.iter().map(|op| &**op).collect();
        if tx.conn.dialect() == Dialect::Postgres && apply_set::creations_only(&writes) {
            let answers = apply_set::apply_creations(tx, &writes).await?;
            return Ok(answers.into_iter().map(Applied::Done).collect());
        }
        let mut outputs = Vec::with_capacity(ops.len());
        for op in ops.iter_mut() {
            outputs.push(op.run(tx).await?);
        }
        Ok(outputs)
    }

    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Applied> {
        let write = &self.write;
        let request = &write.request;
        if let Some(claim) = &write.idempotency
            && let Some(first) = claim_key(tx, request, claim).await?
        {
            self.log(tx, Settled::answered(&first, "duplicate")).await?;
            return Ok(Applied::Duplicate(first));
        }
        check_hook_alive(&mut tx.conn, request.hook_id, request.workspace).await?;
        let form = write.form_id;
        let mut items = Vec::with_capacity(write.items.len());
        for (index, (item, creation)) in write.items.iter().zip(&self.creations).enumerate() {
            let outcome = apply_item(tx, request.workspace, form, item, creation.as_ref())
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
            settle_key(tx, request, claim, &accepted).await?;
        }
        self.log(tx, Settled::answered(&accepted, accepted.summary()))
            .await?;
        Ok(Applied::Done(accepted))
    }
}

/// Take the idempotency key for this request. Returns the first request's outcome when the
/// key was already processed within its window.
///
/// On PostgreSQL the key is inserted now, without its outcome: a concurrent holder of the
/// same key (another process) makes the insert wait for its commit, and the outcome is read
/// once it is there. On SQLite the writer holds the database's write lock (`BEGIN
/// IMMEDIATE`) from this lookup to [`settle_key`], so nobody can take the key in between and
/// it is written once, with its outcome.
async fn claim_key(
    tx: &mut Tx<'_>,
    request: &NewInboundRequest,
    claim: &IdempotencyClaim,
) -> Result<Option<Accepted>> {
    let now = now_micros();
    if tx.conn.dialect() == Dialect::Postgres {
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
    }
    let row = tx
        .conn
        .fetch_optional(
            "SELECT outcome FROM inbound_idempotency WHERE hook_id = $1 AND idem_key = $2 AND expires_at > $3",
            &args![request.hook_id, claim.key.as_str(), now],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    match row.opt_json("outcome")? {
        Some(outcome) => serde_json::from_value(outcome)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("idempotency outcome: {e}"))),
        None => Err(StoreError::Conflict(
            "a request with this idempotency key is being processed; retry shortly".into(),
        )),
    }
}

/// Record what the request that holds the key came to: its retries answer this. One
/// statement for both backends: on PostgreSQL it fills in the row [`claim_key`] inserted; on
/// SQLite it is the key's first write (an expired key of the same name is replaced).
async fn settle_key(
    tx: &mut Tx<'_>,
    request: &NewInboundRequest,
    claim: &IdempotencyClaim,
    accepted: &Accepted,
) -> Result<()> {
    let stored = raw_json(accepted)?;
    tx.conn
        .execute(
            "INSERT INTO inbound_idempotency (hook_id, idem_key, workspace_id, request_id, outcome, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (hook_id, idem_key) DO UPDATE SET request_id = excluded.request_id, outcome = excluded.outcome,
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
            &args![
                request.hook_id,
                claim.key.as_str(),
                request.workspace,
                request.id,
                stored,
                now_micros(),
                claim.expires_at
            ],
        )
        .await?;
    Ok(())
}

impl Store {
    /// Apply an accepted request: all its items, its idempotency key and its log entry in one
    /// transaction. A key already processed (and not expired) changes nothing and answers the
    /// first request's outcome. Any item's failure fails the whole request
    /// ([`StoreError::Item`] names the item), and nothing of it is written.
    pub async fn apply_inbound(&self, write: InboundWrite) -> Result<Applied> {
        self.writer().run(ApplyInbound::new(write)?).await
    }
}
