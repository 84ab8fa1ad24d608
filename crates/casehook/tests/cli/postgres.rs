//! PostgreSQL: `casehook migrate`, `serve` on it, and two `serve` processes sharing one
//! database. Skipped (with the testkit's warning) when PostgreSQL is not installed.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::api::{create_case, create_form, create_hook, forms_status, list_cases};
use crate::harness::{Server, casehook, get, path_str, printed_keys, run_to_exit};

/// `casehook migrate --database-url <url>`, which must succeed: its stdout.
fn migrate(url: &str) -> String {
    let mut command = casehook();
    command.args(["migrate", "--database-url", url]);
    let output = run_to_exit(command);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "migrate failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn serve_pg(url: &str, data_dir: &Path) -> Server {
    Server::start(&[], &serve_args(url, data_dir), &[])
}

fn serve_args<'a>(url: &'a str, data_dir: &'a Path) -> [&'a str; 4] {
    ["--database-url", url, "--data-dir", path_str(data_dir)]
}

/// A fresh database on the test PostgreSQL, or `None` to skip.
fn fresh_database() -> Option<String> {
    casehook_testkit::postgres().map(|pg| pg.create_database())
}

#[test]
fn migrate_applies_the_schema_once_and_serve_runs_on_it() {
    let Some(url) = fresh_database() else { return };
    let dir = tempfile::tempdir().expect("temp dir");

    let stdout = migrate(&url);
    assert!(
        stdout.contains(" migration(s) applied") && !stdout.starts_with("0 "),
        "migrate said:\n{stdout}"
    );
    let stdout = migrate(&url);
    assert!(
        stdout.contains("0 migration(s) applied"),
        "a second migrate said:\n{stdout}"
    );

    let mut server = serve_pg(&url, dir.path());
    let ready = get(server.addr, "/readyz", None).expect("readyz").json();
    assert_eq!(ready["database"], "postgres");
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");
    let case = create_case(server.addr, &key, &form, "first");
    assert_eq!(case["number"], 1);
    let fetched = get(server.addr, "/api/v1/cases/%231", Some(&key)).expect("get case #1");
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.json()["id"], case["id"]);
    server.stop();
    assert!(
        !dir.path().join("casehook.db").exists(),
        "a SQLite file was made although a PostgreSQL URL was given"
    );
}

#[test]
fn two_servers_on_one_postgres_database_share_cases_and_number_them_uniquely() {
    const THREADS_PER_SERVER: usize = 4;
    const PER_THREAD: usize = 5;
    let total = (2 * THREADS_PER_SERVER * PER_THREAD) as i64;

    let Some(url) = fresh_database() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = serve_pg(&url, dir.path());
    let key = first.admin_key();
    let mut second = serve_pg(&url, dir.path());
    assert_eq!(
        forms_status(second.addr, &key),
        200,
        "the key fails on the second server"
    );
    let form = create_form(first.addr, &key, "Claims");
    let seen = get(second.addr, &format!("/api/v1/forms/{form}"), Some(&key)).expect("form");
    assert_eq!(
        seen.status, 200,
        "the form is missing on the second: {}",
        seen.body
    );

    let creators: Vec<_> = [first.addr, second.addr]
        .into_iter()
        .flat_map(|addr| std::iter::repeat_n(addr, THREADS_PER_SERVER))
        .map(|addr| {
            let (key, form) = (key.clone(), form.clone());
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| create_case(addr, &key, &form, &format!("{addr} {i}")))
                    .collect::<Vec<Value>>()
            })
        })
        .collect();
    let created: Vec<Value> = creators
        .into_iter()
        .flat_map(|c| c.join().expect("creator thread"))
        .collect();

    let mut numbers: Vec<i64> = created
        .iter()
        .map(|case| case["number"].as_i64().expect("number"))
        .collect();
    numbers.sort_unstable();
    let expected: Vec<i64> = (1..=total).collect();
    assert_eq!(
        numbers, expected,
        "case numbers are not 1..={total}, each once"
    );

    // Every case is visible through both servers, by listing and by id.
    for server in [&first, &second] {
        let listed: BTreeSet<i64> = list_cases(server.addr, &key)
            .iter()
            .map(|c| c["number"].as_i64().expect("number"))
            .collect();
        assert_eq!(listed, expected.iter().copied().collect());
        for case in &created {
            let id = case["id"].as_str().expect("case id");
            let response =
                get(server.addr, &format!("/api/v1/cases/{id}"), Some(&key)).expect("get case");
            assert_eq!(response.status, 200, "case {id}: {}", response.body);
        }
    }
    second.stop();
    let (stdout, _) = second.finished_output();
    assert!(
        printed_keys(&stdout).is_empty(),
        "the second server printed a key of its own:\n{stdout}"
    );
    first.stop();
}

#[test]
fn simultaneous_first_starts_on_postgres_create_one_workspace() {
    const SERVERS: usize = 3;
    let Some(url) = fresh_database() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    // With the schema in place the processes reach the bootstrap at about the same moment.
    migrate(&url);
    let args = serve_args(&url, dir.path());

    let mut servers: Vec<Server> = (0..SERVERS)
        .map(|_| Server::spawn(&[], &args, &[]))
        .collect();
    for server in &mut servers {
        server.wait_ready();
    }
    let mut keys = Vec::new();
    for server in &mut servers {
        server.stop();
        keys.extend(printed_keys(&server.finished_output().0));
    }
    assert_eq!(
        keys.len(),
        1,
        "processes starting together on one empty database each made a workspace and \
         printed its own admin key: {keys:?}"
    );
}

