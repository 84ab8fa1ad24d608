//! Group commit keeps operations apart: the writer runs concurrent operations in one
//! transaction, and when one fails it runs them again apart (in savepoints on SQLite, one
//! transaction each on PostgreSQL), so in a burst where some operations fail (stale
//! versions, taken references, unknown cases, a changed form) the others still commit whole
//! and the failures leave no trace — no case, no event, no used-up number or sequence.

use std::collections::BTreeSet;
use std::future::Future;

use casehook_core::CaseId;
use casehook_core::case::{Case, CaseRef};
use casehook_core::event::Event;
use casehook_store::{CasePatch, Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, actor, patch, sequences, set_ref};
use crate::harness::contract_tests;

/// What an operation of the burst must come to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Ok,
    Conflict,
    Mismatch,
    NotFound,
    FormChanged,
    /// One of a group racing for the same reference: exactly one of the group succeeds.
    Race(&'static str),
}

type Outcome = Result<(Case, Vec<Event>), StoreError>;

struct Burst {
    store: Store,
    setup: Setup,
    ops: Vec<(String, Expect, tokio::task::JoinHandle<Outcome>)>,
}

impl Burst {
    fn push<F>(&mut self, label: String, expect: Expect, op: impl FnOnce(Store, Setup) -> F)
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let task = tokio::spawn(op(self.store.clone(), self.setup.clone()));
        self.ops.push((label, expect, task));
    }

    fn update(
        &mut self,
        label: &str,
        expect: Expect,
        id: CaseId,
        change: CasePatch,
        version: Option<i64>,
    ) {
        self.push(label.into(), expect, move |store, s| async move {
            store
                .update_case(s.ws, id, change, version, actor(), false)
                .await
        });
    }

    fn create(&mut self, label: String, expect: Expect, new: casehook_store::NewCase) {
        self.push(label, expect, move |store, _| async move {
            store
                .create_case(new)
                .await
                .map(|(case, event)| (case, vec![event]))
        });
    }
}

impl Expect {
    fn fulfilled_by(self, outcome: &Outcome) -> bool {
        matches!(
            (self, outcome),
            (Expect::Ok, Ok(_))
                | (Expect::Conflict, Err(StoreError::Conflict(_)))
                | (Expect::Mismatch, Err(StoreError::VersionMismatch { .. }))
                | (Expect::NotFound, Err(StoreError::NotFound(_)))
                | (Expect::FormChanged, Err(StoreError::FormChanged))
                | (Expect::Race(_), Ok(_) | Err(StoreError::Conflict(_)))
        )
    }
}

