//! The processes serving the same database, and this process's share of the limits users
//! configure (an inbound hook's rate, an endpoint's rate and requests in flight, a
//! connection's rate). Every process beats into the store's registry and counts the live
//! ones of each role; each then enforces its share, so that together they hold the limit
//! without asking each other on every request.
//!
//! A share is exact on average. A rate at least as large as the number of processes is held
//! in every second too; a smaller one only on average (each process may let one request
//! through in the same second), and so are bursts and in-flight bounds smaller than the
//! number of processes, since a process's share is never below one.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use casehook_store::{LiveProcesses, ProcessBeat, now_micros};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Engine;

/// Live processes by role as last counted; one each until the first beat.
#[derive(Debug)]
pub struct Peers {
    id: Uuid,
    api: AtomicU32,
    workers: AtomicU32,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            id: Uuid::new_v4(),
            api: AtomicU32::new(1),
            workers: AtomicU32::new(1),
        }
    }
}

impl Peers {
    /// Processes taking API and inbound-hook requests (inbound hooks' limits are split
    /// between them).
    pub fn api(&self) -> u32 {
        self.api.load(Ordering::Relaxed).max(1)
    }

    /// Processes running workers (endpoints' and connections' limits are split between them).
    pub fn workers(&self) -> u32 {
        self.workers.load(Ordering::Relaxed).max(1)
    }

    fn set(&self, live: LiveProcesses) {
        self.api.store(live.api, Ordering::Relaxed);
        self.workers.store(live.workers, Ordering::Relaxed);
    }
}

/// One process's share of a bound on a count (burst, requests in flight): never below one.
pub fn count_share(limit: u32, processes: u32) -> u32 {
    (limit / processes.max(1)).max(1)
}

/// A rate as "at most `count` requests in any `per`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub per: Duration,
}

impl Window {
    pub fn per_second(count: u32) -> Self {
        Self {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// One process's share of `rate` requests per second: whole requests per second while
    /// the rate allows it (so every second holds the rate); below one request per second
    /// and process, one request per longer window (the rate holds on average).
    pub fn share(rate: u32, processes: u32) -> Self {
        let n = processes.max(1);
        if rate >= n {
            Self::per_second(rate / n)
        } else {
            Self {
                count: 1,
                per: Duration::from_secs_f64(f64::from(n) / f64::from(rate.max(1))),
            }
        }
    }
}

/// One process's share of a rate per second.
pub fn rate_share(per_second: f64, processes: u32) -> f64 {
    per_second / f64::from(processes.max(1))
}

/// A token bucket holding one process's share of `per_second` with bursts of `burst`: one
/// request per period, exact for fractional rates (0.5/s) and shares alike.
pub fn shared_bucket(per_second: f64, burst: u32, processes: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate_share(per_second, processes).max(1e-6));
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN));
    let burst = NonZeroU32::new(count_share(burst, processes)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(quota.allow_burst(burst))
}

/// What a process does, for the registry.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub serves_api: bool,
    pub runs_workers: bool,
}

/// Beat every `every` until shutdown, then sign off so the others take this share at once.
/// A process is forgotten by the others after missing three beats (killed, or its host lost).
pub async fn run_heartbeat(
    engine: Engine,
    roles: Roles,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let peers = engine.peers();
    let beat = ProcessBeat {
        id: peers.id,
        serves_api: roles.serves_api,
        runs_workers: roles.runs_workers,
        description: format!(
            "{} pid {} casehook {}",
            hostname(),
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        ),
    };
    let stale = i64::try_from((every * 3).as_micros()).unwrap_or(i64::MAX);
    let mut last = None;
    loop {
        match engine
            .store()
            .heartbeat(beat.clone(), now_micros().saturating_sub(stale))
            .await
        {
            Ok(live) => {
                if last != Some(live) {
                    tracing::info!(
                        api = live.api,
                        workers = live.workers,
                        "processes sharing this database's limits"
                    );
                    last = Some(live);
                }
                peers.set(live);
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; keeping the last count"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if let Err(e) = engine.store().sign_off(beat.id).await {
        tracing::debug!(error = %e, "could not sign off; the others forget this process soon");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_limit_and_never_reach_zero() {
        assert_eq!(count_share(10, 1), 10);
        assert_eq!(count_share(10, 3), 3, "3 processes × 3 ≤ 10");
        assert_eq!(
            count_share(1, 2),
            1,
            "never zero: a process must make progress"
        );
        assert_eq!(
            count_share(5, 0),
            5,
            "no count yet means this process alone"
        );
        assert!((rate_share(10.0, 4) - 2.5).abs() < 1e-9);
        assert!((rate_share(0.5, 2) - 0.25).abs() < 1e-9);
        let bucket = shared_bucket(4.0, 4, 2);
        assert!(
            bucket.check().is_ok() && bucket.check().is_ok() && bucket.check().is_err(),
            "half of a burst of 4"
        );
        assert_eq!(Window::share(10, 1), Window::per_second(10));
        assert_eq!(Window::share(10, 3), Window::per_second(3));
        assert_eq!(
            Window::share(1, 2),
            Window {
                count: 1,
                per: Duration::from_secs(2)
            },
            "half a request per second each"
        );
    }
}
