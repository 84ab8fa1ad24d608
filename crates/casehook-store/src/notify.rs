//! Wake-ups for job workers: after a batch that enqueued jobs commits, the workers of those
//! queues are woken at once instead of discovering the work by polling. On PostgreSQL the
//! writer also sends `NOTIFY casehook_wake, '<queues>'` inside the batch's transaction, and
//! every process listens, so work committed by one process wakes the workers of all.
//!
//! A `watch` channel per queue carries a counter; a worker that was busy when the wake-up
//! came sees the change the next time it waits, so no wake-up is lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;

/// The PostgreSQL channel wake-ups travel on.
pub(crate) const PG_CHANNEL: &str = "casehook_wake";

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

/// Listen for other processes' wake-ups until the pool closes, reconnecting after errors.
pub(crate) async fn listen(pool: sqlx::PgPool, notifiers: std::sync::Weak<Notifiers>) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        if pool.is_closed() || notifiers.strong_count() == 0 {
            return;
        }
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(PG_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for wake-ups yet; polling meanwhile");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
        };
        delay = std::time::Duration::from_millis(100);
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    let Some(notifiers) = notifiers.upgrade() else {
                        return;
                    };
                    let queues: BTreeSet<String> = notification
                        .payload()
                        .split(',')
                        .map(str::to_owned)
                        .collect();
                    notifiers.wake(&queues);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "wake-up listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}
