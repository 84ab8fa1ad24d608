//! External references (`stripe=cus_1`): unique per workspace and source, found with
//! `find_case_by_ref`, changed and removed by updates, released by deletion. A refused claim
//! leaves no case, no event and no used-up case number behind.
//!
//! A case claims a reference when it is created or by a later update; the contracts use both.

use std::collections::BTreeMap;

use casehook_core::CaseId;
use casehook_core::case::{CaseRef, Change};
use casehook_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::fixtures::{Setup, actor, patch, sequences, set_ref};
use crate::harness::contract_tests;

fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(s, r)| (s.to_string(), r.to_string()))
        .collect()
}

/// A new case of `s` that claims `stripe=reference` by an update.
async fn case_holding(store: &Store, s: &Setup, reference: &str) -> casehook_core::case::Case {
    let case = s.create(store, json!({"name": reference})).await;
    s.update(store, case.id, set_ref("stripe", Some(reference)))
        .await
        .0
}

async fn found(store: &Store, s: &Setup, source: &str, reference: &str) -> Option<CaseId> {
    match store.find_case_by_ref(s.ws, source, reference).await {
        Ok(case) => Some(case.id),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => panic!("find_case_by_ref failed: {e:?}"),
    }
}

async fn create_case_claims_its_external_refs(store: Store) {
    let s = Setup::new(&store, "w").await;
    let (case, event) = store
        .create_case(s.case_with_ref(json!({"name": "Ada"}), "stripe", "cus_1"))
        .await
        .expect("a case may be created with an external reference");
    assert_eq!(case.external_refs, refs(&[("stripe", "cus_1")]));
    assert_eq!(event.data["external_refs"], json!({"stripe": "cus_1"}));
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, Some(case.id));
    let again = store
        .create_case(s.case_with_ref(json!({}), "stripe", "cus_1"))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(s.create(&store, json!({})).await.number, 2);
}

async fn taken_ref_refuses_creation_without_a_trace(store: Store) {
    let s = Setup::new(&store, "w").await;
    let (holder, _) = store
        .create_case(s.case_with_ref(json!({"name": "holder"}), "stripe", "cus_1"))
        .await
        .expect("create the holder");
    let feed_before = s.feed(&store).await;
    assert_eq!(sequences(&feed_before), [1]);

    for _ in 0..3 {
        match store
            .create_case(s.case_with_ref(json!({"name": "dup"}), "stripe", "cus_1"))
            .await
        {
            Err(StoreError::Conflict(message)) => assert!(message.contains("cus_1"), "{message}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(
        s.feed(&store).await,
        feed_before,
        "no event for a refused creation"
    );
    assert_eq!(
        s.cases(&store, true).await.len(),
        1,
        "no case for a refused creation"
    );
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, Some(holder.id));

    // The refused creations used up no case number and no sequence.
    let (next, event) = store.create_case(s.case(json!({}))).await.expect("create");
    assert_eq!(next.number, 2);
    assert_eq!(event.sequence, 2);
}

async fn refs_are_unique_per_workspace_and_source(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let in_a = case_holding(&store, &a, "cus_1").await;
    assert_eq!(in_a.external_refs, refs(&[("stripe", "cus_1")]));
    assert_eq!(found(&store, &a, "stripe", "cus_1").await, Some(in_a.id));
    assert_eq!(
        found(&store, &b, "stripe", "cus_1").await,
        None,
        "another workspace does not see it"
    );
    assert_eq!(
        found(&store, &a, "hubspot", "cus_1").await,
        None,
        "a reference belongs to its source"
    );
    assert_eq!(found(&store, &a, "stripe", "cus_2").await, None);

    let in_b = case_holding(&store, &b, "cus_1").await;
    assert_eq!(found(&store, &b, "stripe", "cus_1").await, Some(in_b.id));
    assert_eq!(found(&store, &a, "stripe", "cus_1").await, Some(in_a.id));

    // Another source may use the same reference in the same workspace.
    let other = a.create(&store, json!({})).await;
    a.update(&store, other.id, set_ref("hubspot", Some("cus_1")))
        .await;
    assert_eq!(found(&store, &a, "hubspot", "cus_1").await, Some(other.id));
}

async fn update_claiming_a_taken_ref_changes_nothing(store: Store) {
    let s = Setup::new(&store, "w").await;
    let holder = case_holding(&store, &s, "cus_1").await;
    let other = s.create(&store, json!({"amount": 1})).await;
    let feed_before = s.feed(&store).await;

    let mut grab = patch(json!({"amount": 2}));
    grab.external_refs
        .insert("stripe".into(), Some("cus_1".into()));
    let refused = store
        .update_case(s.ws, other.id, grab, None, actor(), false)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(other.id))
            .await
            .expect("get"),
        other,
        "the data change went too"
    );
    assert_eq!(s.feed(&store).await, feed_before);
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, Some(holder.id));
}

async fn updates_change_and_remove_refs(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({})).await;
    let (case, events) = s
        .update(&store, case.id, set_ref("stripe", Some("cus_1")))
        .await;
    assert_eq!(case.version, 2);
    let changes = events[0].changes.clone().expect("changes");
    assert_eq!(
        changes["external_refs.stripe"],
        Change {
            old: Value::Null,
            new: json!("cus_1")
        }
    );
    let (same, events) = s
        .update(&store, case.id, set_ref("stripe", Some("cus_1")))
        .await;
    assert!(events.is_empty(), "claiming what the case holds is a no-op");
    assert_eq!(same, case);

    let (case, events) = s
        .update(&store, case.id, set_ref("stripe", Some("cus_2")))
        .await;
    assert_eq!(case.external_refs, refs(&[("stripe", "cus_2")]));
    let changes = events[0].changes.clone().expect("changes");
    assert_eq!(
        changes["external_refs.stripe"],
        Change {
            old: json!("cus_1"),
            new: json!("cus_2")
        }
    );
    assert_eq!(
        found(&store, &s, "stripe", "cus_1").await,
        None,
        "the old reference is released"
    );
    assert_eq!(found(&store, &s, "stripe", "cus_2").await, Some(case.id));
    let taker = case_holding(&store, &s, "cus_1").await;
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, Some(taker.id));

    let (case, events) = s.update(&store, case.id, set_ref("stripe", None)).await;
    assert!(case.external_refs.is_empty());
    let changes = events[0].changes.clone().expect("changes");
    assert_eq!(
        changes["external_refs.stripe"],
        Change {
            old: json!("cus_2"),
            new: Value::Null
        }
    );
    assert_eq!(found(&store, &s, "stripe", "cus_2").await, None);
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("get"),
        case
    );
}

async fn deletion_releases_refs(store: Store) {
    let s = Setup::new(&store, "w").await;
    let first = case_holding(&store, &s, "cus_1").await;
    store
        .delete_case(s.ws, first.id, None, actor())
        .await
        .expect("delete");
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, None);
    let second = case_holding(&store, &s, "cus_1").await;
    assert_eq!(found(&store, &s, "stripe", "cus_1").await, Some(second.id));
}

contract_tests!(
    create_case_claims_its_external_refs,
    taken_ref_refuses_creation_without_a_trace,
    refs_are_unique_per_workspace_and_source,
    update_claiming_a_taken_ref_changes_nothing,
    updates_change_and_remove_refs,
    deletion_releases_refs,
);
