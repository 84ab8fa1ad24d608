//! The durable job queue, one worker at a time: leases, completion, retries at a due time,
//! lease expiry handing the job on (and fencing off the old holder), burying, and the
//! wake-up a queue's watchers get when work is committed.

use std::time::Duration;

use casehook_core::WorkspaceId;
use casehook_store::{ClaimedJob, JobState, NewJob, Store, now_micros};
use serde_json::json;

use crate::harness::contract_tests;

const LONG: Duration = Duration::from_secs(60);

fn job(queue: &str, n: i64) -> NewJob {
    NewJob {
        queue: queue.into(),
        workspace: None,
        payload: json!({"n": n}),
        due_at: None,
        unique_key: None,
    }
}

async fn claim_one(store: &Store, queue: &str, lease: Duration) -> ClaimedJob {
    let mut claimed = store.claim_jobs(queue, 10, lease).await.expect("claim");
    assert_eq!(claimed.len(), 1, "expected exactly one job: {claimed:?}");
    claimed.remove(0)
}

async fn nothing_to_claim(store: &Store, queue: &str) {
    let claimed = store.claim_jobs(queue, 10, LONG).await.expect("claim");
    assert!(
        claimed.is_empty(),
        "expected no claimable job on {queue}: {claimed:?}"
    );
}

/// Sleep until the wall clock has passed `micros` (the store's notion of due).
async fn wait_until(micros: i64) {
    while now_micros() <= micros {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn claimed_job_is_leased_until_completed(store: Store) {
    let ws = WorkspaceId::new();
    let new = NewJob {
        workspace: Some(ws),
        ..job("deliveries", 1)
    };
    let ids = store.enqueue_jobs(vec![new]).await.expect("enqueue");
    assert_eq!(
        store.job_state(ids[0]).await.expect("state"),
        Some((JobState::Pending, 0))
    );
    assert_eq!(store.open_jobs("deliveries").await.expect("count"), 1);

    let before = now_micros();
    let claimed = claim_one(&store, "deliveries", LONG).await;
    assert_eq!(claimed.id, ids[0]);
    assert_eq!(claimed.queue, "deliveries");
    assert_eq!(claimed.workspace, Some(ws));
    assert_eq!(claimed.payload, json!({"n": 1}));
    assert_eq!(claimed.attempts, 1);
    assert!(
        claimed.lease_until >= before + 59_000_000,
        "the lease runs for the time asked"
    );
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        Some((JobState::Running, 1))
    );

    nothing_to_claim(&store, "deliveries").await;
    nothing_to_claim(&store, "api_calls").await;

    assert!(store.complete_job(&claimed).await.expect("complete"));
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        None,
        "a completed job is gone"
    );
    assert_eq!(store.open_jobs("deliveries").await.expect("count"), 0);
    assert!(
        !store.complete_job(&claimed).await.expect("complete twice"),
        "completing twice is refused"
    );
    nothing_to_claim(&store, "deliveries").await;
}

async fn claims_take_at_most_max_due_jobs_oldest_first(store: Store) {
    let now = now_micros();
    let mut jobs: Vec<NewJob> = (0..5)
        .map(|n| NewJob {
            due_at: Some(now - 1_000 * (5 - n)),
            ..job("q", n)
        })
        .collect();
    jobs.push(NewJob {
        due_at: Some(now + 3_600_000_000),
        ..job("q", 99)
    });
    store.enqueue_jobs(jobs).await.expect("enqueue");
    assert_eq!(store.open_jobs("q").await.expect("count"), 6);

    let first = store.claim_jobs("q", 3, LONG).await.expect("claim");
    let mut payloads: Vec<i64> = first
        .iter()
        .map(|j| j.payload["n"].as_i64().expect("n"))
        .collect();
    payloads.sort_unstable();
    assert_eq!(payloads, [0, 1, 2], "the longest-due jobs go first");
    let rest = store.claim_jobs("q", 10, LONG).await.expect("claim");
    let mut payloads: Vec<i64> = rest
        .iter()
        .map(|j| j.payload["n"].as_i64().expect("n"))
        .collect();
    payloads.sort_unstable();
    assert_eq!(payloads, [3, 4], "a job due in an hour is not claimed");
    let tokens: std::collections::BTreeSet<_> = first
        .iter()
        .chain(&rest)
        .map(|j| (j.id, j.lease_token))
        .collect();
    assert_eq!(tokens.len(), 5);
    assert_eq!(
        store.open_jobs("q").await.expect("count"),
        6,
        "running jobs are still open"
    );
}

