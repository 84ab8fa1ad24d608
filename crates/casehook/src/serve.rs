//! `casehook serve` and `casehook migrate`.

use anyhow::Context;
use casehook_server::{AppState, ServerConfig, bootstrap};
use casehook_store::{Store, redact_url};
use tokio::net::TcpListener;

use std::time::Duration;

use casehook_engine::{Engine, EngineConfig, peers};
use casehook_outbound::{Client, ClientConfig, OutboundPolicy};

use crate::cli::{DatabaseArgs, ServeArgs, ServeRole};
use crate::master_key;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.body_limit < 1024 {
        anyhow::bail!("--body-limit must be at least 1024 bytes");
    }
    let signals = ShutdownSignals::install()?;
    // The port first: a server that cannot listen leaves no database behind. Connections that
    // arrive while the database opens wait in the listen backlog.
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (set --listen or CASEHOOK_LISTEN)",
            args.listen
        )
    })?;
    let url = args.database.resolve()?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?;
    tracing::info!(database = store.dialect_name(), "database ready");
    let local = listener.local_addr()?;
    if let Some(first) =
        bootstrap::ensure_default_workspace(&store, args.bootstrap_admin_key.clone()).await?
    {
        print_first_start(&first, local);
    }
    let engine = build_engine(&args, store.clone()).await?;
    let state = AppState::new(
        store.clone(),
        ServerConfig {
            body_limit: args.body_limit,
            public_url: args.public_url.clone(),
        },
        engine.clone(),
    );
    let (stop_workers, stop) = tokio::sync::watch::channel(false);
    let mut workers = if args.role == ServeRole::Api {
        tokio::task::JoinSet::new()
    } else {
        engine.start(stop.clone())
    };
    // Every role beats into the registry of processes, whose count splits the limits
    // configured on hooks, endpoints and connections between the processes enforcing them.
    workers.spawn(peers::run_heartbeat(
        engine.clone(),
        peers::Roles {
            serves_api: args.role != ServeRole::Worker,
            runs_workers: args.role != ServeRole::Api,
        },
        Duration::from_millis(args.heartbeat_ms.max(10)),
        stop,
    ));
    let router = if args.role == ServeRole::Worker {
        casehook_server::with_layers(casehook_server::routes::ops::router(), state)
    } else {
        casehook_server::app(state)
    };
    tracing::info!(address = %local, role = ?args.role, "casehook is listening");
    casehook_server::serve_router(listener, router, signals.wait()).await?;
    // Workers finish the deliveries they are sending and record them.
    let _ = stop_workers.send(true);
    while workers.join_next().await.is_some() {}
    store.close().await;
    tracing::info!("casehook stopped");
    Ok(())
}

/// The workers' state: master key, outbound client (with its SSRF policy), endpoint cache.
async fn build_engine(args: &ServeArgs, store: Store) -> anyhow::Result<Engine> {
    let keys = master_key::load_checked(&args.database.data_dir, &store).await?;
    let policy = OutboundPolicy {
        allow_private_networks: args.allow_private_networks,
        allow_cidrs: args.allow_cidrs.clone(),
        ..OutboundPolicy::default()
    };
    if policy.allow_private_networks {
        tracing::warn!(
            "outbound requests may reach private and loopback addresses (--allow-private-networks)"
        );
    }
    let client = Client::new(ClientConfig {
        policy,
        ..ClientConfig::default()
    })
    .context("building the outbound HTTP client")?;
    let config = EngineConfig {
        lease: Duration::from_secs(args.delivery_lease_secs.max(1)),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
        inbound_log_retention: Duration::from_secs(
            args.inbound_log_retention_days
                .max(1)
                .saturating_mul(86_400),
        ),
        ..EngineConfig::default()
    };
    Ok(Engine::new(store, client, keys, config))
}

pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = args.resolve()?;
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?;
    let applied = store.migrate().await?;
    println!("{applied} migration(s) applied; the schema is current");
    store.close().await;
    Ok(())
}

pub async fn rotate_master_key(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = args.resolve()?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?;
    let done = master_key::rotate(&args.data_dir, &store).await;
    store.close().await;
    done
}

/// The admin key is printed to standard output once, never logged.
fn print_first_start(first: &bootstrap::FirstStart, address: std::net::SocketAddr) {
    println!();
    println!(
        "casehook: created the workspace \"{}\" ({})",
        first.workspace.name, first.workspace.id
    );
    println!("Admin API key (shown only now; store it safely):");
    println!();
    println!("    {}", first.admin_key);
    println!();
    println!("Try it:");
    println!(
        "    curl -H 'Authorization: Bearer {}' http://{address}/api/v1/forms",
        first.admin_key
    );
    println!();
}

/// SIGINT and SIGTERM handlers, installed when this is created: before the port is bound, so
/// a signal that arrives as soon as the server answers is never met by the default action
/// (killing the process mid-write).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
