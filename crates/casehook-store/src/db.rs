//! A thin, backend-neutral layer over sqlx's concrete SQLite and PostgreSQL drivers.
//!
//! sqlx's `Any` driver cannot carry the types we need, and generic code over
//! `sqlx::Database` drowns in trait bounds. Instead every query here is SQL text plus a list
//! of [`Arg`]s, executed on a [`Conn`] that is one or the other driver's connection, and read
//! back through [`Row`]. Both backends accept `$1` placeholders, so most SQL is shared; where
//! the dialects differ, the caller asks [`Conn::dialect`].

use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{PgConnection, Row as _, SqliteConnection};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::lite::{self, LiteRow};

/// Which SQL dialect a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One bound value.
#[derive(Clone, Debug)]
pub enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Json(Value),
    /// JSON already serialized (by the caller's task, so that the writer only binds it),
    /// shared so that binding it copies nothing.
    RawJson(Arc<RawValue>),
    /// A JSON value or SQL NULL, typed as JSON (PostgreSQL refuses a text NULL in a jsonb column).
    OptJson(Option<Value>),
    F64(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
}

macro_rules! arg_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self { Arg::$v(v.into()) }
        }
    )*};
}
arg_from!(i64 => I64, Option<i64> => OptI64, String => Text, &str => Text, Option<String> => OptText,
          Uuid => Uuid, Option<Uuid> => OptUuid, Value => Json, Option<Value> => OptJson, f64 => F64, bool => Bool,
          Vec<u8> => Bytes, Option<Vec<u8>> => OptBytes, Arc<RawValue> => RawJson);

macro_rules! id_args {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg { fn from(v: $t) -> Self { Arg::Uuid(v.0) } }
        impl From<Option<$t>> for Arg { fn from(v: Option<$t>) -> Self { Arg::OptUuid(v.map(|x| x.0)) } }
    )*};
}
id_args!(
    casehook_core::WorkspaceId,
    casehook_core::ApiKeyId,
    casehook_core::FormId,
    casehook_core::CaseId,
    casehook_core::EventId,
    casehook_core::JobId,
    casehook_core::EndpointId,
    casehook_core::DeliveryId,
    casehook_core::AttemptId,
    casehook_core::InboundHookId,
    casehook_core::InboundRequestId,
    casehook_core::SecretId,
    casehook_core::ConnectionId,
    casehook_core::ApiCallLogId,
    casehook_core::ActionId
);

/// Build an array of `Arg`s from anything convertible: `&args![ws, "open", 3_i64]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($crate::db::Arg::from($a)),*] };
}
pub(crate) use args;

fn bind_sqlite<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(*v),
            Arg::OptI64(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::OptText(v) => q.bind(v.as_deref()),
            Arg::Uuid(v) => q.bind(*v),
            Arg::OptUuid(v) => q.bind(*v),
            Arg::Json(v) => q.bind(sqlx::types::Json(v)),
            Arg::RawJson(v) => q.bind(sqlx::types::Json(&**v)),
            Arg::OptJson(v) => q.bind(v.as_ref().map(sqlx::types::Json)),
            Arg::F64(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::OptBytes(v) => q.bind(v.as_deref()),
        };
    }
    q
}

fn bind_pg<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, PgArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Postgres, PgArguments> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(*v),
            Arg::OptI64(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::OptText(v) => q.bind(v.as_deref()),
            Arg::Uuid(v) => q.bind(*v),
            Arg::OptUuid(v) => q.bind(*v),
            Arg::Json(v) => q.bind(sqlx::types::Json(v)),
            Arg::RawJson(v) => q.bind(sqlx::types::Json(&**v)),
            Arg::OptJson(v) => q.bind(v.as_ref().map(sqlx::types::Json)),
            Arg::F64(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::OptBytes(v) => q.bind(v.as_deref()),
        };
    }
    q
}

/// Our SQL is built from constants and numbered placeholders, never from input (values are
/// always bound), which is what `AssertSqlSafe` asserts. sqlx's PostgreSQL driver keeps the
/// statement text beyond the call, so it gets an owned copy.
fn pg_sql(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_owned())
}

