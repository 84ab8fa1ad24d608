//! The master key that seals secrets at rest: from `CASEHOOK_MASTER_KEY`, or from the key file
//! `master.key` in the data directory, created (mode 0600) on the first start.
//!
//! Several processes sharing a PostgreSQL database must share the key: set the same
//! `CASEHOOK_MASTER_KEY` for all of them, or give them the same data directory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use casehook_core::sealed::MasterKey;

const FILE: &str = "master.key";

pub fn load(data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Ok(encoded) = std::env::var("CASEHOOK_MASTER_KEY") {
        return MasterKey::parse(&encoded).context("CASEHOOK_MASTER_KEY");
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(encoded) => {
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the master key file is readable by others; chmod 600 it");
            }
            MasterKey::parse(&encoded)
                .with_context(|| format!("the master key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("reading the master key file {}", path.display())),
    }
}

/// Create the key file; if another process created it first, use theirs. The key is
/// written to a private temporary file and then linked into place, so no process ever reads
/// a half-written key.
fn create(path: &Path) -> anyhow::Result<MasterKey> {
    let (key, encoded) = MasterKey::generate();
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(encoded.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), fingerprint = key.fingerprint(), "created the master key for secrets at rest; back it up");
            Ok(key)
        }
        // Another process starting at the same moment got there first: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let encoded = std::fs::read_to_string(path)?;
            MasterKey::parse(&encoded)
                .with_context(|| format!("the master key file {}", path.display()))
        }
        Err(e) => {
            Err(e).with_context(|| format!("creating the master key file {}", path.display()))
        }
    }
}
