//! `--log-format json` writes one JSON object per stderr line, and no log line ever holds an
//! API key secret: not the admin key, not a key issued later, not a wrong key a client sent.

use serde_json::{Value, json};

use crate::api::forms_status;
use crate::harness::{Server, casehook, free_port, get, path_str, post, request, run_to_exit};

const WRONG_SECRET: &str = "chk_wrongsecret";

/// Requests that put secrets in front of the server: good keys, a wrong key, malformed
/// headers. Returns the secret of the key issued through the API.
fn exercise_secrets(server: &Server, admin_key: &str) -> String {
    let addr = server.addr;
    assert_eq!(forms_status(addr, admin_key), 200);
    let issued = post(
        addr,
        "/api/v1/api-keys",
        Some(admin_key),
        &json!({"name": "ci", "role": "member"}),
    )
    .expect("create api key");
    assert_eq!(issued.status, 201, "create api key: {}", issued.body);
    let member_key = issued.json()["key"]
        .as_str()
        .expect("issued key")
        .to_owned();
    assert_eq!(forms_status(addr, &member_key), 200);

    for _ in 0..3 {
        assert_eq!(forms_status(addr, WRONG_SECRET), 401);
    }
    let wrong_write = post(
        addr,
        "/api/v1/forms",
        Some(WRONG_SECRET),
        &json!({"name": "x"}),
    )
    .expect("post with a wrong key");
    assert_eq!(wrong_write.status, 401);
    // A route that does not exist, and one that fails validation, with the wrong key.
    assert_eq!(
        get(addr, "/api/v1/nowhere", Some(WRONG_SECRET))
            .expect("unknown route")
            .status,
        404
    );
    let bad = request(
        addr,
        "PATCH",
        "/api/v1/cases/%23999",
        Some(WRONG_SECRET),
        None,
    )
    .expect("patch with a wrong key");
    assert!(bad.status >= 400, "PATCH answered {}", bad.status);
    member_key
}

fn assert_no_secret(stderr: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !stderr.contains(secret),
            "the logs contain the secret {secret:?}:\n{stderr}"
        );
    }
}

fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
            assert!(
                value.is_object(),
                "stderr line is not a JSON object: {line}"
            );
            value
        })
        .collect()
}

#[test]
fn json_logs_are_json_lines_without_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(
        &["--log-format", "json"],
        &["--data-dir", path_str(dir.path())],
        &[],
    );
    let admin_key = server.admin_key();
    let member_key = exercise_secrets(&server, &admin_key);
    server.stop();
    let (_, stderr) = server.finished_output();

    let lines = json_lines(&stderr);
    let listening = lines
        .iter()
        .find(|line| line["message"] == "casehook is listening")
        .unwrap_or_else(|| panic!("no `listening` line in:\n{stderr}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["address"], server.addr.to_string());
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "casehook stopped"),
        "no `stopped` line in:\n{stderr}"
    );
    assert_no_secret(&stderr, &[&admin_key, &member_key, WRONG_SECRET]);
}

#[test]
fn log_format_from_the_environment_and_verbose_logs_hold_no_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(
        &[],
        &["--data-dir", path_str(dir.path())],
        &[("CASEHOOK_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let admin_key = server.admin_key();
    let member_key = exercise_secrets(&server, &admin_key);
    server.stop();
    let (_, stderr) = server.finished_output();

    let lines = json_lines(&stderr);
    assert!(
        lines.iter().any(|line| line["level"] == "DEBUG"),
        "RUST_LOG=debug had no effect:\n{stderr}"
    );
    assert_no_secret(&stderr, &[&admin_key, &member_key, WRONG_SECRET]);
}

#[test]
fn text_logs_hold_no_secrets_either() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::sqlite(dir.path());
    let admin_key = server.admin_key();
    let member_key = exercise_secrets(&server, &admin_key);
    server.stop();
    let (_, stderr) = server.finished_output();

    assert!(
        stderr.contains("casehook is listening"),
        "stderr:\n{stderr}"
    );
    assert_no_secret(&stderr, &[&admin_key, &member_key, WRONG_SECRET]);
}

#[test]
fn json_logs_stay_json_when_start_up_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut serve = casehook();
    serve.args(["--log-format", "json", "serve"]);
    serve.args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    serve.args([
        "--data-dir",
        path_str(dir.path()),
        "--database-url",
        "mysql://x",
    ]);
    let output = run_to_exit(serve);
    assert!(!output.status.success());

    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = json_lines(&stderr);
    assert!(
        lines
            .iter()
            .any(|line| line["level"] == "ERROR" && line.to_string().contains("mysql://x")),
        "the failure is not among the JSON lines:\n{stderr}"
    );
}