/// A borrowed connection of either backend.
#[derive(Debug)]
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Pg(&'c mut PgConnection),
    /// The SQLite writer's direct connection (see `lite`).
    Lite(&'c mut rusqlite::Connection),
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) | Conn::Lite(_) => Dialect::Sqlite,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }

    /// Run a statement; the number of rows it affected.
    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        Ok(match self {
            Conn::Sqlite(c) => bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Pg(c) => bind_pg(sqlx::query(pg_sql(sql)), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Lite(c) => lite::execute(c, sql, args)?,
        })
    }

    pub async fn fetch_optional(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>> {
        Ok(match self {
            Conn::Sqlite(c) => bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Sqlite),
            Conn::Pg(c) => bind_pg(sqlx::query(pg_sql(sql)), args)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Pg),
            Conn::Lite(c) => lite::query(c, sql, args)?.into_iter().next().map(Row::Lite),
        })
    }

    /// Exactly one row, or `NotFound(what)`.
    pub async fn fetch_one(&mut self, sql: &str, args: &[Arg], what: &'static str) -> Result<Row> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(StoreError::NotFound(what))
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        Ok(match self {
            Conn::Sqlite(c) => bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Conn::Pg(c) => bind_pg(sqlx::query(pg_sql(sql)), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect(),
            Conn::Lite(c) => lite::query(c, sql, args)?
                .into_iter()
                .map(Row::Lite)
                .collect(),
        })
    }

    /// Run SQL text without arguments (transaction control, migrations).
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut **c)
                    .await?;
            }
            Conn::Pg(c) => {
                sqlx::raw_sql(pg_sql(sql)).execute(&mut **c).await?;
            }
            Conn::Lite(c) => lite::batch(c, sql)?,
        };
        Ok(())
    }
}

/// A result row of either backend.
#[derive(Debug)]
pub enum Row {
    Sqlite(SqliteRow),
    Pg(PgRow),
    Lite(LiteRow),
}

macro_rules! getter {
    ($name:ident, $t:ty) => {
        pub fn $name(&self, col: &str) -> Result<$t> {
            Ok(match self {
                Row::Sqlite(r) => r.try_get::<$t, _>(col)?,
                Row::Pg(r) => r.try_get::<$t, _>(col)?,
                Row::Lite(r) => r.$name(col)?,
            })
        }
    };
}

impl Row {
    getter!(i64, i64);
    getter!(opt_i64, Option<i64>);
    getter!(text, String);
    getter!(uuid, Uuid);
    getter!(opt_uuid, Option<Uuid>);
    getter!(bool, bool);
    getter!(opt_text, Option<String>);
    getter!(bytes, Vec<u8>);
    getter!(opt_bytes, Option<Vec<u8>>);

    pub fn json(&self, col: &str) -> Result<Value> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get::<sqlx::types::Json<Value>, _>(col)?.0,
            Row::Pg(r) => r.try_get::<sqlx::types::Json<Value>, _>(col)?.0,
            Row::Lite(r) => r.json(col)?,
        })
    }

    pub fn opt_json(&self, col: &str) -> Result<Option<Value>> {
        Ok(match self {
            Row::Sqlite(r) => r
                .try_get::<Option<sqlx::types::Json<Value>>, _>(col)?
                .map(|j| j.0),
            Row::Pg(r) => r
                .try_get::<Option<sqlx::types::Json<Value>>, _>(col)?
                .map(|j| j.0),
            Row::Lite(r) => r.opt_json(col)?,
        })
    }

    /// A JSON column decoded into a typed value.
    pub fn decode<T: serde::de::DeserializeOwned>(&self, col: &str) -> Result<T> {
        serde_json::from_value(self.json(col)?)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    }
}

/// Microseconds since the Unix epoch: how every timestamp is stored, on both backends, so the
/// same SQL compares and sorts them.
/// `value` serialized once, to be bound as JSON ([`Arg::RawJson`]) or copied into other JSON.
pub(crate) fn raw_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Arc<RawValue>> {
    serde_json::value::to_raw_value(value)
        .map(Arc::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn now_micros() -> i64 {
    to_micros(time::OffsetDateTime::now_utc())
}

pub fn to_micros(t: time::OffsetDateTime) -> i64 {
    to_micros_checked(t).unwrap_or(i64::MAX)
}

/// `None` for times outside what 64-bit microseconds can hold (about ±292,000 years).
pub fn to_micros_checked(t: time::OffsetDateTime) -> Option<i64> {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

pub fn from_micros(us: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {us}: {e}")))
}

/// Refuse `name` when another live row of `table` (a table with `workspace_id`, `name` and
/// `deleted_at`) in the workspace has it; `except` is the row being renamed. `noun` names
/// the thing in the conflict message ("a connection").
pub(crate) async fn check_name_free(
    conn: &mut Conn<'_>,
    table: &str,
    noun: &str,
    workspace: casehook_core::WorkspaceId,
    name: &str,
    except: Option<Uuid>,
) -> Result<()> {
    let taken = conn
        .fetch_optional(
            &format!(
                "SELECT id FROM {table} WHERE workspace_id = $1 AND name = $2 AND deleted_at IS NULL"
            ),
            &args![workspace, name],
        )
        .await?;
    match taken {
        Some(row) if Some(row.uuid("id")?) != except => Err(StoreError::Conflict(format!(
            "{noun} named `{name}` exists already"
        ))),
        _ => Ok(()),
    }
}