async fn failures_in_a_burst_leave_no_trace(store: Store) {
    let s = Setup::new(&store, "w").await;
    let holder = s.create(&store, json!({"name": "holder"})).await;
    let (holder, _) = s
        .update(&store, holder.id, set_ref("stripe", Some("cus_1")))
        .await;
    let mut cases = vec![holder.clone()];
    for i in 2..=8 {
        cases.push(s.create(&store, json!({"amount": i})).await);
    }
    let feed_before = s.feed(&store).await;
    let id = |n: usize| cases[n - 1].id;

    let mut burst = Burst {
        store: store.clone(),
        setup: s.clone(),
        ops: Vec::new(),
    };
    burst.update(
        "#2 at its version",
        Expect::Ok,
        id(2),
        patch(json!({"amount": 100})),
        Some(1),
    );
    burst.update(
        "#5 at a stale version",
        Expect::Mismatch,
        id(5),
        patch(json!({"amount": 0})),
        Some(7),
    );
    burst.update(
        "#3 closes",
        Expect::Ok,
        id(3),
        crate::fixtures::status("closed"),
        None,
    );
    let mut grab = patch(json!({"amount": 0}));
    grab.external_refs
        .insert("stripe".into(), Some("cus_1".into()));
    burst.update("#6 grabs cus_1", Expect::Conflict, id(6), grab, None);
    burst.update(
        "#4 claims cus_4",
        Expect::Ok,
        id(4),
        set_ref("stripe", Some("cus_4")),
        None,
    );
    burst.update(
        "an unknown case",
        Expect::NotFound,
        CaseId::new(),
        patch(json!({"amount": 0})),
        None,
    );
    burst.update(
        "#7 races for cus_race",
        Expect::Race("cus_race"),
        id(7),
        set_ref("stripe", Some("cus_race")),
        None,
    );
    burst.update(
        "#8 races for cus_race",
        Expect::Race("cus_race"),
        id(8),
        set_ref("stripe", Some("cus_race")),
        None,
    );
    let five = id(5);
    burst.push(
        "#5 deleted at a stale version".into(),
        Expect::Mismatch,
        move |store, s| async move {
            let event = store.delete_case(s.ws, five, Some(3), actor()).await?;
            let case =
                serde_json::from_value(event.data.clone()).expect("case.deleted carries the case");
            Ok((case, vec![event]))
        },
    );
    let mut stale_form = s.case(json!({}));
    stale_form.form_version = 0;
    burst.create(
        "a case of a stale form version".into(),
        Expect::FormChanged,
        stale_form,
    );
    for i in 0..3 {
        let reference = format!("cus_new_{i}");
        burst.create(
            format!("new case with {reference}"),
            Expect::Ok,
            s.case_with_ref(json!({}), "stripe", &reference),
        );
        burst.create(
            format!("new case {i} racing for cus_fresh"),
            Expect::Race("cus_fresh"),
            s.case_with_ref(json!({}), "stripe", "cus_fresh"),
        );
    }
    for i in 0..20 {
        burst.create(
            format!("new case {i}"),
            Expect::Ok,
            s.case(json!({"amount": 1000 + i})),
        );
        burst.create(
            format!("taken cus_1 {i}"),
            Expect::Conflict,
            s.case_with_ref(json!({}), "stripe", "cus_1"),
        );
    }

    let mut succeeded: Vec<(String, Case, Vec<Event>)> = Vec::new();
    let mut race_winners = std::collections::BTreeMap::new();
    for (label, expect, task) in burst.ops {
        let outcome = task.await.expect("the operation's task does not panic");
        assert!(
            expect.fulfilled_by(&outcome),
            "{label}: expected {expect:?}, got {outcome:?}"
        );
        if let Ok((case, events)) = outcome {
            if let Expect::Race(reference) = expect {
                *race_winners.entry(reference).or_insert(0) += 1;
            }
            succeeded.push((label, case, events));
        }
    }
    let one_each = std::collections::BTreeMap::from([("cus_fresh", 1), ("cus_race", 1)]);
    assert_eq!(
        race_winners, one_each,
        "exactly one of each racing group wins"
    );

    // Every success is committed exactly as reported, and nothing else is.
    let feed_after = s.feed(&store).await;
    let written: Vec<&Event> = succeeded.iter().flat_map(|(_, _, events)| events).collect();
    assert_eq!(
        written.len(),
        20 + 3 + 1 + 4,
        "24 creations and 4 single-event updates"
    );
    let n = feed_before.len() + written.len();
    assert_eq!(
        sequences(&feed_after),
        (1..=n as i64).collect::<Vec<_>>(),
        "the feed has no gaps"
    );
    assert_eq!(feed_after[..feed_before.len()], feed_before);
    let new_events: BTreeSet<_> = feed_after[feed_before.len()..]
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        new_events,
        written.iter().map(|e| e.id).collect(),
        "the new events are exactly the successes'"
    );
    for event in &written {
        assert_eq!(
            &feed_after[usize::try_from(event.sequence - 1).expect("positive")],
            *event
        );
    }
    for (label, case, _) in &succeeded {
        let stored = store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("a success is stored");
        assert_eq!(&stored, case, "{label}");
    }

    // Case numbers stay gap-free: the refused creations used none.
    let numbers: BTreeSet<i64> = s
        .cases(&store, true)
        .await
        .iter()
        .map(|c| c.number)
        .collect();
    assert_eq!(numbers, (1..=32).collect());

    // The targets of failed operations are as they were.
    for n in [1, 5, 6] {
        let now = store
            .get_case(s.ws, CaseRef::Id(id(n)))
            .await
            .expect("still there");
        assert_eq!(
            now,
            cases[n - 1],
            "case #{n} was touched by a failed operation"
        );
    }
    assert_eq!(
        store
            .find_case_by_ref(s.ws, "stripe", "cus_1")
            .await
            .expect("held")
            .id,
        holder.id
    );
    assert_eq!(
        store
            .find_case_by_ref(s.ws, "stripe", "cus_4")
            .await
            .expect("claimed")
            .id,
        id(4)
    );
    let winner = store
        .find_case_by_ref(s.ws, "stripe", "cus_race")
        .await
        .expect("won")
        .id;
    assert!(winner == id(7) || winner == id(8));
    for reference in ["cus_new_0", "cus_new_1", "cus_new_2", "cus_fresh"] {
        let holder = store.find_case_by_ref(s.ws, "stripe", reference).await;
        let holder = holder.expect("a created case holds its reference");
        assert!(
            holder.number > 8,
            "{reference} is held by {}",
            holder.number
        );
    }
}

contract_tests!(failures_in_a_burst_leave_no_trace);
