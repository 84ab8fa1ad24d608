//! Graceful shutdown: SIGTERM and SIGINT stop accepting, finish what is in flight, and exit
//! 0; nothing acknowledged is lost.
//!
//! To be sure a request is in flight when the signal arrives, one is sent with
//! `Expect: 100-continue` and its body held back: the server's `100 Continue` says the
//! handler is reading it. The burst of other creations around it is best effort: some are
//! answered, some find the server gone; every answer must be a success that was stored.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::api::{create_form, list_cases, new_case};
use crate::harness::{HeldRequest, Server, hold_post, post};

/// Concurrent clients creating cases while the signal arrives.
const CLIENTS: usize = 24;
/// Acknowledged creations before the signal is sent, so the burst is well under way.
const ACKS_BEFORE_SIGNAL: usize = 50;
/// Upper bound on the burst, should the server never stop.
const BURST_LIMIT: Duration = Duration::from_secs(30);

/// What one client saw: the statuses of answered requests, with the case number on a 201.
#[derive(Debug, Default)]
struct Seen {
    answers: Vec<(u16, Option<i64>)>,
}

fn client(addr: SocketAddr, key: &str, form: &str, start: &Barrier, acked: &AtomicUsize) -> Seen {
    let mut seen = Seen::default();
    start.wait();
    let deadline = Instant::now() + BURST_LIMIT;
    while Instant::now() < deadline {
        // An error means no answer: the server has stopped accepting.
        let Ok(response) = post(addr, "/api/v1/cases", Some(key), &new_case(form, "burst")) else {
            break;
        };
        let number = (response.status == 201)
            .then(|| response.json()["number"].as_i64())
            .flatten();
        if number.is_some() {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        seen.answers.push((response.status, number));
    }
    seen
}

/// Waits until the server has begun its graceful shutdown, and checks that the held
/// request keeps it alive; then completes the request, which must succeed. Its case number.
fn complete_held_request_during_shutdown(server: &mut Server, held: HeldRequest) -> i64 {
    server.wait_for_stderr("shutting down");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.is_running(),
        "the server exited with a request in flight"
    );
    let response = held.finish().expect("the in-flight request is answered");
    assert_eq!(response.status, 201, "in-flight request: {}", response.body);
    response.json()["number"].as_i64().expect("case number")
}

fn stored_numbers(data_dir: &std::path::Path, key: &str) -> BTreeSet<i64> {
    let mut restarted = Server::sqlite(data_dir);
    let stored = list_cases(restarted.addr, key)
        .iter()
        .map(|case| case["number"].as_i64().expect("case number"))
        .collect();
    restarted.stop();
    stored
}

#[test]
fn sigterm_during_a_burst_of_writes_loses_no_acknowledged_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::sqlite(dir.path());
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");
    let held = hold_post(server.addr, "/api/v1/cases", &key, &new_case(&form, "held"))
        .expect("hold a request");

    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, key, form) = (server.addr, key.clone(), form.clone());
            let (start, acked) = (start.clone(), acked.clone());
            std::thread::spawn(move || client(addr, &key, &form, &start, &acked))
        })
        .collect();
    start.wait();
    let wait_until = Instant::now() + BURST_LIMIT;
    while acked.load(Ordering::SeqCst) < ACKS_BEFORE_SIGNAL {
        assert!(Instant::now() < wait_until, "the burst never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.signal(libc::SIGTERM);
    let held_number = complete_held_request_during_shutdown(&mut server, held);
    let status = server.wait_exit();
    let seen: Vec<Seen> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    assert!(
        status.success(),
        "exit status {status} on SIGTERM; stderr:\n{}",
        server.stderr()
    );
    let answers: Vec<_> = seen.iter().flat_map(|s| &s.answers).collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 201)
        .collect();
    assert!(refused.is_empty(), "answers other than 201: {refused:?}");
    let mut acknowledged: BTreeSet<i64> = answers.iter().filter_map(|(_, n)| *n).collect();
    acknowledged.insert(held_number);
    assert_eq!(
        acknowledged.len(),
        answers.len() + 1,
        "a case number was given twice"
    );
    assert_eq!(
        stored_numbers(dir.path(), &key),
        acknowledged,
        "the stored cases are not the acknowledged ones"
    );
}

#[test]
fn sigint_finishes_the_request_in_flight_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::sqlite(dir.path());
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");
    let held = hold_post(server.addr, "/api/v1/cases", &key, &new_case(&form, "held"))
        .expect("hold a request");

    server.signal(libc::SIGINT);
    let number = complete_held_request_during_shutdown(&mut server, held);
    let status = server.wait_exit();
    assert!(
        status.success(),
        "exit status {status} on SIGINT; stderr:\n{}",
        server.stderr()
    );
    let (_, stderr) = server.finished_output();
    assert!(stderr.contains("casehook stopped"), "stderr:\n{stderr}");
    assert_eq!(stored_numbers(dir.path(), &key), BTreeSet::from([number]));
}
