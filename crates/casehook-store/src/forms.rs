//! Forms (case types). A form's definition is stored whole as JSON (`spec`) with a version
//! that increases on every change. A change that would invalidate stored case data is
//! checked against that data inside the same transaction as the update, so no case can slip
//! in between the check and the change.

use casehook_core::form::{FormSpec, review_change};
use casehook_core::validate::check_value;
use casehook_core::{FieldError, FieldErrorCode, FormId, WorkspaceId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Store;
use crate::db::{Conn, Row, args, from_micros, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A stored form.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FormRecord {
    pub id: FormId,
    pub workspace_id: WorkspaceId,
    pub version: i64,
    pub spec: FormSpec,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub archived_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, workspace_id, version, spec, created_at, updated_at, archived_at";

fn form_from(row: &Row) -> Result<FormRecord> {
    Ok(FormRecord {
        id: FormId(row.uuid("id")?),
        workspace_id: WorkspaceId(row.uuid("workspace_id")?),
        version: row.i64("version")?,
        spec: row.decode("spec")?,
        created_at: from_micros(row.i64("created_at")?)?,
        updated_at: from_micros(row.i64("updated_at")?)?,
        archived_at: row.opt_i64("archived_at")?.map(from_micros).transpose()?,
    })
}

pub(crate) async fn get(
    conn: &mut Conn<'_>,
    workspace: WorkspaceId,
    id: FormId,
) -> Result<FormRecord> {
    let row = conn
        .fetch_one(
            &format!("SELECT {COLUMNS} FROM forms WHERE id = $1 AND workspace_id = $2"),
            &args![id, workspace],
            "form",
        )
        .await?;
    form_from(&row)
}

fn spec_json(spec: &FormSpec) -> Result<serde_json::Value> {
    serde_json::to_value(spec).map_err(|e| StoreError::Corrupt(format!("form spec: {e}")))
}

struct CreateForm {
    workspace: WorkspaceId,
    spec: FormSpec,
}

impl WriteOp for CreateForm {
    type Output = FormRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<FormRecord> {
        let id = FormId::new();
        let now = now_micros();
        tx.conn
            .execute(
                "INSERT INTO forms (id, workspace_id, name, spec, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 1, $5, $5)",
                &args![
                    id,
                    self.workspace,
                    self.spec.name.as_str(),
                    spec_json(&self.spec)?,
                    now
                ],
            )
            .await?;
        crate::schedules::sync(&mut tx.conn, self.workspace, id, &self.spec).await?;
        get(&mut tx.conn, self.workspace, id).await
    }
}

struct UpdateForm {
    workspace: WorkspaceId,
    id: FormId,
    spec: FormSpec,
    expected_version: Option<i64>,
}

impl WriteOp for UpdateForm {
    type Output = FormRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<FormRecord> {
        let current = get(&mut tx.conn, self.workspace, self.id).await?;
        if let Some(expected) = self.expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        if current.spec == self.spec {
            return Ok(current);
        }
        check_stored_data(&mut tx.conn, &current, &self.spec).await?;
        tx.conn
            .execute(
                "UPDATE forms SET name = $1, spec = $2, version = version + 1, updated_at = $3
                 WHERE id = $4 AND workspace_id = $5",
                &args![
                    self.spec.name.as_str(),
                    spec_json(&self.spec)?,
                    now_micros(),
                    self.id,
                    self.workspace
                ],
            )
            .await?;
        crate::schedules::sync(&mut tx.conn, self.workspace, self.id, &self.spec).await?;
        get(&mut tx.conn, self.workspace, self.id).await
    }
}

/// Refuse a change that would leave stored values invalid, naming every affected field with
/// how many cases hold a value it would invalidate and the first of them.
async fn check_stored_data(
    conn: &mut Conn<'_>,
    current: &FormRecord,
    new: &FormSpec,
) -> Result<()> {
    let review = review_change(&current.spec, new);
    if review.is_empty() {
        return Ok(());
    }
    let rows = conn
        .fetch_all(
            "SELECT number, data FROM cases WHERE workspace_id = $1 AND form_id = $2 AND deleted_at IS NULL
             ORDER BY number",
            &args![current.workspace_id, current.id],
        )
        .await?;
    let mut details = Vec::new();
    let mut tally = |key: &str,
                     fits: &dyn Fn(&serde_json::Value) -> bool,
                     what: &str|
     -> Result<()> {
        let mut count = 0;
        let mut first = None;
        for row in &rows {
            let data = row.json("data")?;
            if let Some(value) = data.get(key).filter(|v| !v.is_null())
                && !fits(value)
            {
                count += 1;
                first.get_or_insert(row.i64("number")?);
            }
        }
        if let Some(first) = first {
            details.push(FieldError::new(
                key,
                FieldErrorCode::IncompatibleChange,
                format!("{count} case(s) (first #{first}) hold a value for `{key}` that {what}"),
            ));
        }
        Ok(())
    };
    for key in &review.narrowed {
        if let Some(field) = new.field(key) {
            tally(
                key,
                &|v| check_value(field, v).is_ok(),
                "the changed field would not accept",
            )?;
        }
    }
    for key in &review.removed {
        tally(
            key,
            &|_| false,
            "would be lost by removing the field; clear those values first",
        )?;
    }
    if details.is_empty() {
        return Ok(());
    }
    Err(StoreError::Rejected {
        message: "the form change would invalidate case data already stored".into(),
        details,
    })
}

struct ArchiveForm {
    workspace: WorkspaceId,
    id: FormId,
}

impl WriteOp for ArchiveForm {
    type Output = FormRecord;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<FormRecord> {
        tx.conn
            .execute(
                "UPDATE forms SET archived_at = $1, version = version + 1, updated_at = $1
                 WHERE id = $2 AND workspace_id = $3 AND archived_at IS NULL",
                &args![now_micros(), self.id, self.workspace],
            )
            .await?;
        get(&mut tx.conn, self.workspace, self.id).await
    }
}

impl Store {
    pub async fn create_form(&self, workspace: WorkspaceId, spec: FormSpec) -> Result<FormRecord> {
        self.writer().run(CreateForm { workspace, spec }).await
    }

    pub async fn get_form(&self, workspace: WorkspaceId, id: FormId) -> Result<FormRecord> {
        let mut lease = self.read().await?;
        get(&mut lease.conn(), workspace, id).await
    }

    pub async fn list_forms(
        &self,
        workspace: WorkspaceId,
        include_archived: bool,
    ) -> Result<Vec<FormRecord>> {
        let mut lease = self.read().await?;
        let filter = if include_archived {
            ""
        } else {
            " AND archived_at IS NULL"
        };
        lease
            .conn()
            .fetch_all(
                &format!("SELECT {COLUMNS} FROM forms WHERE workspace_id = $1{filter} ORDER BY created_at, id"),
                &args![workspace],
            )
            .await?
            .iter()
            .map(form_from)
            .collect()
    }

    /// Replace a form's definition. `expected_version` (from `If-Match`) guards against
    /// overwriting someone else's change.
    pub async fn update_form(
        &self,
        workspace: WorkspaceId,
        id: FormId,
        spec: FormSpec,
        expected_version: Option<i64>,
    ) -> Result<FormRecord> {
        self.writer()
            .run(UpdateForm {
                workspace,
                id,
                spec,
                expected_version,
            })
            .await
    }

    /// Archive a form: it keeps its cases but takes no new ones. Idempotent.
    pub async fn archive_form(&self, workspace: WorkspaceId, id: FormId) -> Result<FormRecord> {
        self.writer().run(ArchiveForm { workspace, id }).await
    }
}
