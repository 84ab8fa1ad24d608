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
/// Frames in the write-ahead log (16 MiB of 4 KiB pages) past which the log is made to
/// start over.
const RESTART_AFTER_FRAMES: i64 = 4096;
/// How long a restart may wait for readers of old snapshots; the writer cannot begin its
/// next batch meanwhile. Past it, the restart is tried again after the checkpointer's next
/// round.
const RESTART_WAIT: Duration = Duration::from_millis(5);
/// How long a connection waits for a lock held by another (another process on the file).
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// The writer's connection, and the thread that checkpoints for it.
#[derive(Debug)]
pub(crate) struct LiteWriter {
    pub(crate) conn: rusqlite::Connection,
    checkpointer: Checkpointer,
}

/// Stops its thread when dropped (with the writer).
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set by the checkpointer when the log has grown long enough to start over.
    restart_due: Arc<AtomicBool>,
}

impl LiteWriter {
    /// Called by the writer between batches, with no transaction open: makes the log start
    /// over when the checkpointer has found it long.
    ///
    /// The restart runs here rather than on the checkpointer's thread because a restart
    /// holds the write lock. Taken by another connection, it made the writer's next `BEGIN
    /// IMMEDIATE` wait in SQLite's busy handler, which sleeps in steps of 1, 2, 5, 10 ms and
    /// more, so a restart of a few milliseconds stalled the writer for 10–20. Here the lock
    /// is free, and the restart costs only its own copy of the frames the passive rounds
    /// have not reached, and a wait of at most `RESTART_WAIT` for readers.
    pub(crate) fn restart_log_if_due(&mut self) {
        if !self.checkpointer.restart_due.swap(false, Ordering::Relaxed) {
            return;
        }
        let restarted = self.conn.busy_timeout(RESTART_WAIT).and_then(|()| {
            // The first column is 1 when readers kept the restart from finishing.
            self.conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
        });
        match restarted {
            Ok(0) => {}
            Ok(_) => tracing::debug!("log restart postponed: readers were busy"),
            Err(e) => tracing::debug!(error = %e, "log restart skipped"),
        }
        if let Err(e) = self.conn.busy_timeout(BUSY_WAIT) {
            tracing::warn!(error = %e, "cannot set the writer's busy timeout back");
        }
    }
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
    conn.busy_timeout(BUSY_WAIT)?;
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
/// log). So once the log holds `RESTART_AFTER_FRAMES`, the checkpointer asks the writer for
/// a restart between two batches ([`LiteWriter::restart_log_if_due`]): it copies the few
/// frames the passive rounds have not, and the writer's next transaction writes the log from
/// its start again (the file keeps its size, up to the 64 MiB limit).
pub(crate) fn open(path: &Path) -> Result<LiteWriter> {
    let conn = connect(path)?;
    // Same settings as the sqlx connections: WAL, and a commit is on disk before it is
    // acknowledged. The log is truncated back to 64 MiB when it is reset.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    let checkpointer = spawn_checkpointer(path.to_owned())?;
    Ok(LiteWriter { conn, checkpointer })
}

fn spawn_checkpointer(path: PathBuf) -> Result<Checkpointer> {
    let conn = connect(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let restart_due = Arc::new(AtomicBool::new(false));
    let (thread_stop, thread_due) = (stop.clone(), restart_due.clone());
    std::thread::Builder::new()
        .name("casehook-checkpoint".into())
        .spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                if checkpoint(&conn) >= RESTART_AFTER_FRAMES {
                    thread_due.store(true, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(Checkpointer { stop, restart_due })
}

/// One passive round; returns the frames in the log (0 when the round failed).
fn checkpoint(conn: &rusqlite::Connection) -> i64 {
    // PASSIVE copies what no reader still needs and never waits for the writer. Its second
    // column is the number of frames in the log.
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
        Ok(frames) => frames,
        Err(e) => {
            tracing::debug!(error = %e, "checkpoint skipped");
            0
        }
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
            Arg::RawJson(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.get().as_bytes())),
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

    #[test]
    fn the_log_starts_over_instead_of_growing_while_writes_go_on() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (b BLOB)"))
            .expect("create the file");
        let mut writer = open(&path).expect("open the writer");
        // The test needs many frames, not durability.
        writer
            .conn
            .execute_batch("PRAGMA synchronous = OFF")
            .expect("pragma");
        // The frames in the log, read where SQLite keeps the count: `mxFrame`, at byte 16
        // of the WAL-index header in the `-shm` file, in native byte order (walformat.html).
        // Asking through a checkpoint instead would change what is measured.
        let shm = dir.path().join("t.db-shm");
        let frames = || -> i64 {
            let header = std::fs::read(&shm).expect("the WAL index");
            let count: [u8; 4] = header[16..20].try_into().expect("four bytes");
            i64::from(u32::from_ne_bytes(count))
        };
        // Commits one after another, so that a passive checkpoint never sees the log at
        // rest (a leaf and an overflow page, and now and then a b-tree page, per commit),
        // until the log has grown past the restart threshold and then started over. Without
        // the restart it only grows (measured: 40,093 frames after 1 s of this).
        let blob = vec![7_u8; 4000];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (mut commits, mut peak) = (0, 0);
        let restarted = loop {
            writer
                .conn
                .execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .expect("insert");
            // As the writer does between batches.
            writer.restart_log_if_due();
            commits += 1;
            if commits % 50 == 0 {
                let now = frames();
                peak = peak.max(now);
                if peak >= RESTART_AFTER_FRAMES && now < peak / 2 {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        assert!(
            restarted,
            "the log reached {peak} frames in {commits} commits and never started over"
        );
    }
}
