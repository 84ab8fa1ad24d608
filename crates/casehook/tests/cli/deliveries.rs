//! Delivery reliability with real processes: a `casehook serve` killed with SIGKILL while
//! deliveries are in flight and retries are pending loses nothing once restarted, and two
//! `serve` processes on one PostgreSQL deliver a burst once each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{create_case, create_form};
use crate::harness::{Server, path_str, post};

/// Let deliveries reach the receiver on 127.0.0.1, take back a dead worker's deliveries after
/// two seconds, and look for due work every 100 ms.
const ENV: &[(&str, &str)] = &[
    ("CASEHOOK_ALLOW_CIDRS", "127.0.0.0/8"),
    ("CASEHOOK_DELIVERY_LEASE_SECS", "2"),
    ("CASEHOOK_POLL_INTERVAL_MS", "100"),
];

/// What the receiver makes of its n-th request (0-based).
type Script = dyn Fn(usize) -> Reply + Send + Sync;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reply {
    Ok,
    Fail,
    Hang,
}

#[derive(Clone, Debug)]
struct Received {
    webhook_id: String,
    resource_id: String,
    reply: Reply,
    at: Instant,
}

/// The receiver's log and script, as its handler sees them.
type Shared = (Arc<Mutex<Vec<Received>>>, Arc<Script>);

/// A receiver on a real socket, served by a runtime on its own thread.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(script: Box<Script>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::from(script);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let state = (log.clone(), script);
        let app = axum::Router::new()
            .fallback(
                |axum::extract::State((log, script)): axum::extract::State<Shared>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let reply = {
                        let mut log = log.lock().expect("lock");
                        let reply = script(log.len());
                        log.push(Received {
                            webhook_id: headers
                                .get("webhook-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string(),
                            resource_id: envelope["resource_id"].as_str().unwrap_or("").to_string(),
                            reply,
                            at: Instant::now(),
                        });
                        reply
                    };
                    match reply {
                        Reply::Ok => axum::http::StatusCode::OK,
                        Reply::Fail => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            axum::http::StatusCode::OK
                        }
                    }
                },
            )
            .with_state(state);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            log,
            _runtime: runtime,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().expect("lock").clone()
    }

    /// Wait (at most 60 s) until `done` holds for what was received.
    fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached in 60 s after {} requests",
                received.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Resource ids that got a 200.
fn delivered(received: &[Received]) -> BTreeSet<String> {
    received
        .iter()
        .filter(|r| r.reply == Reply::Ok)
        .map(|r| r.resource_id.clone())
        .collect()
}

fn create_endpoint(addr: SocketAddr, key: &str, url: &str) {
    let body = json!({
        "name": "receiver",
        "url": url,
        "timeout_secs": 20,
        "subscriptions": {"event_types": ["case.created"]},
        "retry": {"schedule_secs": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "jitter": false},
    });
    let response = post(addr, "/api/v1/endpoints", Some(key), &body).expect("create endpoint");
    assert_eq!(response.status, 201, "create endpoint: {}", response.body);
}

fn serve(data_dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--data-dir", path_str(data_dir)];
    args.extend_from_slice(extra);
    Server::start(&[], &args, ENV)
}

