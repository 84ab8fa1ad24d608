//! Endpoints and deliveries as bookkeeping: dispatch fans each event out exactly once (a
//! dispatcher whose cursor moved writes nothing), an attempt settles its delivery, job and
//! the endpoint's health together, a worker that lost its lease changes no state, recovery
//! reopens failed deliveries without duplicating pending ones, and deletion cancels.

use std::time::Duration;

use casehook_core::event::Event;
use casehook_core::{EndpointId, JobId, WorkspaceId};
use casehook_store::{
    ClaimedJob, DELIVERY_QUEUE, DeliveryFilter, DeliveryRecord, EndpointChange, EventFilter,
    FeedNews, NewAttempt, NewDelivery, NewEndpoint, Settlement, Store, StoreError, now_micros,
};
use serde_json::json;

use crate::fixtures::{Setup, actor, feed};
use crate::harness::{TestDb, contract_tests};

async fn endpoint(store: &Store, ws: WorkspaceId, name: &str) -> EndpointId {
    store
        .create_endpoint(NewEndpoint {
            id: EndpointId::new(),
            workspace: ws,
            name: name.into(),
            config: json!({"url": "https://example.com/hook"}),
            secret: vec![1, 2, 3],
            auth: Some(vec![9, 9]),
            enabled: true,
        })
        .await
        .expect("create endpoint")
        .id
}

fn planned(endpoint: EndpointId, event: &Event) -> NewDelivery {
    NewDelivery {
        endpoint_id: endpoint,
        event_id: event.id,
        event_sequence: event.sequence,
        event_type: event.event_type.clone(),
        case_id: event.case_id,
    }
}

/// Dispatch every undispatched event of the workspace to `endpoint`.
async fn dispatch_all(store: &Store, s: &Setup, endpoint: EndpointId) -> Vec<DeliveryRecord> {
    let backlog = store.dispatch_backlog().await.expect("backlog");
    let ours = backlog
        .iter()
        .find(|b| b.workspace == s.ws)
        .expect("our workspace has a backlog");
    let events = feed(
        store,
        s.ws,
        EventFilter {
            after: Some(ours.dispatched),
            ..EventFilter::default()
        },
    )
    .await;
    let plan = events.iter().map(|e| planned(endpoint, e)).collect();
    store
        .commit_dispatch(s.ws, ours.dispatched, ours.latest, plan, Vec::new(), None)
        .await
        .expect("dispatch");
    deliveries(store, s.ws).await
}

async fn deliveries(store: &Store, ws: WorkspaceId) -> Vec<DeliveryRecord> {
    store
        .list_deliveries(
            ws,
            &DeliveryFilter {
                limit: 1000,
                ..DeliveryFilter::default()
            },
        )
        .await
        .expect("list deliveries")
}

async fn claim(store: &Store) -> Vec<ClaimedJob> {
    store
        .claim_jobs(DELIVERY_QUEUE, 100, Duration::from_secs(60))
        .await
        .expect("claim")
}

fn attempt(verdict: &str, status: Option<i64>) -> NewAttempt {
    NewAttempt {
        started_at: now_micros(),
        duration_us: 1234,
        request: json!({"method": "POST", "url": "https://example.com/hook"}),
        status,
        response: status.map(|_| json!({"headers": {}, "body_excerpt": "ok"})),
        error_kind: (verdict != "success").then(|| "http_status".to_string()),
        error_message: (verdict != "success").then(|| "HTTP 500".to_string()),
        verdict: verdict.into(),
    }
}

async fn claimed_deliveries_are_read_in_one_batch(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let ep_a = endpoint(&store, a.ws, "crm").await;
    let ep_b = endpoint(&store, b.ws, "crm").await;
    for n in 0..3 {
        a.create(&store, json!({"n": n})).await;
    }
    b.create(&store, json!({})).await;
    dispatch_all(&store, &a, ep_a).await;
    dispatch_all(&store, &b, ep_b).await;
    let jobs = claim(&store).await;
    assert_eq!(jobs.len(), 4);

    let mut forged = jobs
        .iter()
        .find(|j| j.workspace == Some(a.ws))
        .expect("a job of a")
        .clone();
    forged.id = JobId::new();
    forged.workspace = Some(b.ws);
    let mut nameless = jobs[0].clone();
    nameless.id = JobId::new();
    nameless.payload = json!({});
    let mut asked = jobs.clone();
    asked.extend([forged.clone(), nameless.clone()]);

    let works = store.deliveries_work(&asked).await.expect("batch read");
    assert_eq!(works.len(), 4, "one work per real job");
    for job in &jobs {
        let alone = store.delivery_work(job).await.expect("read alone");
        assert_eq!(
            works.get(&job.id),
            Some(&alone),
            "the batch reads what a read alone does"
        );
    }
    assert!(
        !works.contains_key(&forged.id),
        "a job never gets another workspace's delivery"
    );
    assert!(!works.contains_key(&nameless.id));
    assert!(store.deliveries_work(&[]).await.expect("empty").is_empty());
}

