//! Finding PostgreSQL's programs: the server's (`initdb`, `postgres`) and the clients'
//! (`createdb`, `psql`, `pg_isready`). Looks only; runs nothing.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::PG_BIN_VAR;

/// Where Debian and Ubuntu install each major version: `/usr/lib/postgresql/<version>/bin`.
const DEBIAN_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// The programs needed to run a private server and make databases on it.
#[derive(Debug, Clone)]
pub(crate) struct ServerTools {
    pub(crate) bin_dir: PathBuf,
    pub(crate) initdb: PathBuf,
    pub(crate) postgres: PathBuf,
    pub(crate) createdb: PathBuf,
    /// Readiness is probed with `pg_isready` when present, else with `psql`.
    pub(crate) probe: Probe,
}

#[derive(Debug, Clone)]
pub(crate) enum Probe {
    PgIsReady(PathBuf),
    Psql(PathBuf),
}

/// The outcome of looking for a server installation.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(ServerTools),
    /// PostgreSQL is not (completely) installed; the reason says what is missing.
    NotInstalled(String),
}

/// Finds the server programs: in `CASEHOOK_PG_BIN` when set (an error if they are not
/// there: that is a broken setting, not a missing install), else in the highest version under
/// `/usr/lib/postgresql/*/bin`, else on `PATH`.
pub(crate) fn find_server() -> Result<Lookup, String> {
    let bin_dir = match env_dir(PG_BIN_VAR) {
        Some(dir) => {
            if executable_in(&dir, "initdb").is_none() {
                return Err(format!(
                    "{PG_BIN_VAR}={} has no executable initdb; point it at PostgreSQL's bin \
                     directory (the one holding initdb, postgres and createdb)",
                    dir.display()
                ));
            }
            dir
        }
        None => {
            let found = versioned_dirs()
                .into_iter()
                .chain(path_dirs())
                .find(|dir| executable_in(dir, "initdb").is_some());
            match found {
                Some(dir) => dir,
                None => {
                    return Ok(Lookup::NotInstalled(format!(
                        "no initdb in {DEBIAN_VERSIONS_DIR}/*/bin or on PATH, and {PG_BIN_VAR} \
                         is not set"
                    )));
                }
            }
        }
    };
    let missing = |name: &str| {
        Lookup::NotInstalled(format!(
            "found initdb in {} but no {name}",
            bin_dir.display()
        ))
    };
    // initdb itself insists on `postgres` sitting next to it.
    let Some(postgres) = executable_in(&bin_dir, "postgres") else {
        return Ok(missing("postgres next to it"));
    };
    let Some(createdb) = find_client_near(&bin_dir, "createdb") else {
        return Ok(missing("createdb anywhere"));
    };
    let probe = if let Some(path) = find_client_near(&bin_dir, "pg_isready") {
        Probe::PgIsReady(path)
    } else if let Some(path) = find_client_near(&bin_dir, "psql") {
        Probe::Psql(path)
    } else {
        return Ok(missing("pg_isready or psql anywhere"));
    };
    Ok(Lookup::Found(ServerTools {
        initdb: bin_dir.join("initdb"),
        postgres,
        createdb,
        probe,
        bin_dir,
    }))
}

/// Finds a client program with the same search order as the server's programs.
pub(crate) fn find_client(name: &str) -> Option<PathBuf> {
    env_dir(PG_BIN_VAR)
        .into_iter()
        .chain(versioned_dirs())
        .chain(path_dirs())
        .find_map(|dir| executable_in(&dir, name))
}

/// Prefers the client of the same installation as the server, then searches as usual.
fn find_client_near(bin_dir: &Path, name: &str) -> Option<PathBuf> {
    executable_in(bin_dir, name).or_else(|| find_client(name))
}

fn env_dir(var: &str) -> Option<PathBuf> {
    env::var_os(var)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn versioned_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(DEBIAN_VERSIONS_DIR) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name())?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version directory.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default()
}

fn executable_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    let metadata = fs::metadata(&path).ok()?;
    (metadata.is_file() && metadata.permissions().mode() & 0o111 != 0).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let mut versions = ["9.6", "15", "10", "17"]
            .map(|name| parse_version(OsStr::new(name)).unwrap_or_default());
        versions.sort();
        assert_eq!(versions, [vec![9, 6], vec![10], vec![15], vec![17]]);
    }

    #[test]
    fn non_version_directories_are_ignored() {
        assert_eq!(parse_version(OsStr::new("common")), None);
        assert_eq!(parse_version(OsStr::new("15-beta")), None);
    }
}
