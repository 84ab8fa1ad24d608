//! API-call fields and secrets with real processes: a scheduled field keeps running after the
//! server restarts (its next run is in the database, not in memory), and
//! `casehook secrets rotate-master-key` re-seals every secret so that a restarted server
//! still calls APIs with them, while a server given the old key refuses to start.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, casehook, get, path_str, post, run_to_exit};

/// Let API calls reach the stub on 127.0.0.1.
const ENV: &[(&str, &str)] = &[
    ("CASEHOOK_ALLOW_CIDRS", "127.0.0.0/8"),
    ("CASEHOOK_POLL_INTERVAL_MS", "100"),
];

/// How long a test waits for something that should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(20);

/// A tiny JSON API on a real socket: answers every request with `{"score": n}` (n counts
/// requests) and records each request's `Authorization` header.
struct Stub {
    url: String,
    hits: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the stub's address")
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let (h, a) = (hits.clone(), authorizations.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                a.lock().expect("lock").push(auth);
                let count = h.fetch_add(1, Ordering::SeqCst) + 1;
                let body = json!({"score": count}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            url,
            hits,
            authorizations,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn wait_for_hits(&self, at_least: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.hits() < at_least {
            assert!(
                Instant::now() < deadline,
                "the stub got {} request(s), waited for {at_least}",
                self.hits()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Server {
    let mut all = ENV.to_vec();
    all.extend_from_slice(envs);
    Server::start(&[], &["--data-dir", path_str(data_dir)], &all)
}

fn created(response: std::io::Result<crate::harness::Response>, what: &str) -> Value {
    let response = response.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert_eq!(response.status, 201, "{what}: {}", response.body);
    response.json()
}

#[test]
fn scheduled_field_keeps_running_after_a_restart() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("a data directory");
    let mut server = start(dir.path(), &[]);
    let key = server.admin_key();
    let form = created(
        post(
            server.addr,
            "/api/v1/forms",
            Some(&key),
            &json!({
                "name": "Accounts",
                "fields": [
                    {"key": "account", "type": "text"},
                    {"key": "score", "type": "api_call", "trigger": "scheduled",
                     "schedule": "* * * * * *",
                     "api_config": {"url": format!("{}/score/{{data.account}}", stub.url),
                                    "response_mapping": "$.score"}}
                ]
            }),
        ),
        "form",
    );
    let form_id = form["id"].as_str().expect("a form id");
    created(
        post(
            server.addr,
            "/api/v1/cases",
            Some(&key),
            &json!({"form_id": form_id, "data": {"account": "A-1"}}),
        ),
        "case",
    );
    stub.wait_for_hits(1);
    server.stop();
    let before_restart = stub.hits();
    // Runs fall due while the server is down; the restarted server picks the schedule up
    // from the database.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        stub.hits(),
        before_restart,
        "nothing runs while the server is down"
    );
    let server = start(dir.path(), &[]);
    stub.wait_for_hits(before_restart + 1);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let case = get(server.addr, "/api/v1/cases/1", Some(&key))
            .expect("the case")
            .json();
        if case["data"]["score"].as_u64().unwrap_or(0) > before_restart as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the score was not refreshed after the restart: {case}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rotate(data_dir: &Path) -> String {
    let mut command = casehook();
    command
        .args([
            "secrets",
            "rotate-master-key",
            "--data-dir",
            path_str(data_dir),
        ])
        .env_remove("CASEHOOK_MASTER_KEY");
    let output = run_to_exit(command);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "rotate-master-key failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn rotating_the_master_key_keeps_every_secret_usable() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().expect("a data directory");
    let mut server = start(dir.path(), &[]);
    let key = server.admin_key();
    let addr = server.addr;
    created(
        post(
            addr,
            "/api/v1/secrets",
            Some(&key),
            &json!({"name": "bureau", "value": "bureau-token-77"}),
        ),
        "secret",
    );
    created(
        post(
            addr,
            "/api/v1/connections",
            Some(&key),
            &json!({
                "name": "crm", "base_url": stub.url,
                "auth": {"type": "basic", "username": "casehook", "password": "crm-pass-55"},
                "operations": {"score": {"path": "/score/{data.account}"}}
            }),
        ),
        "connection",
    );
    let endpoint = created(
        post(
            addr,
            "/api/v1/endpoints",
            Some(&key),
            &json!({"name": "audit", "url": format!("{}/hook", stub.url),
                    "subscriptions": {"event_types": ["case.created"]}}),
        ),
        "endpoint",
    );
    let endpoint_id = endpoint["id"].as_str().expect("an endpoint id").to_owned();
    let form = created(
        post(
            addr,
            "/api/v1/forms",
            Some(&key),
            &json!({
                "name": "Accounts",
                "fields": [
                    {"key": "account", "type": "text"},
                    {"key": "direct", "type": "api_call", "trigger": "manual",
                     "api_config": {"url": format!("{}/direct", stub.url),
                                    "auth": {"type": "bearer", "token": "{secret.bureau}"}}},
                    {"key": "via_crm", "type": "api_call", "trigger": "manual",
                     "connection": "crm", "operation": "score"}
                ]
            }),
        ),
        "form",
    );
    let form_id = form["id"].as_str().expect("a form id");
    created(
        post(
            addr,
            "/api/v1/cases",
            Some(&key),
            &json!({"form_id": form_id, "data": {"account": "A-1"}}),
        ),
        "case",
    );
    let signing_secret = get(
        addr,
        &format!("/api/v1/endpoints/{endpoint_id}/secret"),
        Some(&key),
    )
    .expect("the endpoint's secret")
    .json();
    server.stop();

    let old_key = std::fs::read_to_string(dir.path().join("master.key")).expect("the key file");
    let printed = rotate(dir.path());
    assert!(printed.contains("Re-sealed"), "{printed}");
    let new_key = std::fs::read_to_string(dir.path().join("master.key")).expect("the key file");
    assert_ne!(
        old_key.trim(),
        new_key.trim(),
        "the key file holds a new key"
    );
    assert!(!dir.path().join("master.key.next").exists());

    // A server still holding the old key refuses to start, naming the problem.
    let mut command = casehook();
    command
        .args([
            "serve",
            "--data-dir",
            path_str(dir.path()),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CASEHOOK_MASTER_KEY", old_key.trim());
    let refused = run_to_exit(command);
    assert!(
        !refused.status.success(),
        "a server with the old key must not start"
    );
    let said = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("not the one this database"), "{said}");

    let server = start(dir.path(), &[]);
    let addr = server.addr;
    for field in ["direct", "via_crm"] {
        let dry = post(
            addr,
            &format!("/api/v1/cases/1/api-calls/{field}/dry-run"),
            Some(&key),
            &json!({}),
        )
        .expect("a dry run");
        assert_eq!(dry.status, 200, "{field}: {}", dry.body);
        assert_eq!(dry.json()["error"], Value::Null, "{field}: {}", dry.body);
    }
    let seen = stub.authorizations.lock().expect("lock").clone();
    assert!(
        seen.contains(&"Bearer bureau-token-77".to_owned()),
        "{seen:?}"
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "casehook:crm-pass-55"
        )
    );
    assert!(seen.contains(&basic), "{seen:?}");
    let after = get(
        addr,
        &format!("/api/v1/endpoints/{endpoint_id}/secret"),
        Some(&key),
    )
    .expect("the endpoint's secret")
    .json();
    assert_eq!(
        after, signing_secret,
        "the endpoint's signing secret survived"
    );
}

#[test]
fn a_server_left_running_through_a_key_rotation_seals_nothing_until_restarted() {
    let dir = tempfile::tempdir().expect("a data directory");
    let mut server = start(dir.path(), &[]);
    let key = server.admin_key();
    created(
        post(
            server.addr,
            "/api/v1/secrets",
            Some(&key),
            &json!({"name": "before", "value": "sealed-under-the-old-key"}),
        ),
        "secret",
    );
    // The operator rotates without stopping the server first.
    rotate(dir.path());
    let refused = post(
        server.addr,
        "/api/v1/secrets",
        Some(&key),
        &json!({"name": "after", "value": "would-be-sealed-under-the-old-key"}),
    )
    .expect("an answer");
    assert_eq!(refused.status, 503, "{}", refused.body);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "master_key_rotated", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("restart it with the new key")),
        "{error}"
    );
    server.stop();

    let server = start(dir.path(), &[]);
    let listed = get(server.addr, "/api/v1/secrets", Some(&key))
        .expect("the secrets")
        .json();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["before"], "the refused secret was not half-written");
    created(
        post(
            server.addr,
            "/api/v1/secrets",
            Some(&key),
            &json!({"name": "after", "value": "sealed-under-the-new-key"}),
        ),
        "secret after the restart",
    );
}
