//! How runs go: the response cache, case writes that never wait for an API, retries of
//! unavailable APIs, and failures that keep the last good value.

use serde_json::{Value, json};

use super::{
    call_log, create_connection, failures_of, form_with, get_case, settled, settled_after,
    state_of, state_when, states,
};
use crate::stub_api::{Reply, StubApi};
use crate::support::{TestApp, api_tests, text};

api_tests!(
    a_cached_answer_serves_the_same_request_without_http_and_a_different_one_calls,
    creating_a_case_returns_while_its_api_call_is_still_waiting_for_an_answer,
    a_503_is_retried_until_the_api_answers_and_the_attempts_are_recorded,
    a_404_fails_at_once_keeping_the_last_good_value_and_emitting_api_call_failed,
    a_call_through_a_connection_gives_up_at_the_connections_timeout,
    scheduled_runs_of_a_case_wait_for_the_previous_one_instead_of_piling_up,
);

/// A form with `vat` and an API-call field `lookup` calling `url` (a template) with
/// `settings` beside it, mapping the answer's `$.name` into the field itself.
async fn lookup_form(app: &TestApp, url: String, settings: Value) -> String {
    let mut field = json!({
        "key": "lookup", "type": "api_call",
        "api_config": {"url": url, "response_mapping": "$.name"}
    });
    if let (Some(field), Value::Object(extra)) = (field.as_object_mut(), settings) {
        field.extend(extra);
    }
    form_with(
        app,
        "Lookups",
        json!([{"key": "vat", "type": "text"}, {"key": "note", "type": "text"}, field]),
    )
    .await
}

async fn a_cached_answer_serves_the_same_request_without_http_and_a_different_one_calls(
    app: TestApp,
) {
    let stub = StubApi::start(|seen, _| {
        Reply::Json(200, json!({"name": format!("Company at {}", seen.path)}))
    })
    .await;
    let form = lookup_form(
        &app,
        format!("{}/vat/{{data.vat}}", stub.url),
        json!({"cache_duration": 300}),
    )
    .await;

    let first = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);
    let state = settled(&app, &first, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert_eq!(state["cached"], false, "the first call goes out: {state}");
    assert_eq!(stub.seen().len(), 1);

    // Another case, same rendered request: answered from the cache.
    let second = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);
    let state = settled(&app, &second, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert_eq!(state["cached"], true, "{state}");
    assert_eq!(stub.seen().len(), 1, "a cache hit makes no HTTP request");
    assert_eq!(
        get_case(&app, &second).await["data"]["lookup"],
        "Company at /vat/DE1",
        "the cached answer is mapped"
    );
    assert!(
        call_log(&app, &format!("case={second}")).await.is_empty(),
        "nothing was sent, so nothing is logged"
    );

    // A different request is not in the cache.
    let third = text(&app.create_case(&form, json!({"vat": "FR2"})).await["id"]);
    let state = settled(&app, &third, "lookup").await;
    assert_eq!(state["cached"], false, "{state}");
    assert_eq!(stub.seen().len(), 2, "a different request calls the API");
    assert_eq!(stub.seen()[1].path, "/vat/FR2");
    assert_eq!(
        get_case(&app, &third).await["data"]["lookup"],
        "Company at /vat/FR2"
    );
}

