//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "casehook",
    version,
    about = "A self-hosted integration engine for case-management platforms"
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CASEHOOK_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// What a `serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeRole {
    All,
    Api,
    Worker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Measure throughput and latency on this machine (see docs/PERFORMANCE.md).
    Bench(crate::bench::BenchArgs),
    /// Manage the master key that seals secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every secret under a new master key (from `CASEHOOK_NEW_MASTER_KEY`, or
    /// generated), in one transaction. Stop the servers first and restart them after.
    RotateMasterKey(DatabaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Directory for the embedded SQLite database and other local state.
    #[arg(long, env = "CASEHOOK_DATA_DIR", default_value = "./casehook-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; default: SQLite in the data directory.
    #[arg(long, env = "CASEHOOK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The database URL to open, creating the data directory for SQLite.
    pub fn resolve(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                self.data_dir.display()
            )
        })?;
        Ok(format!(
            "sqlite:{}",
            self.data_dir.join("casehook.db").display()
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CASEHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CASEHOOK_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// The address senders reach this server at, e.g. `https://hooks.example.com`: inbound
    /// hooks then show their full URL, not only their path.
    #[arg(long, env = "CASEHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// What this process does: `all` (the API and the workers), `api` (the API only; other
    /// processes on the same PostgreSQL run the workers), `worker` (the dispatcher and the
    /// delivery workers, with only /healthz, /readyz and /metrics on the listen address).
    #[arg(long, env = "CASEHOOK_ROLE", value_enum, default_value_t = ServeRole::All)]
    pub role: ServeRole,
    /// Let outbound requests (webhook deliveries) reach loopback, private and link-local
    /// addresses. Off by default: a webhook URL must not reach into your own network.
    #[arg(long, env = "CASEHOOK_ALLOW_PRIVATE_NETWORKS")]
    pub allow_private_networks: bool,
    /// Networks outbound requests may reach even though they are private, e.g.
    /// `10.1.0.0/16,127.0.0.1/32` (narrower than --allow-private-networks).
    #[arg(long, env = "CASEHOOK_ALLOW_CIDRS", value_delimiter = ',')]
    pub allow_cidrs: Vec<casehook_outbound::IpNet>,
    /// How long a delivery a worker took stays its own before another worker may take it
    /// (a worker that died mid-send); longer than the longest endpoint timeout.
    #[arg(
        long,
        env = "CASEHOOK_DELIVERY_LEASE_SECS",
        default_value_t = 150,
        hide = true
    )]
    pub delivery_lease_secs: u64,
    /// Days inbound hooks' request logs are kept (replay needs the logged request).
    #[arg(
        long,
        env = "CASEHOOK_INBOUND_LOG_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub inbound_log_retention_days: u64,
    /// How often workers look for work nobody woke them for (retries coming due, work
    /// committed by other processes), in milliseconds.
    #[arg(
        long,
        env = "CASEHOOK_POLL_INTERVAL_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub poll_interval_ms: u64,
    /// How often this process tells the others sharing the database that it is alive, in
    /// milliseconds; one that misses three beats is no longer counted when limits are split.
    #[arg(
        long,
        env = "CASEHOOK_HEARTBEAT_MS",
        default_value_t = 5000,
        hide = true
    )]
    pub heartbeat_ms: u64,
    /// On the very first start only: use this as the first admin API key.
    #[arg(
        long,
        env = "CASEHOOK_BOOTSTRAP_ADMIN_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub bootstrap_admin_key: Option<String>,
}