/// Send `n` requests to the hook, alternating between the servers, each on its own
/// connection; how many were let through (200), and how long the burst took. Every other
/// answer must be 429.
fn burst(addrs: &[std::net::SocketAddr], path: &str, n: usize) -> (usize, f64) {
    let start = std::time::Instant::now();
    let mut admitted = 0;
    for i in 0..n {
        let body = serde_json::json!({"note": format!("burst {i}")});
        let response =
            crate::harness::post(addrs[i % addrs.len()], path, None, &body).expect("an answer");
        match response.status {
            200 => admitted += 1,
            429 => {}
            other => panic!("request {i}: {other} {}", response.body),
        }
    }
    (admitted, start.elapsed().as_secs_f64())
}

#[test]
fn two_servers_split_an_inbound_hooks_rate_limit_and_one_takes_it_all_when_the_other_stops() {
    // The hook's limit: 4 requests per second, bursts of 4.
    const RATE: f64 = 4.0;
    let Some(url) = fresh_database() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    // Beats every 100 ms, so that each learns of the other at once.
    let mut args = serve_args(&url, dir.path()).to_vec();
    args.extend(["--heartbeat-ms", "100"]);
    let mut first = Server::start(&[], &args, &[]);
    let key = first.admin_key();
    let mut second = Server::start(&[], &args, &[]);
    for server in [&first, &second] {
        server.wait_for_stderr("api=2");
    }
    let form = create_form(first.addr, &key, "Paced");
    let path = create_hook(
        first.addr,
        &key,
        &serde_json::json!({"name": "paced", "form_id": form,
                            "limits": {"rate_per_second": 4, "burst": 4}}),
    );

    // Together the two hold the hook's bucket: a burst of 4 and 4 per second, not twice that
    // (each process alone would let its own burst of 4 through).
    let (admitted, took) = burst(&[first.addr, second.addr], &path, 24);
    let bound = 4 + (RATE * took).ceil() as usize;
    assert!(
        (2..=bound).contains(&admitted),
        "{admitted} of 24 let through in {took:.2} s by two servers; at most {bound} may be"
    );

    // Once the second has stopped (and signed off), the first takes the whole limit.
    second.stop();
    first.wait_for_stderr("api=1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (admitted, took) = burst(&[first.addr], &path, 16);
    let bound = 4 + (RATE * took).ceil() as usize;
    assert!(
        (4..=bound).contains(&admitted),
        "{admitted} of 16 let through in {took:.2} s by one server; between 4 and {bound} expected"
    );
    first.stop();
}

/// Wait (at most `within`) until `status()` answers `want`; what it answered last.
fn answers_within(within: std::time::Duration, want: u16, status: impl Fn() -> u16) -> u16 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = status();
        if got == want || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_key_revoked_or_a_hook_deleted_through_one_server_stops_working_on_the_other_at_once() {
    // Well under the caches' own lifetimes (10 s for keys, 5 s for hooks).
    const AT_ONCE: std::time::Duration = std::time::Duration::from_secs(2);
    let Some(url) = fresh_database() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = serve_pg(&url, dir.path());
    let admin = first.admin_key();
    let mut second = serve_pg(&url, dir.path());

    let issued = crate::harness::post(
        first.addr,
        "/api/v1/api-keys",
        Some(&admin),
        &serde_json::json!({"name": "temporary", "role": "member"}),
    )
    .expect("create key");
    assert_eq!(issued.status, 201, "{}", issued.body);
    let (member, id) = {
        let body = issued.json();
        (
            body["key"].as_str().expect("key").to_owned(),
            body["id"].as_str().expect("id").to_owned(),
        )
    };
    // The second verifies the key, and keeps it in its cache.
    assert_eq!(forms_status(second.addr, &member), 200);
    let revoked = crate::harness::request(
        first.addr,
        "DELETE",
        &format!("/api/v1/api-keys/{id}"),
        Some(&admin),
        None,
    )
    .expect("revoke");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let status = answers_within(AT_ONCE, 401, || forms_status(second.addr, &member));
    assert_eq!(
        status, 401,
        "the revoked key still works on the other server"
    );

    let form = create_form(first.addr, &admin, "Orders");
    let path = create_hook(
        first.addr,
        &admin,
        &serde_json::json!({"name": "orders", "form_id": form}),
    );
    let send = || {
        crate::harness::post(second.addr, &path, None, &serde_json::json!({"note": "x"}))
            .expect("an answer")
            .status
    };
    assert_eq!(send(), 200, "the second takes the hook's requests");
    let hooks = get(first.addr, "/api/v1/inbound-hooks", Some(&admin)).expect("hooks");
    let hook_id = hooks.json()["items"][0]["id"]
        .as_str()
        .expect("hook id")
        .to_owned();
    let deleted = crate::harness::request(
        first.addr,
        "DELETE",
        &format!("/api/v1/inbound-hooks/{hook_id}"),
        Some(&admin),
        None,
    )
    .expect("delete hook");
    assert!(deleted.status < 300, "{} {}", deleted.status, deleted.body);
    let status = answers_within(AT_ONCE, 404, send);
    assert_eq!(
        status, 404,
        "the deleted hook still takes requests on the other server"
    );
    second.stop();
    first.stop();
}
