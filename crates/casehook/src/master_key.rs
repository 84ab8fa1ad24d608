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
use casehook_store::{KeyCheck, Store};

const FILE: &str = "master.key";
/// A rotation's new key, written before the database is re-sealed and renamed over
/// `master.key` after: if the process dies in between, the next start finds the key that
/// opens the database among the two.
const NEXT_FILE: &str = "master.key.next";
/// Set (with `CASEHOOK_MASTER_KEY`) to choose the new key of a rotation.
const NEW_KEY_ENV: &str = "CASEHOOK_NEW_MASTER_KEY";

/// Load the key and check it against the database (storing its check value on a database
/// that has none), finishing an interrupted rotation if need be.
pub async fn load_checked(data_dir: &Path, store: &Store) -> anyhow::Result<MasterKey> {
    let key = load(data_dir)?;
    match store.check_master_key(&key).await? {
        KeyCheck::Matches | KeyCheck::Installed => Ok(key),
        KeyCheck::Mismatch {
            expected_fingerprint,
        } => {
            let next = data_dir.join(NEXT_FILE);
            if std::env::var_os("CASEHOOK_MASTER_KEY").is_none()
                && let Ok(encoded) = std::fs::read_to_string(&next)
                && let Ok(candidate) = MasterKey::parse(&encoded)
                && store.check_master_key(&candidate).await? == KeyCheck::Matches
            {
                std::fs::rename(&next, data_dir.join(FILE)).with_context(|| {
                    format!("finishing the key rotation: renaming {}", next.display())
                })?;
                tracing::warn!(
                    fingerprint = candidate.fingerprint(),
                    "finished an interrupted master-key rotation"
                );
                return Ok(candidate);
            }
            anyhow::bail!(
                "the master key (fingerprint {}) is not the one this database's secrets are sealed with (fingerprint {expected_fingerprint}): set CASEHOOK_MASTER_KEY to that key, or restore {} in the data directory",
                key.fingerprint(),
                FILE
            )
        }
    }
}

/// `casehook secrets rotate-master-key`: re-seal every secret under a new key, in one
/// transaction, and put the new key in place. Run it with the servers stopped: a running
/// server keeps the old key until it restarts.
pub async fn rotate(data_dir: &Path, store: &Store) -> anyhow::Result<()> {
    let old = load_checked(data_dir, store).await?;
    let from_env = std::env::var_os("CASEHOOK_MASTER_KEY").is_some();
    let (new, encoded, chosen) = match std::env::var(NEW_KEY_ENV) {
        Ok(encoded) => (
            MasterKey::parse(&encoded).context(NEW_KEY_ENV)?,
            encoded.trim().to_owned(),
            true,
        ),
        Err(_) => {
            let (key, encoded) = MasterKey::generate();
            (key, encoded, false)
        }
    };
    if new.fingerprint() == old.fingerprint() {
        anyhow::bail!("the new master key is the current one; nothing to rotate");
    }
    let next = data_dir.join(NEXT_FILE);
    if !from_env {
        write_private(&next, &encoded)?;
    }
    let resealed = store
        .reseal_all(&old, &new)
        .await
        .context("re-sealing the secrets (nothing was changed)")?;
    if from_env {
        println!(
            "Re-sealed {} value(s) under the new master key (fingerprint {}).",
            resealed.values,
            new.fingerprint()
        );
        if chosen {
            println!(
                "Set CASEHOOK_MASTER_KEY to the value of {NEW_KEY_ENV} for every casehook process."
            );
        } else {
            println!(
                "Set CASEHOOK_MASTER_KEY to this new key for every casehook process (shown only now):"
            );
            println!();
            println!("    {encoded}");
            println!();
        }
    } else {
        std::fs::rename(&next, data_dir.join(FILE))
            .with_context(|| format!("renaming {} into place", next.display()))?;
        if let Ok(dir) = std::fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        println!(
            "Re-sealed {} value(s) under the new master key (fingerprint {}), now in {}.",
            resealed.values,
            new.fingerprint(),
            data_dir.join(FILE).display()
        );
    }
    println!("Restart every casehook process so they use the new key.");
    Ok(())
}

fn write_private(path: &Path, encoded: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(encoded.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

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
