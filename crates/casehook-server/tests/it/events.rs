//! The event catalog and feed: built-in and custom types, emitted events checked against their
//! type's JSON Schema, a feed that resumes exactly with `after`, its filters, and sequences
//! without gaps under concurrent writes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{TestApp, api_tests, pairs, text};

api_tests!(
    the_catalog_lists_built_in_and_custom_types,
    emitted_events_are_checked_against_the_catalog,
    the_feed_resumes_exactly_after_a_sequence,
    the_feed_filters_by_type_and_case,
    sequences_have_no_gaps_under_concurrent_case_creation,
);

fn payment_schema() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "currency"],
        "properties": {
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD"]}
        }
    })
}

fn types_of(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| text(&e["type"])).collect()
}

fn sequences(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["sequence"].as_i64().expect("a sequence"))
        .collect()
}

async fn the_catalog_lists_built_in_and_custom_types(app: TestApp) {
    let admin = &app.admin_key;
    let catalog = app
        .get("/event-types", admin)
        .await
        .expect_status(200)
        .items();
    let builtins: BTreeSet<String> = catalog
        .iter()
        .filter(|t| t["builtin"] == true)
        .map(|t| text(&t["name"]))
        .collect();
    for name in [
        "case.created",
        "case.updated",
        "case.status_changed",
        "case.deleted",
    ] {
        assert!(builtins.contains(name), "{name} is missing: {catalog:?}");
    }
    assert!(
        catalog
            .iter()
            .all(|t| t["description"].as_str().is_some_and(|d| !d.is_empty()))
    );

    let created = app
        .post(
            "/event-types",
            admin,
            json!({
                "name": "payment.succeeded",
                "description": "Money arrived",
                "schema": payment_schema()
            }),
        )
        .await
        .expect_status(201);
    assert_eq!(created.body["builtin"], false);
    assert_eq!(created.body["schema"], payment_schema());
    let got = app
        .get("/event-types/payment.succeeded", admin)
        .await
        .expect_status(200);
    assert_eq!(got.body, created.body);
    let builtin = app
        .get("/event-types/case.created", admin)
        .await
        .expect_status(200);
    assert_eq!(builtin.body["builtin"], true);
    let catalog = app
        .get("/event-types", admin)
        .await
        .expect_status(200)
        .items();
    assert_eq!(
        catalog
            .iter()
            .filter(|t| t["name"] == "payment.succeeded")
            .count(),
        1
    );

    app.post("/event-types", admin, json!({"name": "payment.succeeded"}))
        .await
        .expect_error(409, "conflict");
    for name in [
        "case.reopened",
        "Payment.Succeeded",
        "payment",
        "payment..x",
    ] {
        let reply = app
            .post("/event-types", admin, json!({"name": name}))
            .await
            .expect_error(400, "validation_failed");
        assert_eq!(
            reply.details(),
            pairs(&[("name", "invalid_definition")]),
            "{name}"
        );
    }
    let reply = app
        .post(
            "/event-types",
            admin,
            json!({"name": "payment.failed", "schema": {"type": 12}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(reply.details(), pairs(&[("schema", "invalid_definition")]));
    app.put(
        "/event-types/case.created",
        admin,
        json!({"description": "mine"}),
    )
    .await
    .expect_error(400, "reserved_event_type");
    app.delete("/event-types/case.created", admin)
        .await
        .expect_error(400, "reserved_event_type");

    // Replace the description and schema; archive; archived types show only when asked.
    let updated = app
        .put(
            "/event-types/payment.succeeded",
            admin,
            json!({"description": "Paid", "schema": {"type": "object"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(updated.body["description"], "Paid");
    let archived = app.delete("/event-types/payment.succeeded", admin).await;
    assert_eq!(archived.status, 204, "{}", archived.text);
    let catalog = app
        .get("/event-types", admin)
        .await
        .expect_status(200)
        .items();
    assert!(catalog.iter().all(|t| t["name"] != "payment.succeeded"));
    let all = app
        .get("/event-types?include_archived=true", admin)
        .await
        .expect_status(200)
        .items();
    assert!(
        all.iter()
            .any(|t| t["name"] == "payment.succeeded" && t["archived_at"].is_string())
    );
}

async fn emitted_events_are_checked_against_the_catalog(app: TestApp) {
    let admin = &app.admin_key;
    app.post(
        "/event-types",
        admin,
        json!({"name": "payment.succeeded", "schema": payment_schema()}),
    )
    .await
    .expect_status(201);
    let form = app.create_claims_form().await;
    let case = app.create_case(&text(&form["id"]), json!({})).await;

    let event = app
        .post(
            "/events",
            admin,
            json!({
                "type": "payment.succeeded",
                "case": "#1",
                "data": {"amount": 12.5, "currency": "EUR"}
            }),
        )
        .await
        .expect_status(201);
    assert_eq!(event.body["type"], "payment.succeeded");
    assert_eq!(event.body["sequence"], 2, "after case.created");
    assert_eq!(event.body["case_id"], case["id"]);
    assert_eq!(event.body["form_id"], form["id"]);
    assert_eq!(
        event.body["data"],
        json!({"amount": 12.5, "currency": "EUR"})
    );
    assert_eq!(event.body["actor"]["kind"], "api_key");

    let bad = app
        .post(
            "/events",
            admin,
            json!({"type": "payment.succeeded", "data": {"amount": -1, "currency": "GBP"}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        bad.details(),
        pairs(&[
            ("data/amount", "schema_mismatch"),
            ("data/currency", "schema_mismatch")
        ]),
        "{}",
        bad.text
    );
    let missing = app
        .post(
            "/events",
            admin,
            json!({"type": "payment.succeeded", "data": {}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(
        missing
            .details()
            .iter()
            .all(|(_, code)| code == "schema_mismatch"),
        "{}",
        missing.text
    );
    app.post(
        "/events",
        admin,
        json!({"type": "payment.refunded", "data": {}}),
    )
    .await
    .expect_error(400, "unknown_event_type");
    app.post(
        "/events",
        admin,
        json!({"type": "case.created", "data": {}}),
    )
    .await
    .expect_error(400, "reserved_event_type");
    app.post(
        "/events",
        admin,
        json!({
            "type": "payment.succeeded",
            "case": "#9",
            "data": {"amount": 1, "currency": "EUR"}
        }),
    )
    .await
    .expect_error(404, "not_found");

    app.delete("/event-types/payment.succeeded", admin).await;
    app.post(
        "/events",
        admin,
        json!({"type": "payment.succeeded", "data": {"amount": 1, "currency": "EUR"}}),
    )
    .await
    .expect_error(400, "unknown_event_type");

    let feed = app.events(admin, "").await;
    assert_eq!(
        types_of(&feed),
        ["case.created", "payment.succeeded"],
        "refused events were not written"
    );
}

async fn the_feed_resumes_exactly_after_a_sequence(app: TestApp) {
    let form = text(&app.create_claims_form().await["id"]);
    for i in 0..4 {
        let case = app.create_case(&form, json!({"amount": i})).await;
        app.patch(
            &format!("/cases/{}", text(&case["id"])),
            &app.admin_key,
            json!({"data": {"amount": i + 10}, "status": "approved"}),
        )
        .await
        .expect_status(200);
    }
    let all = app.events(&app.admin_key, "&after=0").await;
    assert_eq!(sequences(&all), (1..=12).collect::<Vec<i64>>());
    assert_eq!(
        all,
        app.events(&app.admin_key, "").await,
        "after=0 is the start"
    );

    for after in [0, 1, 5, 11, 12, 40] {
        let rest = app.events(&app.admin_key, &format!("&after={after}")).await;
        let expected: Vec<Value> = all
            .iter()
            .filter(|e| e["sequence"].as_i64() > Some(after))
            .cloned()
            .collect();
        assert_eq!(rest, expected, "after={after}");
    }

    // Paging with `next_after` visits every event once.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/events?after={after}&limit=5"), &app.admin_key)
            .await
            .expect_status(200);
        let items = page.items();
        if items.is_empty() {
            assert!(page.body.get("next_after").is_none(), "{}", page.text);
            break;
        }
        assert!(items.len() <= 5);
        after = page.body["next_after"]
            .as_i64()
            .expect("next_after on a full page");
        assert_eq!(
            Some(after),
            items.last().and_then(|e| e["sequence"].as_i64())
        );
        seen.extend(items);
    }
    assert_eq!(seen, all);

    for bad in ["?limit=0", "?limit=1001", "?after=x", "?unknown=1"] {
        app.get(&format!("/events{bad}"), &app.admin_key)
            .await
            .expect_error(400, "invalid_query");
    }
}

async fn the_feed_filters_by_type_and_case(app: TestApp) {
    let admin = &app.admin_key;
    let form = text(&app.create_claims_form().await["id"]);
    let first = app.create_case(&form, json!({"amount": 1})).await;
    let second = app.create_case(&form, json!({"amount": 2})).await;
    app.patch("/cases/%231", admin, json!({"data": {"amount": 3}}))
        .await
        .expect_status(200);
    app.post("/cases/2/status", admin, json!({"status": "closed"}))
        .await
        .expect_status(200);
    app.post("/event-types", admin, json!({"name": "note.added"}))
        .await
        .expect_status(201);
    app.post(
        "/events",
        admin,
        json!({"type": "note.added", "case": second["id"], "data": {"text": "hi"}}),
    )
    .await
    .expect_status(201);
    app.post("/events", admin, json!({"type": "note.added", "data": {}}))
        .await
        .expect_status(201);

    let created = app.events(admin, "&type=case.created").await;
    assert_eq!(types_of(&created), ["case.created", "case.created"]);
    let some = app.events(admin, "&type=case.updated,note.added").await;
    assert_eq!(
        types_of(&some),
        ["case.updated", "note.added", "note.added"]
    );

    let of_first = app
        .events(admin, &format!("&case={}", text(&first["id"])))
        .await;
    assert_eq!(types_of(&of_first), ["case.created", "case.updated"]);
    assert!(of_first.iter().all(|e| e["case_id"] == first["id"]));
    let of_second = app.events(admin, "&case=%232").await;
    assert_eq!(
        types_of(&of_second),
        ["case.created", "case.status_changed", "note.added"]
    );
    let both = app.events(admin, "&case=2&type=note.added").await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["data"], json!({"text": "hi"}));
    assert!(app.events(admin, "&type=case.deleted").await.is_empty());
    app.get("/events?case=%239", admin)
        .await
        .expect_error(404, "not_found");
}

async fn sequences_have_no_gaps_under_concurrent_case_creation(app: TestApp) {
    const N: i64 = 50;
    let form = text(&app.create_claims_form().await["id"]);
    let creations = (0..N).map(|i| {
        let body = json!({"form_id": form, "data": {"amount": i}});
        app.post("/cases", &app.admin_key, body)
    });
    let replies = futures::future::join_all(creations).await;
    let mut numbers = BTreeSet::new();
    for reply in replies {
        let reply = reply.expect_status(201);
        numbers.insert(reply.body["number"].as_i64().expect("a number"));
    }
    assert_eq!(
        numbers,
        (1..=N).collect(),
        "case numbers are 1..=N, each once"
    );

    let feed = app.events(&app.admin_key, "&after=0").await;
    assert_eq!(sequences(&feed), (1..=N).collect::<Vec<i64>>());
    assert!(feed.iter().all(|e| e["type"] == "case.created"));
    let cases: BTreeSet<String> = feed.iter().map(|e| text(&e["case_id"])).collect();
    assert_eq!(cases.len(), N as usize, "one event per case");
}
