//! Tenant isolation at the store level: a workspace's id is part of every lookup, so one
//! workspace can neither read, change nor list another's cases, forms and events, even when
//! it knows their ids.

use casehook_core::case::CaseRef;
use casehook_store::{CaseFilter, EventFilter, Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, actor, all_cases, feed, patch, set_ref};
use crate::harness::contract_tests;

fn not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound(_))),
        "{what}: expected NotFound, got {result:?}"
    );
}

async fn workspaces_cannot_reach_each_others_cases(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let case = a.create(&store, json!({"name": "secret"})).await;
    let (case, _) = a
        .update(&store, case.id, set_ref("stripe", Some("cus_1")))
        .await;
    let a_feed = a.feed(&store).await;

    not_found(
        store.get_case(b.ws, CaseRef::Id(case.id)).await,
        "get by id",
    );
    not_found(
        store.get_case(b.ws, CaseRef::Number(case.number)).await,
        "get by number",
    );
    not_found(
        store.find_case_by_ref(b.ws, "stripe", "cus_1").await,
        "find by ref",
    );
    let update = store
        .update_case(
            b.ws,
            case.id,
            patch(json!({"name": "stolen"})),
            None,
            actor(),
            false,
        )
        .await;
    not_found(update, "update");
    let update = store
        .update_case(
            b.ws,
            case.id,
            patch(json!({"name": "stolen"})),
            Some(case.version),
            actor(),
            false,
        )
        .await;
    not_found(update, "update with the right version");
    not_found(
        store.delete_case(b.ws, case.id, None, actor()).await,
        "delete",
    );

    // A's case is untouched and B's lists are empty.
    assert_eq!(
        store
            .get_case(a.ws, CaseRef::Id(case.id))
            .await
            .expect("A still reads it"),
        case
    );
    assert_eq!(a.feed(&store).await, a_feed);
    assert!(b.cases(&store, true).await.is_empty());
    let by_a_form = CaseFilter {
        form_id: Some(a.form.id),
        include_deleted: true,
        ..CaseFilter::default()
    };
    assert!(all_cases(&store, b.ws, by_a_form).await.is_empty());
    assert!(
        b.feed(&store).await.is_empty(),
        "A's events are not in B's feed"
    );
    let by_case = EventFilter {
        case_id: Some(case.id),
        ..EventFilter::default()
    };
    assert!(feed(&store, b.ws, by_case).await.is_empty());
}

async fn workspaces_cannot_use_each_others_forms(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    not_found(store.get_form(b.ws, a.form.id).await, "get form");
    let mut new = b.case(json!({}));
    new.form_id = a.form.id;
    not_found(
        store.create_case(new).await,
        "create a case of another workspace's form",
    );
    let spec = crate::fixtures::customer_form();
    not_found(
        store.update_form(b.ws, a.form.id, spec, None).await,
        "update form",
    );
    let listed = store.list_forms(b.ws, true).await.expect("list forms");
    assert_eq!(listed.iter().map(|f| f.id).collect::<Vec<_>>(), [b.form.id]);
    assert!(b.feed(&store).await.is_empty());
}

async fn events_stay_in_their_workspace(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    for i in 0..3 {
        a.create(&store, json!({"amount": i})).await;
    }
    b.create(&store, json!({})).await;
    let a_feed = a.feed(&store).await;
    let b_feed = b.feed(&store).await;
    assert_eq!(a_feed.len(), 3);
    assert_eq!(b_feed.len(), 1);
    assert!(a_feed.iter().all(|e| e.workspace_id == a.ws));
    assert!(b_feed.iter().all(|e| e.workspace_id == b.ws));
    let after = EventFilter {
        after: Some(0),
        types: vec!["case.created".into()],
        ..EventFilter::default()
    };
    assert_eq!(feed(&store, b.ws, after).await, b_feed);
}

contract_tests!(
    workspaces_cannot_reach_each_others_cases,
    workspaces_cannot_use_each_others_forms,
    events_stay_in_their_workspace,
);
