//! Which generation of some stored data a cached copy was read under. Writes to the data
//! bump a counter (the store's wake-up for it, raised before the write is answered and, on
//! PostgreSQL, in every process); a copy read under an older count is never served again.
//! The count is taken before the database is read, so a read racing a change is dropped too.

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Generation(watch::Receiver<u64>);

impl Generation {
    /// Follow the store's wake-up named `changed` (e.g. `API_KEYS_CHANGED`).
    pub fn of(store: &casehook_store::Store, changed: &str) -> Self {
        Self(store.watch_queue(changed))
    }

    /// The current count: take it before reading, keep it with the copy.
    pub fn now(&self) -> u64 {
        *self.0.borrow()
    }

    /// Whether a copy read at `read_at` may still be served.
    pub fn is_current(&self, read_at: u64) -> bool {
        read_at == self.now()
    }
}
