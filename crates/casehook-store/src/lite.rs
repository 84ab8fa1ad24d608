//! The SQLite writer's own driver: a synchronous `rusqlite` connection owned by the writer's
//! dedicated thread.
//!
//! Why not sqlx here too: sqlx's SQLite driver sends every statement to a worker thread and
//! waits for the answer, which measured ~38 µs per statement on this machine, so writes were
//! bound by round trips, not by SQLite (a case creation runs about eight statements). On its
//! own thread the writer can call SQLite directly. Values are written exactly as sqlx writes
//! them (UUIDs as 16-byte blobs, JSON as text, booleans as integers), so both drivers read
//! and write the same file; reads keep using sqlx's pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value as Lv, ValueRef};
use serde_json::Value;
use uuid::Uuid;

use crate::db::Arg;
use crate::error::{Result, StoreError};

/// How often the checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Frames in the write-ahead log (16 MiB of 4 KiB pages) past which the checkpointer makes
/// the log start over.
const RESTART_AFTER_FRAMES: i64 = 4096;
/// How long a restart may wait for the writer's open transaction and for readers of old
/// snapshots; the writer cannot begin a transaction meanwhile. Past it, the restart is
/// tried again next round.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// The writer's connection, and the thread that checkpoints for it.
#[derive(Debug)]
pub(crate) struct LiteWriter {
    pub(crate) conn: rusqlite::Connection,
    _checkpointer: Checkpointer,
}

/// Stops its thread when dropped (with the writer).
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connect(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Open the writer's connection on an existing database file, with its checkpointer.
///
/// Why a checkpointer: SQLite checkpoints (copies the write-ahead log into the database file
/// and fsyncs it) inside whichever commit crosses the log's size threshold, so every few
/// thousand writes one commit, and every request waiting on it, stalled for the whole copy:
/// hundreds of milliseconds after a burst. A thread of its own checkpoints instead, often
/// and passively (never blocking the writer), and the writer never does.
///
/// A passive checkpoint running beside the writer never sees the log at rest, so on its own
/// the log is never started over and grows without bound (measured: 378 MB in 9 s at 1,000
/// deliveries/s, with delivery p99 from 40 ms to 135–790 ms as reads searched an ever longer
/// log). So once the log holds `RESTART_AFTER_FRAMES`, the checkpointer asks for a restart:
/// it copies the few frames the passive rounds have not, and the writer's next transaction
/// writes the log from its start again (the file keeps its size, up to the 64 MiB limit).
pub(crate) fn open(path: &Path) -> Result<LiteWriter> {
    let conn = connect(path)?;
    // Same settings as the sqlx connections: WAL, and a commit is on disk before it is
    // acknowledged. The log is truncated back to 64 MiB when it is reset.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    let stop = Arc::new(AtomicBool::new(false));
    spawn_checkpointer(path.to_owned(), stop.clone())?;
    Ok(LiteWriter {
        conn,
        _checkpointer: Checkpointer { stop },
    })
}

fn spawn_checkpointer(path: PathBuf, stop: Arc<AtomicBool>) -> Result<()> {
    let conn = connect(&path)?;
    conn.busy_timeout(RESTART_WAIT)?;
    std::thread::Builder::new()
        .name("casehook-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                checkpoint(&conn);
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(())
}

/// One round: a passive checkpoint, and a restart of the log when it has grown long.
fn checkpoint(conn: &rusqlite::Connection) {
    // PASSIVE copies what no reader still needs and never waits for the writer. Its second
    // column is the number of frames in the log.
    let frames = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
    {
        Ok(frames) => frames,
        Err(e) => {
            tracing::debug!(error = %e, "checkpoint skipped");
            return;
        }
    };
    if frames < RESTART_AFTER_FRAMES {
        return;
    }
    // The first column is 1 when the restart could not finish within `RESTART_WAIT`.
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => {}
        Ok(_) => tracing::debug!(
            frames,
            "log restart postponed: readers or the writer were busy"
        ),
        Err(e) => tracing::debug!(error = %e, frames, "log restart skipped"),
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let json = |v: &Value| ToSqlOutput::Owned(Lv::Text(v.to_string()));
        Ok(match self {
            Arg::I64(v) => ToSqlOutput::Owned(Lv::Integer(*v)),
            Arg::OptI64(v) => ToSqlOutput::Owned(v.map_or(Lv::Null, Lv::Integer)),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::OptText(v) => v.as_deref().map_or(ToSqlOutput::Owned(Lv::Null), |s| {
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            }),
            Arg::Uuid(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v.as_bytes())),
            Arg::OptUuid(v) => v.as_ref().map_or(ToSqlOutput::Owned(Lv::Null), |u| {
                ToSqlOutput::Borrowed(ValueRef::Blob(u.as_bytes()))
            }),
            Arg::Json(v) => json(v),
            Arg::OptJson(v) => v.as_ref().map_or(ToSqlOutput::Owned(Lv::Null), json),
            Arg::F64(v) => ToSqlOutput::Owned(Lv::Real(*v)),
            Arg::Bool(v) => ToSqlOutput::Owned(Lv::Integer(i64::from(*v))),
            Arg::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Arg::OptBytes(v) => v.as_deref().map_or(ToSqlOutput::Owned(Lv::Null), |b| {
                ToSqlOutput::Borrowed(ValueRef::Blob(b))
            }),
        })
    }
}