async fn creating_a_case_returns_while_its_api_call_is_still_waiting_for_an_answer(app: TestApp) {
    // The API holds its answer until the test lets it go.
    let stub = StubApi::start(|_, _| Reply::Held(json!({"name": "Late Co"}))).await;
    let form = lookup_form(
        &app,
        format!("{}/slow/{{data.vat}}", stub.url),
        json!({"timeout": 120_000, "retry": 0}),
    )
    .await;

    let reply = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form, "data": {"vat": "DE1"}}),
        )
        .await
        .expect_status(201);
    assert_eq!(
        stub.answered(),
        0,
        "the case was created before the API answered"
    );
    let id = text(&reply.body["id"]);

    // The call is in flight, held by the API, and the case can still be written.
    stub.wait_for("/slow/", 1).await;
    let patched = app
        .patch(
            &format!("/cases/{id}"),
            &app.admin_key,
            json!({"data": {"note": "written while the call waits"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(
        stub.answered(),
        0,
        "the update did not wait for the API either"
    );
    assert!(
        patched.body["data"].get("lookup").is_none(),
        "{}",
        patched.text
    );
    let waiting = state_of(&app, &id, "lookup").await.expect("a state");
    assert_eq!(
        waiting["status"], "pending",
        "no result before the answer: {waiting}"
    );
    assert_eq!(waiting["run"]["state"], "running", "{waiting}");
    assert_eq!(waiting["run"]["trigger"], "on_create", "{waiting}");
    assert_eq!(waiting["run"]["attempts"], 1, "{waiting}");

    stub.release();
    let state = settled(&app, &id, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert_eq!(stub.answered(), 1);
    let data = get_case(&app, &id).await["data"].clone();
    assert_eq!(data["lookup"], "Late Co", "{data}");
    assert_eq!(data["note"], "written while the call waits", "{data}");
}

async fn a_503_is_retried_until_the_api_answers_and_the_attempts_are_recorded(app: TestApp) {
    let stub = StubApi::start(|_, earlier| {
        if earlier < 2 {
            Reply::Json(503, json!({"error": "busy"}))
        } else {
            Reply::Json(200, json!({"name": "Finally Co"}))
        }
    })
    .await;
    let form = lookup_form(
        &app,
        format!("{}/flaky/{{data.vat}}", stub.url),
        json!({"retry": 3}),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);

    // Between tries the state says the run waits to try again, and why.
    let waiting = state_when(&app, &id, "lookup", |s| s["run"]["state"] == "retrying").await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let error = waiting["run"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "{waiting}");
    assert!(waiting["run"]["next_try_at"].is_string(), "{waiting}");

    let state = settled(&app, &id, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert!(
        state.get("run").is_none(),
        "nothing left under way: {state}"
    );
    assert_eq!(state["attempts"], 3, "two 503s, then the answer: {state}");
    assert!(state["error"].is_null(), "{state}");
    assert_eq!(stub.seen().len(), 3);
    assert_eq!(get_case(&app, &id).await["data"]["lookup"], "Finally Co");

    let log = call_log(&app, &format!("case={id}&field=lookup")).await;
    let verdicts: Vec<&str> = log
        .iter()
        .map(|e| e["verdict"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(verdicts, ["ok", "retry", "retry"], "newest first: {log:#?}");
    let statuses: Vec<&Value> = log.iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses, [&json!(200), &json!(503), &json!(503)]);
    assert!(
        failures_of(&app, &id).await.is_empty(),
        "no failure was settled"
    );
}

async fn a_404_fails_at_once_keeping_the_last_good_value_and_emitting_api_call_failed(
    app: TestApp,
) {
    let stub = StubApi::start(|_, earlier| {
        if earlier == 0 {
            Reply::Json(200, json!({"name": "First Co"}))
        } else {
            Reply::Json(404, json!({"error": "no such company"}))
        }
    })
    .await;
    let form = lookup_form(
        &app,
        format!("{}/company/{{data.vat}}", stub.url),
        json!({"retry": 3}),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);
    let good = settled(&app, &id, "lookup").await;
    assert_eq!(good["status"], "ok", "{good}");
    assert_eq!(get_case(&app, &id).await["data"]["lookup"], "First Co");

    let queued = app
        .post(
            &format!("/cases/{id}/api-calls/lookup/run"),
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(202);
    assert_eq!(queued.body, json!({"queued": true, "field": "lookup"}));

    let failed = settled_after(&app, &id, "lookup", &good).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 1, "a 404 is not retried: {failed}");
    assert_eq!(failed["error"], "the server answered HTTP 404", "{failed}");
    assert_eq!(failed["detail"]["status"], 404, "{failed}");
    assert_eq!(
        failed["fetched_at"], good["fetched_at"],
        "the time of the last good value stays"
    );
    assert_eq!(stub.seen().len(), 2, "one call each run");
    assert_eq!(
        get_case(&app, &id).await["data"]["lookup"],
        "First Co",
        "the field keeps its last good value"
    );

    let events = failures_of(&app, &id).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let data = &events[0]["data"];
    assert_eq!(data["field"], "lookup", "{data}");
    assert_eq!(data["error"], "the server answered HTTP 404", "{data}");
    assert_eq!(data["attempts"], 1, "{data}");
    assert_eq!(events[0]["case_id"], id.as_str(), "{:#}", events[0]);
    assert_eq!(states(&app, &id).await.len(), 1);
}

async fn a_call_through_a_connection_gives_up_at_the_connections_timeout(app: TestApp) {
    let stub = StubApi::start(|_, _| Reply::Hang).await;
    create_connection(
        &app,
        json!({"name": "sluggish", "base_url": stub.url, "timeout_ms": 1000,
               "operations": {"get": {"path": "/slow/{data.vat}"}}}),
    )
    .await;
    // The field keeps the default timeout (30 s); the connection allows 1 s.
    let form = form_with(
        &app,
        "Sluggish",
        json!([
            {"key": "vat", "type": "text"},
            {"key": "lookup", "type": "api_call", "connection": "sluggish", "operation": "get",
             "retry": 0}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);
    let state = settled(&app, &id, "lookup").await;
    assert_eq!(state["status"], "failed", "{state}");
    assert_eq!(
        state["error"], "the exchange did not complete within 1s",
        "{state}"
    );
    let log = call_log(&app, &format!("case={id}")).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["error_kind"], "timeout", "{log:#?}");
    assert_eq!(stub.seen().len(), 1);
}

async fn scheduled_runs_of_a_case_wait_for_the_previous_one_instead_of_piling_up(app: TestApp) {
    // The API holds every answer until the test lets go, while the schedule fires every
    // second: each case keeps one run in flight, and the schedule goes on after.
    let stub = StubApi::start(|_, _| Reply::Held(json!({"name": "Slow Ltd"}))).await;
    let form = lookup_form(
        &app,
        format!("{}/vat/{{data.vat}}", stub.url),
        json!({"trigger": "scheduled", "schedule": "* * * * * *"}),
    )
    .await;
    for vat in ["DE1", "FR2"] {
        app.create_case(&form, json!({"vat": vat})).await;
    }
    stub.wait_for("/vat/", 2).await;
    // Four more ticks while both runs are held.
    tokio::time::sleep(std::time::Duration::from_millis(4_200)).await;
    let mut paths: Vec<String> = stub.seen().iter().map(|s| s.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/vat/DE1", "/vat/FR2"],
        "one run per case at a time"
    );

    // The schedule goes on once the runs finish.
    stub.release();
    stub.wait_for("/vat/", 4).await;
}
