//! Creating cases: per-workspace numbers and event sequences, the `case.created` event each
//! creation returns, and both staying gap-free under many concurrent creators.

use std::collections::BTreeSet;

use casehook_core::case::CaseRef;
use casehook_store::{EventFilter, Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, actor, feed, sequences};
use crate::harness::{TestDb, contract_tests};

async fn case_numbers_and_sequences_count_per_workspace(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let mut created = Vec::new();
    for (setup, name) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&a, "a3"), (&b, "b2")] {
        let (case, event) = store
            .create_case(setup.case(json!({"name": name})))
            .await
            .expect("create a case");
        created.push((setup.ws, case.number, event.sequence));
    }
    let numbers = |ws| {
        created
            .iter()
            .filter(|(w, ..)| *w == ws)
            .map(|(_, n, s)| (*n, *s))
            .collect::<Vec<_>>()
    };
    // One creation writes one event, so each workspace's numbers and sequences run 1, 2, 3….
    assert_eq!(numbers(a.ws), [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(numbers(b.ws), [(1, 1), (2, 2)]);
    assert_eq!(sequences(&a.feed(&store).await), [1, 2, 3]);
    assert_eq!(sequences(&b.feed(&store).await), [1, 2]);
}

async fn creation_returns_its_case_created_event(store: Store) {
    let s = Setup::new(&store, "w").await;
    let (case, event) = store
        .create_case(s.case(json!({"name": "Ada", "amount": 10})))
        .await
        .expect("create");
    assert_eq!(case.number, 1);
    assert_eq!(case.version, 1);
    assert_eq!(case.status, "open");
    assert_eq!(case.created_by, actor());
    assert_eq!(case.deleted_at, None);
    assert_eq!(
        serde_json::Value::Object(case.data.clone()),
        json!({"name": "Ada", "amount": 10})
    );

    assert_eq!(event.event_type, "case.created");
    assert_eq!(event.workspace_id, s.ws);
    assert_eq!(event.case_id, Some(case.id));
    assert_eq!(event.form_id, Some(s.form.id));
    assert_eq!(event.actor, actor());
    assert_eq!(event.changes, None);
    assert!(!event.skip_triggers);
    assert_eq!(
        event.data,
        serde_json::to_value(&case).expect("a case serialises"),
        "the event carries the case"
    );

    // What the caller was told is what was stored.
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("by id"),
        case
    );
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Number(1))
            .await
            .expect("by number"),
        case
    );
    assert_eq!(s.feed(&store).await, [event]);
}

async fn skip_triggers_is_recorded_on_the_event(store: Store) {
    let s = Setup::new(&store, "w").await;
    let mut new = s.case(json!({}));
    new.skip_triggers = true;
    let (_, event) = store.create_case(new).await.expect("create");
    assert!(event.skip_triggers);
    assert!(s.feed(&store).await[0].skip_triggers);
}

async fn unknown_form_or_workspace_is_not_found(store: Store) {
    let s = Setup::new(&store, "w").await;
    let mut new = s.case(json!({}));
    new.form_id = casehook_core::FormId::new();
    assert!(matches!(
        store.create_case(new).await,
        Err(StoreError::NotFound(_))
    ));
    let mut new = s.case(json!({}));
    new.workspace = casehook_core::WorkspaceId::new();
    assert!(matches!(
        store.create_case(new).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.feed(&store).await.is_empty());
    // Nothing was consumed: the first real case is still #1.
    assert_eq!(s.create(&store, json!({})).await.number, 1);
}

const CONCURRENT: i64 = 200;

async fn concurrent_creations_are_gap_free(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let mut tasks = Vec::new();
    for i in 0..CONCURRENT {
        let store = store.clone();
        // Every fourth creation goes to `b`, interleaved with `a`'s, to show the counters
        // are per workspace even when both are busy in the same batches.
        let setup = if i % 4 == 3 { b.clone() } else { a.clone() };
        tasks.push(tokio::spawn(async move {
            let (case, event) = store
                .create_case(setup.case(json!({"amount": i})))
                .await
                .expect("create");
            (setup.ws, case, event)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the creating task does not panic"));
    }
    for setup in [&a, &b] {
        let ours: Vec<_> = results.iter().filter(|(ws, ..)| *ws == setup.ws).collect();
        let n = ours.len() as i64;
        let numbers: BTreeSet<i64> = ours.iter().map(|(_, case, _)| case.number).collect();
        let seqs: BTreeSet<i64> = ours.iter().map(|(.., event)| event.sequence).collect();
        assert_eq!(
            numbers,
            (1..=n).collect(),
            "case numbers are exactly 1..={n}"
        );
        assert_eq!(
            seqs,
            (1..=n).collect(),
            "event sequences are exactly 1..={n}"
        );

        let stored = feed(
            &store,
            setup.ws,
            EventFilter {
                limit: 37,
                ..EventFilter::default()
            },
        )
        .await;
        assert_eq!(
            sequences(&stored),
            (1..=n).collect::<Vec<_>>(),
            "the feed is in order, without gaps"
        );
        for (_, case, event) in &ours {
            let found = &stored[usize::try_from(event.sequence - 1).expect("positive")];
            assert_eq!(found, event, "the returned event is the stored one");
            assert_eq!(found.case_id, Some(case.id));
        }
    }
}

async fn creations_through_two_stores_are_gap_free(db: TestDb) {
    // Two server processes on one database, both busy in the same two workspaces.
    let other = db.open_another().await;
    let a = Setup::new(&db.store, "a").await;
    let b = Setup::new(&db.store, "b").await;
    let mut tasks = Vec::new();
    for i in 0..CONCURRENT {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let setup = if (i / 2) % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let created = store.create_case(setup.case(json!({"amount": i}))).await;
            (setup.ws, created)
        }));
    }
    let mut per_workspace = [Vec::new(), Vec::new()];
    for task in tasks {
        let (ws, created) = task.await.expect("the creating task does not panic");
        let (case, event) = created.expect("every creation succeeds");
        per_workspace[usize::from(ws == b.ws)].push((case.number, event.sequence));
    }
    for (setup, created) in [&a, &b].into_iter().zip(per_workspace) {
        let n = created.len() as i64;
        let numbers: BTreeSet<i64> = created.iter().map(|(number, _)| *number).collect();
        let seqs: BTreeSet<i64> = created.iter().map(|(_, sequence)| *sequence).collect();
        assert_eq!(numbers, (1..=n).collect());
        assert_eq!(seqs, (1..=n).collect());
        let stored = setup.feed(&other).await;
        assert_eq!(sequences(&stored), (1..=n).collect::<Vec<_>>());
    }
}

contract_tests!(
    creations_through_two_stores_are_gap_free,
    case_numbers_and_sequences_count_per_workspace,
    creation_returns_its_case_created_event,
    skip_triggers_is_recorded_on_the_event,
    unknown_form_or_workspace_is_not_found,
    concurrent_creations_are_gap_free,
);
