//! What a connection's settings make of each call in this process: the HTTP client with its
//! TLS settings (a private CA, or no verification for a test system) and its request-rate
//! bound. Both are built once per connection version and reused.

use std::sync::Arc;
use std::time::Duration;

use casehook_core::ConnectionId;
use casehook_outbound::Client;
use governor::DefaultDirectRateLimiter;

use super::prepare::LiveConnection;
use super::resolve::ConfigError;
use crate::Engine;
use crate::peers::shared_bucket;

/// The longest a call waits for its connection's rate limit before it is tried later.
pub(crate) const MAX_RATE_WAIT: Duration = Duration::from_secs(30);

type Key = (ConnectionId, i64);

/// Per-connection clients and rate limiters.
#[derive(Debug)]
pub struct Gates {
    clients: moka::sync::Cache<Key, Client>,
    limiters: moka::sync::Cache<(ConnectionId, i64, u32), Arc<DefaultDirectRateLimiter>>,
}

impl Default for Gates {
    fn default() -> Self {
        let idle = Duration::from_secs(600);
        Self {
            clients: moka::sync::Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(idle)
                .build(),
            limiters: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(idle)
                .build(),
        }
    }
}

impl Engine {
    /// The client a call through `connection` uses: the shared one, unless the connection
    /// changes TLS settings.
    pub(crate) fn client_for(
        &self,
        connection: Option<&LiveConnection>,
    ) -> Result<Client, ConfigError> {
        let Some(c) = connection else {
            return Ok(self.inner.client.clone());
        };
        let tls = &c.config.tls;
        if tls.verify && tls.ca_pem.is_none() {
            return Ok(self.inner.client.clone());
        }
        let key = (c.record.id, c.record.version);
        if let Some(client) = self.inner.gates.clients.get(&key) {
            return Ok(client);
        }
        let client = self
            .inner
            .client
            .with_tls(tls.verify, tls.ca_pem.clone())
            .map_err(|e| ConfigError(format!("connection `{}`: {e}", c.record.name)))?;
        self.inner.gates.clients.insert(key, client.clone());
        Ok(client)
    }

    /// Wait for the connection's rate limit; `false` when the wait would be too long.
    pub(crate) async fn admit(&self, connection: Option<&LiveConnection>) -> bool {
        let Some(c) = connection else { return true };
        let Some(limit) = c.config.rate_limit else {
            return true;
        };
        // Each process running workers takes its share of the connection's rate; a limiter
        // is made per connection version and number of processes.
        let processes = self.peers().workers();
        let key = (c.record.id, c.record.version, processes);
        let limiter = self.inner.gates.limiters.get_with(key, || {
            let burst = limit
                .burst
                .unwrap_or(limit.per_second.ceil().max(1.0) as u32);
            Arc::new(shared_bucket(limit.per_second, burst, processes))
        });
        tokio::time::timeout(MAX_RATE_WAIT, limiter.until_ready())
            .await
            .is_ok()
    }
}
