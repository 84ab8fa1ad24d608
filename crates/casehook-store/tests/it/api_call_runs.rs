//! A case's API-call states show the runs under way: queued, running, retrying, beside what
//! the last settled run left.

use std::time::Duration;

use casehook_core::CaseId;
use casehook_core::event::{Actor, ActorKind};
use casehook_store::{
    API_CALL_QUEUE, ApiCallOutcome, ApiCallState, ClaimedJob, NewJob, RunStage, Store, now_micros,
};
use serde_json::{Map, json};

use crate::fixtures::Setup;
use crate::harness::contract_tests;

fn run_job(s: &Setup, case: CaseId, field: &str, trigger: &str) -> NewJob {
    NewJob {
        queue: API_CALL_QUEUE.into(),
        workspace: Some(s.ws),
        payload: json!({"case_id": case, "field": field, "trigger": trigger, "chain": 0}),
        due_at: None,
        unique_key: None,
    }
}

async fn claim_all(store: &Store) -> Vec<ClaimedJob> {
    store
        .claim_jobs(API_CALL_QUEUE, 100, Duration::from_secs(60))
        .await
        .expect("claim")
}

async fn states(store: &Store, s: &Setup, case: CaseId) -> Vec<ApiCallState> {
    store.api_call_states(s.ws, case).await.expect("states")
}

fn run_state(state: &ApiCallState) -> Option<RunStage> {
    state.run.as_ref().map(|r| r.state)
}

async fn open_runs_show_in_the_states_until_they_settle(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({})).await;
    let other = s.create(&store, json!({})).await;
    assert!(states(&store, &s, case.id).await.is_empty());

    store
        .enqueue_jobs(vec![
            run_job(&s, case.id, "lookup", "on_create"),
            run_job(&s, other.id, "lookup", "manual"),
            // A sequence's action names the case but is no field's run.
            NewJob {
                payload: json!({"action": {"name": "notify"}, "case_id": case.id}),
                ..run_job(&s, case.id, "", "")
            },
        ])
        .await
        .expect("enqueue");
    let queued = states(&store, &s, case.id).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0].field, "lookup");
    assert_eq!(queued[0].status, "pending", "nothing settled yet");
    let run = queued[0].run.as_ref().expect("its run");
    assert_eq!(
        (run.state, run.trigger.as_deref(), run.attempts),
        (RunStage::Queued, Some("on_create"), 0)
    );
    assert!(run.next_try_at.is_some() && run.last_error.is_none());

    let claimed = claim_all(&store).await;
    let job = claimed
        .iter()
        .find(|j| j.payload["case_id"] == json!(case.id) && j.payload.get("field").is_some())
        .expect("the run's job");
    let running = states(&store, &s, case.id).await;
    assert_eq!(run_state(&running[0]), Some(RunStage::Running));
    let run = running[0].run.as_ref().expect("its run");
    assert_eq!((run.attempts, run.next_try_at), (1, None));

    // Due already, so that the end of the test can claim it again.
    let due = now_micros() - 1_000;
    store
        .retry_job(job, due, "HTTP 503 from the API")
        .await
        .expect("retry");
    let retrying = states(&store, &s, case.id).await;
    let run = retrying[0].run.as_ref().expect("its run");
    assert_eq!(run.state, RunStage::Retrying);
    assert_eq!(run.last_error.as_deref(), Some("HTTP 503 from the API"));
    assert_eq!(
        run.next_try_at.map(|t| t.unix_timestamp()),
        Some(due / 1_000_000)
    );

    // A second run of the field queued meanwhile: the one further along is shown.
    store
        .enqueue_jobs(vec![run_job(&s, case.id, "lookup", "on_update")])
        .await
        .expect("enqueue");
    assert_eq!(
        run_state(&states(&store, &s, case.id).await[0]),
        Some(RunStage::Retrying)
    );

    // What a settled run left stays beside the run under way.
    store
        .settle_api_call(ApiCallOutcome {
            workspace: s.ws,
            case_id: case.id,
            field: "lookup".into(),
            data: Map::new(),
            form_version: s.form.version,
            actor: Actor {
                kind: ActorKind::ApiCall,
                id: Some("lookup".into()),
                name: "api call lookup".into(),
                chain: 1,
            },
            error: None,
            attempts: 1,
            duration_ms: 12,
            cached: false,
            detail: None,
        })
        .await
        .expect("settle");
    let settled = states(&store, &s, case.id).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].status, "ok");
    assert_eq!(run_state(&settled[0]), Some(RunStage::Retrying));

    // Another workspace sees none of it.
    let stranger = Setup::new(&store, "stranger").await;
    assert!(
        store
            .api_call_states(stranger.ws, case.id)
            .await
            .expect("states")
            .is_empty()
    );

    // Once every job of the field is done, only the settled state is left.
    for job in claim_all(&store).await.iter().chain(&claimed) {
        store.complete_job(job).await.expect("complete");
    }
    let done = states(&store, &s, case.id).await;
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].status.as_str(), run_state(&done[0])), ("ok", None));
    assert!(
        states(&store, &s, other.id).await.is_empty(),
        "the other case's run is done and never settled a state"
    );
}

contract_tests!(open_runs_show_in_the_states_until_they_settle);
