//! What can go wrong in the store, by cause.

use casehook_core::FieldError;

/// A store operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist in this workspace (or at all; callers must not tell which).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The write conflicts with existing data (a duplicate name, a taken external reference…).
    #[error("{0}")]
    Conflict(String),
    /// The form is archived: it keeps its cases but takes no new ones.
    #[error("the form is archived and takes no new cases")]
    FormArchived,
    /// The form changed after the caller validated data against it; validate again.
    #[error("the form changed while the case was being saved; try again")]
    FormChanged,
    /// `If-Match` named a version that is no longer current.
    #[error("version {expected} is stale; the current version is {current}")]
    VersionMismatch { expected: i64, current: i64 },
    /// The write is refused because of what is stored (e.g. a form change that would
    /// invalidate case data), with every problem listed.
    #[error("{message}")]
    Rejected {
        message: String,
        details: Vec<FieldError>,
    },
    /// Stored data that cannot be read back (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database could not take the write (connection lost, disk full…); nothing of the
    /// operation was committed.
    #[error("{0}")]
    Unavailable(String),
    /// A sealed value was not written: the database's master key was rotated since this
    /// process checked its own (fingerprints given).
    #[error(
        "the master key was rotated: the database is sealed under key {theirs}, this server holds key {ours}; restart it with the new key"
    )]
    KeyRotated { ours: String, theirs: String },
    /// The database's storage is full (SQLite: the disk under the data directory;
    /// PostgreSQL: its own disk); nothing of the operation was committed, and writes work
    /// again as soon as there is room.
    #[error("the database's storage is full: {0}")]
    StorageFull(String),
    /// The writer task has stopped (the server is shutting down).
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    /// An error of the SQLite writer's direct connection.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    /// One item of a multi-item write failed (and with it the whole write).
    #[error("item {index}: {source}")]
    Item {
        index: usize,
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// A deadlock or serialization failure: the database gave up on this transaction, and
    /// the same work can succeed when run again.
    pub(crate) fn is_transient_conflict(&self) -> bool {
        match self {
            StoreError::Backend(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
            }
            _ => false,
        }
    }

    /// SQLite's "database is locked" (SQLITE_BUSY) that its busy handler did not absorb.
    pub(crate) fn is_sqlite_busy(&self) -> bool {
        match self {
            StoreError::Backend(sqlx::Error::Database(db)) => {
                db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && db.code().as_deref() == Some("5")
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DatabaseBusy
            }
            _ => false,
        }
    }

    /// Whether the database refused the write for want of room (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`).
    pub(crate) fn is_storage_full(&self) -> bool {
        match self {
            StoreError::StorageFull(_) => true,
            StoreError::Backend(sqlx::Error::Database(db)) => {
                let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                match db.code().as_deref() {
                    Some("13") => sqlite,
                    Some("53100") => !sqlite,
                    _ => false,
                }
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Item { source, .. } => source.is_storage_full(),
            _ => false,
        }
    }

    /// The same failure, as [`StoreError::StorageFull`] when that is what it was.
    pub(crate) fn named_if_full(self) -> Self {
        match self {
            StoreError::StorageFull(_) => self,
            e if e.is_storage_full() => StoreError::StorageFull(e.to_string()),
            e => e,
        }
    }

    /// Whether this is a unique-constraint violation reported by the database.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Backend(sqlx::Error::Database(db)) => db.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
