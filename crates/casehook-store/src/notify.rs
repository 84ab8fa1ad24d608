//! Wake-ups for job workers: after a batch that enqueued jobs commits, the workers of those
//! queues are woken at once instead of discovering the work by polling.
//!
//! A `watch` channel per queue carries a counter; a worker that was busy when the wake-up
//! came sees the change the next time it waits, so no wake-up is lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Debug, Default)]
pub(crate) struct Notifiers {
    queues: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Notifiers {
    /// A receiver that changes whenever `queue` gets new committed work.
    pub(crate) fn subscribe(&self, queue: &str) -> watch::Receiver<u64> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(queue.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub(crate) fn wake(&self, queues: &BTreeSet<String>) {
        if queues.is_empty() {
            return;
        }
        let map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for q in queues {
            if let Some(tx) = map.get(q) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}
