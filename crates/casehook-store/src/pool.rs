//! Connections of either backend: a read pool for queries, a one-connection write pool for
//! migrations, and the connection the writer owns (on SQLite a direct `rusqlite` one, see
//! `lite`; on PostgreSQL the write pool).

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

use crate::db::{Conn, Dialect};
use crate::error::{Result, StoreError};

/// Pools for one database.
#[derive(Clone, Debug)]
pub(crate) enum Pools {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Pg { read: PgPool, write: PgPool },
}

/// What the writer writes through.
#[derive(Debug)]
pub(crate) enum WritePool {
    /// PostgreSQL's one-connection write pool (it reconnects on its own).
    Shared(Pools),
    /// SQLite: a connection owned by the writer's thread.
    Lite(crate::lite::LiteWriter),
}

/// A connection borrowed from a pool (or the writer's own); `conn()` gives the
/// backend-neutral handle.
#[derive(Debug)]
pub(crate) enum Lease<'a> {
    Sqlite(PoolConnection<Sqlite>),
    Pg(PoolConnection<Postgres>),
    Lite(&'a mut rusqlite::Connection),
}

impl Lease<'_> {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Lease::Sqlite(c) => Conn::Sqlite(c),
            Lease::Pg(c) => Conn::Pg(c),
            Lease::Lite(c) => Conn::Lite(c),
        }
    }
}

impl Pools {
    /// Open pools for `url`: `sqlite:…` or `postgres://…`.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?.application_name("casehook");
            let read = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
                .await?;
            let write = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Pools::Pg { read, write })
        } else if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the caller hears "accepted".
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            // The writer opens (and creates) the file first, so readers find it with WAL on.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base.clone().create_if_missing(true))
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base.read_only(true))
                .await?;
            Ok(Pools::Sqlite { read, write })
        } else {
            Err(StoreError::Unavailable(format!(
                "unsupported database URL `{}`: use sqlite:PATH or postgres://…",
                redact_url(url)
            )))
        }
    }

    /// The PostgreSQL read pool (for the wake-up listener's connection).
    pub(crate) fn pg_read_pool(&self) -> Option<PgPool> {
        match self {
            Pools::Pg { read, .. } => Some(read.clone()),
            _ => None,
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Pg { .. } => Dialect::Postgres,
        }
    }

    pub(crate) async fn read(&self) -> Result<Lease<'static>> {
        Ok(match self {
            Pools::Sqlite { read, .. } => Lease::Sqlite(read.acquire().await?),
            Pools::Pg { read, .. } => Lease::Pg(read.acquire().await?),
        })
    }

    /// The write pool's connection (migrations).
    pub(crate) async fn acquire_write(&self) -> Result<Lease<'static>> {
        Ok(match self {
            Pools::Sqlite { write, .. } => Lease::Sqlite(write.acquire().await?),
            Pools::Pg { write, .. } => Lease::Pg(write.acquire().await?),
        })
    }

    /// The connection the writer will own.
    pub(crate) fn writer(&self) -> Result<WritePool> {
        match self {
            Pools::Sqlite { write, .. } => Ok(WritePool::Lite(crate::lite::open(
                write.connect_options().get_filename(),
            )?)),
            Pools::Pg { .. } => Ok(WritePool::Shared(self.clone())),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Pg { read, write } => {
                read.close().await;
                write.close().await;
            }
        }
    }
}

impl WritePool {
    pub(crate) async fn acquire(&mut self) -> Result<Lease<'_>> {
        match self {
            WritePool::Shared(pools) => pools.acquire_write().await,
            WritePool::Lite(writer) => Ok(Lease::Lite(&mut writer.conn)),
        }
    }

    /// Upkeep the writer does between two batches, with no transaction open.
    pub(crate) fn between_batches(&mut self) {
        if let WritePool::Lite(writer) = self {
            writer.restart_log_if_due();
        }
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
