//! Graceful shutdown: SIGTERM and SIGINT stop accepting, finish what is in flight, and exit
//! 0; nothing acknowledged is lost.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::api::{create_form, list_cases, new_case};
use crate::harness::{Server, post};

/// Concurrent clients creating cases while the signal arrives.
const CLIENTS: usize = 24;
/// Acknowledged creations before the signal is sent, so the burst is well under way.
const ACKS_BEFORE_SIGNAL: usize = 50;
/// Upper bound on the burst, should the server never stop.
const BURST_LIMIT: Duration = Duration::from_secs(30);

/// What one client saw: the statuses of answered requests (with the case number on a 201)
/// and when each answer arrived.
#[derive(Debug, Default)]
struct Seen {
    answers: Vec<(u16, Option<i64>, Instant)>,
}

fn client(addr: SocketAddr, key: &str, form: &str, start: &Barrier, acked: &AtomicUsize) -> Seen {
    let mut seen = Seen::default();
    start.wait();
    let deadline = Instant::now() + BURST_LIMIT;
    while Instant::now() < deadline {
        // An error means no answer: the server has stopped accepting.
        let Ok(response) = post(addr, "/api/v1/cases", Some(key), &new_case(form, "burst"))
        else {
            break;
        };
        let number = (response.status == 201)
            .then(|| response.json()["number"].as_i64())
            .flatten();
        if number.is_some() {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        seen.answers.push((response.status, number, Instant::now()));
    }
    seen
}

#[test]
fn sigterm_during_a_burst_of_writes_loses_no_acknowledged_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::sqlite(dir.path());
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");

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
    let signalled_at = Instant::now();
    server.signal(libc::SIGTERM);
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
    let refused: Vec<_> = answers.iter().filter(|(status, ..)| *status != 201).collect();
    assert!(refused.is_empty(), "answers other than 201: {refused:?}");
    let acknowledged: BTreeSet<i64> = answers.iter().filter_map(|(_, n, _)| *n).collect();
    assert_eq!(acknowledged.len(), answers.len(), "a case number was given twice");
    let after_signal = answers.iter().filter(|(.., at)| *at > signalled_at).count();
    assert!(
        after_signal > 0,
        "no request was in flight when SIGTERM arrived; the test proves nothing"
    );

    let mut restarted = Server::sqlite(dir.path());
    let stored: BTreeSet<i64> = list_cases(restarted.addr, &key)
        .iter()
        .map(|case| case["number"].as_i64().expect("case number"))
        .collect();
    assert_eq!(
        stored, acknowledged,
        "stored cases differ from acknowledged ones ({} answered after the signal)",
        after_signal
    );
    restarted.stop();
}

#[test]
fn sigint_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::sqlite(dir.path());
    let key = server.admin_key();
    create_form(server.addr, &key, "Claims");

    let status = server.stop_with(libc::SIGINT);
    assert!(
        status.success(),
        "exit status {status} on SIGINT; stderr:\n{}",
        server.stderr()
    );
    let (_, stderr) = server.finished_output();
    assert!(stderr.contains("casehook stopped"), "stderr:\n{stderr}");
}
