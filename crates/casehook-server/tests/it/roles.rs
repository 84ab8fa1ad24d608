//! Roles: `read` reads, `member` also changes cases and events, `admin` also manages forms,
//! keys, workspaces and the event catalog. A refusal is a 403 that writes nothing.

use serde_json::json;

use crate::support::{TestApp, api_tests, text};

api_tests!(
    a_read_key_reads_but_cannot_write,
    a_member_key_changes_cases_but_cannot_administer,
    an_admin_key_can_do_everything,
);

async fn a_read_key_reads_but_cannot_write(app: TestApp) {
    let form = app.create_claims_form().await;
    let form_id = text(&form["id"]);
    let case = app.create_case(&form_id, json!({"amount": 10})).await;
    let case_id = text(&case["id"]);
    let read = app.create_key("read").await.secret;

    for path in [
        "/forms".to_owned(),
        format!("/forms/{form_id}"),
        "/cases".to_owned(),
        format!("/cases/{case_id}"),
        "/cases/%231".to_owned(),
        "/events".to_owned(),
        "/event-types".to_owned(),
        "/workspaces".to_owned(),
    ] {
        app.get(&path, &read).await.expect_status(200);
    }

    app.post(
        "/cases",
        &read,
        json!({"form_id": form_id, "data": {"amount": 1}}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post("/forms", &read, json!({"name": "Nope"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(
        &format!("/cases/{case_id}"),
        &read,
        json!({"data": {"amount": 2}}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        &format!("/cases/{case_id}/status"),
        &read,
        json!({"status": "closed"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.delete(&format!("/cases/{case_id}"), &read)
        .await
        .expect_error(403, "forbidden");
    // Keys are an admin matter, even to look at.
    app.get("/api-keys", &read)
        .await
        .expect_error(403, "forbidden");

    let cases = app.get("/cases", &app.admin_key).await.expect_status(200);
    assert_eq!(cases.items().len(), 1, "the refused create wrote nothing");
    let case = app
        .get(&format!("/cases/{case_id}"), &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(case.body["version"], 1, "the refused changes wrote nothing");
    assert_eq!(case.body["data"], json!({"amount": 10}));
    let forms = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert_eq!(forms.items().len(), 1, "the refused form was not created");
}

async fn a_member_key_changes_cases_but_cannot_administer(app: TestApp) {
    let form = app.create_claims_form().await;
    let form_id = text(&form["id"]);
    let member = app.create_key("member").await.secret;

    let case = app
        .post(
            "/cases",
            &member,
            json!({"form_id": form_id, "data": {"amount": 1}}),
        )
        .await
        .expect_status(201);
    assert_eq!(case.body["created_by"]["name"], "member key");
    let case_id = text(&case.body["id"]);
    app.patch(
        &format!("/cases/{case_id}"),
        &member,
        json!({"data": {"amount": 2}}),
    )
    .await
    .expect_status(200);
    app.post(
        &format!("/cases/{case_id}/status"),
        &member,
        json!({"status": "approved"}),
    )
    .await
    .expect_status(200);

    app.post("/forms", &member, json!({"name": "Nope"}))
        .await
        .expect_error(403, "forbidden");
    app.put(
        &format!("/forms/{form_id}"),
        &member,
        json!({"name": "Renamed"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(&format!("/forms/{form_id}/archive"), &member, json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(
        "/api-keys",
        &member,
        json!({"name": "escalate", "role": "admin"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post("/workspaces", &member, json!({"name": "Mine"}))
        .await
        .expect_error(403, "forbidden");
    app.post(
        "/event-types",
        &member,
        json!({"name": "payment.succeeded"}),
    )
    .await
    .expect_error(403, "forbidden");

    let forms = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert_eq!(forms.items().len(), 1);
    assert_eq!(forms.items()[0]["spec"]["name"], "Claims");
    assert_eq!(forms.items()[0]["version"], 1);
    let keys = app
        .get("/api-keys", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(
        keys.items().len(),
        2,
        "bootstrap admin and the member key only"
    );
    let types = app
        .get("/event-types", &app.admin_key)
        .await
        .expect_status(200);
    assert!(
        types.items().iter().all(|t| t["builtin"] == true),
        "no custom type was registered: {}",
        types.text
    );
}

async fn an_admin_key_can_do_everything(app: TestApp) {
    let admin = app.admin_key.clone();
    let form = app.create_claims_form().await;
    let form_id = text(&form["id"]);
    app.put(
        &format!("/forms/{form_id}"),
        &admin,
        json!({"name": "Claims v2", "statuses": ["open", "approved", "closed"], "fields": [
            {"key": "amount", "type": "number"},
            {"key": "kind", "type": "select", "options": ["car", "home"]},
            {"key": "note", "type": "text"}
        ]}),
    )
    .await
    .expect_status(200);
    let case = app.create_case(&form_id, json!({"amount": 1})).await;
    app.patch(
        &format!("/cases/{}", text(&case["id"])),
        &admin,
        json!({"status": "closed"}),
    )
    .await
    .expect_status(200);
    app.post(
        "/api-keys",
        &admin,
        json!({"name": "second admin", "role": "admin"}),
    )
    .await
    .expect_status(201);
    app.get("/api-keys", &admin).await.expect_status(200);
    app.post("/workspaces", &admin, json!({"name": "Another"}))
        .await
        .expect_status(201);
    app.post("/event-types", &admin, json!({"name": "payment.succeeded"}))
        .await
        .expect_status(201);
    app.post(
        "/events",
        &admin,
        json!({"type": "payment.succeeded", "data": {}}),
    )
    .await
    .expect_status(201);
    app.post(&format!("/forms/{form_id}/archive"), &admin, json!({}))
        .await
        .expect_status(200);
    app.delete(&format!("/cases/{}", text(&case["id"])), &admin)
        .await
        .expect_status(200);
}
