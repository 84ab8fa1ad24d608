//! Embedded schema migrations, one folder per backend, applied in order on start (and by
//! `casehook migrate`).
//!
//! We run our own small migrator rather than sqlx's: its `migrate!` macro needs sqlx's
//! compile-time macros, and a runtime folder would not be embedded in the binary. Each
//! migration runs in its own transaction together with its bookkeeping row; on PostgreSQL an
//! advisory lock keeps two processes starting at once from racing.

use crate::db::{Conn, Dialect, args, now_micros};
use crate::error::{Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "outgoing_webhooks",
        sqlite: include_str!("../migrations/sqlite/0002_outgoing_webhooks.sql"),
        postgres: include_str!("../migrations/postgres/0002_outgoing_webhooks.sql"),
    },
    Migration {
        version: 3,
        name: "incoming_webhooks",
        sqlite: include_str!("../migrations/sqlite/0003_incoming_webhooks.sql"),
        postgres: include_str!("../migrations/postgres/0003_incoming_webhooks.sql"),
    },
    Migration {
        version: 4,
        name: "api_connections",
        sqlite: include_str!("../migrations/sqlite/0004_api_connections.sql"),
        postgres: include_str!("../migrations/postgres/0004_api_connections.sql"),
    },
    Migration {
        version: 5,
        name: "actions",
        sqlite: include_str!("../migrations/sqlite/0005_actions.sql"),
        postgres: include_str!("../migrations/postgres/0005_actions.sql"),
    },
];

/// An arbitrary, fixed key for `pg_advisory_lock` ("casehook" in ASCII).
const PG_LOCK_KEY: i64 = 0x6361_7365_686f_6f6b;

/// Apply every migration not yet applied, all in one transaction that holds the write lock
/// (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock, DDL being transactional), so two
/// processes opening a fresh database at once apply each migration exactly once. Returns how
/// many were applied.
pub async fn run(conn: &mut Conn<'_>) -> Result<usize> {
    match conn.dialect() {
        Dialect::Sqlite => conn.batch("BEGIN IMMEDIATE").await?,
        Dialect::Postgres => {
            conn.execute("SELECT pg_advisory_lock($1)", &args![PG_LOCK_KEY])
                .await?;
            conn.batch("BEGIN").await?;
        }
    }
    let outcome = apply_pending(conn).await;
    let finish = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let finished = conn.batch(finish).await;
    if conn.dialect() == Dialect::Postgres {
        conn.execute("SELECT pg_advisory_unlock($1)", &args![PG_LOCK_KEY])
            .await?;
    }
    let count = outcome?;
    finished?;
    Ok(count)
}

async fn apply_pending(conn: &mut Conn<'_>) -> Result<usize> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS casehook_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = conn
        .fetch_all(
            "SELECT version FROM casehook_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.i64("version"))
        .collect::<Result<_>>()?;
    if let Some(newest) = applied.last()
        && *newest > MIGRATIONS.last().map_or(0, |m| m.version)
    {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {newest}, newer than this casehook knows; upgrade casehook"
        )));
    }
    let mut count = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = match conn.dialect() {
            Dialect::Sqlite => m.sqlite,
            Dialect::Postgres => m.postgres,
        };
        conn.batch(sql).await.map_err(|e| {
            StoreError::Migration(format!("migration {} ({}) failed: {e}", m.version, m.name))
        })?;
        conn.execute(
            "INSERT INTO casehook_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &args![m.version, m.name, now_micros()],
        )
        .await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        count += 1;
    }
    Ok(count)
}
