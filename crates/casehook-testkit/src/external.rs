//! An existing server named by `CASEHOOK_TEST_DATABASE_URL`: databases are made on it with
//! `psql` through that URL, and the ones this process made are dropped again when it exits.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};

use crate::{DATABASE_URL_VAR, tools};

/// PostgreSQL's port when a URL names none.
const DEFAULT_PORT: u16 = 5432;

#[derive(Debug)]
pub(crate) struct ExternalServer {
    pub(crate) port: u16,
    url: ServerUrl,
    psql: PathBuf,
    /// Dropped at exit, so a developer's long-lived server does not fill up with test data.
    created: Mutex<Vec<String>>,
}

impl ExternalServer {
    /// Checks that the server answers (`select 1`) so a bad URL fails once, clearly.
    pub(crate) fn connect(raw_url: &str) -> Result<Self, String> {
        let url = ServerUrl::parse(raw_url)?;
        let psql = tools::find_client("psql").ok_or_else(|| {
            format!(
                "{DATABASE_URL_VAR} is set, but no psql client was found (looked in \
                 CASEHOOK_PG_BIN, /usr/lib/postgresql/*/bin and PATH); install \
                 postgresql-client"
            )
        })?;
        let server = Self {
            port: url.port,
            url,
            psql,
            created: Mutex::new(Vec::new()),
        };
        server.psql(&["-c", "select 1"]).map_err(|stderr| {
            format!("cannot reach the server in {DATABASE_URL_VAR}={raw_url}: {stderr}")
        })?;
        Ok(server)
    }

    /// `CREATE DATABASE` through the configured URL; returns psql's stderr on failure.
    pub(crate) fn create_database(&self, name: &str) -> Result<(), String> {
        self.psql(&["-c", &format!("CREATE DATABASE \"{name}\"")])?;
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
        Ok(())
    }

    pub(crate) fn url(&self, database: &str) -> String {
        self.url.with_database(database)
    }

    /// Drops this process's databases, disconnecting whoever still uses them (`WITH (FORCE)`
    /// needs PostgreSQL 13). Best effort and never panics: it runs inside the `atexit` hook.
    pub(crate) fn shutdown(&self) {
        let created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if created.is_empty() {
            return;
        }
        // One `-c` per statement: each runs in its own transaction, as DROP DATABASE requires.
        let mut command = self.command();
        for name in created.iter() {
            command
                .arg("-c")
                .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
        let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.psql);
        // No ~/.psqlrc, never prompt for a password, stop at the first error.
        command
            .args(["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&self.url.raw)
            .stdin(Stdio::null());
        command
    }

    fn psql(&self, args: &[&str]) -> Result<(), String> {
        let output: Output = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("could not run {}: {e}", self.psql.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// A `postgres://` URL split around its database name, so other databases' URLs can be made
/// from it: `postgres://user@host:5432/postgres?sslmode=disable` →
/// `postgres://user@host:5432/<name>?sslmode=disable`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUrl {
    raw: String,
    /// Scheme and authority: `postgres://user@host:5432`.
    prefix: String,
    /// Empty, or `?` and the parameters.
    query: String,
    port: u16,
}

impl ServerUrl {
    fn parse(raw: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("{DATABASE_URL_VAR}={raw} is not usable: {why}");
        let (scheme, rest) = raw
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .ok_or_else(|| invalid("expected postgres://user@host:port/database"))?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, format!("?{query}")),
            None => (rest, String::new()),
        };
        let authority = location.split('/').next().unwrap_or_default();
        let host_and_port = authority.rsplit('@').next().unwrap_or_default();
        // Skip an IPv6 literal's colons: `[::1]:5433`.
        let after_host = host_and_port.rsplit(']').next().unwrap_or_default();
        let port = match after_host.rsplit_once(':') {
            Some((_, port)) if !port.is_empty() => port
                .parse()
                .map_err(|_| invalid("the port is not a number"))?,
            _ => DEFAULT_PORT,
        };
        Ok(Self {
            raw: raw.to_owned(),
            prefix: format!("{scheme}://{authority}"),
            query,
            port,
        })
    }

    fn with_database(&self, database: &str) -> String {
        format!("{}/{database}{}", self.prefix, self.query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> ServerUrl {
        ServerUrl::parse(raw).expect("a valid URL")
    }

    #[test]
    fn database_is_replaced_and_port_read() {
        let url = parse("postgres://postgres@127.0.0.1:5433/postgres");
        assert_eq!(url.port, 5433);
        assert_eq!(
            url.with_database("t_1"),
            "postgres://postgres@127.0.0.1:5433/t_1"
        );
    }

    #[test]
    fn query_and_password_survive() {
        let url = parse("postgresql://u:p%40ss@db.local/main?sslmode=disable");
        assert_eq!(url.port, 5432);
        assert_eq!(
            url.with_database("t"),
            "postgresql://u:p%40ss@db.local/t?sslmode=disable"
        );
    }

    #[test]
    fn ipv6_host_without_port_gets_the_default() {
        assert_eq!(parse("postgres://[::1]/x").port, 5432);
        assert_eq!(parse("postgres://[::1]:6000").port, 6000);
    }

    #[test]
    fn other_schemes_are_rejected() {
        assert!(ServerUrl::parse("mysql://root@localhost/x").is_err());
        assert!(ServerUrl::parse("127.0.0.1:5432").is_err());
    }
}
