//! `casehook bench delivery`: events accepted through the API and delivered, signed, to a
//! local receiver, beside the wire baseline measured in the same run — the same HTTP client
//! posting the same payload to the same receiver at the same concurrency, no casehook between.
//!
//! Phases, each on a fresh database: the wire baseline; a burst (events as fast as the API
//! takes them, then until every delivery arrived); a steady rate (latency from the moment the
//! event was sent to the API to its receipt, taken from a timestamp inside the payload); and a
//! backlog (deliveries made while no worker runs, then drained, with RSS sampled throughout).
//! Everything shares this process and its cores: compare phases within a run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use casehook_core::form::{FieldDef, FieldType, FormSpec};
use casehook_engine::{Engine, EngineConfig};
use casehook_outbound::{Client, ClientConfig, OutboundPolicy};
use casehook_server::{AppState, ServerConfig, bootstrap};
use casehook_store::{NewCase, Store};
use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bench::{BENCH_KEY, current_rss_kib, peak_rss_kib, percentile, reset_peak_rss};

#[derive(Debug, Clone, Args)]
pub struct DeliveryArgs {
    /// Seconds of load in the burst phase (and in the wire baseline).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests in flight at once (load generator; also the baseline's).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Events per second in the steady phase.
    #[arg(long, default_value_t = 1000)]
    pub steady_rate: u64,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 10)]
    pub steady_seconds: u64,
    /// Deliveries queued before the workers start, in the backlog phase (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// Also measure PostgreSQL (the burst), in this empty database.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Where the SQLite phases keep their files (a fresh directory is made inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch: PathBuf,
}

/// What the receiver saw.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    /// Microseconds from the event's send to its receipt.
    latencies: Mutex<Vec<u32>>,
    last: Mutex<Option<Instant>>,
}

struct Receiver {
    url: String,
    tally: Arc<Tally>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A receiver that answers 200 and records when each payload's `t` was sent.
async fn receiver() -> anyhow::Result<Receiver> {
    let tally = Arc::new(Tally::default());
    let shared = tally.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let tally = shared.clone();
        async move {
            let received = now_us();
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                // The envelope's data is the case; the baseline posts `{"t": …}` directly.
                let t = v["data"]["data"]["t"].as_u64().or_else(|| v["t"].as_u64());
                if let Some(t) = t {
                    let took = u32::try_from(received.saturating_sub(t)).unwrap_or(u32::MAX);
                    tally
                        .latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(took);
                }
            }
            tally.count.fetch_add(1, Ordering::Relaxed);
            *tally.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            "ok"
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Receiver { url, tally, task })
}

