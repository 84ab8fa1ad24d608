//! `casehook bench api-calls`: API-call field runs per second against a local JSON API,
//! beside the wire baseline measured in the same run — the same outbound client sending the
//! same GET to the same API at the same concurrency, no casehook between.
//!
//! Phases, each on a fresh SQLite database (PostgreSQL too when given a URL): the wire
//! baseline; cache misses (every case's request differs, so every run calls the API); cache
//! hits (one request for all cases, answered from the cache after the first). A run is a
//! job claimed from the queue, rendered, sent (or answered from the cache), mapped, and
//! settled: the field's value, its state and the `case.updated` event in one transaction,
//! plus the call log entry. Everything shares this process and its cores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use casehook_core::event::Actor;
use casehook_core::form::FormSpec;
use casehook_engine::{Engine, EngineConfig};
use casehook_outbound::{Client, ClientConfig, Method, OutboundPolicy, OutboundRequest};
use casehook_server::bootstrap;
use casehook_store::{NewCase, Store};
use clap::Args;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bench::{BENCH_KEY, peak_rss_kib, percentile, reset_peak_rss};

#[derive(Debug, Clone, Args)]
pub struct ApiCallArgs {
    /// Cases (and so runs) per phase.
    #[arg(long, default_value_t = 10_000)]
    pub runs: u64,
    /// Seconds of the wire baseline.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Requests in flight in the wire baseline (the engine runs up to 64 calls at once).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Also measure PostgreSQL, in this empty database (cache misses).
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Where the SQLite phases keep their files (a fresh directory is made inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch: PathBuf,
}

/// A JSON API answering `{"score": n}`, counting requests.
struct Api {
    url: String,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn api() -> anyhow::Result<Api> {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let n = counted.fetch_add(1, Ordering::Relaxed);
        async move { axum::Json(json!({"score": n % 1000, "band": "B"})) }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Api { url, hits, task })
}

fn client() -> anyhow::Result<Client> {
    Ok(Client::new(ClientConfig {
        policy: OutboundPolicy {
            allow_cidrs: vec!["127.0.0.0/8".parse()?],
            ..OutboundPolicy::default()
        },
        pool_max_idle_per_host: 256,
        ..ClientConfig::default()
    })?)
}

pub async fn run(args: ApiCallArgs) -> anyhow::Result<()> {
    let scratch = args
        .scratch
        .join(format!("casehook-bench-apicall-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    println!(
        "casehook bench api-calls: {} runs per phase; wire baseline {} s at {} in flight\n",
        args.runs, args.seconds, args.concurrency
    );
    let result = phases(&args, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn phases(args: &ApiCallArgs, scratch: &Path) -> anyhow::Result<()> {
    let sqlite = |name: &str| format!("sqlite:{}", scratch.join(name).display());
    let api = api().await?;
    let wire = wire_baseline(args, &api).await?;
    let miss = phase(
        args,
        &api,
        &sqlite("miss.db"),
        "sqlite: cache misses",
        false,
    )
    .await?;
    println!(
        "sqlite cache misses / wire baseline: {:.1}%",
        100.0 * miss / wire
    );
    let hit = phase(args, &api, &sqlite("hit.db"), "sqlite: cache hits", true).await?;
    println!(
        "sqlite cache hits / wire baseline: {:.1}%",
        100.0 * hit / wire
    );
    if let Some(url) = &args.postgres_url {
        let pg = phase(args, &api, url, "postgres: cache misses", false).await?;
        println!(
            "postgres cache misses / wire baseline: {:.1}%",
            100.0 * pg / wire
        );
    } else {
        println!("postgres: skipped (pass --postgres-url to measure it)");
    }
    Ok(())
}

/// The same client, the same GET, the same API: requests per second with nothing between.
async fn wire_baseline(args: &ApiCallArgs, api: &Api) -> anyhow::Result<f64> {
    let client = client()?;
    reset_peak_rss();
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let (client, url) = (client.clone(), format!("{}/score/A-{i}", api.url));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                let exchange = client
                    .send(
                        OutboundRequest::new(Method::GET, url.clone())
                            .with_header("accept", "application/json"),
                    )
                    .await;
                if exchange.is_success() {
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let took = start.elapsed();
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / took.as_secs_f64();
    println!(
        "{:<28} {:>8.0} per second   p50 {:.2} ms  p99 {:.2} ms   peak RSS {}",
        "wire baseline (GET)",
        rate,
        f64::from(percentile(&latencies, 0.50)) / 1000.0,
        f64::from(percentile(&latencies, 0.99)) / 1000.0,
        rss()
    );
    Ok(rate)
}

fn rss() -> String {
    peak_rss_kib().map_or("?".into(), |k| format!("{} MiB", k / 1024))
}

/// A form whose `score` field calls the API: per case (misses), or one request for all
/// cases cached for an hour (hits).
fn form(api: &str, cached: bool) -> anyhow::Result<FormSpec> {
    let url = if cached {
        format!("{api}/score/everyone")
    } else {
        format!("{api}/score/{{data.account}}")
    };
    Ok(serde_json::from_value(json!({
        "name": "Bench accounts",
        "fields": [
            {"key": "account", "type": "text"},
            {"key": "band", "type": "text"},
            {"key": "score", "type": "api_call", "trigger": "manual",
             "cache_duration": if cached { 3600 } else { 0 },
             "api_config": {"url": url, "response_mapping": {"score": "$.score", "band": "$.band"}}}
        ]
    }))?)
}

/// Runs of every case's field, from a full queue to an empty one; runs per second.
async fn phase(
    args: &ApiCallArgs,
    api: &Api,
    url: &str,
    name: &str,
    cached: bool,
) -> anyhow::Result<f64> {
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
    let ws = key.workspace_id;
    let form = store.create_form(ws, form(&api.url, cached)?).await?;
    // The cases, written concurrently so the writer groups them.
    let mut ids = Vec::with_capacity(args.runs as usize);
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..args.runs {
        let store = store.clone();
        let (form_id, version) = (form.id, form.version);
        writes.spawn(async move {
            let mut data = Map::new();
            data.insert("account".into(), Value::String(format!("A-{n}")));
            store
                .create_case(NewCase {
                    workspace: ws,
                    form_id,
                    form_version: version,
                    status: "open".into(),
                    data,
                    external_refs: Default::default(),
                    actor: Actor::system(),
                    skip_triggers: true,
                })
                .await
                .map(|(case, _)| case.id)
        });
        while writes.len() >= 256 {
            if let Some(done) = writes.join_next().await {
                ids.push(done??);
            }
        }
    }
    while let Some(done) = writes.join_next().await {
        ids.push(done??);
    }
    let jobs: Vec<_> = ids
        .iter()
        .map(|id| casehook_engine::apicall::manual_job(ws, *id, "score"))
        .collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_jobs(chunk.to_vec()).await?;
    }
    let keys = casehook_core::sealed::MasterKey::generate().0;
    let engine = Engine::new(store.clone(), client()?, keys, EngineConfig::default());
    let hits_before = api.hits.load(Ordering::Relaxed);
    reset_peak_rss();
    let start = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let mut workers = engine.start(stopped);
    loop {
        let open = store
            .open_jobs(casehook_engine::apicall::API_CALL_QUEUE)
            .await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "{name}: {open} runs still open after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    let states = store.api_call_states(ws, ids[ids.len() - 1]).await?;
    anyhow::ensure!(
        states.first().is_some_and(|s| s.status == "ok"),
        "{name}: the last case's run did not succeed: {states:?}"
    );
    let calls = api.hits.load(Ordering::Relaxed) - hits_before;
    let rate = args.runs as f64 / took.as_secs_f64();
    println!(
        "{name:<28} {rate:>8.0} runs per second   {} runs in {:.1} s, {calls} HTTP calls   peak RSS {}",
        args.runs,
        took.as_secs_f64(),
        rss()
    );
    store.close().await;
    Ok(rate)
}
