//! PostgreSQL: a run of accepted requests that only create cases, applied as a set. Per
//! request, the one-at-a-time path costs about nine round trips on the writer's connection
//! (key claim, hook check, form check, counters, case, event, key outcome, log entry); the
//! set costs one hook check per hook, one statement for all creations (the ingest path's),
//! one for all idempotency keys and one for all log entries.
//!
//! Anything the set cannot answer exactly as the one-at-a-time path would — a key another
//! request already holds, a changed form, a deleted hook — fails the set; the writer then
//! rolls it back and runs each request alone, which gives each its own answer.

use std::collections::{BTreeSet, HashSet};

use casehook_core::inbound::outcome::{Accepted, ItemAction, ItemOutcome};
use serde_json::{Value, json};

use crate::cases::insert_case_set;
use crate::db::{args, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::Tx;

use super::apply::{ApplyInbound, check_hook_alive};
use super::log::Settled;
use super::{InboundItem, InboundWrite};

/// Whether a run of requests can be applied as a set: every item creates a case, and no two
/// requests carry the same idempotency key (the second must answer the first's outcome).
pub(super) fn creations_only(ops: &[&ApplyInbound]) -> bool {
    let mut keys = HashSet::new();
    ops.iter().map(|op| &op.write).all(|w| {
        w.items.iter().all(|i| matches!(i, InboundItem::Create(_)))
            && w.idempotency
                .as_ref()
                .is_none_or(|claim| keys.insert((w.request.hook_id, claim.key.as_str())))
    })
}

/// Apply `writes` (all passing [`creations_only`]) in the transaction, answering each.
pub(super) async fn apply_creations(
    tx: &mut Tx<'_>,
    ops: &[&ApplyInbound],
) -> Result<Vec<Accepted>> {
    let writes: Vec<&InboundWrite> = ops.iter().map(|op| &op.write).collect();
    let writes = writes.as_slice();
    check_hooks(tx, writes).await?;
    let mut creations = Vec::new();
    for op in ops {
        for (item, json) in op.write.items.iter().zip(&op.creations) {
            match (item, json) {
                (InboundItem::Create(new), Some(json)) => creations.push((new, json)),
                _ => {
                    return Err(StoreError::Corrupt(
                        "a creation of the set came without its JSON".into(),
                    ));
                }
            }
        }
    }
    let mut created = insert_case_set(tx, &creations).await?.into_iter();
    let mut answers = Vec::with_capacity(writes.len());
    for write in writes {
        let items = write
            .items
            .iter()
            .map(|_| {
                let created = created.next().ok_or_else(|| {
                    StoreError::Corrupt("the set answered fewer creations than asked".into())
                })?;
                Ok(ItemOutcome {
                    action: ItemAction::Created,
                    case_id: created.id,
                    case_number: created.number,
                    event_ids: vec![created.event_id],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        answers.push(Accepted {
            request_id: write.request.id,
            batch: write.batch,
            items,
        });
    }
    claim_keys(tx, writes, &answers).await?;
    log_requests(tx, writes, &answers).await?;
    Ok(answers)
}

/// Every hook of the set is still alive (checked once per hook).
async fn check_hooks(tx: &mut Tx<'_>, writes: &[&InboundWrite]) -> Result<()> {
    let hooks: BTreeSet<_> = writes
        .iter()
        .map(|w| (w.request.hook_id, w.request.workspace))
        .collect();
    for (hook, workspace) in hooks {
        check_hook_alive(&mut tx.conn, hook, workspace).await?;
    }
    Ok(())
}

/// Every request's idempotency key with its outcome, in one statement. A key that is held
/// and not expired is not taken, and fails the set.
async fn claim_keys(tx: &mut Tx<'_>, writes: &[&InboundWrite], answers: &[Accepted]) -> Result<()> {
    let mut input = Vec::new();
    for (write, accepted) in writes.iter().zip(answers) {
        let Some(claim) = &write.idempotency else {
            continue;
        };
        input.push(json!({
            "hook_id": write.request.hook_id,
            "key": claim.key,
            "workspace_id": write.request.workspace,
            "request_id": write.request.id,
            "outcome": accepted,
            "expires_at": claim.expires_at,
        }));
    }
    if input.is_empty() {
        return Ok(());
    }
    let wanted = input.len();
    let taken = tx
        .conn
        .fetch_all(
            "INSERT INTO inbound_idempotency (hook_id, idem_key, workspace_id, request_id, outcome, created_at, expires_at)
             SELECT (x->>'hook_id')::uuid, x->>'key', (x->>'workspace_id')::uuid, (x->>'request_id')::uuid,
                    x->'outcome', $2, (x->>'expires_at')::bigint
             FROM jsonb_array_elements($1::jsonb) AS t(x)
             ON CONFLICT (hook_id, idem_key) DO UPDATE SET request_id = excluded.request_id, outcome = excluded.outcome,
                 created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE inbound_idempotency.expires_at <= excluded.created_at
             RETURNING request_id",
            &args![Value::Array(input), now_micros()],
        )
        .await?;
    if taken.len() != wanted {
        return Err(StoreError::Conflict(
            "an idempotency key of the set is already held".into(),
        ));
    }
    Ok(())
}

/// Every request's log entry, settled with its answer, in one statement.
async fn log_requests(
    tx: &mut Tx<'_>,
    writes: &[&InboundWrite],
    answers: &[Accepted],
) -> Result<()> {
    let now = now_micros();
    let input: Vec<Value> = writes
        .iter()
        .zip(answers)
        .map(|(write, accepted)| {
            let r = &write.request;
            let settled = Settled::answered(accepted, accepted.summary());
            json!({
                "id": r.id,
                "workspace_id": r.workspace,
                "hook_id": r.hook_id,
                "received_at": r.received_at,
                "duration_us": (now - r.received_at).max(0),
                "source_ip": r.source_ip,
                "flags": r.flags.join(","),
                "query": r.query,
                "content_type": r.content_type,
                "headers": r.headers,
                "body": r.body.as_deref().map(hex::encode),
                "body_bytes": r.body_bytes,
                "body_truncated": r.body_truncated,
                "verification": r.verification,
                "verification_error": r.verification_error,
                "idempotency_key": r.idempotency_key,
                "status": settled.status,
                "outcome": settled.outcome,
                "response": settled.response,
                "case_id": settled.case_id,
                "replay_of": r.replay_of,
            })
        })
        .collect();
    tx.conn
        .execute(
            "INSERT INTO inbound_requests (id, workspace_id, hook_id, received_at, duration_us, source_ip, flags, query,
                 content_type, headers, body, body_bytes, body_truncated, verification, verification_error,
                 idempotency_key, status, outcome, response, case_id, replay_of)
             SELECT (x->>'id')::uuid, (x->>'workspace_id')::uuid, (x->>'hook_id')::uuid, (x->>'received_at')::bigint,
                    (x->>'duration_us')::bigint, x->>'source_ip', x->>'flags', x->>'query', x->>'content_type',
                    x->'headers', decode(x->>'body', 'hex'), (x->>'body_bytes')::bigint, (x->>'body_truncated')::boolean,
                    x->>'verification', x->>'verification_error', x->>'idempotency_key', (x->>'status')::bigint,
                    x->>'outcome', x->'response', (x->>'case_id')::uuid, (x->>'replay_of')::uuid
             FROM jsonb_array_elements($1::jsonb) AS t(x)",
            &args![Value::Array(input)],
        )
        .await?;
    Ok(())
}