/// A server with its workers, on a fresh database.
struct Stack {
    store: Store,
    base: String,
    form: casehook_core::FormId,
    workspace: casehook_core::WorkspaceId,
    engine: Engine,
    stop_workers: Option<watch::Sender<bool>>,
    workers: Option<tokio::task::JoinSet<()>>,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Stack {
    async fn start(url: &str, receiver: &str) -> anyhow::Result<Self> {
        let store = Store::open(url)
            .await
            .with_context(|| format!("opening {}", casehook_store::redact_url(url)))?;
        bootstrap::ensure_default_workspace(&store, Some(BENCH_KEY.into()))
            .await?
            .context("the benchmark database already has workspaces; give it an empty one")?;
        let key = store
            .find_api_key(&casehook_server::auth::hash_key(BENCH_KEY))
            .await?
            .context("bench key")?;
        let mut spec = FormSpec::new("Bench");
        spec.fields = vec![
            FieldDef::new("t", FieldType::Number),
            FieldDef::new("note", FieldType::Text),
        ];
        let form = store.create_form(key.workspace_id, spec).await?;
        let client = Client::new(ClientConfig {
            policy: OutboundPolicy {
                allow_cidrs: vec!["127.0.0.0/8".parse()?],
                ..OutboundPolicy::default()
            },
            pool_max_idle_per_host: 256,
            ..ClientConfig::default()
        })?;
        let keys = casehook_core::sealed::MasterKey::generate().0;
        let engine = Engine::new(store.clone(), client, keys, EngineConfig::default());
        let state = AppState::new(store.clone(), ServerConfig::default(), engine.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}/api/v1", listener.local_addr()?);
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(casehook_server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let endpoint = http
            .post(format!("{base}/endpoints"))
            .bearer_auth(BENCH_KEY)
            .json(&json!({"name": "bench receiver", "url": receiver, "subscriptions": {"event_types": ["case.created"]}}))
            .send()
            .await?;
        anyhow::ensure!(
            endpoint.status().is_success(),
            "creating the endpoint: {}",
            endpoint.text().await?
        );
        Ok(Self {
            store,
            base,
            form: form.id,
            workspace: key.workspace_id,
            engine,
            stop_workers: None,
            workers: None,
            stop_server: Some(stop_server),
        })
    }

    fn start_workers(&mut self) {
        let (stop, stopped) = watch::channel(false);
        self.workers = Some(self.engine.start(stopped));
        self.stop_workers = Some(stop);
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop_workers.take() {
            let _ = stop.send(true);
        }
        if let Some(mut workers) = self.workers.take() {
            while workers.join_next().await.is_some() {}
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        self.store.close().await;
    }
}

/// Post `body(form, t)` to `url` from `concurrency` tasks for `seconds`; how many were
/// accepted, and how long it took.
async fn closed_loop(
    url: &str,
    concurrency: usize,
    seconds: u64,
    body: fn(&str, u64) -> Value,
    form: &str,
) -> anyhow::Result<(u64, Duration)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, accepted, form) = (
            client.clone(),
            url.to_string(),
            accepted.clone(),
            form.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let sent = client
                    .post(&url)
                    .bearer_auth(BENCH_KEY)
                    .json(&body(&form, now_us()))
                    .send()
                    .await;
                if let Ok(r) = sent
                    && r.status().is_success()
                    && r.bytes().await.is_ok()
                {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok((accepted.load(Ordering::Relaxed), start.elapsed()))
}

fn case_body(form: &str, t: u64) -> Value {
    json!({"form_id": form, "data": {"t": t, "note": "bench delivery"}})
}

fn baseline_body(_: &str, t: u64) -> Value {
    // About the size of the envelope casehook sends for a bench case.
    json!({"t": t, "type": "case.created", "note": "x".repeat(500)})
}

/// Wait until the receiver has `n` deliveries (or nothing arrived for 30 s); how many.
async fn drain(tally: &Tally, n: u64) -> u64 {
    let mut last_count = 0;
    let mut last_change = Instant::now();
    loop {
        let count = tally.count.load(Ordering::Relaxed);
        if count >= n {
            return count;
        }
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(30) {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn latency_line(tally: &Tally) -> String {
    let mut l = tally
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    l.sort_unstable();
    let ms = |q| percentile(&l, q) as f64 / 1000.0;
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        ms(0.50),
        ms(0.95),
        ms(0.99)
    )
}

fn rss() -> String {
    peak_rss_kib().map_or("?".into(), |k| format!("{} MiB", k / 1024))
}

pub async fn run(args: DeliveryArgs) -> anyhow::Result<()> {
    let scratch = args
        .scratch
        .join(format!("casehook-bench-delivery-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    println!(
        "casehook bench delivery: burst {} s at {} in flight; steady {}/s for {} s; backlog {}\n",
        args.seconds, args.concurrency, args.steady_rate, args.steady_seconds, args.backlog
    );
    let result = phases(&args, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn phases(args: &DeliveryArgs, scratch: &Path) -> anyhow::Result<()> {
    let sqlite = |name: &str| format!("sqlite:{}", scratch.join(name).display());
    // 1. The wire baseline.
    let rx = receiver().await?;
    reset_peak_rss();
    let (sent, took) =
        closed_loop(&rx.url, args.concurrency, args.seconds, baseline_body, "").await?;
    let wire = sent as f64 / took.as_secs_f64();
    println!(
        "wire baseline            {wire:>9.0} requests/s   {}   peak RSS {}",
        latency_line(&rx.tally),
        rss()
    );
    drop(rx);

    let empty_rate = burst(args, &sqlite("burst.db"), "sqlite").await?;
    println!(
        "sqlite deliveries / wire baseline: {:.1}%",
        100.0 * empty_rate / wire
    );
    steady(args, &sqlite("steady.db"), "sqlite").await?;
    if args.backlog > 0 {
        backlog(args, &sqlite("backlog.db"), empty_rate).await?;
    }
    if let Some(url) = &args.postgres_url {
        let pg = burst(args, url, "postgres").await?;
        println!(
            "postgres deliveries / wire baseline: {:.1}%",
            100.0 * pg / wire
        );
    } else {
        println!("postgres: skipped (pass --postgres-url to measure it)");
    }
    Ok(())
}

/// Events as fast as the API takes them; returns deliveries per second.
async fn burst(args: &DeliveryArgs, url: &str, name: &str) -> anyhow::Result<f64> {
    let rx = receiver().await?;
    let mut stack = Stack::start(url, &rx.url).await?;
    stack.start_workers();
    reset_peak_rss();
    let start = Instant::now();
    let (accepted, took) = closed_loop(
        &format!("{}/cases", stack.base),
        args.concurrency,
        args.seconds,
        case_body,
        &stack.form.to_string(),
    )
    .await?;
    let delivered = drain(&rx.tally, accepted).await;
    let last = rx
        .tally
        .last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or(start);
    let span = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(0.001);
    let rate = delivered as f64 / span;
    println!(
        "{name}: burst             {:>9.0} events/s accepted, {rate:.0} deliveries/s ({delivered}/{accepted} delivered)   {}   peak RSS {}",
        accepted as f64 / took.as_secs_f64(),
        latency_line(&rx.tally),
        rss()
    );
    stack.stop().await;
    Ok(rate)
}

/// A steady rate of events; latency from send to receipt.
async fn steady(args: &DeliveryArgs, url: &str, name: &str) -> anyhow::Result<()> {
    let rx = receiver().await?;
    let mut stack = Stack::start(url, &rx.url).await?;
    stack.start_workers();
    reset_peak_rss();
    let client = reqwest::Client::new();
    let total = args.steady_rate * args.steady_seconds;
    let interval = Duration::from_secs_f64(1.0 / args.steady_rate.max(1) as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let url = format!("{}/cases", stack.base);
    let form = stack.form.to_string();
    let mut sends = tokio::task::JoinSet::new();
    let mut accepted = 0;
    for _ in 0..total {
        ticker.tick().await;
        let (client, url, form) = (client.clone(), url.clone(), form.clone());
        sends.spawn(async move {
            client
                .post(url)
                .bearer_auth(BENCH_KEY)
                .json(&case_body(&form, now_us()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        while let Some(done) = sends.try_join_next() {
            accepted += u64::from(done.unwrap_or(false));
        }
    }
    while let Some(done) = sends.join_next().await {
        accepted += u64::from(done.unwrap_or(false));
    }
    let delivered = drain(&rx.tally, total).await;
    println!(
        "{name}: steady {}/s       {delivered}/{accepted} delivered   {}   peak RSS {}",
        args.steady_rate,
        latency_line(&rx.tally),
        rss()
    );
    stack.stop().await;
    Ok(())
}

/// Queue `backlog` deliveries with no worker running, then drain them; compare with the
/// burst's rate (an empty queue) and watch RSS.
async fn backlog(args: &DeliveryArgs, url: &str, empty_rate: f64) -> anyhow::Result<()> {
    let rx = receiver().await?;
    let mut stack = Stack::start(url, &rx.url).await?;
    let filled = Instant::now();
    let mut creations = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..64 {
        let (store, next) = (stack.store.clone(), next.clone());
        let (workspace, form) = (stack.workspace, stack.form);
        let total = args.backlog;
        creations.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let mut data = serde_json::Map::new();
                data.insert("note".into(), json!("backlog"));
                let case = NewCase {
                    workspace,
                    form_id: form,
                    form_version: 1,
                    status: "open".into(),
                    data,
                    external_refs: Default::default(),
                    actor: casehook_core::event::Actor::system(),
                    skip_triggers: false,
                };
                store.create_case(case).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = creations.join_next().await {
        done??;
    }
    println!(
        "backlog: {} cases created in {:.1} s; starting the workers",
        args.backlog,
        filled.elapsed().as_secs_f64()
    );
    reset_peak_rss();
    let sampler = tokio::spawn(async {
        let mut max = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            max = max.max(current_rss_kib().unwrap_or(0));
            if max > 250 * 1024 {
                println!("backlog: RSS passed 250 MiB ({} MiB)", max / 1024);
            }
        }
    });
    let start = Instant::now();
    stack.start_workers();
    let delivered = drain(&rx.tally, args.backlog).await;
    let rate = delivered as f64 / start.elapsed().as_secs_f64();
    sampler.abort();
    println!(
        "backlog: {delivered}/{} drained at {rate:.0} deliveries/s ({:.0}% of the empty-queue rate)   peak RSS {}",
        args.backlog,
        100.0 * rate / empty_rate,
        rss()
    );
    stack.stop().await;
    Ok(())
}
