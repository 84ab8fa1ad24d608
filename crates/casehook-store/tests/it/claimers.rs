//! Many workers on one queue: concurrent claimers never hold the same job at once and every
//! job is processed exactly once — with claimers sharing one `Store`, and with claimers on two
//! `Store`s opened on the same database (separate pools and writers: what two server
//! processes look like to the database).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use casehook_core::JobId;
use casehook_store::{NewJob, Store};
use serde_json::json;

use crate::harness::{TestDb, contract_tests};

const JOBS: i64 = 500;
const QUEUE: &str = "work";

async fn enqueue_all(store: &Store) -> BTreeSet<JobId> {
    let jobs = (0..JOBS).map(|n| NewJob {
        queue: QUEUE.into(),
        workspace: None,
        payload: json!({"n": n}),
        due_at: None,
        unique_key: None,
    });
    store
        .enqueue_jobs(jobs.collect())
        .await
        .expect("enqueue")
        .into_iter()
        .collect()
}

/// Claim in batches of 1-10 and complete until the queue has nothing left to claim. Leases
/// are long, so no job can legitimately come back. Returns the ids this worker processed.
async fn worker(store: Store, index: usize, held: Arc<Mutex<HashSet<JobId>>>) -> Vec<JobId> {
    let mut processed = Vec::new();
    for round in 0.. {
        let max = i64::try_from((index * 3 + round) % 10 + 1).expect("small");
        let claimed = store
            .claim_jobs(QUEUE, max, Duration::from_secs(300))
            .await
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        assert!(
            claimed.len() as i64 <= max,
            "claimed {} jobs, asked for at most {max}",
            claimed.len()
        );
        {
            let mut held = held.lock().expect("no worker panicked holding the lock");
            for job in &claimed {
                assert!(
                    held.insert(job.id),
                    "job {} is held by two workers at once",
                    job.id
                );
            }
        }
        for job in claimed {
            assert_eq!(job.attempts, 1, "job {} was claimed before", job.id);
            // Let other workers interleave while this one "works".
            tokio::task::yield_now().await;
            held.lock()
                .expect("no worker panicked holding the lock")
                .remove(&job.id);
            assert!(
                store.complete_job(&job).await.expect("complete"),
                "lost the lease of {}",
                job.id
            );
            processed.push(job.id);
        }
    }
    processed
}

async fn run_workers(stores: &[Store], per_store: usize) -> Vec<JobId> {
    let held = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..per_store {
            tasks.push(tokio::spawn(worker(
                store.clone(),
                s * per_store + w,
                held.clone(),
            )));
        }
    }
    let mut processed = Vec::new();
    for task in tasks {
        processed.extend(task.await.expect("a worker panicked"));
    }
    processed
}

fn assert_each_once(enqueued: &BTreeSet<JobId>, processed: &[JobId]) {
    let unique: BTreeSet<JobId> = processed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        processed.len(),
        "{} jobs were processed twice",
        processed.len() - unique.len()
    );
    assert_eq!(&unique, enqueued, "every enqueued job is processed");
}

async fn concurrent_claimers_process_each_job_once(store: Store) {
    let enqueued = enqueue_all(&store).await;
    let processed = run_workers(std::slice::from_ref(&store), 8).await;
    assert_each_once(&enqueued, &processed);
    assert_eq!(store.open_jobs(QUEUE).await.expect("count"), 0);
}

async fn claimers_on_two_stores_process_each_job_once(db: TestDb) {
    let other = db.open_another().await;
    let enqueued = enqueue_all(&db.store).await;
    let processed = run_workers(&[db.store.clone(), other.clone()], 4).await;
    assert_each_once(&enqueued, &processed);
    assert_eq!(other.open_jobs(QUEUE).await.expect("count"), 0);
    for id in enqueued.iter().take(5) {
        assert_eq!(db.store.job_state(*id).await.expect("state"), None);
    }
}

contract_tests!(
    concurrent_claimers_process_each_job_once,
    claimers_on_two_stores_process_each_job_once
);
