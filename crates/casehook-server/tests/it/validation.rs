//! Case data is checked against its form, every problem reported at once with a stable code,
//! and a refused request writes nothing: no case, no event, no case number used up.

use serde_json::json;

use crate::support::{TestApp, api_tests, pairs, text};

api_tests!(
    every_bad_value_is_reported_at_once_and_nothing_is_written,
    a_bad_update_is_reported_in_full_and_changes_nothing,
    good_values_are_normalized_on_the_way_in,
    a_bad_form_definition_is_reported_in_full,
);

/// A form with a field of every checked type, two of them required.
async fn typed_form(app: &TestApp) -> String {
    let form = app
        .create_form(json!({
            "name": "Every type",
            "statuses": ["open", "closed"],
            "fields": [
                {"key": "title", "type": "text", "required": true},
                {"key": "owner", "type": "text", "required": true},
                {"key": "amount", "type": "number"},
                {"key": "kind", "type": "select", "options": ["car", "home"]},
                {"key": "tags", "type": "multi_select", "options": ["red", "blue"]},
                {"key": "incident_date", "type": "date"},
                {"key": "reported_at", "type": "datetime"},
                {"key": "urgent", "type": "boolean"},
                {"key": "website", "type": "url"},
                {"key": "items", "type": "array"},
                {"key": "meta", "type": "object"}
            ]
        }))
        .await;
    text(&form["id"])
}

