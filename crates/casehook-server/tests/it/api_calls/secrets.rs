//! Workspace secrets through the API (values go in and never come out), secrets at work in
//! calls (replaced, deleted), and API-call field configurations refused when a form is saved.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_connection, failures_of, form_with, get_case, settled, settled_after};
use crate::stub_api::{Reply, StubApi};
use crate::support::{Reply as ApiReply, TestApp, api_tests, pairs, text};

api_tests!(
    secrets_are_created_listed_replaced_and_deleted_without_ever_showing_a_value,
    a_replaced_secret_is_used_by_the_next_call_and_a_deleted_one_fails_clearly,
    saving_a_form_refuses_unknown_fields_literal_credentials_unknown_connections_and_bad_cron,
);

const FIRST: &str = "first-value-7c1d";
const SECOND: &str = "second-value-2b9e";

async fn secrets_are_created_listed_replaced_and_deleted_without_ever_showing_a_value(
    app: TestApp,
) {
    let admin = &app.admin_key;
    let mut replies: Vec<ApiReply> = Vec::new();

    let created = app
        .post(
            "/secrets",
            admin,
            json!({"name": "vat_key", "value": FIRST, "description": "VAT service"}),
        )
        .await
        .expect_status(201);
    let keys: BTreeSet<&str> = created
        .body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "name",
            "description",
            "reference",
            "version",
            "created_at",
            "updated_at"
        ]),
        "names and dates only: {}",
        created.text
    );
    assert_eq!(created.body["reference"], "{secret.vat_key}");
    assert_eq!(created.body["version"], 1);
    replies.push(created);

    replies.push(
        app.post("/secrets", admin, json!({"name": "vat_key", "value": "x"}))
            .await
            .expect_error(409, "conflict"),
    );
    let refused = app
        .post("/secrets", admin, json!({"name": "not ok!", "value": ""}))
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        refused.details(),
        pairs(&[("name", "invalid_definition"), ("value", "value_missing")])
    );

    let list = app.get("/secrets", admin).await.expect_status(200);
    let names: Vec<Value> = list.items().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, [json!("vat_key")]);
    assert!(list.items()[0].get("value").is_none(), "{}", list.text);
    replies.push(list);
    replies.push(app.get("/secrets/vat_key", admin).await.expect_status(200));

    // Replace, guarded by the version read.
    let stale = app
        .request(Method::PUT, "/secrets/vat_key", Some(admin))
        .header("If-Match", "\"7\"")
        .json(&json!({"value": SECOND}));
    app.send(stale).await.expect_status(412);
    let replaced = app
        .send(
            app.request(Method::PUT, "/secrets/vat_key", Some(admin))
                .header("If-Match", "\"1\"")
                .json(&json!({"value": SECOND})),
        )
        .await
        .expect_status(200);
    assert_eq!(replaced.body["version"], 2);
    assert_eq!(replaced.body["description"], "VAT service", "kept");
    replies.push(replaced);
    let put_new = app
        .put("/secrets/other", admin, json!({"value": FIRST}))
        .await
        .expect_status(201);
    replies.push(put_new);

    // Only admins manage secrets.
    let member = app.create_key("member").await;
    app.get("/secrets", &member.secret).await.expect_status(403);
    app.post(
        "/secrets",
        &member.secret,
        json!({"name": "m", "value": "v"}),
    )
    .await
    .expect_status(403);

    app.delete("/secrets/vat_key", admin)
        .await
        .expect_status(204);
    app.get("/secrets/vat_key", admin)
        .await
        .expect_error(404, "not_found");
    app.delete("/secrets/vat_key", admin)
        .await
        .expect_error(404, "not_found");
    let left = app.get("/secrets", admin).await.expect_status(200);
    assert_eq!(left.items().len(), 1, "{}", left.text);
    replies.push(left);

    for reply in &replies {
        for value in [FIRST, SECOND] {
            assert!(
                !reply.text.contains(value),
                "{} shows a secret value: {}",
                reply.what,
                reply.text
            );
        }
    }
}

async fn a_replaced_secret_is_used_by_the_next_call_and_a_deleted_one_fails_clearly(app: TestApp) {
    let stub = StubApi::start(|seen, _| {
        Reply::Json(
            200,
            json!({"name": format!("key starts {}", &seen.header("x-api-key")[..2])}),
        )
    })
    .await;
    super::put_secret(&app, "api_key", FIRST).await;
    let form = form_with(
        &app,
        "Keys",
        json!([
            {"key": "ref", "type": "text"},
            {"key": "lookup", "type": "api_call", "retry": 0,
             "api_config": {
                 "url": format!("{}/lookup/{{data.ref}}", stub.url),
                 "auth": {"type": "api_key", "name": "X-Api-Key", "value": "{secret.api_key}"},
                 "response_mapping": "$.name"
             }}
        ]),
    )
    .await;
    let id = text(&app.create_case(&form, json!({"ref": "r1"})).await["id"]);
    let first = settled(&app, &id, "lookup").await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(stub.seen()[0].header("x-api-key"), FIRST);

    let run = format!("/cases/{id}/api-calls/lookup/run");
    app.put("/secrets/api_key", &app.admin_key, json!({"value": SECOND}))
        .await
        .expect_status(200);
    app.post(&run, &app.admin_key, json!({}))
        .await
        .expect_status(202);
    let second = settled_after(&app, &id, "lookup", &first).await;
    assert_eq!(second["status"], "ok", "{second}");
    assert_eq!(stub.seen().len(), 2);
    assert_eq!(stub.seen()[1].header("x-api-key"), SECOND, "the new value");
    assert_eq!(get_case(&app, &id).await["data"]["lookup"], "key starts se");

    app.delete("/secrets/api_key", &app.admin_key)
        .await
        .expect_status(204);
    app.post(&run, &app.admin_key, json!({}))
        .await
        .expect_status(202);
    let failed = settled_after(&app, &id, "lookup", &second).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"], "the secret `api_key` does not exist in this workspace",
        "{failed}"
    );
    assert_eq!(stub.seen().len(), 2, "nothing is sent without the secret");
    assert_eq!(
        get_case(&app, &id).await["data"]["lookup"],
        "key starts se",
        "the last good value stays"
    );
    let events = failures_of(&app, &id).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["data"]["error"],
        "the secret `api_key` does not exist in this workspace"
    );
}

