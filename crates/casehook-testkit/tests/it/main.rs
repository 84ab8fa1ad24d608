//! Integration tests for casehook-testkit: they run against the real server `postgres()`
//! starts (or skip with its warning when PostgreSQL is not installed).
//!
//! `lifecycle` re-runs this test binary as a child process to watch a server's whole life,
//! which no single process can observe about itself.

mod databases;
mod lifecycle;

use std::path::PathBuf;
use std::process::{Command, Output};

/// `psql` to check the databases with, found like the testkit finds its programs.
fn psql() -> PathBuf {
    let bin_dirs = std::env::var_os("CASEHOOK_PG_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain(debian_bin_dirs());
    bin_dirs
        .map(|dir| dir.join("psql"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// Runs one statement against `url`, unaligned and without headers.
fn run_sql(url: &str, sql: &str) -> Output {
    Command::new(psql())
        .args([
            "-X",
            "-A",
            "-t",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs")
}

/// Like [`run_sql`], asserting success and returning the trimmed output.
fn query(url: &str, sql: &str) -> String {
    let output = run_sql(url, sql);
    assert!(
        output.status.success(),
        "psql {url} -c {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
