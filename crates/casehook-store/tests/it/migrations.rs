//! Migrations: applied on open, and applying them again changes nothing.

use casehook_core::case::CaseRef;
use casehook_store::Store;
use serde_json::json;

use crate::fixtures::Setup;
use crate::harness::{TestDb, contract_tests};

async fn migrations_are_idempotent(db: TestDb) {
    // `TestDb` opened (and so migrated) the database already.
    assert_eq!(db.store.migrate().await.expect("migrate again"), 0);
    let s = Setup::new(&db.store, "w").await;
    let case = s.create(&db.store, json!({"name": "Ada"})).await;

    let again = db.open_another().await;
    assert_eq!(again.migrate().await.expect("migrate a third time"), 0);
    assert_eq!(
        again
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("data survive"),
        case
    );
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

contract_tests!(migrations_are_idempotent, fresh_database_is_migrated_once);
