//! The scratch directory of a private server, `<temp>/casehook-pg-test/<pid>/`, and the sweep
//! that removes the ones left behind by test processes that died without cleaning up.
//!
//! Layout: `data/` (the cluster, made by initdb), `server.log` (the server's stdout and
//! stderr), and the server's Unix socket and its lock file.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process;

use crate::sys::{self, User};

/// Directory under the system temp directory holding one scratch directory per process.
const BASE_NAME: &str = "casehook-pg-test";

/// `<temp>/casehook-pg-test`.
pub(crate) fn base_dir() -> PathBuf {
    std::env::temp_dir().join(BASE_NAME)
}

/// Sweeps stale scratch directories, then creates this process's (owned by `owner`, when
/// given, so a server dropped to that account can write its socket and lock file there).
pub(crate) fn prepare(owner: Option<User>) -> Result<PathBuf, String> {
    let base = base_dir();
    fs::create_dir_all(&base).map_err(|e| format!("could not create {}: {e}", base.display()))?;
    // Shared by every user's test runs, like /tmp itself. Only the owner can change the mode,
    // and another owner has already done so.
    let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o1777));
    sweep(&base);

    let dir = base.join(process::id().to_string());
    // Our pid is alive, so the sweep kept this one; it is a leftover of an earlier process
    // that had the same pid (common in containers, where pids restart at 1).
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| format!("could not remove stale {}: {e}", dir.display()))?;
    }
    fs::create_dir(&dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    if let Some(owner) = owner {
        std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid))
            .map_err(|e| format!("could not hand {} to the postgres user: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Removes `<base>/<pid>` for every pid that no longer runs. Best effort: a directory
/// another user owns, or one being removed concurrently, is left alone.
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid != process::id() && !sys::process_exists(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Where the server's cluster lives inside a scratch directory.
pub(crate) fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Where the server's output goes inside a scratch directory.
pub(crate) fn log_file(dir: &Path) -> PathBuf {
    dir.join("server.log")
}
