//! Where the SQLite database goes: `--data-dir`, `CASEHOOK_DATA_DIR`, or `./casehook-data`.

use std::path::Path;

use crate::harness::{Server, casehook, path_str, run_to_exit};

const DB_FILE: &str = "casehook.db";

fn assert_database_in(dir: &Path) {
    let file = dir.join(DB_FILE);
    assert!(
        file.is_file() && file.metadata().is_ok_and(|m| m.len() > 0),
        "no database at {}",
        file.display()
    );
}

#[test]
fn data_dir_flag_places_the_database_and_creates_missing_directories() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("nested").join("data");

    let mut server = Server::start(&[], &["--data-dir", path_str(&dir)], &[]);
    server.admin_key();
    assert_database_in(&dir);
    server.stop();
}

#[test]
fn data_dir_environment_variable_places_the_database() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("from-env");

    let mut server = Server::start(&[], &[], &[("CASEHOOK_DATA_DIR", path_str(&dir))]);
    server.admin_key();
    assert_database_in(&dir);
    server.stop();
}

#[test]
fn data_dir_flag_wins_over_the_environment() {
    let root = tempfile::tempdir().expect("temp dir");
    let flag_dir = root.path().join("flag");
    let env_dir = root.path().join("env");

    let mut server = Server::start(
        &[],
        &["--data-dir", path_str(&flag_dir)],
        &[("CASEHOOK_DATA_DIR", path_str(&env_dir))],
    );
    server.stop();
    assert_database_in(&flag_dir);
    assert!(
        !env_dir.exists(),
        "the environment's directory was used too"
    );
}

#[test]
fn migrate_prepares_the_sqlite_database_in_the_data_dir() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("data");

    let mut migrate = casehook();
    migrate.args(["migrate", "--data-dir", path_str(&dir)]);
    let output = run_to_exit(migrate);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "migrate failed: {output:?}");
    assert!(
        stdout.contains(" migration(s) applied") && !stdout.starts_with("0 "),
        "stdout:\n{stdout}"
    );
    assert_database_in(&dir);

    // Migrating creates no workspace: the first `serve` still makes one and prints its key.
    let mut server = Server::sqlite(&dir);
    server.admin_key();
    server.stop();
}