/// Bind `args` to a prepared statement whose parameters are written `$1`, `$2`, …: SQLite
/// numbers named parameters by first appearance, so each is mapped back by its name.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: &[Arg]) -> Result<()> {
    for index in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(index).unwrap_or_default();
        let position: usize = name
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("SQL parameter `{name}` is not of the form $N"))
            })?;
        let arg = args.get(position - 1).ok_or_else(|| {
            StoreError::Corrupt(format!("no argument for SQL parameter ${position}"))
        })?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(())
}

pub(crate) fn execute(conn: &rusqlite::Connection, sql: &str, args: &[Arg]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    Ok(stmt.raw_execute()? as u64)
}

pub(crate) fn query(conn: &rusqlite::Connection, sql: &str, args: &[Arg]) -> Result<Vec<LiteRow>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let names: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..names.len())
            .map(|i| row.get::<_, Lv>(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(LiteRow {
            names: names.clone(),
            values,
        });
    }
    Ok(out)
}

pub(crate) fn batch(conn: &rusqlite::Connection, sql: &str) -> Result<()> {
    Ok(conn.execute_batch(sql)?)
}

/// A row copied out of a statement (rusqlite rows borrow their statement).
#[derive(Debug)]
pub struct LiteRow {
    names: Arc<[String]>,
    values: Vec<Lv>,
}

impl LiteRow {
    fn value(&self, col: &str) -> Result<&Lv> {
        self.names
            .iter()
            .position(|n| n == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column `{col}`")))
    }

    fn wrong(col: &str, want: &str, got: &Lv) -> StoreError {
        StoreError::Corrupt(format!(
            "column `{col}`: expected {want}, found {:?}",
            got.data_type()
        ))
    }

    pub(crate) fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        match self.value(col)? {
            Lv::Null => Ok(None),
            Lv::Integer(i) => Ok(Some(*i)),
            other => Err(Self::wrong(col, "an integer", other)),
        }
    }

    pub(crate) fn i64(&self, col: &str) -> Result<i64> {
        self.opt_i64(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("column `{col}` is null")))
    }

    pub(crate) fn bool(&self, col: &str) -> Result<bool> {
        Ok(self.i64(col)? != 0)
    }

    pub(crate) fn text(&self, col: &str) -> Result<String> {
        match self.value(col)? {
            Lv::Text(s) => Ok(s.clone()),
            other => Err(Self::wrong(col, "text", other)),
        }
    }

    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>> {
        match self.value(col)? {
            Lv::Null => Ok(None),
            Lv::Text(s) => Ok(Some(s.clone())),
            other => Err(Self::wrong(col, "text", other)),
        }
    }

    pub(crate) fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>> {
        match self.value(col)? {
            Lv::Null => Ok(None),
            Lv::Blob(b) => Ok(Some(b.clone())),
            other => Err(Self::wrong(col, "a blob", other)),
        }
    }

    pub(crate) fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.opt_bytes(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("column `{col}` is null")))
    }

    pub(crate) fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        match self.value(col)? {
            Lv::Null => Ok(None),
            Lv::Blob(b) => Uuid::from_slice(b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))),
            other => Err(Self::wrong(col, "a UUID blob", other)),
        }
    }

    pub(crate) fn uuid(&self, col: &str) -> Result<Uuid> {
        self.opt_uuid(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("column `{col}` is null")))
    }

    pub(crate) fn opt_json(&self, col: &str) -> Result<Option<Value>> {
        match self.value(col)? {
            Lv::Null => Ok(None),
            Lv::Text(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))),
            other => Err(Self::wrong(col, "JSON text", other)),
        }
    }

    pub(crate) fn json(&self, col: &str) -> Result<Value> {
        self.opt_json(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("column `{col}` is null")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in the log of the database at `path`, as a passive checkpoint reports them.
    fn frames(path: &Path) -> i64 {
        let conn = connect(path).expect("open");
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .expect("checkpoint")
    }

    #[test]
    fn the_log_starts_over_instead_of_growing_while_writes_go_on() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (b BLOB)"))
            .expect("create the file");
        let writer = open(&path).expect("open the writer");
        // The test needs many frames, not durability.
        writer
            .conn
            .execute_batch("PRAGMA synchronous = OFF")
            .expect("pragma");
        // Commits one after another for a second or more, so that a passive checkpoint
        // never sees the log at rest: about 20,000 frames (a leaf and an overflow page, and
        // now and then a b-tree page, per commit).
        let blob = vec![7_u8; 4000];
        let started = std::time::Instant::now();
        let mut commits = 0;
        while commits < 8000 || started.elapsed() < CHECKPOINT_EVERY * 20 {
            writer
                .conn
                .execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .expect("insert");
            commits += 1;
            if commits % 50 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let now = frames(&path);
        assert!(
            now < 3 * RESTART_AFTER_FRAMES,
            "the log holds {now} frames after {commits} commits: it did not start over"
        );
    }
}
