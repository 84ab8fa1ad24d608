//! `casehook bench ingest`: durable case creations per second through the HTTP API, next to a
//! baseline measured in the same run — the same server stack (layers, key check, JSON
//! parsing) answering from a handler that does no database work.
//!
//! The load generator runs in this process (tokio tasks over keep-alive connections), so it
//! shares the machine's cores with the server in every phase alike; compare phases with each
//! other, not with figures from other tools. Peak RSS is the process's high-water mark for
//! the phase (reset through /proc/self/clear_refs before each phase).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use casehook_core::Role;
use casehook_core::form::{FieldDef, FieldOption, FieldType, FormSpec};
use casehook_server::auth::Caller;
use casehook_server::extract::ApiJson;
use casehook_server::{AppState, ServerConfig, bootstrap};
use casehook_store::{CaseFilter, Store};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Bench,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// Case creations through the API, on SQLite (and PostgreSQL when given a URL).
    Ingest(IngestArgs),
    /// Events accepted through the API and delivered to a local receiver.
    Delivery(crate::bench_delivery::DeliveryArgs),
    /// Signed requests creating cases through an inbound hook.
    Inbound(crate::bench_inbound::InboundArgs),
    /// API-call field runs against a local API, with and without the response cache.
    ApiCalls(crate::bench_apicall::ApiCallArgs),
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds per phase (not measured).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Also measure PostgreSQL, in a database that this run may fill (use an empty one).
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Where the SQLite phases keep their files (a fresh directory is made inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch: PathBuf,
}