async fn every_bad_value_is_reported_at_once_and_nothing_is_written(app: TestApp) {
    let form_id = typed_form(&app).await;
    let reply = app
        .post(
            "/cases",
            &app.admin_key,
            json!({
                "form_id": form_id,
                "status": "lost",
                "data": {
                    // `title` is absent: field_required.
                    "owner": "  ",
                    "amount": "lots",
                    "kind": "boat",
                    "tags": "red",
                    "incident_date": "2024-02-30",
                    "reported_at": "yesterday",
                    "urgent": "maybe",
                    "website": "ftp://example.com/x",
                    "items": {"a": 1},
                    "meta": [1, 2],
                    "colour": "red"
                }
            }),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        reply.details(),
        pairs(&[
            ("title", "field_required"),
            ("owner", "value_missing"),
            ("amount", "value_not_numeric"),
            ("kind", "value_not_allowed"),
            ("tags", "value_not_array"),
            ("incident_date", "wrong_date"),
            ("reported_at", "wrong_date"),
            ("urgent", "wrong_type"),
            ("website", "invalid_url"),
            ("items", "value_not_array"),
            ("meta", "wrong_type"),
            ("colour", "unknown_field"),
            ("status", "value_not_allowed"),
        ]),
        "{}",
        reply.text
    );
    let details = reply.body["error"]["details"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(details, 13, "one detail per problem: {}", reply.text);
    assert_eq!(
        reply.body["error"]["message"],
        "13 problems with the request"
    );

    // Each code also comes alone, from a value of another wrong kind.
    let more = [
        (json!({"amount": true}), "amount", "value_not_numeric"),
        (json!({"kind": 3}), "kind", "wrong_type"),
        (
            json!({"tags": ["red", "green"]}),
            "tags",
            "value_not_allowed",
        ),
        (json!({"tags": ["red", 1]}), "tags", "wrong_type"),
        (
            json!({"incident_date": "12/01/2024"}),
            "incident_date",
            "wrong_date",
        ),
        (
            json!({"reported_at": "2024-01-01"}),
            "reported_at",
            "wrong_date",
        ),
        (json!({"title": 5}), "title", "wrong_type"),
        (json!({"title": null}), "title", "value_missing"),
    ];
    for (data, field, code) in more {
        let mut data = data;
        let fields = data.as_object_mut().expect("an object");
        for required in ["title", "owner"] {
            fields.entry(required).or_insert(json!("x"));
        }
        let reply = app
            .post(
                "/cases",
                &app.admin_key,
                json!({"form_id": form_id, "data": data}),
            )
            .await
            .expect_error(400, "validation_failed");
        assert_eq!(reply.details(), pairs(&[(field, code)]), "{}", reply.text);
    }

    let cases = app
        .get("/cases?include_deleted=true", &app.admin_key)
        .await
        .expect_status(200);
    assert!(
        cases.items().is_empty(),
        "no case was written: {}",
        cases.text
    );
    let events = app.events(&app.admin_key, "").await;
    assert!(
        events
            .iter()
            .all(|e| !text(&e["type"]).starts_with("case.")),
        "no case event was written: {events:?}"
    );
    // The refusals used up no case number.
    let case = app
        .create_case(&form_id, json!({"title": "t", "owner": "o"}))
        .await;
    assert_eq!(case["number"], 1);
}

async fn a_bad_update_is_reported_in_full_and_changes_nothing(app: TestApp) {
    let form_id = typed_form(&app).await;
    let case = app
        .create_case(&form_id, json!({"title": "t", "owner": "o", "amount": 5}))
        .await;
    let path = format!("/cases/{}", text(&case["id"]));
    let reply = app
        .patch(
            &path,
            &app.admin_key,
            json!({
                "status": "lost",
                "data": {"owner": null, "amount": [1], "nope": 1, "kind": "car"}
            }),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        reply.details(),
        pairs(&[
            ("owner", "value_missing"),
            ("amount", "value_not_numeric"),
            ("nope", "unknown_field"),
            ("status", "value_not_allowed"),
        ]),
        "{}",
        reply.text
    );
    let after = app.get(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(
        after.body["version"], 1,
        "the good part was not applied either"
    );
    assert_eq!(after.body["data"], case["data"]);
    let events = app.events(&app.admin_key, "").await;
    assert_eq!(events.len(), 1, "only case.created: {events:?}");

    // An update need not repeat the required fields it leaves alone.
    let reply = app
        .patch(&path, &app.admin_key, json!({"data": {"amount": "6"}}))
        .await
        .expect_status(200);
    assert_eq!(reply.body["data"]["amount"], 6);
    assert_eq!(reply.body["version"], 2);
}

async fn good_values_are_normalized_on_the_way_in(app: TestApp) {
    let form_id = typed_form(&app).await;
    let data = json!({
        "title": "Crash",
        "owner": "ann",
        "amount": " 1500 ",
        "kind": "car",
        "tags": ["red", "blue", "red"],
        "incident_date": "2024-02-29",
        "reported_at": "2024-03-01T10:00:00+02:00",
        "urgent": "true",
        "website": "https://example.com/claims?id=1",
        "items": [1, "two"],
        "meta": {"source": "phone"}
    });
    let case = app.create_case(&form_id, data).await;
    assert_eq!(
        case["data"],
        json!({
            "title": "Crash",
            "owner": "ann",
            "amount": 1500,
            "kind": "car",
            "tags": ["red", "blue"],
            "incident_date": "2024-02-29",
            "reported_at": "2024-03-01T08:00:00Z",
            "urgent": true,
            "website": "https://example.com/claims?id=1",
            "items": [1, "two"],
            "meta": {"source": "phone"}
        })
    );
    assert_eq!(case["status"], "open", "the first of the form's statuses");
    let stored = app
        .get(&format!("/cases/{}", text(&case["id"])), &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(stored.body["data"], case["data"], "stored as answered");
}

async fn a_bad_form_definition_is_reported_in_full(app: TestApp) {
    let reply = app
        .post(
            "/forms",
            &app.admin_key,
            json!({
                "name": " ",
                "statuses": ["open", "open"],
                "default_status": "missing",
                "fields": [
                    {"key": "Bad Key", "type": "text"},
                    {"key": "dup", "type": "text"},
                    {"key": "dup", "type": "number"},
                    {"key": "choice", "type": "select"},
                    {"key": "plain", "type": "text", "options": ["a"]},
                    {"key": "placed", "type": "text", "section": "nowhere"}
                ]
            }),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        reply.details(),
        pairs(&[
            ("name", "invalid_definition"),
            ("statuses[1]", "invalid_definition"),
            ("default_status", "invalid_definition"),
            ("fields[0].key", "invalid_definition"),
            ("fields[2].key", "duplicate_key"),
            ("fields[3].options", "invalid_definition"),
            ("fields[4].options", "invalid_definition"),
            ("fields[5].section", "invalid_definition"),
        ]),
        "{}",
        reply.text
    );
    let details = reply.body["error"]["details"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(details, 8, "{}", reply.text);
    let forms = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert!(forms.items().is_empty());
}
