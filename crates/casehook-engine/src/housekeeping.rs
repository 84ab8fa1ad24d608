//! Housekeeping: forgets what is kept only for a while — inbound idempotency keys past their
//! window and inbound request log entries past the retention — in small batches, so a large
//! backlog never holds the writer for long.

use std::time::Duration;

use casehook_store::now_micros;
use tokio::sync::watch;

use crate::Engine;

/// Rows deleted per batch (of each kind).
const BATCH: i64 = 1000;
/// Rest between passes.
const EVERY: Duration = Duration::from_secs(600);

pub(crate) async fn run_housekeeping(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    loop {
        let retention = engine.inner.config.inbound_log_retention;
        let before =
            now_micros().saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        loop {
            match engine.store().prune_inbound(before, BATCH).await {
                // A full batch may have left more behind.
                Ok(n) if n >= BATCH as u64 => {
                    tracing::debug!(removed = n, "pruned inbound keys and request log");
                    tokio::task::yield_now().await;
                }
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(removed = n, "pruned inbound keys and request log");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning inbound keys and request log failed; will retry");
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
