//! Schedules of scheduled API-call fields: one row per (form, field) with its cron expression
//! and next run, kept in step with the form in the transaction that saves it, and advanced
//! with a compare-and-swap so that processes sharing a database start each run once.

use casehook_core::apicall::{Trigger, spec_of};
use casehook_core::form::FormSpec;
use casehook_core::schedule::Schedule;
use casehook_core::{FormId, WorkspaceId};
use serde_json::Value;

use crate::Store;
use crate::db::{Conn, args, from_micros, now_micros, to_micros};
use crate::error::Result;
use crate::jobs::{NewJob, insert_job};
use crate::writer::{Tx, WriteOp};

/// A schedule whose run was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueSchedule {
    pub workspace: WorkspaceId,
    pub form_id: FormId,
    pub field: String,
}

fn next_run(schedule: &Schedule, after_micros: i64) -> Option<i64> {
    let after = from_micros(after_micros).ok()?;
    schedule.next_after(after).map(to_micros)
}

/// Make the form's schedule rows match its scheduled fields: new fields get their first
/// run, changed expressions a new next run, removed fields lose their row.
pub(crate) async fn sync(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    form: FormId,
    spec: &FormSpec,
) -> Result<()> {
    let now = now_micros();
    let wanted: Vec<(String, String)> = spec
        .fields
        .iter()
        .filter_map(|f| {
            let api = spec_of(spec, &f.key)?;
            api.settings.trigger.has(Trigger::Scheduled).then_some(())?;
            Some((f.key.clone(), api.settings.schedule?))
        })
        .collect();
    let rows = conn
        .fetch_all(
            "SELECT field_key, schedule FROM api_call_schedules WHERE form_id = $1",
            &args![form],
        )
        .await?;
    for row in &rows {
        let key = row.text("field_key")?;
        let expr = row.text("schedule")?;
        if !wanted.iter().any(|(k, e)| *k == key && *e == expr) {
            conn.execute(
                "DELETE FROM api_call_schedules WHERE form_id = $1 AND field_key = $2",
                &args![form, key.as_str()],
            )
            .await?;
        }
    }
    for (key, expr) in wanted {
        let kept = rows.iter().any(|r| {
            r.text("field_key").ok().as_deref() == Some(key.as_str())
                && r.text("schedule").ok().as_deref() == Some(expr.as_str())
        });
        if kept {
            continue;
        }
        // Checked when the form was saved; a schedule that never runs gets no row.
        let Some(next) = Schedule::parse(&expr).ok().and_then(|s| next_run(&s, now)) else {
            continue;
        };
        conn.execute(
            "INSERT INTO api_call_schedules (form_id, field_key, workspace_id, schedule, next_run_at)
             VALUES ($1, $2, $3, $4, $5)",
            &args![form, key.as_str(), workspace, expr.as_str(), next],
        )
        .await?;
    }
    Ok(())
}

struct StartDue {
    now: i64,
    limit: i64,
    queue: String,
}

impl WriteOp for StartDue {
    type Output = Vec<DueSchedule>;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Vec<DueSchedule>> {
        let rows = tx
            .conn
            .fetch_all(
                "SELECT form_id, field_key, workspace_id, schedule, next_run_at FROM api_call_schedules
                 WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2",
                &args![self.now, self.limit],
            )
            .await?;
        let mut started = Vec::new();
        for row in rows {
            let due = DueSchedule {
                workspace: WorkspaceId(row.uuid("workspace_id")?),
                form_id: FormId(row.uuid("form_id")?),
                field: row.text("field_key")?,
            };
            let was = row.i64("next_run_at")?;
            // Missed runs (the server was down) collapse into this one.
            let next = Schedule::parse(&row.text("schedule")?)
                .ok()
                .and_then(|s| next_run(&s, self.now));
            let moved = match next {
                Some(next) => {
                    tx.conn
                        .execute(
                            "UPDATE api_call_schedules SET next_run_at = $1
                             WHERE form_id = $2 AND field_key = $3 AND next_run_at = $4",
                            &args![next, due.form_id, due.field.as_str(), was],
                        )
                        .await?
                }
                None => {
                    tx.conn
                        .execute(
                            "DELETE FROM api_call_schedules WHERE form_id = $1 AND field_key = $2 AND next_run_at = $3",
                            &args![due.form_id, due.field.as_str(), was],
                        )
                        .await?
                }
            };
            if moved == 0 {
                continue;
            }
            let fanout = NewJob {
                queue: self.queue.clone(),
                workspace: Some(due.workspace),
                payload: fanout_payload(due.form_id, &due.field, None),
                due_at: None,
                unique_key: Some(fanout_key(due.form_id, &due.field)),
            };
            if insert_job(tx, &fanout).await?.is_none() {
                tracing::info!(
                    form = %due.form_id,
                    field = %due.field,
                    "scheduled run skipped: the previous run is still going through the form's cases"
                );
                continue;
            }
            started.push(due);
        }
        Ok(started)
    }
}

/// The unique key of a scheduled field's fan-out: one at a time, so a run does not start
/// while the previous one is still enqueuing its cases' runs.
pub fn fanout_key(form: FormId, field: &str) -> String {
    format!("fanout:{form}:{field}")
}

/// The unique key of a scheduled run of one case's field: while it is queued or running, the
/// next scheduled run of that case's field is not queued.
pub fn scheduled_run_key(case: casehook_core::CaseId, field: &str) -> String {
    format!("scheduled:{case}:{field}")
}

/// The payload of a job that enqueues a scheduled field's runs for one page of cases.
pub fn fanout_payload(form: FormId, field: &str, before_number: Option<i64>) -> Value {
    serde_json::json!({
        "fanout": {"form_id": form, "field": field, "before_number": before_number}
    })
}

impl Store {
    /// Start every schedule due at `now`: move it to its next run and enqueue a fan-out
    /// job on `queue` for its form's cases, in one transaction.
    pub async fn start_due_schedules(&self, queue: &str, limit: i64) -> Result<Vec<DueSchedule>> {
        self.writer()
            .run(StartDue {
                now: now_micros(),
                limit,
                queue: queue.to_owned(),
            })
            .await
    }
}
