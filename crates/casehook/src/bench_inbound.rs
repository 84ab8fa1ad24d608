//! `casehook bench inbound`: verified case creations per second through one inbound hook,
//! beside a baseline measured in the same run.
//!
//! Every request is a distinct Standard Webhooks message (its own `webhook-id`, so each is
//! processed, none answered from the idempotency keys) signed with the hook's secret: the
//! server verifies the signature, parses and maps the body, validates it against the form
//! and commits the case, its event, the idempotency key and the request log entry before it
//! answers. The baseline sends the same requests to a trivial handler on the same server
//! stack (same layers, same body read and JSON parse, no verification, no database).
//!
//! Phases: baseline at full concurrency; SQLite at full concurrency; SQLite at a steady rate
//! (open loop: requests leave on a clock, latency counted from when each was due); the same
//! two on PostgreSQL when a URL is given. The load generator shares the process, and so the
//! cores, with the server in every phase alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::body::Bytes;
use axum::routing::post;
use casehook_core::signing::{SigningSecret, sign};
use casehook_server::{AppState, ServerConfig};
use casehook_store::Store;
use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::bench::{BENCH_KEY, open_bench, peak_rss_kib, percentile, reset_peak_rss};

#[derive(Debug, Clone, Args)]
pub struct InboundArgs {
    /// Measured seconds per full-concurrency phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds per full-concurrency phase (not measured).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Requests in flight at once in the full-concurrency phases.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per second in the steady phase.
    #[arg(long, default_value_t = 1000)]
    pub steady_rate: u64,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 10)]
    pub steady_seconds: u64,
    /// Also measure PostgreSQL, in a database this run may fill (use an empty one).
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Where the SQLite phases keep their files (a fresh directory is made inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch: PathBuf,
}