async fn dispatch_fans_out_each_event_once(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    s.create(&store, json!({"amount": 1})).await;
    s.create(&store, json!({"amount": 2})).await;
    let first = dispatch_all(&store, &s, ep).await;
    assert_eq!(first.len(), 2);
    assert!(
        first
            .iter()
            .all(|d| d.state == "pending" && d.origin == "event")
    );

    // A second dispatcher that read the same cursor loses the race and writes nothing.
    let stale = store
        .commit_dispatch(
            s.ws,
            0,
            2,
            vec![planned(ep, &s.feed(&store).await[0])],
            Vec::new(),
            None,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(deliveries(&store, s.ws).await.len(), 2);
    assert!(
        !store
            .dispatch_backlog()
            .await
            .expect("backlog")
            .iter()
            .any(|b| b.workspace == s.ws),
        "nothing left to dispatch"
    );
    s.create(&store, json!({"amount": 3})).await;
    assert_eq!(dispatch_all(&store, &s, ep).await.len(), 3);
    assert_eq!(claim(&store).await.len(), 3, "every delivery has a job");
}

async fn attempts_settle_delivery_job_and_health(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    s.create(&store, json!({})).await;
    dispatch_all(&store, &s, ep).await;
    let job = claim(&store).await.pop().expect("a job");
    let delivery = store.delivery_of_job(&job).await.expect("its delivery");

    let later = now_micros() + 3_600_000_000;
    let recorded = store
        .record_attempt(
            &job,
            &delivery,
            attempt("retry", Some(500)),
            Settlement::RetryAt(later),
        )
        .await
        .expect("record");
    assert!(recorded.lease_held);
    let after = store.get_delivery(s.ws, delivery.id).await.expect("get");
    assert_eq!((after.state.as_str(), after.attempts), ("pending", 1));
    assert_eq!(after.last_status, Some(500));
    let marks = store.get_endpoint(s.ws, ep).await.expect("endpoint").health;
    assert!(marks.failing_since.is_some() && marks.last_failure_at.is_some());
    assert!(claim(&store).await.is_empty(), "the retry is not due yet");

    // Retry now: same delivery, due at once.
    store
        .retry_delivery_now(s.ws, delivery.id)
        .await
        .expect("retry now");
    let job = claim(&store).await.pop().expect("due again");
    assert_eq!(
        store.delivery_of_job(&job).await.expect("same").id,
        delivery.id
    );
    store
        .record_attempt(
            &job,
            &after,
            attempt("success", Some(200)),
            Settlement::Succeeded,
        )
        .await
        .expect("record success");
    let done = store.get_delivery(s.ws, delivery.id).await.expect("get");
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 2));
    assert!(done.finished_at.is_some());
    let attempts = store
        .list_attempts(s.ws, delivery.id)
        .await
        .expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.verdict.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "retry"), (2, "success")]
    );
    let marks = store.get_endpoint(s.ws, ep).await.expect("endpoint").health;
    assert!(marks.failing_since.is_none() && marks.last_success_at.is_some());
    assert!(claim(&store).await.is_empty(), "the job is gone");
    let stats = store.attempt_stats(s.ws, ep, 0).await.expect("stats");
    assert_eq!((stats.attempts, stats.successes), (2, 1));
    assert_eq!(stats.durations_us, vec![1234, 1234]);
}

