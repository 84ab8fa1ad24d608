//! `postgres()` and `create_database()` as the other crates' tests use them.

use std::collections::HashSet;
use std::thread;

use casehook_testkit::postgres;

use crate::query;

#[test]
fn two_databases_get_different_urls_that_accept_queries() {
    let Some(pg) = postgres() else { return };

    let first = pg.create_database();
    let second = pg.create_database();

    assert_ne!(first, second);
    for url in [&first, &second] {
        assert!(
            url.contains(&format!(":{}/", pg.port())),
            "{url} names the server's port"
        );
        assert_eq!(query(url, "select 1"), "1");
    }
}

#[test]
fn url_names_a_new_empty_database_of_its_own() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database();
    let path = url.rsplit('/').next().expect("a database name");
    let name = path.split('?').next().unwrap_or(path);

    assert_eq!(query(&url, "select current_database()"), name);
    let user_tables = "select count(*) from pg_tables where schemaname = 'public'";
    assert_eq!(query(&url, user_tables), "0");

    query(&url, "create table probe (id int)");
    let other = pg.create_database();
    assert_eq!(
        query(&other, user_tables),
        "0",
        "tables do not leak across databases"
    );
}

#[test]
fn concurrent_callers_share_one_server_and_get_distinct_databases() {
    let results: Vec<Option<(u16, String)>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| postgres().map(|pg| (pg.port(), pg.create_database()))))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    });
    let Some(results) = results.into_iter().collect::<Option<Vec<_>>>() else {
        return;
    };

    let ports: HashSet<u16> = results.iter().map(|(port, _)| *port).collect();
    let urls: HashSet<&String> = results.iter().map(|(_, url)| url).collect();
    assert_eq!(ports.len(), 1, "one server: {ports:?}");
    assert_eq!(urls.len(), results.len(), "distinct databases: {urls:?}");
}
