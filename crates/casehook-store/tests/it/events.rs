//! The event feed: oldest first, resumable exactly after a sequence, filtered by type and
//! case; custom events join the same sequence.

use casehook_core::event::NewEvent;
use casehook_store::{EventFilter, Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, actor, feed, patch, sequences, status};
use crate::harness::contract_tests;

/// Cases #1 and #2 with a few changes each: nine events in all.
async fn activity(store: &Store, s: &Setup) -> [casehook_core::CaseId; 2] {
    let one = s.create(store, json!({"amount": 1})).await.id; // 1 created
    let two = s.create(store, json!({"amount": 2})).await.id; // 2 created
    s.update(store, one, patch(json!({"amount": 3}))).await; // 3 updated
    s.update(store, two, status("closed")).await; // 4 status_changed
    let both = casehook_store::CasePatch {
        status: Some("closed".into()),
        ..patch(json!({"amount": 4}))
    };
    s.update(store, one, both).await; // 5 updated, 6 status_changed
    s.update(store, two, patch(json!({"name": "x"}))).await; // 7 updated
    store
        .delete_case(s.ws, two, None, actor())
        .await
        .expect("delete"); // 8 deleted
    s.update(store, one, patch(json!({"name": "y"}))).await; // 9 updated
    [one, two]
}

async fn feed_resumes_exactly_after_a_sequence(store: Store) {
    let s = Setup::new(&store, "w").await;
    activity(&store, &s).await;
    let all = s.feed(&store).await;
    assert_eq!(sequences(&all), (1..=9).collect::<Vec<_>>());

    for after in 0..=9 {
        let rest = store
            .list_events(
                s.ws,
                &EventFilter {
                    after: Some(after),
                    limit: 100,
                    ..EventFilter::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(
            rest,
            all[usize::try_from(after).expect("small")..],
            "after {after}"
        );
    }
    // Small pages, each resumed from the last one seen, add up to the whole feed.
    let mut resumed = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(
                s.ws,
                &EventFilter {
                    after,
                    limit: 2,
                    ..EventFilter::default()
                },
            )
            .await
            .expect("list");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.sequence);
        resumed.extend(page);
    }
    assert_eq!(resumed, all);
    // A consumer that is up to date sees new events and only those.
    let new = s.create(&store, json!({})).await;
    let tail = store
        .list_events(
            s.ws,
            &EventFilter {
                after: Some(9),
                limit: 100,
                ..EventFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(sequences(&tail), [10]);
    assert_eq!(tail[0].case_id, Some(new.id));
}

async fn feed_filters_by_type_and_case(store: Store) {
    let s = Setup::new(&store, "w").await;
    let [one, two] = activity(&store, &s).await;
    let of_type = |types: &[&str]| EventFilter {
        types: types.iter().map(|t| t.to_string()).collect(),
        ..EventFilter::default()
    };

    assert_eq!(
        sequences(&feed(&store, s.ws, of_type(&["case.created"])).await),
        [1, 2]
    );
    assert_eq!(
        sequences(&feed(&store, s.ws, of_type(&["case.updated"])).await),
        [3, 5, 7, 9]
    );
    assert_eq!(
        sequences(
            &feed(
                &store,
                s.ws,
                of_type(&["case.status_changed", "case.deleted"])
            )
            .await
        ),
        [4, 6, 8]
    );
    assert!(
        feed(&store, s.ws, of_type(&["payment.succeeded"]))
            .await
            .is_empty()
    );

    let of_case = |case| EventFilter {
        case_id: Some(case),
        ..EventFilter::default()
    };
    assert_eq!(
        sequences(&feed(&store, s.ws, of_case(one)).await),
        [1, 3, 5, 6, 9]
    );
    assert_eq!(
        sequences(&feed(&store, s.ws, of_case(two)).await),
        [2, 4, 7, 8],
        "a deleted case keeps its history"
    );

    let combined = EventFilter {
        case_id: Some(one),
        after: Some(3),
        ..of_type(&["case.updated"])
    };
    assert_eq!(sequences(&feed(&store, s.ws, combined).await), [5, 9]);
}

async fn custom_events_join_the_sequence(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({})).await;
    let custom = |case_id| NewEvent {
        event_type: "payment.succeeded".into(),
        case_id,
        form_id: None,
        actor: actor(),
        data: json!({"amount": 5}),
        changes: None,
        skip_triggers: false,
    };
    let on_case = store
        .emit_event(s.ws, custom(Some(case.id)))
        .await
        .expect("emit");
    assert_eq!(on_case.sequence, 2);
    assert_eq!(
        on_case.form_id,
        Some(s.form.id),
        "the store fills in the case's form"
    );
    let loose = store.emit_event(s.ws, custom(None)).await.expect("emit");
    assert_eq!(loose.sequence, 3);
    assert_eq!(s.feed(&store).await[1..], [on_case, loose]);

    let missing = store
        .emit_event(s.ws, custom(Some(casehook_core::CaseId::new())))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(s.create(&store, json!({})).await.number, 2);
    assert_eq!(
        sequences(&s.feed(&store).await),
        [1, 2, 3, 4],
        "the refused event used no sequence"
    );
}

async fn feed_without_data_is_the_feed_with_data_left_out(store: Store) {
    let s = Setup::new(&store, "w").await;
    activity(&store, &s).await;
    let all = s.feed(&store).await;
    let light = store
        .list_events(
            s.ws,
            &EventFilter {
                limit: 100,
                without_data: true,
                ..EventFilter::default()
            },
        )
        .await
        .expect("list without data");
    assert_eq!(light.len(), all.len());
    for (light, full) in light.iter().zip(&all) {
        assert!(!full.data.is_null(), "{full:?}");
        assert!(light.data.is_null(), "{light:?}");
        let mut expected = full.clone();
        expected.data = serde_json::Value::Null;
        assert_eq!(light, &expected, "everything else is as stored");
    }
}

contract_tests!(
    feed_without_data_is_the_feed_with_data_left_out,
    feed_resumes_exactly_after_a_sequence,
    feed_filters_by_type_and_case,
    custom_events_join_the_sequence
);