pub(crate) const BENCH_KEY: &str = "chk_bench_admin_key";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let args = match args.what {
        Bench::Ingest(args) => args,
        Bench::Delivery(args) => return crate::bench_delivery::run(args).await,
        Bench::Inbound(args) => return crate::bench_inbound::run(args).await,
        Bench::ApiCalls(args) => return crate::bench_apicall::run(args).await,
    };
    let scratch = args
        .scratch
        .join(format!("casehook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    println!(
        "casehook bench ingest: {} s measured (+{} s warm-up) per phase, {} requests in flight\n",
        args.seconds, args.warmup, args.concurrency
    );
    println!(
        "{:<22} {:>9} {:>10} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "phase", "requests", "per second", "p50 ms", "p95 ms", "p99 ms", "errors", "peak RSS"
    );
    let result = phases(&args, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn phases(args: &IngestArgs, scratch: &std::path::Path) -> anyhow::Result<()> {
    let sqlite_url = |name: &str| format!("sqlite:{}", scratch.join(name).display());
    let baseline = phase(
        args,
        "baseline (no database)",
        &sqlite_url("baseline.db"),
        Target::Noop,
    )
    .await?;
    let sqlite = phase(
        args,
        "sqlite: create case",
        &sqlite_url("ingest.db"),
        Target::CreateCase,
    )
    .await?;
    println!("\nsqlite / baseline: {:.1}%", 100.0 * sqlite / baseline);
    if let Some(url) = &args.postgres_url {
        let pg = phase(args, "postgres: create case", url, Target::CreateCase).await?;
        println!("postgres / baseline: {:.1}%", 100.0 * pg / baseline);
    } else {
        println!("postgres: skipped (pass --postgres-url postgres://… to measure it)");
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Noop,
    CreateCase,
}

/// Runs one phase against a fresh server; returns its requests per second.
async fn phase(args: &IngestArgs, name: &str, url: &str, target: Target) -> anyhow::Result<f64> {
    let (store, key, engine) = open_bench(url).await?;
    let form = store.create_form(key.workspace_id, bench_form()).await?;
    let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
    let mut workers = engine.start(workers_stop);
    let state = AppState::new(store.clone(), ServerConfig::default(), engine);
    let routes = casehook_server::app_routes().route("/bench/noop", post(noop));
    let router = casehook_server::with_layers(routes, state);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(casehook_server::serve_router(listener, router, async {
        let _ = stopped.await;
    }));

    let path = if target == Target::Noop {
        "/bench/noop"
    } else {
        "/api/v1/cases"
    };
    let body =
        json!({"form_id": form.id, "data": {"amount": 1250.5, "kind": "car", "note": "bench"}});
    reset_peak_rss();
    let stats = load(
        args,
        &format!("http://{address}{path}"),
        Arc::new(serde_json::to_vec(&body)?),
    )
    .await?;
    let rss = peak_rss_kib();
    let _ = stop.send(());
    server.await??;
    let _ = stop_workers.send(true);
    while workers.join_next().await.is_some() {}

    let rate = stats.ok as f64 / stats.elapsed.as_secs_f64();
    let ms = |q: f64| stats.percentile(q) as f64 / 1000.0;
    println!(
        "{name:<22} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>7} MiB",
        stats.ok,
        rate,
        ms(0.50),
        ms(0.95),
        ms(0.99),
        stats.errors,
        rss.map_or("?".into(), |k| (k / 1024).to_string())
    );
    if target == Target::CreateCase {
        verify_stored(&store, key.workspace_id, stats.ok + stats.warmup_ok).await?;
    }
    store.close().await;
    Ok(rate)
}

/// A fresh benchmark database with its workspace and admin key ([`BENCH_KEY`]), and an engine
/// whose workers run as in `casehook serve` (with no endpoints, the dispatcher only moves its
/// cursor over the new events).
pub(crate) async fn open_bench(
    url: &str,
) -> anyhow::Result<(Store, casehook_store::ApiKeyRecord, casehook_engine::Engine)> {
    let store = Store::open(url)
        .await
        .with_context(|| format!("opening {}", casehook_store::redact_url(url)))?;
    if bootstrap::ensure_default_workspace(&store, Some(BENCH_KEY.into()))
        .await?
        .is_none()
    {
        anyhow::bail!("the benchmark database already has workspaces; give it an empty database");
    }
    let key = store
        .find_api_key(&casehook_server::auth::hash_key(BENCH_KEY))
        .await?
        .context("bench key")?;
    let client = casehook_outbound::Client::new(casehook_outbound::ClientConfig::default())?;
    let keys = casehook_core::sealed::MasterKey::generate().0;
    let engine = casehook_engine::Engine::new(
        store.clone(),
        client,
        keys,
        casehook_engine::EngineConfig::default(),
    );
    Ok((store, key, engine))
}

/// Every acknowledged creation must be in the database.
pub(crate) async fn verify_stored(
    store: &Store,
    workspace: casehook_core::WorkspaceId,
    acknowledged: u64,
) -> anyhow::Result<()> {
    let newest = store
        .list_cases(
            workspace,
            &CaseFilter {
                limit: 1,
                ..CaseFilter::default()
            },
        )
        .await?;
    let stored = newest.items.first().map_or(0, |c| c.number) as u64;
    anyhow::ensure!(
        stored >= acknowledged,
        "only {stored} cases stored for {acknowledged} acknowledged creations"
    );
    Ok(())
}

fn bench_form() -> FormSpec {
    let mut spec = FormSpec::new("Bench claims");
    let mut amount = FieldDef::new("amount", FieldType::Number);
    amount.required = true;
    let mut kind = FieldDef::new("kind", FieldType::Select);
    kind.options = vec![FieldOption::new("car"), FieldOption::new("home")];
    spec.fields = vec![amount, kind, FieldDef::new("note", FieldType::Text)];
    spec
}

/// The baseline handler: authenticated, parses the JSON body, touches no database.
async fn noop(
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), casehook_server::error::ApiError> {
    caller.require(Role::Member)?;
    let fields = body
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, |d| d.len());
    Ok((
        StatusCode::CREATED,
        Json(json!({"ok": true, "fields": fields})),
    ))
}

struct Stats {
    ok: u64,
    warmup_ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Latencies of measured requests, microseconds, sorted.
    latencies: Vec<u32>,
}

impl Stats {
    fn percentile(&self, q: f64) -> u32 {
        percentile(&self.latencies, q)
    }
}

async fn load(args: &IngestArgs, url: &str, body: Arc<Vec<u8>>) -> anyhow::Result<Stats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.seconds);
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut warmup_ok, mut errors, mut latencies) = (0u64, 0u64, 0u64, Vec::new());
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let response = client
                    .post(&url)
                    .header("authorization", format!("Bearer {BENCH_KEY}"))
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let success = match response {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let took = sent.elapsed();
                match (success, sent >= measure_from) {
                    (true, true) => {
                        ok += 1;
                        latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    }
                    (true, false) => warmup_ok += 1,
                    (false, _) => errors += 1,
                }
            }
            (ok, warmup_ok, errors, latencies)
        }));
    }
    let mut stats = Stats {
        ok: 0,
        warmup_ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for worker in workers {
        let (ok, warmup_ok, errors, latencies) = worker.await?;
        stats.ok += ok;
        stats.warmup_ok += warmup_ok;
        stats.errors += errors;
        stats.latencies.extend(latencies);
    }
    stats.elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .min(Duration::from_secs(args.seconds) + Duration::from_secs(1));
    stats.latencies.sort_unstable();
    Ok(stats)
}

/// The `q` quantile (0..1) of sorted values; 0 when there are none.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

pub(crate) fn reset_peak_rss() {
    // "5" resets the peak RSS counter (Linux 4.0+); elsewhere the figure is the process's peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

/// The resident set size now.
pub(crate) fn current_rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS:")
}

/// A `kB` figure of /proc/self/status.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
