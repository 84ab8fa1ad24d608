//! PostgreSQL: `casehook migrate`, `serve` on it, and two `serve` processes sharing one
//! database. Skipped (with the testkit's warning) when PostgreSQL is not installed.

use std::collections::BTreeSet;

use crate::api::{create_case, create_form, list_cases};
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

fn serve_pg(url: &str, data_dir: &std::path::Path) -> Server {
    Server::start(
        &[],
        &["--database-url", url, "--data-dir", path_str(data_dir)],
        &[],
    )
}

#[test]
fn migrate_then_serve_on_postgres() {
    let Some(pg) = casehook_testkit::postgres() else {
        return;
    };
    let url = pg.create_database();
    let dir = tempfile::tempdir().expect("temp dir");

    let stdout = migrate(&url);
    assert!(
        stdout.contains("1 migration(s) applied"),
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
fn two_servers_on_one_postgres_database_share_cases_and_numbers() {
    const PER_SERVER: usize = 20;
    const THREADS_PER_SERVER: usize = 4;

    let Some(pg) = casehook_testkit::postgres() else {
        return;
    };
    let url = pg.create_database();
    let dir = tempfile::tempdir().expect("temp dir");

    let mut first = serve_pg(&url, dir.path());
    let key = first.admin_key();
    let mut second = serve_pg(&url, dir.path());
    let form = create_form(first.addr, &key, "Claims");

    let addrs = [first.addr, second.addr];
    let creators: Vec<_> = addrs
        .iter()
        .flat_map(|&addr| std::iter::repeat_n(addr, THREADS_PER_SERVER))
        .map(|addr| {
            let (key, form) = (key.clone(), form.clone());
            std::thread::spawn(move || {
                (0..PER_SERVER / THREADS_PER_SERVER)
                    .map(|i| {
                        let case = create_case(addr, &key, &form, &format!("{addr} {i}"));
                        (case["number"].as_i64().expect("number"), case["id"].clone())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let created: Vec<(i64, serde_json::Value)> = creators
        .into_iter()
        .flat_map(|c| c.join().expect("creator thread"))
        .collect();

    let numbers: Vec<i64> = {
        let mut n: Vec<i64> = created.iter().map(|(n, _)| *n).collect();
        n.sort_unstable();
        n
    };
    let expected: Vec<i64> = (1..=(2 * PER_SERVER) as i64).collect();
    assert_eq!(numbers, expected, "case numbers are not 1..=40 without gaps");

    // Every case is visible through both servers, by listing and by id.
    for server in [&first, &second] {
        let listed: BTreeSet<i64> = list_cases(server.addr, &key)
            .iter()
            .map(|c| c["number"].as_i64().expect("number"))
            .collect();
        assert_eq!(listed, expected.iter().copied().collect());
        for (_, id) in &created {
            let id = id.as_str().expect("case id");
            let response = get(server.addr, &format!("/api/v1/cases/{id}"), Some(&key))
                .expect("get case");
            assert_eq!(response.status, 200, "case {id}: {}", response.body);
        }
    }

    second.stop();
    let (stdout, _) = second.finished_output();
    assert!(
        !stdout.contains("chk_"),
        "the second server printed a key of its own:\n{stdout}"
    );
    first.stop();
}

#[test]
fn simultaneous_first_starts_on_postgres_create_one_workspace() {
    let Some(pg) = casehook_testkit::postgres() else {
        return;
    };
    let url = pg.create_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--database-url", url.as_str(), "--data-dir", path_str(dir.path())];

    let mut servers = [Server::spawn(&[], &args, &[]), Server::spawn(&[], &args, &[])];
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
        "two processes starting together on one empty database each made a workspace \
         and printed its own admin key: {keys:?}"
    );
}
