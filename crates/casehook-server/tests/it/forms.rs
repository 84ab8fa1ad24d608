//! Forms over HTTP: a change that would invalidate stored case data is refused naming the
//! field, a compatible one moves the version, `If-Match` guards it, and an archived form takes
//! no new cases.

use casehook_server::ServerConfig;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, api_tests, pairs, text};

api_tests!(
    a_change_that_invalidates_stored_data_is_409_naming_the_field,
    a_compatible_change_moves_the_version,
    a_narrowing_change_nobody_s_data_violates_is_accepted,
    a_stale_if_match_on_a_form_is_412,
    an_archived_form_takes_no_new_cases,
    another_servers_form_change_applies_to_new_cases_at_once,
    another_servers_archive_is_refused_like_a_local_one,
    another_servers_form_change_applies_to_updates_at_once,
);

fn spec(amount_type: &str, extra: &[Value]) -> Value {
    let mut fields = vec![
        json!({"key": "amount", "type": amount_type}),
        json!({"key": "kind", "type": "select", "options": ["car", "home"]}),
    ];
    fields.extend(extra.iter().cloned());
    json!({"name": "Claims", "fields": fields})
}

async fn a_change_that_invalidates_stored_data_is_409_naming_the_field(app: TestApp) {
    let form = app.create_form(spec("text", &[])).await;
    let form_id = text(&form["id"]);
    let path = format!("/forms/{form_id}");
    app.create_case(&form_id, json!({"amount": "12"})).await;
    app.create_case(&form_id, json!({"amount": "a lot", "kind": "home"}))
        .await;

    let refused = app
        .put(&path, &app.admin_key, spec("number", &[]))
        .await
        .expect_error(409, "incompatible_change");
    assert_eq!(
        refused.details(),
        pairs(&[("amount", "incompatible_change")]),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("#2"),
        "names the first case holding a bad value: {}",
        refused.text
    );

    // Dropping an option some case holds, and removing a field with data, are refused too.
    let narrowed = json!({"name": "Claims", "fields": [
        {"key": "amount", "type": "text"},
        {"key": "kind", "type": "select", "options": ["car"]}
    ]});
    let refused = app
        .put(&path, &app.admin_key, narrowed)
        .await
        .expect_error(409, "incompatible_change");
    assert_eq!(refused.details(), pairs(&[("kind", "incompatible_change")]));
    let removed = json!({"name": "Claims", "fields": [
        {"key": "kind", "type": "select", "options": ["car", "home"]}
    ]});
    let refused = app
        .put(&path, &app.admin_key, removed)
        .await
        .expect_error(409, "incompatible_change");
    assert_eq!(
        refused.details(),
        pairs(&[("amount", "incompatible_change")])
    );

    let current = app.get(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(current.body["version"], 1, "no refused change was stored");
    assert_eq!(current.body["spec"]["fields"][0]["type"], "text");
    // And the form still validates as before.
    app.create_case(&form_id, json!({"amount": "still text"}))
        .await;
}

async fn a_compatible_change_moves_the_version(app: TestApp) {
    let form = app
        .create_form(json!({"name": "Claims", "fields": [
            {"key": "amount", "type": "number"},
            {"key": "kind", "type": "select", "options": ["car", "home"]},
            {"key": "seen", "type": "date"}
        ]}))
        .await;
    let form_id = text(&form["id"]);
    let path = format!("/forms/{form_id}");
    app.create_case(
        &form_id,
        json!({"amount": 1, "kind": "car", "seen": "2024-01-31"}),
    )
    .await;

    // Widening select and date to text, adding an option and a field: nothing stored breaks.
    let wider = json!({"name": "Claims (v2)", "fields": [
        {"key": "amount", "type": "number"},
        {"key": "kind", "type": "text"},
        {"key": "seen", "type": "text"},
        {"key": "colour", "type": "select", "options": ["red", "blue"], "required": true}
    ]});
    let reply = app
        .send_if_match(Method::PUT, &path, 1, Some(wider))
        .await
        .expect_status(200);
    assert_eq!(reply.etag(), Some("\"2\""));
    assert_eq!(reply.body["version"], 2);
    assert_eq!(reply.body["spec"]["name"], "Claims (v2)");
    let got = app.get(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(got.etag(), Some("\"2\""));
    assert_eq!(got.body["spec"]["fields"][1]["type"], "text");
    assert_eq!(got.body["spec"]["fields"][3]["label"], "colour");

    // New cases follow the new definition at once.
    let refused = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form_id, "data": {"kind": "anything"}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(refused.details(), pairs(&[("colour", "field_required")]));
    app.create_case(&form_id, json!({"kind": "anything", "colour": "red"}))
        .await;

    // The same definition again is no change.
    let same = app.get(&path, &app.admin_key).await.body["spec"].clone();
    let reply = app
        .put(&path, &app.admin_key, same)
        .await
        .expect_status(200);
    assert_eq!(reply.body["version"], 2);
}

async fn a_narrowing_change_nobody_s_data_violates_is_accepted(app: TestApp) {
    let form = app.create_form(spec("text", &[])).await;
    let form_id = text(&form["id"]);
    app.create_case(&form_id, json!({"amount": "42", "kind": "car"}))
        .await;
    app.create_case(&form_id, json!({"kind": "car"})).await;
    let reply = app
        .put(
            &format!("/forms/{form_id}"),
            &app.admin_key,
            spec("number", &[]),
        )
        .await
        .expect_status(200);
    assert_eq!(reply.body["version"], 2);
}

async fn a_stale_if_match_on_a_form_is_412(app: TestApp) {
    let form = app.create_form(spec("number", &[])).await;
    let path = format!("/forms/{}", text(&form["id"]));
    let extra = [json!({"key": "note", "type": "text"})];
    app.send_if_match(Method::PUT, &path, 1, Some(spec("number", &extra)))
        .await
        .expect_status(200);
    let other = [json!({"key": "remark", "type": "text"})];
    app.send_if_match(Method::PUT, &path, 1, Some(spec("number", &other)))
        .await
        .expect_error(412, "version_mismatch");
    let current = app.get(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(current.body["version"], 2);
    assert_eq!(current.body["spec"]["fields"][2]["key"], "note");
}

async fn an_archived_form_takes_no_new_cases(app: TestApp) {
    let form = app.create_claims_form().await;
    let form_id = text(&form["id"]);
    let case = app.create_case(&form_id, json!({"amount": 1})).await;
    // Read through the form cache first, so archiving must also reach the cache.
    app.create_case(&form_id, json!({"amount": 2})).await;

    let archived = app
        .post(
            &format!("/forms/{form_id}/archive"),
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(200);
    assert!(
        archived.body["archived_at"].is_string(),
        "{}",
        archived.text
    );
    assert_eq!(archived.etag(), Some("\"2\""));

    app.post(
        "/cases",
        &app.admin_key,
        json!({"form_id": form_id, "data": {"amount": 3}}),
    )
    .await
    .expect_error(409, "form_archived");
    let cases = app.get("/cases", &app.admin_key).await.expect_status(200);
    assert_eq!(cases.items().len(), 2, "no case was added");

    // Its cases stay readable and changeable.
    let path = format!("/cases/{}", text(&case["id"]));
    app.get(&path, &app.admin_key).await.expect_status(200);
    app.patch(&path, &app.admin_key, json!({"data": {"amount": 5}}))
        .await
        .expect_status(200);

    let listed = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert!(
        listed.items().is_empty(),
        "archived forms are hidden: {}",
        listed.text
    );
    let all = app
        .get("/forms?include_archived=true", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(all.items().len(), 1);
    // Archiving again is harmless.
    app.post(
        &format!("/forms/{form_id}/archive"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect_status(200);
}

/// Two servers on one database (scale-out): the first has the form in its cache when the
/// second changes it.
async fn two_servers_and_a_cached_form(app: &TestApp) -> (TestApp, String) {
    let other = app.sibling(ServerConfig::default()).await;
    let form = app.create_form(spec("text", &[])).await;
    let form_id = text(&form["id"]);
    // Validating these puts the form in the first server's cache.
    app.create_case(&form_id, json!({"kind": "car"})).await;
    app.patch(
        "/cases/%231",
        &app.admin_key,
        json!({"data": {"kind": "home"}}),
    )
    .await
    .expect_status(200);
    // `amount` holds no value yet, so narrowing it to a number is allowed.
    other
        .put(
            &format!("/forms/{form_id}"),
            &other.admin_key,
            spec("number", &[]),
        )
        .await
        .expect_status(200);
    (other, form_id)
}

async fn another_servers_form_change_applies_to_new_cases_at_once(app: TestApp) {
    let (_other, form_id) = two_servers_and_a_cached_form(&app).await;
    let refused = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form_id, "data": {"amount": "not a number"}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(refused.details(), pairs(&[("amount", "value_not_numeric")]));
    let cases = app.get("/cases", &app.admin_key).await.expect_status(200);
    assert_eq!(cases.items().len(), 1, "{}", cases.text);
}

async fn another_servers_archive_is_refused_like_a_local_one(app: TestApp) {
    let (other, form_id) = two_servers_and_a_cached_form(&app).await;
    other
        .post(
            &format!("/forms/{form_id}/archive"),
            &other.admin_key,
            json!({}),
        )
        .await
        .expect_status(200);
    app.post(
        "/cases",
        &app.admin_key,
        json!({"form_id": form_id, "data": {}}),
    )
    .await
    .expect_error(409, "form_archived");
    let cases = app.get("/cases", &app.admin_key).await.expect_status(200);
    assert_eq!(cases.items().len(), 1, "{}", cases.text);
}

async fn another_servers_form_change_applies_to_updates_at_once(app: TestApp) {
    let (_other, _form_id) = two_servers_and_a_cached_form(&app).await;
    app.patch(
        "/cases/%231",
        &app.admin_key,
        json!({"data": {"amount": "not a number"}}),
    )
    .await
    .expect_error(400, "validation_failed");
    let case = app
        .get("/cases/%231", &app.admin_key)
        .await
        .expect_status(200);
    assert!(
        case.body["data"].get("amount").is_none(),
        "a value the form refuses was stored: {}",
        case.text
    );
}