#[test]
fn sigkill_with_deliveries_in_flight_and_retries_pending_loses_nothing() {
    const CASES: usize = 40;
    // The first five requests hang (in flight when the process dies), every third of the
    // rest fails (a retry is pending), the others succeed.
    let receiver = Receiver::start(Box::new(|n| match n {
        0..5 => Reply::Hang,
        n if n % 3 == 0 => Reply::Fail,
        _ => Reply::Ok,
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = serve(dir.path(), &[]);
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");
    create_endpoint(server.addr, &key, &receiver.url);
    let cases: BTreeSet<String> = (0..CASES)
        .map(|i| {
            let case = create_case(server.addr, &key, &form, &format!("case {i}"));
            case["id"].as_str().expect("id").to_owned()
        })
        .collect();
    receiver.wait_until("some deliveries and failures", |r| {
        r.len() >= 15 && r.iter().any(|x| x.reply == Reply::Fail)
    });
    server.signal(libc::SIGKILL);
    server.wait_exit();
    let before = delivered(&receiver.received());
    assert!(
        before.len() < CASES,
        "everything was delivered before the kill"
    );

    let restarted = serve(dir.path(), &[]);
    let received =
        receiver.wait_until("every case delivered", |r| delivered(r).is_superset(&cases));
    assert_eq!(delivered(&received), cases);
    // Retries of one delivery keep its webhook-id: per case, one id (the receiver can
    // deduplicate what at-least-once delivery repeats).
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &received {
        ids.entry(r.resource_id.as_str())
            .or_default()
            .insert(r.webhook_id.as_str());
    }
    assert!(ids.values().all(|set| set.len() == 1), "{ids:?}");
    drop(restarted);
}

#[test]
fn two_servers_on_one_postgres_deliver_a_burst_once_each() {
    const PER_SERVER: usize = 60;
    let Some(url) = casehook_testkit::postgres().map(|pg| pg.create_database()) else {
        return;
    };
    let receiver = Receiver::start(Box::new(|_| Reply::Ok));
    let dir = tempfile::tempdir().expect("temp dir");
    let first = serve(dir.path(), &["--database-url", &url]);
    let key = first.admin_key();
    let second = serve(dir.path(), &["--database-url", &url]);
    let form = create_form(first.addr, &key, "Claims");
    create_endpoint(first.addr, &key, &receiver.url);
    let creators: Vec<_> = [first.addr, second.addr]
        .into_iter()
        .map(|addr| {
            let (key, form) = (key.clone(), form.clone());
            std::thread::spawn(move || {
                (0..PER_SERVER)
                    .map(|i| {
                        create_case(addr, &key, &form, &format!("{i}"))["id"]
                            .as_str()
                            .expect("id")
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let cases: BTreeSet<String> = creators
        .into_iter()
        .flat_map(|c| c.join().expect("creator"))
        .collect();
    assert_eq!(cases.len(), 2 * PER_SERVER);
    receiver.wait_until("every case delivered", |r| delivered(r).is_superset(&cases));
    // Give a duplicate, if any, time to arrive.
    std::thread::sleep(Duration::from_millis(1500));
    let received = receiver.received();
    let ids: BTreeSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(received.len(), cases.len(), "duplicates arrived");
    assert_eq!(ids.len(), cases.len());
    drop((first, second));
}

#[test]
fn signing_secrets_are_sealed_at_rest_under_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = serve(dir.path(), &[]);
    let key = server.admin_key();
    let body = json!({"name": "crm", "url": "https://crm.example/hook", "auth": {"type": "bearer", "token": "tok-AT-REST-42"}});
    let created = post(server.addr, "/api/v1/endpoints", Some(&key), &body).expect("create");
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    server.stop();

    let key_file = dir.path().join("master.key");
    let mode = std::fs::metadata(&key_file)
        .expect("the key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");
    for entry in std::fs::read_dir(dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path == key_file {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        for plain in [secret.as_str(), "tok-AT-REST-42"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{plain} is readable in {}",
                path.display()
            );
        }
    }

    // The next start opens them with the same key.
    let server = serve(dir.path(), &[]);
    let id = created["id"].as_str().expect("id");
    let again = crate::harness::get(
        server.addr,
        &format!("/api/v1/endpoints/{id}/secret"),
        Some(&key),
    )
    .expect("secret");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["secret"], secret.as_str());
}

#[test]
fn api_and_worker_roles_split_the_work_on_one_postgres() {
    let Some(url) = casehook_testkit::postgres().map(|pg| pg.create_database()) else {
        return;
    };
    let receiver = Receiver::start(Box::new(|_| Reply::Ok));
    let dir = tempfile::tempdir().expect("temp dir");
    let api = serve(dir.path(), &["--database-url", &url, "--role", "api"]);
    let key = api.admin_key();
    let form = create_form(api.addr, &key, "Claims");
    create_endpoint(api.addr, &key, &receiver.url);
    let case = create_case(api.addr, &key, &form, "waits for a worker");
    std::thread::sleep(Duration::from_millis(800));
    assert!(receiver.received().is_empty(), "the api role delivered");

    let worker = serve(dir.path(), &["--database-url", &url, "--role", "worker"]);
    let got = receiver.wait_until("the worker delivers", |r| !delivered(r).is_empty());
    assert_eq!(got[0].resource_id, case["id"].as_str().expect("id"));
    let api_on_worker =
        crate::harness::get(worker.addr, "/api/v1/forms", Some(&key)).expect("answer");
    assert_eq!(api_on_worker.status, 404, "the worker serves no API");
    let ready = crate::harness::get(worker.addr, "/readyz", None).expect("readyz");
    assert_eq!(ready.status, 200);
    drop((api, worker));
}

#[test]
fn two_servers_split_an_endpoints_rate_limit() {
    const CASES: usize = 10;
    let Some(url) = casehook_testkit::postgres().map(|pg| pg.create_database()) else {
        return;
    };
    let receiver = Receiver::start(Box::new(|_| Reply::Ok));
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--database-url", &url, "--heartbeat-ms", "100"];
    let first = serve(dir.path(), &args);
    let key = first.admin_key();
    let second = serve(dir.path(), &args);
    for server in [&first, &second] {
        server.wait_for_stderr("workers=2");
    }
    let form = create_form(first.addr, &key, "Paced");
    let body = json!({
        "name": "paced receiver",
        "url": receiver.url,
        "subscriptions": {"event_types": ["case.created"]},
        "limits": {"rate_per_second": 2},
    });
    let response = post(first.addr, "/api/v1/endpoints", Some(&key), &body).expect("endpoint");
    assert_eq!(response.status, 201, "{}", response.body);
    // Events through both servers, so that both dispatch and deliver.
    for i in 0..CASES {
        let addr = [first.addr, second.addr][i % 2];
        create_case(addr, &key, &form, &format!("{i}"));
    }
    let received = receiver.wait_until("every case delivered", |r| r.len() >= CASES);
    // Each process sends at most one a second, so no stretch of 0.9 s holds more than two
    // (each process alone, at the endpoint's whole rate, would send two a second).
    let mut times: Vec<Instant> = received.iter().map(|r| r.at).collect();
    times.sort();
    for (i, start) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_millis(900))
            .count();
        assert!(
            within <= 2,
            "{within} deliveries within 0.9 s of delivery {i}: {:?}",
            times
                .iter()
                .map(|t| t.duration_since(times[0]))
                .collect::<Vec<_>>()
        );
    }
    drop((first, second));
}
