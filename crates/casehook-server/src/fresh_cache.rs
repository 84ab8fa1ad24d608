//! A cache of stored data whose copies are served only while nothing of their kind has
//! changed since they were read. Writes to the data bump a counter (the store's wake-up for
//! it, raised before the write is answered and, on PostgreSQL, in every process); each copy
//! keeps the count taken before it was read, so a copy read before a change, or while one
//! was being made, is read again. The time to live is the net for a missed wake-up.

use std::time::Duration;

use casehook_store::Store;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct FreshCache<V: Clone + Send + Sync + 'static> {
    copies: moka::sync::Cache<String, (u64, V)>,
    changes: watch::Receiver<u64>,
}

impl<V: Clone + Send + Sync + 'static> FreshCache<V> {
    /// Copies of data whose writes wake `changed` (e.g. `API_KEYS_CHANGED`).
    pub fn new(store: &Store, changed: &str, capacity: u64, ttl: Duration) -> Self {
        Self {
            copies: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            changes: store.watch_queue(changed),
        }
    }

    /// The count to read under: take it before reading the database, give it to `insert`.
    pub fn stamp(&self) -> u64 {
        *self.changes.borrow()
    }

    /// The copy under `key`, unless something changed since it was read.
    pub fn get(&self, key: &str) -> Option<V> {
        let (read_at, copy) = self.copies.get(key)?;
        (read_at == self.stamp()).then_some(copy)
    }

    pub fn insert(&self, key: String, stamp: u64, copy: V) {
        self.copies.insert(key, (stamp, copy));
    }
}
