//! The registry of serving processes: heartbeats count the live ones by role (this one
//! included), a process that stops beating is forgotten, and one that signs off leaves at once.

use casehook_store::{LiveProcesses, ProcessBeat, Store, now_micros};
use uuid::Uuid;

use crate::harness::contract_tests;

fn beat(api: bool, workers: bool) -> ProcessBeat {
    ProcessBeat {
        id: Uuid::new_v4(),
        serves_api: api,
        runs_workers: workers,
        description: "test".into(),
    }
}

async fn heartbeats_count_live_processes_by_role(store: Store) {
    let (all, api, workers) = (beat(true, true), beat(true, false), beat(false, true));
    let long_ago = now_micros() - 60_000_000;
    let alone = store.heartbeat(api.clone(), long_ago).await.expect("beat");
    assert_eq!(
        alone,
        LiveProcesses { api: 1, workers: 1 },
        "a role nobody serves still counts one, so a share is never divided by zero"
    );
    store.heartbeat(all.clone(), long_ago).await.expect("beat");
    let three = store
        .heartbeat(workers.clone(), long_ago)
        .await
        .expect("beat");
    assert_eq!(three, LiveProcesses { api: 2, workers: 2 });
    // Beating again is one row per process, not one per beat.
    let again = store.heartbeat(all.clone(), long_ago).await.expect("beat");
    assert_eq!(again, three);

    store.sign_off(api.id).await.expect("sign off");
    let after = store.heartbeat(all.clone(), long_ago).await.expect("beat");
    assert_eq!(after, LiveProcesses { api: 1, workers: 2 });

    // Everyone but the beating process has missed its beats.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let now = now_micros();
    let only = store.heartbeat(workers.clone(), now).await.expect("beat");
    assert_eq!(
        only,
        LiveProcesses { api: 1, workers: 1 },
        "stale processes are forgotten"
    );
    let back = store.heartbeat(all, now).await.expect("beat");
    assert_eq!(
        back,
        LiveProcesses { api: 1, workers: 2 },
        "and come back when they beat"
    );
}

contract_tests!(heartbeats_count_live_processes_by_role);
