//! Test support for casehook: a real, throw-away PostgreSQL server for integration tests.
//!
//! Use it as a dev-dependency. Each test asks for a fresh, empty database and skips itself when
//! PostgreSQL is not installed:
//!
//! ```no_run
//! let Some(pg) = casehook_testkit::postgres() else { return };
//! let url = pg.create_database(); // postgres://postgres@127.0.0.1:PORT/casehook_test_…
//! ```
//!
//! # How it works
//!
//! The first call to [`postgres`] in a test process starts one server that every test of that
//! process shares (each in its own database):
//!
//! 1. It finds PostgreSQL's programs: in `$CASEHOOK_PG_BIN`, else the highest version under
//!    `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else on `PATH`.
//! 2. It removes scratch directories of test processes that have died, then runs
//!    `initdb -A trust -U postgres --no-sync -E UTF8 --no-locale` into
//!    `<temp>/casehook-pg-test/<pid>/data`.
//! 3. It runs `postgres` as a child process (not a daemon) on `127.0.0.1` and a free port,
//!    durability switched off for speed, output in `<temp>/casehook-pg-test/<pid>/server.log`,
//!    and polls with `pg_isready` (or `psql -c 'select 1'`) for up to 30 s.
//! 4. It stops the server and removes the scratch directory when the test process exits
//!    (an `atexit` hook: libtest ends with `exit`). Should the process die from a signal
//!    instead, Linux kills the server with it (`PR_SET_PDEATHSIG`) and the next run's sweep
//!    removes the directory.
//!
//! `initdb` and `postgres` refuse to run as root: as root, they run as the `postgres` system
//! account, which owns the scratch directory. Client programs (`createdb`) run as the caller.
//!
//! # Environment
//!
//! - `CASEHOOK_TEST_DATABASE_URL`: an existing server to use instead of starting one, as a
//!   superuser URL (`postgres://postgres@127.0.0.1:5432/postgres`). Databases are made on it
//!   with `psql` and dropped when the test process exits. Also the way to go with test runners
//!   that run each test in its own process (cargo-nextest), where a server per test is slow.
//! - `CASEHOOK_PG_BIN`: the directory holding `initdb`, `postgres`, `createdb`.
//! - `CASEHOOK_REQUIRE_POSTGRES=1`: panic instead of skipping when PostgreSQL is not installed
//!   (for CI, where a silently skipped suite would be a false green).
//!
//! Unix only; the orphan guard (`PR_SET_PDEATHSIG`) is Linux only. This crate must not depend
//! on a database driver: it drives PostgreSQL's own command-line programs.

// Babysitting a child process takes a few libc calls std does not offer: PR_SET_PDEATHSIG in a
// `pre_exec` hook, an `atexit` shutdown hook, `kill` to stop the server and probe stale pids,
// and `geteuid`/`getpwnam_r` to run the server as `postgres` under root. They all live in
// `sys.rs`, each unsafe block one call wide with its SAFETY comment.
#![allow(unsafe_code)]

mod external;
mod local;
mod scratch;
mod sys;
mod tools;

use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use external::ExternalServer;
use local::LocalServer;
use tools::Lookup;

const DATABASE_URL_VAR: &str = "CASEHOOK_TEST_DATABASE_URL";
const PG_BIN_VAR: &str = "CASEHOOK_PG_BIN";
const REQUIRE_VAR: &str = "CASEHOOK_REQUIRE_POSTGRES";

/// How many names to try when a database of that name already exists (an external server
/// that outlived an earlier process with our pid).
const NAME_ATTEMPTS: usize = 100;

/// Set once per process: the server, `None` when skipped, or why it could not start (kept so
/// every test fails with the same message instead of retrying a 30-second start).
static SERVER: OnceLock<Result<Option<PgServer>, String>> = OnceLock::new();

/// The process-wide throw-away PostgreSQL server, started on first use.
///
/// `None` when PostgreSQL is not installed, after printing a loud warning to stderr that the
/// PostgreSQL tests are SKIPPED; the warning bypasses libtest's output capture, so it shows
/// even though the tests pass.
///
/// # Panics
///
/// When PostgreSQL is installed but cannot start (the message carries its log), when
/// `CASEHOOK_TEST_DATABASE_URL` names an unreachable server, and when it is not installed
/// while `CASEHOOK_REQUIRE_POSTGRES=1` is set.
pub fn postgres() -> Option<&'static PgServer> {
    match SERVER.get_or_init(init) {
        Ok(server) => server.as_ref(),
        Err(message) => panic!("casehook-testkit: {message}"),
    }
}

