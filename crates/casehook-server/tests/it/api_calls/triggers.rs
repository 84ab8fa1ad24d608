//! When calls run: on update only for named fields, never again for the field's own
//! write-back, manual fields only through `/run`, dry runs that write nothing, and values
//! overwritten by hand.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{call_log, create_connection, form_with, get_case, settled, state_of, state_when};
use crate::stub_api::{Reply, StubApi};
use crate::support::{TestApp, api_tests, text};

api_tests!(
    on_update_runs_only_when_a_named_trigger_field_changes,
    a_fields_own_write_back_does_not_run_it_again,
    a_manual_field_runs_only_through_run,
    dry_runs_of_a_field_and_an_operation_write_nothing_and_are_logged_as_dry_runs,
    writing_an_api_call_field_by_hand_marks_it_manual_naming_the_key,
);

/// A stub answering `{"name": "<last path segment>"}`.
async fn naming_stub() -> StubApi {
    StubApi::start(|seen, _| {
        let last = seen.path.rsplit('/').next().unwrap_or_default().to_owned();
        Reply::Json(200, json!({"name": last}))
    })
    .await
}

async fn patch(app: &TestApp, case: &str, data: Value) -> Value {
    app.patch(
        &format!("/cases/{case}"),
        &app.admin_key,
        json!({"data": data}),
    )
    .await
    .expect_status(200)
    .body
}

async fn on_update_runs_only_when_a_named_trigger_field_changes(app: TestApp) {
    let stub = naming_stub().await;
    let form = form_with(
        &app,
        "Customers",
        json!([
            {"key": "customer_id", "type": "text"},
            {"key": "note", "type": "text"},
            {"key": "customer_name", "type": "text"},
            {"key": "lookup", "type": "api_call",
             "api_config": {"url": format!("{}/customers/{{data.customer_id}}", stub.url),
                            "response_mapping": {"customer_name": "$.name"}},
             "trigger": "on_update", "trigger_fields": ["customer_id"]}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"customer_id": "c1"})).await["id"]);
    patch(&app, &id, json!({"note": "not a trigger field"})).await;
    patch(&app, &id, json!({"customer_id": "c2"})).await;

    let state = settled(&app, &id, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    let paths: Vec<String> = stub.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/customers/c2"],
        "neither the creation nor the note ran the call"
    );
    assert_eq!(get_case(&app, &id).await["data"]["customer_name"], "c2");
}

async fn a_fields_own_write_back_does_not_run_it_again(app: TestApp) {
    // Every answer is new, so every write-back changes the case.
    let stub = StubApi::start(|seen, earlier| {
        Reply::Json(200, json!({"name": format!("{}#{earlier}", seen.query)}))
    })
    .await;
    let form = form_with(
        &app,
        "Echoes",
        json!([
            {"key": "note", "type": "text"},
            {"key": "echo_name", "type": "text"},
            // Any other field's change runs it, including `echo_name`, which it writes.
            {"key": "echo", "type": "api_call",
             "api_config": {"url": format!("{}/echo?note={{data.note}}", stub.url),
                            "response_mapping": {"echo_name": "$.name"}},
             "trigger": "on_update"}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"note": "a"})).await["id"]);
    patch(&app, &id, json!({"note": "b"})).await;
    let first = settled(&app, &id, "echo").await;
    assert_eq!(get_case(&app, &id).await["data"]["echo_name"], "note=b#0");

    // The write-back is an update of the case by the field itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = app
            .events(&app.admin_key, &format!("&type=case.updated&case={id}"))
            .await;
        if events.iter().any(|e| e["actor"]["kind"] == "api_call") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write-back event: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A later change runs it once more, and only once.
    patch(&app, &id, json!({"note": "c"})).await;
    state_when(&app, &id, "echo", |s| {
        s["updated_at"] != first["updated_at"] && s["status"] == "ok"
    })
    .await;
    let queries: Vec<String> = stub.seen().into_iter().map(|s| s.query).collect();
    assert_eq!(
        queries,
        ["note=b", "note=c"],
        "one call per change by a person, none for the write-backs"
    );
    assert_eq!(get_case(&app, &id).await["data"]["echo_name"], "note=c#1");
}

async fn a_manual_field_runs_only_through_run(app: TestApp) {
    let stub = naming_stub().await;
    let form = form_with(
        &app,
        "Manual",
        json!([
            {"key": "ref", "type": "text"},
            {"key": "auto", "type": "api_call",
             "api_config": {"url": format!("{}/auto/{{data.ref}}", stub.url)}},
            {"key": "by_hand", "type": "api_call", "trigger": "manual",
             "api_config": {"url": format!("{}/manual/{{data.ref}}", stub.url),
                            "response_mapping": "$.name"}}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"ref": "r1"})).await["id"]);
    // The on_create field of the same case ran; the manual one did not.
    let auto = settled(&app, &id, "auto").await;
    assert_eq!(auto["status"], "ok", "{auto}");
    assert_eq!(
        get_case(&app, &id).await["data"]["auto"],
        json!({"name": "r1"}),
        "without a mapping the whole answer is the value"
    );
    patch(&app, &id, json!({"ref": "r2"})).await;
    assert!(
        stub.seen_at("/manual/").is_empty(),
        "not on create or update"
    );
    assert!(state_of(&app, &id, "by_hand").await.is_none());

    let run = |field: &str| format!("/cases/{id}/api-calls/{field}/run");
    app.post(&run("by_hand"), &app.admin_key, json!({}))
        .await
        .expect_status(202);
    let state = settled(&app, &id, "by_hand").await;
    assert_eq!(state["status"], "ok", "{state}");
    let manual = stub.seen_at("/manual/");
    assert_eq!(manual.len(), 1, "{manual:?}");
    assert_eq!(manual[0].path, "/manual/r2");
    assert_eq!(get_case(&app, &id).await["data"]["by_hand"], "r2");

    // Only API-call fields of the case can be run.
    app.post(&run("ref"), &app.admin_key, json!({}))
        .await
        .expect_error(404, "not_found");
    app.post(&run("nope"), &app.admin_key, json!({}))
        .await
        .expect_error(404, "not_found");
    let read = app.create_key("read").await;
    app.post(&run("by_hand"), &read.secret, json!({}))
        .await
        .expect_status(403);
}