async fn retried_job_waits_until_due(store: Store) {
    store
        .enqueue_jobs(vec![job("q", 1)])
        .await
        .expect("enqueue");
    let claimed = claim_one(&store, "q", LONG).await;

    let far = now_micros() + 3_600_000_000;
    assert!(
        store
            .retry_job(&claimed, far, "502 from the receiver")
            .await
            .expect("retry")
    );
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        Some((JobState::Pending, 1))
    );
    nothing_to_claim(&store, "q").await;
    assert!(
        !store.complete_job(&claimed).await.expect("complete"),
        "a retry gives the lease up"
    );
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        Some((JobState::Pending, 1))
    );
}

async fn retried_job_is_claimable_once_due(store: Store) {
    store
        .enqueue_jobs(vec![job("q", 1)])
        .await
        .expect("enqueue");
    let claimed = claim_one(&store, "q", LONG).await;
    let due = now_micros() + 300_000;
    assert!(
        store
            .retry_job(&claimed, due, "timeout")
            .await
            .expect("retry")
    );
    nothing_to_claim(&store, "q").await;

    wait_until(due).await;
    let again = claim_one(&store, "q", LONG).await;
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.attempts, 2);
    assert_ne!(again.lease_token, claimed.lease_token);
    assert_eq!(again.payload, claimed.payload);
    assert!(store.complete_job(&again).await.expect("complete"));
}

async fn expired_lease_hands_the_job_on(store: Store) {
    store
        .enqueue_jobs(vec![job("q", 1)])
        .await
        .expect("enqueue");
    let first = claim_one(&store, "q", Duration::from_millis(200)).await;
    nothing_to_claim(&store, "q").await;

    // The first holder vanishes without completing; its lease runs out.
    wait_until(first.lease_until).await;
    let second = claim_one(&store, "q", LONG).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempts, 2);
    assert_ne!(second.lease_token, first.lease_token);

    // The old holder is fenced off: whatever it reports now is a duplicate.
    assert!(!store.complete_job(&first).await.expect("complete"));
    assert!(
        !store
            .retry_job(&first, now_micros(), "late")
            .await
            .expect("retry")
    );
    assert!(!store.bury_job(&first, "late").await.expect("bury"));
    assert_eq!(
        store.job_state(first.id).await.expect("state"),
        Some((JobState::Running, 2))
    );
    nothing_to_claim(&store, "q").await;
    assert!(store.complete_job(&second).await.expect("complete"));
    assert_eq!(store.job_state(first.id).await.expect("state"), None);
}

async fn buried_job_is_dead_and_never_claimed(store: Store) {
    store
        .enqueue_jobs(vec![job("q", 1)])
        .await
        .expect("enqueue");
    let claimed = claim_one(&store, "q", Duration::from_millis(100)).await;
    assert!(store.bury_job(&claimed, "410 Gone").await.expect("bury"));
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        Some((JobState::Dead, 1))
    );
    assert_eq!(store.open_jobs("q").await.expect("count"), 0);

    // Not even once its (former) lease has run out.
    wait_until(claimed.lease_until).await;
    nothing_to_claim(&store, "q").await;
    assert!(!store.complete_job(&claimed).await.expect("complete"));
    assert_eq!(
        store.job_state(claimed.id).await.expect("state"),
        Some((JobState::Dead, 1))
    );
}

async fn watchers_are_woken_when_work_commits(store: Store) {
    let mut deliveries = store.watch_queue("deliveries");
    let mut other = store.watch_queue("api_calls");
    deliveries.borrow_and_update();
    other.borrow_and_update();
    assert!(!deliveries.has_changed().expect("the store is alive"));

    let ids = store
        .enqueue_jobs(vec![job("deliveries", 1)])
        .await
        .expect("enqueue");
    tokio::time::timeout(Duration::from_secs(10), deliveries.changed())
        .await
        .expect("woken after the enqueue committed")
        .expect("the store is alive");
    // The wake-up came after the commit: the job is there to claim.
    assert_eq!(claim_one(&store, "deliveries", LONG).await.id, ids[0]);
    assert!(
        !other.has_changed().expect("the store is alive"),
        "other queues are not woken"
    );

    // A watcher that subscribes after the fact is not woken by old work, only by new.
    let mut late = store.watch_queue("deliveries");
    late.borrow_and_update();
    store
        .enqueue_jobs(vec![job("deliveries", 2), job("deliveries", 3)])
        .await
        .expect("enqueue");
    tokio::time::timeout(Duration::from_secs(10), late.changed())
        .await
        .expect("woken")
        .expect("alive");
    assert!(!other.has_changed().expect("the store is alive"));
}