/// The one problem (field path, code) a refused form is expected to report.
type Expected = (String, &'static str);

/// A form of a `vat` text field and one API-call field `check` configured by `config`.
fn form_of(config: Value) -> Value {
    let mut field = json!({"key": "check", "type": "api_call"});
    if let (Some(field), Value::Object(extra)) = (field.as_object_mut(), config) {
        field.extend(extra);
    }
    json!({"name": "Checks", "fields": [{"key": "vat", "type": "text"}, field]})
}

async fn saving_a_form_refuses_unknown_fields_literal_credentials_unknown_connections_and_bad_cron(
    app: TestApp,
) {
    create_connection(
        &app,
        json!({"name": "crm", "base_url": "http://127.0.0.1:9/api",
               "operations": {"get_customer": {"path": "/customers/{data.vat}"}}}),
    )
    .await;
    let url = "http://127.0.0.1:9/vat/{data.vat}";
    let at = "fields[1].api_call";
    let cases: Vec<(&str, Value, Expected)> = vec![
        (
            "an unknown field in the URL",
            json!({"api_config": {"url": "http://127.0.0.1:9/vat/{data.nope}"}}),
            (format!("{at}.api_config.url"), "invalid_definition"),
        ),
        (
            "an unknown field in the body",
            json!({"api_config": {"url": url, "method": "POST", "body": {"x": "{data.nope}"}}}),
            (format!("{at}.api_config.body.x"), "invalid_definition"),
        ),
        (
            "an unknown field in a header",
            json!({"api_config": {"url": url, "headers": {"X-B": "{data.nope}"}}}),
            (format!("{at}.api_config.headers.X-B"), "invalid_definition"),
        ),
        (
            "an unknown template root",
            json!({"api_config": {"url": url, "headers": {"X-A": "{nope.x}"}}}),
            (format!("{at}.api_config.headers.X-A"), "invalid_definition"),
        ),
        (
            "a literal credential in the form",
            json!({"api_config": {"url": url,
                "auth": {"type": "header", "key": "X-Api-Key", "value": "literal-key"}}}),
            (format!("{at}.api_config.auth.value"), "invalid_definition"),
        ),
        (
            "a literal bearer token in the form",
            json!({"api_config": {"url": url, "auth": {"type": "bearer", "token": "tok"}}}),
            (format!("{at}.api_config.auth.token"), "invalid_definition"),
        ),
        (
            "an unknown connection",
            json!({"connection": "nope", "operation": "get_customer"}),
            (format!("{at}.connection"), "value_not_allowed"),
        ),
        (
            "an unknown operation",
            json!({"connection": "crm", "operation": "nope"}),
            (format!("{at}.operation"), "value_not_allowed"),
        ),
        (
            "a bad cron expression",
            json!({"connection": "crm", "operation": "get_customer",
                   "trigger": "scheduled", "schedule": "every tuesday"}),
            (format!("{at}.schedule"), "invalid_definition"),
        ),
        (
            "a scheduled field without a schedule",
            json!({"connection": "crm", "operation": "get_customer", "trigger": "scheduled"}),
            (format!("{at}.schedule"), "invalid_definition"),
        ),
        (
            "a trigger field the form lacks",
            json!({"api_config": {"url": url}, "trigger": "on_update",
                   "trigger_fields": ["nope"]}),
            (format!("{at}.trigger_fields[0]"), "invalid_definition"),
        ),
        (
            "a mapping into a field the form lacks",
            json!({"api_config": {"url": url, "response_mapping": {"nope": "$.name"}}}),
            (
                format!("{at}.api_config.response_mapping.rules[0].field"),
                "unknown_field",
            ),
        ),
    ];
    for (what, config, expected) in cases {
        let reply = app
            .post("/forms", &app.admin_key, form_of(config))
            .await
            .expect_error(400, "validation_failed");
        let (field, code) = expected;
        assert_eq!(
            reply.details(),
            BTreeSet::from([(field, code.to_owned())]),
            "{what}: exactly this problem: {}",
            reply.text
        );
    }
    let forms = app
        .get("/forms", &app.admin_key)
        .await
        .expect_status(200)
        .items();
    assert!(forms.is_empty(), "nothing was saved: {forms:#?}");

    // The same field, correctly written, is accepted.
    app.post(
        "/forms",
        &app.admin_key,
        form_of(json!({"connection": "crm", "operation": "get_customer",
                       "trigger": "scheduled", "schedule": "0 6 * * *"})),
    )
    .await
    .expect_status(201);
}
