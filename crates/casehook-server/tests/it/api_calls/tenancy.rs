//! Another workspace sees none of a workspace's API calls, connections and secrets, cannot
//! run or dry-run them, and cannot use them by name.

use serde_json::json;

use super::{create_connection, form_with, put_secret, settled};
use crate::stub_api::{Reply, StubApi};
use crate::support::{TestApp, api_tests, text};

api_tests!(
    another_workspace_cannot_see_run_or_dry_run_these_api_calls,
    another_workspace_cannot_read_or_use_these_secrets_and_connections,
);

/// Workspace A's setup: secret `a_key`, connection `crm` with operation `get`, a form whose
/// field `lookup` uses it, and one settled case. Returns (case id, connection id).
async fn workspace_a(app: &TestApp, stub: &StubApi) -> (String, String) {
    put_secret(app, "a_key", "a-only-value").await;
    let connection = create_connection(
        app,
        json!({"name": "crm", "base_url": stub.url,
               "auth": {"type": "bearer", "token": "{secret.a_key}"},
               "operations": {"get": {"path": "/customers/{data.ref}"}}}),
    )
    .await;
    let form = form_with(
        app,
        "A",
        json!([
            {"key": "ref", "type": "text"},
            {"key": "lookup", "type": "api_call", "connection": "crm", "operation": "get"}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"ref": "r1"})).await["id"]);
    let state = settled(app, &id, "lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    (id, text(&connection["id"]))
}

async fn another_workspace_cannot_see_run_or_dry_run_these_api_calls(app: TestApp) {
    let stub = StubApi::start(|_, _| Reply::Json(200, json!({"ok": true}))).await;
    let (case, connection) = workspace_a(&app, &stub).await;
    let other = app.create_workspace("Other").await;
    let b = other.admin_key.as_str();

    app.get(&format!("/cases/{case}/api-calls"), b)
        .await
        .expect_error(404, "not_found");
    for action in ["run", "dry-run"] {
        app.post(
            &format!("/cases/{case}/api-calls/lookup/{action}"),
            b,
            json!({}),
        )
        .await
        .expect_error(404, "not_found");
    }
    app.post(
        &format!("/connections/{connection}/operations/get/dry-run"),
        b,
        json!({"case": case}),
    )
    .await
    .expect_error(404, "not_found");
    for query in [
        String::new(),
        format!("case={case}"),
        format!("connection={connection}"),
    ] {
        let log = app
            .get(&format!("/api-calls?{query}"), b)
            .await
            .expect_status(200);
        assert!(log.items().is_empty(), "{query}: {}", log.text);
    }

    // And workspace A cannot dry-run its operation against B's case.
    let b_form = app
        .post(
            "/forms",
            b,
            json!({"name": "B", "fields": [{"key": "ref", "type": "text"}]}),
        )
        .await
        .expect_status(201)
        .body;
    let b_case = app
        .post(
            "/cases",
            b,
            json!({"form_id": b_form["id"], "data": {"ref": "b1"}}),
        )
        .await
        .expect_status(201)
        .body;
    app.post(
        &format!("/connections/{connection}/operations/get/dry-run"),
        &app.admin_key,
        json!({"case": b_case["id"]}),
    )
    .await
    .expect_error(404, "not_found");

    assert_eq!(stub.seen().len(), 1, "only A's own run reached the API");
    assert_eq!(
        app.get("/api-calls", &app.admin_key)
            .await
            .expect_status(200)
            .items()
            .len(),
        1,
        "A's log is A's run alone"
    );
}

async fn another_workspace_cannot_read_or_use_these_secrets_and_connections(app: TestApp) {
    let stub = StubApi::start(|_, _| Reply::Json(200, json!({"ok": true}))).await;
    let (case, connection) = workspace_a(&app, &stub).await;
    let other = app.create_workspace("Other").await;
    let b = other.admin_key.as_str();

    let listed = app.get("/connections", b).await.expect_status(200);
    assert!(listed.items().is_empty(), "{}", listed.text);
    let listed = app.get("/secrets", b).await.expect_status(200);
    assert!(listed.items().is_empty(), "{}", listed.text);
    let path = format!("/connections/{connection}");
    app.get(&path, b).await.expect_error(404, "not_found");
    app.put(
        &path,
        b,
        json!({"name": "crm", "base_url": "http://127.0.0.1:9"}),
    )
    .await
    .expect_error(404, "not_found");
    app.delete(&path, b).await.expect_error(404, "not_found");
    app.get("/secrets/a_key", b)
        .await
        .expect_error(404, "not_found");
    app.delete("/secrets/a_key", b)
        .await
        .expect_error(404, "not_found");

    // B cannot name A's connection in a form…
    let refused = app
        .post(
            "/forms",
            b,
            json!({"name": "B", "fields": [
                {"key": "ref", "type": "text"},
                {"key": "lookup", "type": "api_call", "connection": "crm", "operation": "get"}
            ]}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(
        refused.text.contains("there is no connection `crm`"),
        "{}",
        refused.text
    );
    // …nor use A's secret by name: the call fails before anything is sent.
    let b_form = app
        .post(
            "/forms",
            b,
            json!({"name": "B", "fields": [
                {"key": "ref", "type": "text"},
                {"key": "lookup", "type": "api_call", "retry": 0, "api_config": {
                    "url": format!("{}/b/{{data.ref}}", stub.url),
                    "auth": {"type": "bearer", "token": "{secret.a_key}"}
                }}
            ]}),
        )
        .await
        .expect_status(201)
        .body;
    let b_case = app
        .post(
            "/cases",
            b,
            json!({"form_id": b_form["id"], "data": {"ref": "b1"}}),
        )
        .await
        .expect_status(201)
        .body;
    let b_id = text(&b_case["id"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let state = loop {
        let items = app
            .get(&format!("/cases/{b_id}/api-calls"), b)
            .await
            .expect_status(200)
            .items();
        if let Some(s) = items.into_iter().find(|s| s["status"] == "failed") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B's call never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        state["error"], "the secret `a_key` does not exist in this workspace",
        "{state}"
    );
    assert!(stub.seen_at("/b/").is_empty(), "nothing was sent for B");

    // B's own secret of the same name does not change what A sends.
    app.put("/secrets/a_key", b, json!({"value": "b-value"}))
        .await
        .expect_status(201);
    app.post(
        &format!("/cases/{case}/api-calls/lookup/run"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect_status(202);
    let seen = stub.wait_for("/customers/", 2).await;
    assert_eq!(seen[1].header("authorization"), "Bearer a-only-value");
}
