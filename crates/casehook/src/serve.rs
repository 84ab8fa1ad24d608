//! `casehook serve` and `casehook migrate`.

use anyhow::Context;
use casehook_server::{AppState, ServerConfig, bootstrap};
use casehook_store::{Store, redact_url};
use tokio::net::TcpListener;

use crate::cli::{DatabaseArgs, ServeArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.body_limit < 1024 {
        anyhow::bail!("--body-limit must be at least 1024 bytes");
    }
    let url = args.database.resolve()?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?;
    tracing::info!(database = store.dialect_name(), "database ready");
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (set --listen or CASEHOOK_LISTEN)",
            args.listen
        )
    })?;
    let local = listener.local_addr()?;
    if let Some(first) =
        bootstrap::ensure_default_workspace(&store, args.bootstrap_admin_key.clone()).await?
    {
        print_first_start(&first, local);
    }
    let state = AppState::new(
        store.clone(),
        ServerConfig {
            body_limit: args.body_limit,
        },
    );
    tracing::info!(address = %local, "casehook is listening");
    casehook_server::serve(listener, state, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("casehook stopped");
    Ok(())
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