async fn a_lost_lease_changes_no_state(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    s.create(&store, json!({})).await;
    dispatch_all(&store, &s, ep).await;
    let mut job = claim(&store).await.pop().expect("a job");
    let delivery = store.delivery_of_job(&job).await.expect("delivery");
    job.lease_token = uuid::Uuid::new_v4();
    let recorded = store
        .record_attempt(
            &job,
            &delivery,
            attempt("success", Some(200)),
            Settlement::Succeeded,
        )
        .await
        .expect("record");
    assert!(!recorded.lease_held);
    let after = store.get_delivery(s.ws, delivery.id).await.expect("get");
    assert_eq!((after.state.as_str(), after.attempts), ("pending", 0));
    assert_eq!(
        store
            .list_attempts(s.ws, delivery.id)
            .await
            .expect("log")
            .len(),
        1,
        "the try is still logged"
    );
}

async fn gone_disables_the_endpoint_with_an_event(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    s.create(&store, json!({})).await;
    dispatch_all(&store, &s, ep).await;
    let job = claim(&store).await.pop().expect("a job");
    let delivery = store.delivery_of_job(&job).await.expect("delivery");
    let recorded = store
        .record_attempt(
            &job,
            &delivery,
            attempt("gone", Some(410)),
            Settlement::FailedAndDisable {
                error: "HTTP 410 Gone".into(),
                reason: "the endpoint answered 410 Gone".into(),
            },
        )
        .await
        .expect("record");
    let event = recorded.disabled.expect("disabling emits an event");
    assert_eq!(event.event_type, "endpoint.disabled");
    assert_eq!(event.data["endpoint_id"], json!(ep));
    let record = store.get_endpoint(s.ws, ep).await.expect("endpoint");
    assert!(!record.enabled);
    assert_eq!(
        record.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert_eq!(s.feed(&store).await.last(), Some(&event));

    // Enabling by hand clears the reason and the failing mark.
    let record = store
        .update_endpoint(
            s.ws,
            ep,
            EndpointChange {
                enabled: Some((true, None)),
                ..EndpointChange::default()
            },
            Some(record.version),
            actor(),
        )
        .await
        .expect("enable");
    assert!(record.enabled && record.disabled_reason.is_none());
    assert!(record.health.failing_since.is_none());
}

async fn recovery_reopens_failed_deliveries_once(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    for i in 0..3 {
        s.create(&store, json!({"amount": i})).await;
    }
    dispatch_all(&store, &s, ep).await;
    for job in claim(&store).await {
        let delivery = store.delivery_of_job(&job).await.expect("delivery");
        store
            .record_attempt(
                &job,
                &delivery,
                attempt("fail", Some(400)),
                Settlement::Failed("HTTP 400".into()),
            )
            .await
            .expect("record");
    }
    let all = deliveries(&store, s.ws).await;
    assert!(all.iter().all(|d| d.state == "failed"));
    // A replay of the first event is already pending: recovery leaves that event alone.
    let replay = store
        .replay_event(
            s.ws,
            NewDelivery {
                endpoint_id: ep,
                event_id: all[2].event_id,
                event_sequence: all[2].event_sequence,
                event_type: all[2].event_type.clone(),
                case_id: all[2].case_id,
            },
        )
        .await
        .expect("replay");
    assert_eq!(
        (replay.origin.as_str(), replay.state.as_str()),
        ("replay", "pending")
    );
    let reopened = store
        .recover_failed_deliveries(s.ws, ep, 0)
        .await
        .expect("recover");
    assert_eq!(reopened.len(), 2);
    let again = store
        .recover_failed_deliveries(s.ws, ep, 0)
        .await
        .expect("recover twice");
    assert!(again.is_empty(), "recovering twice reopens nothing more");
    assert_eq!(claim(&store).await.len(), 3, "two recovered + one replay");
    let future = store
        .recover_failed_deliveries(s.ws, ep, now_micros() + 1_000_000)
        .await
        .expect("recover since later");
    assert!(future.is_empty());
}

async fn deleting_an_endpoint_cancels_its_pending_deliveries(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    s.create(&store, json!({})).await;
    dispatch_all(&store, &s, ep).await;
    store.delete_endpoint(s.ws, ep).await.expect("delete");
    assert!(matches!(
        store.get_endpoint(s.ws, ep).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.list_endpoints(s.ws).await.expect("list").is_empty());
    let all = deliveries(&store, s.ws).await;
    assert_eq!(all[0].state, "cancelled");
    assert!(claim(&store).await.is_empty());
    assert!(matches!(
        store.delete_endpoint(s.ws, ep).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn endpoints_and_deliveries_are_tenant_scoped(db: TestDb) {
    let store = db.store.clone();
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let ep = endpoint(&store, a.ws, "crm").await;
    a.create(&store, json!({})).await;
    let delivery = dispatch_all(&store, &a, ep).await.pop().expect("delivery");
    assert!(matches!(
        store.get_endpoint(b.ws, ep).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_delivery(b.ws, delivery.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.retry_delivery_now(b.ws, delivery.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.recover_failed_deliveries(b.ws, ep, 0).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .list_attempts(b.ws, delivery.id)
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(deliveries(&store, b.ws).await.is_empty());
    assert!(matches!(
        store.delete_endpoint(b.ws, ep).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn dispatched_deliveries_can_come_back_leased(store: Store) {
    let s = Setup::new(&store, "w").await;
    let ep = endpoint(&store, s.ws, "crm").await;
    let other = endpoint(&store, s.ws, "erp").await;
    s.create(&store, json!({})).await;
    let event = s.feed(&store).await.pop().expect("an event");
    let dispatched = store
        .commit_dispatch(
            s.ws,
            0,
            1,
            vec![planned(ep, &event), planned(other, &event)],
            Vec::new(),
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("dispatch");
    assert_eq!(dispatched.leased.len(), 2);
    assert!(
        claim(&store).await.is_empty(),
        "a leased job is not claimable"
    );
    for (leased, id) in dispatched.leased.iter().zip(&dispatched.deliveries) {
        let (delivery, seen) = store
            .delivery_work(&leased.job)
            .await
            .expect("its delivery");
        assert_eq!(&delivery.id, id);
        assert_eq!(seen, event);
        assert_eq!(
            leased.delivery, delivery,
            "the delivery handed back is the delivery as written"
        );
    }
    let job = &dispatched.leased[0].job;
    let delivery = store.delivery_of_job(job).await.expect("its delivery");
    let recorded = store
        .record_attempt(
            job,
            &delivery,
            attempt("success", Some(200)),
            Settlement::Succeeded,
        )
        .await
        .expect("record");
    assert!(
        recorded.lease_held,
        "the dispatcher's lease is a real lease"
    );
    assert_eq!(
        store
            .get_delivery(s.ws, delivery.id)
            .await
            .expect("get")
            .state,
        "succeeded"
    );
}

/// Many attempts recorded at once (PostgreSQL records them as one set): each delivery ends
/// as its own attempt said, a lost lease changes nothing, and each endpoint's health follows
/// its last outcome.
async fn concurrent_attempts_settle_each_delivery(store: Store) {
    let s = Setup::new(&store, "w").await;
    let good = endpoint(&store, s.ws, "good").await;
    let bad = endpoint(&store, s.ws, "bad").await;
    for i in 0..10 {
        s.create(&store, json!({"amount": i})).await;
    }
    let events = s.feed(&store).await;
    let plan = events
        .iter()
        .flat_map(|e| [planned(good, e), planned(bad, e)])
        .collect();
    store
        .commit_dispatch(s.ws, 0, 10, plan, Vec::new(), None)
        .await
        .expect("dispatch");
    let jobs = claim(&store).await;
    assert_eq!(jobs.len(), 20);
    let later = now_micros() + 3_600_000_000;
    let mut tasks = Vec::new();
    for (n, mut job) in jobs.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let delivery = store.delivery_of_job(&job).await.expect("delivery");
            let to_good = delivery.endpoint_id == good;
            let (attempt, settlement, expect) = if to_good {
                (
                    attempt("success", Some(200)),
                    Settlement::Succeeded,
                    "succeeded",
                )
            } else if n % 3 == 0 {
                (
                    attempt("fail", Some(400)),
                    Settlement::Failed("HTTP 400".into()),
                    "failed",
                )
            } else {
                (
                    attempt("retry", Some(500)),
                    Settlement::RetryAt(later),
                    "pending",
                )
            };
            let lost = n == 7;
            if lost {
                job.lease_token = uuid::Uuid::new_v4();
            }
            let recorded = store
                .record_attempt(&job, &delivery, attempt, settlement)
                .await
                .expect("record");
            assert_eq!(recorded.lease_held, !lost);
            (
                delivery.id,
                if lost { "pending" } else { expect },
                if lost { 0 } else { 1 },
            )
        }));
    }
    for task in tasks {
        let (id, state, attempts) = task.await.expect("no panic");
        let now = store.get_delivery(s.ws, id).await.expect("get");
        assert_eq!(
            (now.state.as_str(), now.attempts),
            (state, attempts),
            "{id}"
        );
        assert_eq!(store.list_attempts(s.ws, id).await.expect("log").len(), 1);
    }
    let good = store.get_endpoint(s.ws, good).await.expect("good").health;
    assert!(good.last_success_at.is_some() && good.failing_since.is_none());
    let bad = store.get_endpoint(s.ws, bad).await.expect("bad").health;
    assert!(bad.failing_since.is_some() && bad.last_success_at.is_none());
    // The job of the delivery whose lease was lost is still held by its (real) lease; the
    // retried ones wait an hour; nothing else is claimable.
    assert!(claim(&store).await.is_empty());
}

/// The dispatcher's news: which workspaces' feeds grew, and how far, so that it reads
/// nothing for a workspace whose cursor it knows, and never scans every workspace per event.
async fn feed_news_names_the_workspaces_that_got_events(db: TestDb) {
    let store = &db.store;
    assert_eq!(
        store.take_feed_news(),
        FeedNews::All,
        "a dispatcher's first look covers every workspace"
    );
    let a = Setup::new(store, "a").await;
    let b = Setup::new(store, "b").await;
    let idle = Setup::new(store, "idle").await;
    let _ = store.take_feed_news();
    a.create(store, json!({})).await;
    a.create(store, json!({})).await;
    b.create(store, json!({})).await;
    let latest = |s: &Setup| {
        let ws = s.ws;
        async move {
            store
                .workspace_backlog(ws)
                .await
                .expect("backlog")
                .expect("events past the cursor")
        }
    };
    let (backlog_a, backlog_b) = (latest(&a).await, latest(&b).await);
    assert_eq!(backlog_a.dispatched, 0);
    assert_eq!(
        store.take_feed_news(),
        FeedNews::Some(
            [
                (a.ws, Some(backlog_a.latest)),
                (b.ws, Some(backlog_b.latest))
            ]
            .into()
        ),
        "each workspace with the last sequence written"
    );
    assert_eq!(
        store.take_feed_news(),
        FeedNews::Some(Default::default()),
        "news is taken once"
    );
    assert_eq!(store.workspace_backlog(idle.ws).await.expect("read"), None);

    // A write that fails leaves no news.
    store
        .create_case(a.case_with_ref(json!({}), "crm", "1"))
        .await
        .expect("first claim");
    let _ = store.take_feed_news();
    let taken = store
        .create_case(a.case_with_ref(json!({}), "crm", "1"))
        .await;
    assert!(taken.is_err(), "{taken:?}");
    assert_eq!(store.take_feed_news(), FeedNews::Some(Default::default()));

    // Once dispatched up to its counter, a workspace has no backlog.
    let backlog_a = latest(&a).await;
    store
        .commit_dispatch(a.ws, 0, backlog_a.latest, Vec::new(), Vec::new(), None)
        .await
        .expect("dispatch");
    assert_eq!(store.workspace_backlog(a.ws).await.expect("read"), None);
    assert_eq!(latest(&b).await, backlog_b);

    // Another process's events arrive as news without a sequence (PostgreSQL announces
    // them; SQLite has one process).
    if store.dialect() != casehook_store::Dialect::Postgres {
        return;
    }
    let other = db.open_another().await;
    let mut wake = store.watch_queue(casehook_store::EVENTS_WAKE);
    // The listener connects in the background, and on connecting looks at everything once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        wake.mark_unchanged();
        b.create(&other, json!({})).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.changed()).await;
        if store.take_feed_news() == FeedNews::Some([(b.ws, None)].into()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other process's events never made news here"
        );
    }
}

contract_tests!(
    feed_news_names_the_workspaces_that_got_events,
    concurrent_attempts_settle_each_delivery,
    dispatched_deliveries_can_come_back_leased,
    claimed_deliveries_are_read_in_one_batch,
    dispatch_fans_out_each_event_once,
    attempts_settle_delivery_job_and_health,
    a_lost_lease_changes_no_state,
    gone_disables_the_endpoint_with_an_event,
    recovery_reopens_failed_deliveries_once,
    deleting_an_endpoint_cancels_its_pending_deliveries,
    endpoints_and_deliveries_are_tenant_scoped
);
