//! The `casehook` command: `serve` runs the server, `migrate` applies schema migrations,
//! `bench` measures throughput.
//! Configuration comes from flags, then `CASEHOOK_*`
//! environment variables, then built-in defaults.

mod bench;
mod bench_apicall;
mod bench_delivery;
mod bench_inbound;
mod cli;
mod logging;
mod master_key;
mod serve;

use clap::Parser;

/// glibc's allocator spent a noticeable share of the ingest path consolidating free lists
/// under many small, short-lived allocations; mimalloc measured faster here (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Through the log, so `--log-format json` stays one JSON object per line.
            tracing::error!(error = %format!("{e:#}"), "casehook stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider; choose ring once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            cli::Command::Serve(args) => serve::run(args).await,
            cli::Command::Migrate(args) => serve::migrate(args).await,
            cli::Command::Bench(args) => bench::run(args).await,
            cli::Command::Secrets(cli::SecretsCommand::RotateMasterKey(args)) => {
                serve::rotate_master_key(args).await
            }
        }
    })
}
