//! Housekeeping: forgets what is kept only for a while — inbound idempotency keys past their
//! window, inbound request log and API-call log entries past the retention, expired cached
//! API responses — in small batches, so a large backlog never holds the writer for long.

use std::time::Duration;

use casehook_store::{Result, now_micros};
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
        let store = engine.store();
        let inbound = || store.prune_inbound(before, BATCH);
        let api_calls = || store.prune_api_calls(before, BATCH);
        if !prune("inbound keys and request log", &inbound, &shutdown).await
            || !prune("API-call log and response cache", &api_calls, &shutdown).await
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Run one kind of pruning until a batch comes back short; false on shutdown.
async fn prune<P, F>(what: &str, pass: &P, shutdown: &watch::Receiver<bool>) -> bool
where
    P: Fn() -> F + Sync,
    F: std::future::Future<Output = Result<u64>>,
{
    loop {
        match pass().await {
            // A full batch may have left more behind.
            Ok(n) if n >= BATCH as u64 => {
                tracing::debug!(removed = n, "pruned {what}");
                tokio::task::yield_now().await;
            }
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(removed = n, "pruned {what}");
                }
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning {what} failed; will retry");
                return true;
            }
        }
        if *shutdown.borrow() {
            return false;
        }
    }
}
