//! Deleting cases: a soft delete with its `case.deleted` event, after which the case is gone
//! from reads and lists (unless deleted cases are asked for) and its number is not reused.

use casehook_core::case::CaseRef;
use casehook_store::{CaseFilter, Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, actor, all_cases, patch};
use crate::harness::contract_tests;

async fn delete_is_soft_and_writes_case_deleted(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"name": "Ada"})).await;
    let kept = s.create(&store, json!({"name": "Bob"})).await;

    let event = store
        .delete_case(s.ws, case.id, Some(1), actor())
        .await
        .expect("delete");
    assert_eq!(event.event_type, "case.deleted");
    assert_eq!(event.sequence, 3);
    assert_eq!(event.case_id, Some(case.id));
    assert_eq!(event.form_id, Some(s.form.id));
    assert_eq!(event.actor, actor());
    assert_eq!(event.data["number"], json!(1));
    assert_eq!(event.data["data"], json!({"name": "Ada"}));
    assert!(
        event.data["deleted_at"].is_string(),
        "the event carries the deleted case: {}",
        event.data
    );
    assert_eq!(s.feed(&store).await.last(), Some(&event));

    for by in [CaseRef::Id(case.id), CaseRef::Number(1)] {
        let got = store.get_case(s.ws, by).await;
        assert!(matches!(got, Err(StoreError::NotFound(_))), "{by}: {got:?}");
    }
    let live: Vec<i64> = s
        .cases(&store, false)
        .await
        .iter()
        .map(|c| c.number)
        .collect();
    assert_eq!(live, [2]);

    let all = s.cases(&store, true).await;
    assert_eq!(all.iter().map(|c| c.number).collect::<Vec<_>>(), [2, 1]);
    let deleted = &all[1];
    assert_eq!(deleted.id, case.id);
    assert!(deleted.deleted_at.is_some());
    assert_eq!(deleted.version, 2, "deletion is a change");
    assert_eq!(deleted.data, case.data, "a soft delete keeps the data");
    assert_eq!(all[0], kept);

    let with_form = CaseFilter {
        form_id: Some(s.form.id),
        include_deleted: true,
        ..CaseFilter::default()
    };
    assert_eq!(
        all_cases(&store, s.ws, with_form).await.len(),
        2,
        "filters see deleted cases when asked"
    );
}

async fn deleted_case_takes_no_more_changes(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({})).await;
    store
        .delete_case(s.ws, case.id, None, actor())
        .await
        .expect("delete");
    let feed_before = s.feed(&store).await;

    let update = store
        .update_case(
            s.ws,
            case.id,
            patch(json!({"name": "x"})),
            None,
            actor(),
            false,
        )
        .await;
    assert!(matches!(update, Err(StoreError::NotFound(_))), "{update:?}");
    let again = store.delete_case(s.ws, case.id, None, actor()).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    assert_eq!(s.feed(&store).await, feed_before);

    // Numbers are never handed out twice.
    assert_eq!(s.create(&store, json!({})).await.number, 2);
}

contract_tests!(
    delete_is_soft_and_writes_case_deleted,
    deleted_case_takes_no_more_changes
);