async fn dry_runs_of_a_field_and_an_operation_write_nothing_and_are_logged_as_dry_runs(
    app: TestApp,
) {
    let stub = StubApi::start(|_, _| Reply::Json(200, json!({"name": "Dry Co", "score": 5}))).await;
    let connection = create_connection(
        &app,
        json!({"name": "scores", "base_url": stub.url,
               "operations": {"score": {"path": "/score/{data.vat}",
                                        "response_mapping": {"score": "$.score"}}}}),
    )
    .await;
    let form = form_with(
        &app,
        "Dry",
        json!([
            {"key": "vat", "type": "text"},
            {"key": "company_name", "type": "text"},
            {"key": "score", "type": "number"},
            {"key": "vat_check", "type": "api_call", "trigger": "manual",
             "api_config": {"url": format!("{}/vat/{{data.vat}}", stub.url),
                            "response_mapping": {"company_name": "$.name"}}}
        ]),
    )
    .await;
    let case = app.create_case(&form, json!({"vat": "DE1"})).await;
    let id = text(&case["id"]);
    let events_before = app.events(&app.admin_key, &format!("&case={id}")).await;

    let dry = app
        .post(
            &format!("/cases/{id}/api-calls/vat_check/dry-run"),
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(dry["status"], 200, "{dry}");
    assert_eq!(dry["mapped"], json!({"company_name": "Dry Co"}), "{dry}");
    assert_eq!(dry["response"]["name"], "Dry Co", "{dry}");
    assert!(dry["error"].is_null(), "{dry}");
    let request = &dry["exchanges"][0]["request"];
    assert_eq!(request["method"], "GET", "{dry}");
    assert_eq!(request["url"], format!("{}/vat/DE1", stub.url), "{dry}");

    let op = app
        .post(
            &format!(
                "/connections/{}/operations/score/dry-run",
                text(&connection["id"])
            ),
            &app.admin_key,
            json!({"case": format!("#{}", case["number"])}),
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(op["mapped"], json!({"score": 5}), "{op}");

    assert_eq!(stub.seen().len(), 2, "both dry runs called the API");
    let after = get_case(&app, &id).await;
    assert_eq!(after["version"], case["version"], "the case is unchanged");
    assert_eq!(after["data"], json!({"vat": "DE1"}));
    assert!(state_of(&app, &id, "vat_check").await.is_none(), "no state");
    let events_after = app.events(&app.admin_key, &format!("&case={id}")).await;
    assert_eq!(events_after.len(), events_before.len(), "no event");

    let log = call_log(&app, &format!("case={id}")).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|e| e["dry_run"] == true), "{log:#?}");
    let field_entry = log
        .iter()
        .find(|e| e["field"] == "vat_check")
        .expect("the field's dry run is logged");
    assert_eq!(field_entry["verdict"], "ok");
    let op_entry = log
        .iter()
        .find(|e| e["operation"] == "score")
        .expect("the operation's dry run is logged");
    assert_eq!(op_entry["connection_id"], connection["id"]);
    assert!(op_entry["field"].is_null(), "{op_entry}");

    // A dry run of an unknown operation explains itself and sends nothing.
    app.post(
        &format!(
            "/connections/{}/operations/nope/dry-run",
            text(&connection["id"])
        ),
        &app.admin_key,
        json!({"case": id}),
    )
    .await
    .expect_error(422, "api_call_not_runnable");
    assert_eq!(stub.seen().len(), 2);
}

async fn writing_an_api_call_field_by_hand_marks_it_manual_naming_the_key(app: TestApp) {
    let stub = naming_stub().await;
    let form = form_with(
        &app,
        "Overrides",
        json!([
            {"key": "vat", "type": "text"},
            {"key": "note", "type": "text"},
            {"key": "lookup", "type": "api_call",
             "api_config": {"url": format!("{}/vat/{{data.vat}}", stub.url),
                            "response_mapping": "$.name"}}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"vat": "DE1"})).await["id"]);
    let ok = settled(&app, &id, "lookup").await;
    assert_eq!(ok["status"], "ok", "{ok}");

    let member = app.create_key("member").await;
    // Another field written by hand leaves the API-call field's state alone.
    app.patch(
        &format!("/cases/{id}"),
        &member.secret,
        json!({"data": {"note": "hello"}}),
    )
    .await
    .expect_status(200);
    assert_eq!(state_of(&app, &id, "lookup").await, Some(ok.clone()));

    let written = app
        .patch(
            &format!("/cases/{id}"),
            &member.secret,
            json!({"data": {"lookup": "Typed by hand"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(written.body["data"]["lookup"], "Typed by hand");
    // Recorded with the write itself.
    let state = state_of(&app, &id, "lookup").await.expect("a state");
    assert_eq!(state["status"], "manual", "{state}");
    assert!(state["error"].is_null(), "{state}");
    let by = &state["detail"]["overridden_by"];
    assert_eq!(by["kind"], "api_key", "{state}");
    assert_eq!(
        by["id"],
        member.id.as_str(),
        "the key that wrote it: {state}"
    );
    assert_eq!(
        stub.seen().len(),
        1,
        "the hand-written value is not fetched again"
    );
}
