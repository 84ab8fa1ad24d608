//! Start-up failures: a non-zero exit and a message that tells the operator what to fix.

use std::net::TcpListener;
use std::process::Output;

use crate::harness::{casehook, free_port, path_str, run_to_exit};

fn assert_failed_saying(output: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "exited successfully; stderr:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn unsupported_database_url_is_refused_by_serve_and_migrate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("127.0.0.1:{}", free_port());

    let mut serve = casehook();
    serve.args(["serve", "--listen", &listen, "--database-url", "mysql://x"]);
    serve.args(["--data-dir", path_str(dir.path())]);
    let output = run_to_exit(serve);
    assert_failed_saying(&output, &["mysql://x", "unsupported database URL"]);

    let mut migrate = casehook();
    migrate.args(["migrate", "--database-url", "mysql://x"]);
    let output = run_to_exit(migrate);
    assert_failed_saying(&output, &["mysql://x", "unsupported database URL"]);
}

#[test]
fn unreachable_postgres_is_reported_without_its_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens on a port we just freed.
    let url = format!(
        "postgres://casehook:hunter2@127.0.0.1:{}/casehook",
        free_port()
    );
    let mut serve = casehook();
    serve.args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())]);
    serve.args(["--database-url", &url, "--data-dir", path_str(dir.path())]);
    let output = run_to_exit(serve);
    let stderr = assert_failed_saying(&output, &["opening the database", "casehook:***@127.0.0.1"]);
    assert!(
        !stderr.contains("hunter2"),
        "the password leaked:\n{stderr}"
    );
}

#[test]
fn listen_address_in_use_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();

    let mut serve = casehook();
    serve.args([
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        path_str(dir.path()),
    ]);
    let output = run_to_exit(serve);
    assert_failed_saying(&output, &[&format!("cannot listen on {addr}")]);
    drop(taken);
}

#[test]
fn malformed_listen_address_is_a_usage_error() {
    let mut serve = casehook();
    serve.args(["serve", "--listen", "not-an-address"]);
    let output = run_to_exit(serve);
    assert_eq!(output.status.code(), Some(2), "clap's usage-error status");
    assert_failed_saying(&output, &["--listen", "not-an-address"]);
}
