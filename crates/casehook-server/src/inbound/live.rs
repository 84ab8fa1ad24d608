//! Hooks as the receiving side uses them: looked up by URL token through a short-lived cache
//! (a flood of requests, or of unknown tokens, does not reach the database), with their
//! configuration parsed and secrets opened once, and a rate limiter per hook.
//!
//! A hook changed through any process is looked up afresh at once (see [`FreshCache`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use casehook_core::InboundHookId;
use casehook_core::inbound::hook::HookConfig;
use casehook_core::inbound::verify::{secret_header_names, secret_query_names};
use casehook_engine::peers::shared_bucket;
use casehook_store::{INBOUND_HOOKS_CHANGED, InboundHookRecord, Store};
use governor::DefaultDirectRateLimiter;
use governor::clock::{Clock, DefaultClock};

use super::secrets::{SecretSets, open_secrets, token_hash};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::fresh_cache::FreshCache;

/// How long a looked-up hook (or an unknown token) is trusted without a change announced.
const TTL: Duration = Duration::from_secs(5);

/// Headers never kept in the request log, whatever the hook's checks.
const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "auth-key",
    "x-api-key",
];

/// A hook ready to receive.
#[derive(Debug)]
pub(crate) struct LiveHook {
    pub record: InboundHookRecord,
    pub config: HookConfig,
    pub secrets: SecretSets,
    /// Lowercase header names whose values the request log must not keep.
    pub redact_headers: Vec<String>,
    pub redact_query: Vec<String>,
}

impl LiveHook {
    pub(crate) fn build(state: &AppState, record: InboundHookRecord) -> ApiResult<Self> {
        let config: HookConfig =
            serde_json::from_value(record.config.clone()).map_err(|e| ApiError::internal(&e))?;
        let secrets = open_secrets(state.engine.keys(), record.id, record.secrets.as_deref())?;
        let mut redact_headers: Vec<String> =
            ALWAYS_REDACTED.iter().map(|h| (*h).to_owned()).collect();
        let mut redact_query = Vec::new();
        for v in &config.verifications {
            redact_headers.extend(secret_header_names(v));
            redact_query.extend(secret_query_names(v));
        }
        Ok(Self {
            record,
            config,
            secrets,
            redact_headers,
            redact_query,
        })
    }
}

/// A hook's token bucket, remembered with the settings it was made for.
#[derive(Debug)]
struct Limiter {
    rate: u32,
    burst: u32,
    /// Processes taking inbound requests when it was made: this process's bucket holds its
    /// share of the hook's limits.
    processes: u32,
    bucket: DefaultDirectRateLimiter,
}

/// Hooks by URL token, and rate limiters by hook.
#[derive(Clone, Debug)]
pub struct HookCache {
    by_token: FreshCache<Option<Arc<LiveHook>>>,
    limiters: moka::sync::Cache<InboundHookId, Arc<Limiter>>,
}

impl HookCache {
    pub fn new(store: &Store) -> Self {
        Self {
            by_token: FreshCache::new(store, INBOUND_HOOKS_CHANGED, 100_000, TTL),
            limiters: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// The hook a URL token names, if it works.
    pub(crate) async fn find(
        &self,
        state: &AppState,
        token: &str,
    ) -> ApiResult<Option<Arc<LiveHook>>> {
        let hash = token_hash(token);
        if let Some(hit) = self.by_token.get(&hash) {
            return Ok(hit);
        }
        let stamp = self.by_token.stamp();
        let found = match state.store.find_inbound_hook_by_token(&hash).await? {
            Some(record) => Some(Arc::new(LiveHook::build(state, record)?)),
            None => None,
        };
        self.by_token.insert(hash, stamp, found.clone());
        Ok(found)
    }

    /// Take one request from the hook's bucket (this process's share of the hook's limits,
    /// `processes` taking inbound requests); `Err(seconds)` says when to retry.
    pub(crate) fn admit(&self, hook: &LiveHook, processes: u32) -> Result<(), u64> {
        let Some(rate) = hook.config.limits.rate_per_second else {
            return Ok(());
        };
        let burst = hook.config.limits.burst.unwrap_or(rate);
        let (Some(rate_nz), Some(burst_nz)) = (NonZeroU32::new(rate), NonZeroU32::new(burst))
        else {
            return Ok(());
        };
        let make = || {
            Arc::new(Limiter {
                rate,
                burst,
                processes,
                bucket: shared_bucket(f64::from(rate_nz.get()), burst_nz.get(), processes),
            })
        };
        let mut limiter = self.limiters.get_with(hook.record.id, make);
        if limiter.rate != rate || limiter.burst != burst || limiter.processes != processes {
            limiter = make();
            self.limiters.insert(hook.record.id, limiter.clone());
        }
        limiter.bucket.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}
