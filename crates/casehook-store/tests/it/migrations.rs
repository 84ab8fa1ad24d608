//! Migrations: applied on open, and applying them again changes nothing.

use casehook_store::Store;

use crate::fixtures::Setup;
use crate::harness::{TestDb, contract_tests};

async fn migrations_are_idempotent(db: TestDb) {
    // `TestDb` opened (and so migrated) the database already.
    assert_eq!(db.store.migrate().await.expect("migrate again"), 0);
    let s = Setup::new(&db.store, "w").await;

    let again = db.open_another().await;
    assert_eq!(again.migrate().await.expect("migrate a third time"), 0);
    let form = again.get_form(s.ws, s.form.id).await.expect("data survive");
    assert_eq!(form, s.form);
    assert_eq!(again.workspace_count().await.expect("count"), 1);
}

async fn fresh_database_is_migrated_once(db: TestDb) {
    let url = db.fresh_url().await;
    let store = Store::connect(&url)
        .await
        .expect("connect without migrating");
    let applied = store.migrate().await.expect("migrate");
    assert!(applied >= 1, "a fresh database gets every migration");
    assert_eq!(store.migrate().await.expect("migrate again"), 0);
    store.ping().await.expect("ping");
    assert_eq!(store.workspace_count().await.expect("count"), 0);

    let reopened = Store::open(&url).await.expect("open a migrated database");
    assert_eq!(reopened.migrate().await.expect("migrate"), 0);
}

async fn concurrent_first_opens_migrate_once(db: TestDb) {
    // Two processes starting at once on a new database: both must come up.
    let url = db.fresh_url().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open
            .await
            .expect("the opening task does not panic")
            .expect("every concurrent open succeeds");
        assert_eq!(store.migrate().await.expect("migrate"), 0);
    }
}

contract_tests!(
    migrations_are_idempotent,
    fresh_database_is_migrated_once,
    concurrent_first_opens_migrate_once,
);