/// A PostgreSQL server for tests: one this process started, or the one in
/// `CASEHOOK_TEST_DATABASE_URL`. Get it from [`postgres`].
#[derive(Debug)]
pub struct PgServer {
    backend: Backend,
    next_database: AtomicU64,
}

#[derive(Debug)]
enum Backend {
    Local(LocalServer),
    External(ExternalServer),
}

impl PgServer {
    /// The TCP port the server listens on, on 127.0.0.1 unless an external URL says otherwise.
    pub fn port(&self) -> u16 {
        match &self.backend {
            Backend::Local(server) => server.port,
            Backend::External(server) => server.port,
        }
    }

    /// Creates a new, empty database with a unique name and returns its URL, e.g.
    /// `postgres://postgres@127.0.0.1:PORT/casehook_test_4711_7` (trust auth, no password).
    ///
    /// # Panics
    ///
    /// When `createdb` (or `psql`, for an external server) fails; the message carries its
    /// stderr.
    pub fn create_database(&self) -> String {
        let mut last_error = String::new();
        for _ in 0..NAME_ATTEMPTS {
            let number = self.next_database.fetch_add(1, Ordering::Relaxed);
            let name = format!("casehook_test_{}_{number}", std::process::id());
            let created = match &self.backend {
                Backend::Local(server) => server.create_database(&name),
                Backend::External(server) => server.create_database(&name),
            };
            match created {
                Ok(()) => return self.url(&name),
                Err(stderr) if stderr.contains("already exists") => last_error = stderr,
                Err(stderr) => {
                    panic!("casehook-testkit: could not create database {name}: {stderr}")
                }
            }
        }
        panic!("casehook-testkit: every database name tried already exists: {last_error}")
    }

    fn url(&self, database: &str) -> String {
        match &self.backend {
            Backend::Local(server) => server.url(database),
            Backend::External(server) => server.url(database),
        }
    }

    fn shutdown(&self) {
        match &self.backend {
            Backend::Local(server) => server.shutdown(),
            Backend::External(server) => server.shutdown(),
        }
    }
}

fn init() -> Result<Option<PgServer>, String> {
    let backend = if let Some(url) = non_empty_var(DATABASE_URL_VAR) {
        Backend::External(ExternalServer::connect(&url)?)
    } else {
        match tools::find_server()? {
            Lookup::Found(tools) => Backend::Local(LocalServer::start(tools)?),
            Lookup::NotInstalled(reason) if required() => {
                return Err(format!(
                    "{REQUIRE_VAR} is set, but PostgreSQL is not installed: {reason}. {}",
                    HOW_TO_INSTALL
                ));
            }
            Lookup::NotInstalled(reason) => {
                warn_skipped(&reason);
                return Ok(None);
            }
        }
    };
    sys::at_exit(shutdown_at_exit)
        .map_err(|e| format!("could not register the shutdown hook: {e}"))?;
    Ok(Some(PgServer {
        backend,
        next_database: AtomicU64::new(1),
    }))
}

const HOW_TO_INSTALL: &str = "Install it (`apt-get install postgresql`), point CASEHOOK_PG_BIN \
                              at its bin directory, or set CASEHOOK_TEST_DATABASE_URL to an \
                              existing server";

/// Runs as an `atexit` hook, where unwinding would abort the process: panics are contained.
extern "C" fn shutdown_at_exit() {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(Ok(Some(server))) = SERVER.get() {
            server.shutdown();
        }
    }));
}

fn required() -> bool {
    non_empty_var(REQUIRE_VAR).is_some_and(|value| matches!(value.as_str(), "1" | "true" | "yes"))
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Writes straight to the stderr stream: `eprintln!` inside a test is captured by libtest and
/// shown only if the test fails, and a skipped test passes.
fn warn_skipped(reason: &str) {
    let rule = "=".repeat(78);
    let banner = format!(
        "\n{rule}\nWARNING: casehook-testkit: PostgreSQL tests are SKIPPED: {reason}.\n\
         {HOW_TO_INSTALL}. Set {REQUIRE_VAR}=1 to make this an error.\n{rule}\n\n"
    );
    let _ = std::io::stderr().lock().write_all(banner.as_bytes());
}