pub async fn run(args: InboundArgs) -> anyhow::Result<()> {
    let scratch = args
        .scratch
        .join(format!("casehook-bench-inbound-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    println!(
        "casehook bench inbound: signed Standard Webhooks requests creating cases through one hook\n\
         {} s measured (+{} s warm-up) at {} in flight; steady {}/s for {} s\n",
        args.seconds, args.warmup, args.concurrency, args.steady_rate, args.steady_seconds
    );
    println!(
        "{:<28} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>10}",
        "phase", "requests", "per second", "p50 ms", "p95 ms", "p99 ms", "errors", "peak RSS"
    );
    let result = phases(&args, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn phases(args: &InboundArgs, scratch: &Path) -> anyhow::Result<()> {
    let sqlite_url = |name: &str| format!("sqlite:{}", scratch.join(name).display());
    let baseline = {
        let server = Server::start(&sqlite_url("baseline.db")).await?;
        let stats = closed_loop(args, &server, &server.noop_url).await;
        let rate = stats.report("baseline (trivial handler)");
        server.stop().await?;
        rate
    };
    let sqlite = backend(args, "sqlite", &sqlite_url("inbound.db")).await?;
    println!("\nsqlite / baseline: {:.1}%", 100.0 * sqlite / baseline);
    if let Some(url) = &args.postgres_url {
        let pg = backend(args, "postgres", url).await?;
        println!("postgres / baseline: {:.1}%", 100.0 * pg / baseline);
    } else {
        println!("postgres: skipped (pass --postgres-url postgres://… to measure it)");
    }
    Ok(())
}

/// The full-concurrency and the steady phase on one database; returns the full rate.
async fn backend(args: &InboundArgs, name: &str, url: &str) -> anyhow::Result<f64> {
    let server = Server::start(url).await?;
    let stats = closed_loop(args, &server, &server.hook_url).await;
    let rate = stats.report(&format!("{name}: verified creations"));
    let steady = open_loop(args, &server).await;
    steady.report(&format!("{name}: steady {}/s", args.steady_rate));
    let acknowledged = stats.ok + stats.warmup_ok + steady.ok;
    crate::bench::verify_stored(&server.store, server.workspace, acknowledged).await?;
    server.stop().await?;
    Ok(rate)
}

/// A fresh server with a form and a hook verifying Standard Webhooks signatures.
struct Server {
    store: Store,
    workspace: casehook_core::WorkspaceId,
    secret: SigningSecret,
    hook_url: String,
    noop_url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: (tokio::sync::watch::Sender<bool>, tokio::task::JoinSet<()>),
}

impl Server {
    async fn start(url: &str) -> anyhow::Result<Self> {
        let (store, key, engine) = open_bench(url).await?;
        let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
        let workers = engine.start(workers_stop);
        let state = AppState::new(store.clone(), ServerConfig::default(), engine);
        let routes = casehook_server::app_routes().route("/bench/in-noop", post(noop));
        let router = casehook_server::with_layers(routes, state);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(casehook_server::serve_router(listener, router, async {
            let _ = stopped.await;
        }));
        let api = reqwest::Client::new();
        let form: Value = api
            .post(format!("{base}/api/v1/forms"))
            .bearer_auth(BENCH_KEY)
            .json(&json!({"name": "Bench orders", "fields": [
                {"key": "amount", "type": "number", "required": true},
                {"key": "kind", "type": "select", "options": ["car", "home"]},
                {"key": "note", "type": "text"},
                {"key": "sent_at", "type": "number"}
            ]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let hook: Value = api
            .post(format!("{base}/api/v1/inbound-hooks"))
            .bearer_auth(BENCH_KEY)
            .json(&json!({"name": "bench", "form_id": form["id"],
                          "verifications": [{"kind": "standard_webhooks"}]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let secret = hook["secrets"][0]["secrets"][0]["secret"]
            .as_str()
            .context("the hook's generated secret")?;
        let path = hook["url_path"].as_str().context("the hook's path")?;
        Ok(Self {
            store,
            workspace: key.workspace_id,
            secret: SigningSecret::parse(secret)?,
            hook_url: format!("{base}{path}"),
            noop_url: format!("{base}/bench/in-noop"),
            stop,
            task,
            workers: (stop_workers, workers),
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        let (stop_workers, mut workers) = self.workers;
        let _ = stop_workers.send(true);
        while workers.join_next().await.is_some() {}
        self.store.close().await;
        Ok(())
    }
}

/// The baseline: the same body read and JSON parse, nothing else.
async fn noop(body: Bytes) -> Json<Value> {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Json(json!({"ok": parsed.is_object()}))
}

/// Message ids unique across the run.
static MESSAGES: AtomicU64 = AtomicU64::new(0);

/// One signed request: a new message id, now as the timestamp.
fn signed(client: &reqwest::Client, url: &str, secret: &SigningSecret) -> reqwest::RequestBuilder {
    let n = MESSAGES.fetch_add(1, Ordering::Relaxed);
    let id = format!("msg_bench_{n}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = format!(r#"{{"amount":1250.5,"kind":"car","note":"bench {n}","sent_at":{n}}}"#);
    let signature = sign(secret, &id, now, body.as_bytes());
    client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(body)
}

#[derive(Default)]
struct Stats {
    ok: u64,
    warmup_ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
    peak_rss_kib: Option<u64>,
}

impl Stats {
    fn report(&self, name: &str) -> f64 {
        let rate = self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let ms = |q| f64::from(percentile(&self.latencies, q)) / 1000.0;
        println!(
            "{name:<28} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>6} MiB",
            self.ok,
            rate,
            ms(0.50),
            ms(0.95),
            ms(0.99),
            self.errors,
            self.peak_rss_kib
                .map_or("?".into(), |k| (k / 1024).to_string())
        );
        rate
    }
}

async fn send(request: reqwest::RequestBuilder) -> bool {
    match request.send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// `concurrency` senders, each sending its next request when the last is answered.
async fn closed_loop(args: &InboundArgs, server: &Server, url: &str) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap_or_default();
    let secret = Arc::new(server.secret.clone());
    reset_peak_rss();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.seconds);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url, secret) = (client.clone(), url.to_owned(), secret.clone());
        senders.spawn(async move {
            let mut stats = Stats::default();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = send(signed(&client, &url, &secret)).await;
                match (ok, sent >= measure_from) {
                    (true, true) => {
                        stats.ok += 1;
                        stats.latencies.push(micros(sent.elapsed()));
                    }
                    (true, false) => stats.warmup_ok += 1,
                    (false, _) => stats.errors += 1,
                }
            }
            stats
        });
    }
    let mut total = Stats::default();
    while let Some(Ok(stats)) = senders.join_next().await {
        total.ok += stats.ok;
        total.warmup_ok += stats.warmup_ok;
        total.errors += stats.errors;
        total.latencies.extend(stats.latencies);
    }
    total.elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .min(Duration::from_secs(args.seconds + 1));
    total.latencies.sort_unstable();
    total.peak_rss_kib = peak_rss_kib();
    total
}

/// Requests leave on a clock at `steady_rate`, whatever the answers; latency is counted from
/// when each was due, so a stalled server shows in the figures.
async fn open_loop(args: &InboundArgs, server: &Server) -> Stats {
    let client = reqwest::Client::new();
    let secret = Arc::new(server.secret.clone());
    let total = args.steady_rate * args.steady_seconds;
    let interval = Duration::from_secs_f64(1.0 / args.steady_rate.max(1) as f64);
    reset_peak_rss();
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, secret) = (client.clone(), server.hook_url.clone(), secret.clone());
        sends.spawn(async move {
            let ok = send(signed(&client, &url, &secret)).await;
            (ok, micros(due.elapsed()))
        });
    }
    let mut stats = Stats::default();
    while let Some(Ok((ok, latency))) = sends.join_next().await {
        if ok {
            stats.ok += 1;
            stats.latencies.push(latency);
        } else {
            stats.errors += 1;
        }
    }
    stats.elapsed = Duration::from_secs(args.steady_seconds);
    stats.latencies.sort_unstable();
    stats.peak_rss_kib = peak_rss_kib();
    stats
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