async fn an_empty_enqueue_wakes_no_one(store: Store) {
    let mut rx = store.watch_queue("q");
    rx.borrow_and_update();
    // An empty batch commits nothing to the queue.
    assert!(
        store
            .enqueue_jobs(Vec::new())
            .await
            .expect("enqueue nothing")
            .is_empty()
    );
    assert!(!rx.has_changed().expect("alive"));
    assert_eq!(store.open_jobs("q").await.expect("count"), 0);
}

fn keyed(queue: &str, n: i64, key: &str) -> NewJob {
    NewJob {
        unique_key: Some(key.into()),
        ..job(queue, n)
    }
}

async fn a_unique_key_admits_one_unfinished_job_at_a_time(store: Store) {
    let first = store
        .enqueue_jobs(vec![keyed("q", 1, "k"), keyed("q", 2, "k"), job("q", 3)])
        .await
        .expect("enqueue");
    assert_eq!(first.len(), 2, "the second job with key k is left out");
    assert_eq!(store.open_jobs("q").await.expect("count"), 2);
    // Other queues and other keys are not affected.
    let other = store
        .enqueue_jobs(vec![keyed("other", 1, "k"), keyed("q", 4, "k2")])
        .await
        .expect("enqueue");
    assert_eq!(other.len(), 2);

    // Running still holds the key; a retry (pending again) too.
    let claimed = store.claim_jobs("q", 10, LONG).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    let held = claimed
        .iter()
        .find(|j| j.payload == json!({"n": 1}))
        .expect("the keyed job")
        .clone();
    assert!(
        store
            .enqueue_jobs(vec![keyed("q", 5, "k")])
            .await
            .expect("enqueue")
            .is_empty()
    );
    assert!(
        store
            .retry_job(&held, now_micros(), "again")
            .await
            .expect("retry")
    );
    assert!(
        store
            .enqueue_jobs(vec![keyed("q", 6, "k")])
            .await
            .expect("enqueue")
            .is_empty()
    );

    // Finished (or buried), the key is free again.
    let held = claim_one(&store, "q", LONG).await;
    assert_eq!(held.payload, json!({"n": 1}));
    assert!(store.bury_job(&held, "given up").await.expect("bury"));
    assert_eq!(
        store
            .enqueue_jobs(vec![keyed("q", 7, "k")])
            .await
            .expect("enqueue")
            .len(),
        1
    );
}

async fn finishing_a_job_hands_its_key_to_what_follows(store: Store) {
    store
        .enqueue_jobs(vec![keyed("q", 1, "chain")])
        .await
        .expect("enqueue");
    let page = claim_one(&store, "q", LONG).await;
    let then = store
        .finish_job_with(
            &page,
            vec![
                keyed("q", 2, "chain"),
                keyed("q", 3, "per-item"),
                keyed("q", 4, "per-item"),
            ],
        )
        .await
        .expect("finish")
        .expect("the lease was held");
    assert_eq!(
        then.len(),
        2,
        "the next page takes the key over; one per-item job"
    );
    assert_eq!(
        store.job_state(page.id).await.expect("state"),
        None,
        "finished"
    );
    assert!(
        store
            .finish_job_with(&page, vec![job("q", 9)])
            .await
            .expect("finish")
            .is_none(),
        "a lost lease finishes nothing and enqueues nothing"
    );
    assert_eq!(store.open_jobs("q").await.expect("count"), 2);
}

contract_tests!(
    a_unique_key_admits_one_unfinished_job_at_a_time,
    finishing_a_job_hands_its_key_to_what_follows,
    claimed_job_is_leased_until_completed,
    claims_take_at_most_max_due_jobs_oldest_first,
    retried_job_waits_until_due,
    retried_job_is_claimable_once_due,
    expired_lease_hands_the_job_on,
    buried_job_is_dead_and_never_claimed,
    watchers_are_woken_when_work_commits,
    an_empty_enqueue_wakes_no_one,
    another_process_is_woken_by_committed_work
);

/// On PostgreSQL, work committed through one store wakes the workers of another (another
/// process) through LISTEN/NOTIFY, without waiting for their polling. SQLite runs one
/// process, whose wake-ups are in-process.
async fn another_process_is_woken_by_committed_work(db: crate::harness::TestDb) {
    if db.store.dialect() != casehook_store::Dialect::Postgres {
        return;
    }
    let other = db.open_another().await;
    let mut woken = other.watch_queue("cross");
    woken.mark_unchanged();
    // The listener connects in the background; enqueue until a wake-up arrives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        db.store
            .enqueue_jobs(vec![casehook_store::NewJob {
                queue: "cross".into(),
                workspace: None,
                payload: serde_json::json!({}),
                due_at: None,
                unique_key: None,
            }])
            .await
            .expect("enqueue");
        if tokio::time::timeout(std::time::Duration::from_millis(500), woken.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other store was never woken"
        );
    }
}
