//! The serving processes that share the database. Each one refreshes its row every few
//! seconds and counts the live ones by role, so that a limit configured per inbound hook,
//! endpoint or connection can be split between the processes that enforce it: each takes
//! its share, and together they hold the configured rate.

use uuid::Uuid;

use crate::Store;
use crate::db::{args, now_micros};
use crate::error::Result;
use crate::writer::{Tx, WriteOp};

/// What a process says of itself in each heartbeat.
#[derive(Clone, Debug)]
pub struct ProcessBeat {
    pub id: Uuid,
    /// Takes API and inbound-hook requests (enforces inbound hooks' rate limits).
    pub serves_api: bool,
    /// Runs the dispatcher and workers (enforces endpoints' and connections' limits).
    pub runs_workers: bool,
    /// For people: host, process id, version.
    pub description: String,
}

/// Live processes by role, this one included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveProcesses {
    pub api: u32,
    pub workers: u32,
}

struct Heartbeat {
    beat: ProcessBeat,
    stale_before: i64,
}

impl WriteOp for Heartbeat {
    type Output = LiveProcesses;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<LiveProcesses> {
        let now = now_micros();
        let b = &self.beat;
        tx.conn
            .execute(
                "INSERT INTO processes (id, serves_api, runs_workers, description, started_at, seen_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                &args![b.id, b.serves_api, b.runs_workers, b.description.as_str(), now],
            )
            .await?;
        // A process that stopped without signing off (killed, or its host lost) is
        // forgotten once it has missed a few beats.
        tx.conn
            .execute(
                "DELETE FROM processes WHERE seen_at < $1",
                &args![self.stale_before],
            )
            .await?;
        let row = tx
            .conn
            .fetch_one(
                "SELECT COALESCE(SUM(CASE WHEN serves_api THEN 1 ELSE 0 END), 0) AS api,
                        COALESCE(SUM(CASE WHEN runs_workers THEN 1 ELSE 0 END), 0) AS workers
                 FROM processes",
                &[],
                "processes",
            )
            .await?;
        let count = |column| -> Result<u32> {
            Ok(u32::try_from(row.i64(column)?).unwrap_or(u32::MAX).max(1))
        };
        Ok(LiveProcesses {
            api: count("api")?,
            workers: count("workers")?,
        })
    }
}

struct SignOff {
    id: Uuid,
}

impl WriteOp for SignOff {
    type Output = ();
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        tx.conn
            .execute("DELETE FROM processes WHERE id = $1", &args![self.id])
            .await?;
        Ok(())
    }
}

impl Store {
    /// Record that this process is alive, forget processes not seen since `stale_before`
    /// (microseconds), and count the live ones by role (each count at least 1).
    pub async fn heartbeat(&self, beat: ProcessBeat, stale_before: i64) -> Result<LiveProcesses> {
        self.writer().run(Heartbeat { beat, stale_before }).await
    }

    /// Remove this process from the live ones (on shutdown), so the others take its share.
    pub async fn sign_off(&self, id: Uuid) -> Result<()> {
        self.writer().run(SignOff { id }).await
    }
}
