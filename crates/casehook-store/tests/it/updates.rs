//! Updating cases: merge-patch semantics, one version step per effective update, the change
//! set on `case.updated`, `case.status_changed`, no-op patches, optimistic concurrency, and
//! a refused update leaving nothing behind.

use casehook_core::case::{CaseRef, Change};
use casehook_store::{CasePatch, Store, StoreError};
use serde_json::{Value, json};

use crate::fixtures::{Setup, actor, patch, sequences, set_ref, status};
use crate::harness::contract_tests;

fn change(old: Value, new: Value) -> Change {
    Change { old, new }
}

async fn update_merges_data_and_records_changes(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s
        .create(&store, json!({"name": "Ada", "amount": 10, "notes": "vip"}))
        .await;

    let (updated, events) = s
        .update(
            &store,
            case.id,
            patch(json!({"amount": 12, "tier": "gold", "notes": null})),
        )
        .await;
    assert_eq!(
        Value::Object(updated.data.clone()),
        json!({"name": "Ada", "amount": 12, "tier": "gold"}),
        "present keys replace, absent keys stay, null removes"
    );
    assert_eq!(updated.version, 2);
    assert!(updated.updated_at >= case.updated_at);
    assert_eq!(updated.created_at, case.created_at);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.event_type, "case.updated");
    assert_eq!(event.sequence, 2);
    assert_eq!(event.case_id, Some(case.id));
    assert_eq!(event.form_id, Some(s.form.id));
    assert_eq!(event.actor, actor());
    assert_eq!(
        event.data,
        serde_json::to_value(&updated).expect("a case serialises")
    );
    let changes = event.changes.clone().expect("case.updated carries changes");
    assert_eq!(
        changes.len(),
        3,
        "unchanged fields are not listed: {changes:?}"
    );
    assert_eq!(changes["amount"], change(json!(10), json!(12)));
    assert_eq!(changes["tier"], change(Value::Null, json!("gold")));
    assert_eq!(changes["notes"], change(json!("vip"), Value::Null));

    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("get"),
        updated
    );
    assert_eq!(s.feed(&store).await.last(), Some(event));
}

async fn status_change_writes_case_status_changed(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"amount": 1})).await;

    let (case, events) = s.update(&store, case.id, status("pending")).await;
    assert_eq!(case.status, "pending");
    assert_eq!(case.version, 2);
    assert_eq!(
        events.len(),
        1,
        "a status-only change writes no case.updated"
    );
    assert_eq!(events[0].event_type, "case.status_changed");
    let changes = events[0]
        .changes
        .clone()
        .expect("status changes are listed");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes["status"], change(json!("open"), json!("pending")));

    let both = CasePatch {
        status: Some("closed".into()),
        ..patch(json!({"amount": 2}))
    };
    let (case, events) = s.update(&store, case.id, both).await;
    assert_eq!(
        case.version, 3,
        "one update, one version step, however many events"
    );
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["case.updated", "case.status_changed"]);
    assert_eq!(sequences(&events), [3, 4]);
    assert_eq!(
        events[0].changes.clone().expect("changes")["amount"],
        change(json!(1), json!(2))
    );
    assert!(
        !events[0]
            .changes
            .clone()
            .expect("changes")
            .contains_key("status")
    );
    assert_eq!(
        events[1].changes.clone().expect("changes")["status"],
        change(json!("pending"), json!("closed"))
    );
    assert_eq!(
        events[0].data, events[1].data,
        "both carry the case after the whole update"
    );
    assert_eq!(sequences(&s.feed(&store).await), [1, 2, 3, 4]);
}

async fn no_op_patch_writes_nothing(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"name": "Ada", "amount": 10})).await;
    let feed_before = s.feed(&store).await;

    let no_ops = [
        CasePatch::default(),
        patch(json!({"name": "Ada", "amount": 10})),
        patch(json!({"tier": null})),
        status("open"),
        set_ref("stripe", None),
    ];
    for no_op in no_ops {
        let (unchanged, events) = store
            .update_case(s.ws, case.id, no_op.clone(), Some(1), actor(), false)
            .await
            .expect("a no-op update succeeds");
        assert!(events.is_empty(), "{no_op:?} wrote {events:?}");
        assert_eq!(unchanged, case, "{no_op:?} changed the case");
    }
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("get"),
        case
    );
    assert_eq!(s.feed(&store).await, feed_before);
}

async fn stale_version_is_refused_and_changes_nothing(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"amount": 1})).await;
    let (case, _) = store
        .update_case(
            s.ws,
            case.id,
            patch(json!({"amount": 2})),
            Some(1),
            actor(),
            false,
        )
        .await
        .expect("the current version is accepted");
    assert_eq!(case.version, 2);
    let feed_before = s.feed(&store).await;

    let stale = CasePatch {
        status: Some("closed".into()),
        ..patch(json!({"amount": 3}))
    };
    match store
        .update_case(s.ws, case.id, stale, Some(1), actor(), false)
        .await
    {
        Err(StoreError::VersionMismatch {
            expected: 1,
            current: 2,
        }) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    match store.delete_case(s.ws, case.id, Some(1), actor()).await {
        Err(StoreError::VersionMismatch {
            expected: 1,
            current: 2,
        }) => {}
        other => panic!("expected a version mismatch on delete, got {other:?}"),
    }
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("still there"),
        case
    );
    assert_eq!(s.feed(&store).await, feed_before);

    // A later version than the current one is just as stale.
    let future = store
        .update_case(
            s.ws,
            case.id,
            patch(json!({"amount": 4})),
            Some(9),
            actor(),
            false,
        )
        .await;
    assert!(
        matches!(
            future,
            Err(StoreError::VersionMismatch {
                expected: 9,
                current: 2
            })
        ),
        "{future:?}"
    );
}

async fn unknown_case_is_not_found(store: Store) {
    let s = Setup::new(&store, "w").await;
    let missing = casehook_core::CaseId::new();
    let update = store
        .update_case(
            s.ws,
            missing,
            patch(json!({"amount": 1})),
            None,
            actor(),
            false,
        )
        .await;
    assert!(matches!(update, Err(StoreError::NotFound(_))), "{update:?}");
    assert!(matches!(
        store.get_case(s.ws, CaseRef::Id(missing)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_case(s.ws, CaseRef::Number(1)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.feed(&store).await.is_empty());
}

async fn update_keeps_skip_triggers_and_actor(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({})).await;
    let other = casehook_core::event::Actor::system();
    let (_, events) = store
        .update_case(
            s.ws,
            case.id,
            patch(json!({"name": "x"})),
            None,
            other.clone(),
            true,
        )
        .await
        .expect("update");
    assert!(events[0].skip_triggers);
    assert_eq!(events[0].actor, other);
    let stored = s.feed(&store).await;
    assert_eq!(stored[1], events[0]);
    // The case still names who created it.
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("get")
            .created_by,
        actor()
    );
}

contract_tests!(
    update_merges_data_and_records_changes,
    status_change_writes_case_status_changed,
    no_op_patch_writes_nothing,
    stale_version_is_refused_and_changes_nothing,
    // Writes no event, so B1 does not reach it.
    unknown_case_is_not_found => postgres(),
    update_keeps_skip_triggers_and_actor,
);
