//! Incoming webhooks across a crash: `casehook serve` is killed (SIGKILL) in the middle of a
//! burst of requests to an inbound hook. After a restart, every acknowledged request has its
//! case; and when the senders retry every request with its idempotency key (as senders do
//! after a failed delivery), each key ends up with exactly one case: answered requests are
//! answered again from the first answer, unanswered ones are processed now.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{create_form, create_hook, list_cases};
use crate::harness::{Server, request_with};

/// Concurrent senders during the burst.
const SENDERS: usize = 16;
/// Acknowledged requests before the kill, so the burst is well under way.
const ACKS_BEFORE_KILL: usize = 60;
/// Upper bound on the burst, should the kill never come.
const BURST_LIMIT: Duration = Duration::from_secs(30);

fn send(
    addr: std::net::SocketAddr,
    path: &str,
    key: &str,
) -> std::io::Result<crate::harness::Response> {
    let body = json!({"note": key});
    request_with(addr, "POST", path, &[("Idempotency-Key", key)], Some(&body))
}

/// What one sender tried: every key it sent, and the case number of those answered 200.
fn sender(
    addr: std::net::SocketAddr,
    path: &str,
    id: usize,
    start: &Barrier,
    acked: &AtomicUsize,
) -> (Vec<String>, BTreeMap<String, i64>) {
    let (mut tried, mut answered) = (Vec::new(), BTreeMap::new());
    start.wait();
    let deadline = Instant::now() + BURST_LIMIT;
    for n in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let key = format!("delivery-{id}-{n}");
        tried.push(key.clone());
        let Ok(response) = send(addr, path, &key) else {
            break;
        };
        assert_eq!(response.status, 200, "{key}: {}", response.body);
        let number = response.json()["case"]["number"]
            .as_i64()
            .expect("the answer names the case");
        answered.insert(key, number);
        acked.fetch_add(1, Ordering::SeqCst);
    }
    (tried, answered)
}

#[test]
fn a_killed_server_keeps_every_answered_inbound_request_and_retries_make_no_duplicates() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut server = Server::sqlite(dir.path());
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Crash orders");
    let path = create_hook(
        server.addr,
        &key,
        &json!({"name": "crash", "form_id": form}),
    );

    let start = Arc::new(Barrier::new(SENDERS + 1));
    let acked = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            let (start, acked, path, addr) =
                (start.clone(), acked.clone(), path.clone(), server.addr);
            std::thread::spawn(move || sender(addr, &path, id, &start, &acked))
        })
        .collect();
    start.wait();
    let deadline = Instant::now() + BURST_LIMIT;
    while acked.load(Ordering::SeqCst) < ACKS_BEFORE_KILL && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop_with(libc::SIGKILL);
    let mut tried = Vec::new();
    let mut answered = BTreeMap::new();
    for s in senders {
        let (t, a) = s.join().expect("a sender does not panic");
        tried.extend(t);
        answered.extend(a);
    }
    assert!(
        answered.len() >= ACKS_BEFORE_KILL,
        "the burst was under way"
    );

    let restarted = Server::sqlite(dir.path());
    let stored: BTreeMap<i64, Value> = list_cases(restarted.addr, &key)
        .into_iter()
        .map(|c| (c["number"].as_i64().expect("a number"), c))
        .collect();
    for (k, number) in &answered {
        let case = stored
            .get(number)
            .unwrap_or_else(|| panic!("{k}: case #{number} was answered but lost"));
        assert_eq!(case["data"]["note"], json!(k));
    }

    // The senders retry everything they sent.
    for k in &tried {
        let response = send(restarted.addr, &path, k).expect("the restarted server answers");
        assert_eq!(response.status, 200, "{k}: {}", response.body);
        let number = response.json()["case"]["number"]
            .as_i64()
            .expect("a case number");
        if let Some(first) = answered.get(k) {
            assert_eq!(
                number, *first,
                "{k}: a retry is answered with the first case"
            );
        }
    }
    let cases = list_cases(restarted.addr, &key);
    assert_eq!(
        cases.len(),
        tried.len(),
        "exactly one case per idempotency key"
    );
    let notes: std::collections::BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| c["data"]["note"].as_str())
        .collect();
    assert_eq!(notes.len(), tried.len(), "no key has two cases");
}
