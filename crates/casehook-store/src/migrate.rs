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
    Migration {
        version: 6,
        name: "inbound_keys_without_rowid",
        sqlite: include_str!("../migrations/sqlite/0006_inbound_keys_without_rowid.sql"),
        postgres: include_str!("../migrations/postgres/0006_inbound_keys_without_rowid.sql"),
    },
    Migration {
        version: 7,
        name: "oauth2_refresh_tokens",
        sqlite: include_str!("../migrations/sqlite/0007_oauth2_refresh_tokens.sql"),
        postgres: include_str!("../migrations/postgres/0007_oauth2_refresh_tokens.sql"),
    },
    Migration {
        version: 8,
        name: "job_unique_keys",
        sqlite: include_str!("../migrations/sqlite/0008_job_unique_keys.sql"),
        postgres: include_str!("../migrations/postgres/0008_job_unique_keys.sql"),
    },
    Migration {
        version: 9,
        name: "processes",
        sqlite: include_str!("../migrations/sqlite/0009_processes.sql"),
        postgres: include_str!("../migrations/postgres/0009_processes.sql"),
    },
    Migration {
        version: 10,
        name: "api_call_runs",
        sqlite: include_str!("../migrations/sqlite/0010_api_call_runs.sql"),
        postgres: include_str!("../migrations/postgres/0010_api_call_runs.sql"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite cannot change a table in place, so migration 6 copies the idempotency keys
    /// into a table without a rowid: keys taken before the upgrade must still answer.
    #[test]
    fn idempotency_keys_survive_the_move_to_a_table_without_rowid() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        for m in MIGRATIONS.iter().filter(|m| m.version < 6) {
            conn.execute_batch(m.sqlite).expect("an earlier migration");
        }
        conn.execute(
            "INSERT INTO inbound_idempotency VALUES (x'01', 'evt_1', x'02', x'03', '{\"items\":[]}', 10, 20)",
            [],
        )
        .expect("a key taken before the upgrade");
        let sixth = MIGRATIONS
            .iter()
            .find(|m| m.version == 6)
            .expect("migration 6");
        conn.execute_batch(sixth.sqlite).expect("migration 6");

        let kept: (String, Vec<u8>, Option<String>, i64, i64) = conn
            .query_row(
                "SELECT idem_key, request_id, outcome, created_at, expires_at FROM inbound_idempotency
                 WHERE hook_id = x'01' AND idem_key = 'evt_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .expect("the key is still there");
        assert_eq!(
            kept,
            (
                "evt_1".into(),
                vec![3],
                Some("{\"items\":[]}".into()),
                10,
                20
            )
        );
        let rowid = conn.prepare("SELECT rowid FROM inbound_idempotency");
        assert!(rowid.is_err(), "the table has no rowid any more");
        let expiry: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'inbound_idempotency_expiry'",
                [],
                |r| r.get(0),
            )
            .expect("catalog");
        assert_eq!(expiry, 1, "pruning keeps its index");
    }
}
