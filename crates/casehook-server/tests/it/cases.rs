//! Cases over HTTP: versions as ETags guarded by `If-Match`, lookup by id and number, the
//! status route, soft deletion, and external references. Lists are in `case_lists`.

use reqwest::Method;
use serde_json::json;

use crate::case_lists::list;
use crate::support::{TestApp, api_tests, pairs, text};

api_tests!(
    a_created_case_has_etag_1_and_is_found_by_id_and_number,
    if_match_guards_updates_and_each_change_moves_the_version,
    the_status_route_changes_only_the_status,
    a_deleted_case_is_gone_and_leaves_a_case_deleted_event,
    external_refs_find_their_case_and_are_unique,
    concurrent_updates_with_the_same_if_match_let_exactly_one_win,
);

async fn a_created_case_has_etag_1_and_is_found_by_id_and_number(app: TestApp) {
    let form = app.create_claims_form().await;
    let reply = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form["id"], "data": {"amount": 1500, "kind": "car"}}),
        )
        .await
        .expect_status(201);
    assert_eq!(reply.etag(), Some("\"1\""));
    let case = reply.body;
    assert_eq!(case["number"], 1);
    assert_eq!(case["version"], 1);
    assert_eq!(case["status"], "open");
    assert_eq!(case["form_id"], form["id"]);
    assert_eq!(case["created_by"]["kind"], "api_key");
    assert!(case.get("deleted_at").is_none());

    let id = text(&case["id"]);
    for path in [
        format!("/cases/{id}"),
        "/cases/%231".into(),
        "/cases/1".into(),
    ] {
        let got = app.get(&path, &app.admin_key).await.expect_status(200);
        assert_eq!(got.etag(), Some("\"1\""), "{}", got.what);
        assert_eq!(got.body, case, "{}", got.what);
    }
    for missing in [
        "/cases/%232",
        "/cases/2",
        "/cases/0",
        "/cases/not-a-case",
        "/cases/0190aaaa-0000-7000-8000-000000000000",
    ] {
        app.get(missing, &app.admin_key)
            .await
            .expect_error(404, "not_found");
    }
    let second = app.create_case(&text(&form["id"]), json!({})).await;
    assert_eq!(second["number"], 2, "numbers follow each other");
}

async fn if_match_guards_updates_and_each_change_moves_the_version(app: TestApp) {
    let form = app.create_claims_form().await;
    let case = app
        .create_case(&text(&form["id"]), json!({"amount": 1500, "kind": "car"}))
        .await;
    let id = text(&case["id"]);
    let path = format!("/cases/{id}");

    let reply = app
        .send_if_match(
            Method::PATCH,
            "/cases/%231",
            1,
            Some(json!({"data": {"amount": 1800, "note": "checked"}, "status": "approved"})),
        )
        .await
        .expect_status(200);
    assert_eq!(reply.etag(), Some("\"2\""));
    assert_eq!(reply.body["version"], 2);
    assert_eq!(reply.body["status"], "approved");
    assert_eq!(
        reply.body["data"],
        json!({"amount": 1800, "kind": "car", "note": "checked"})
    );

    let stale = app
        .send_if_match(
            Method::PATCH,
            &path,
            1,
            Some(json!({"data": {"amount": 1}})),
        )
        .await
        .expect_error(412, "version_mismatch");
    assert!(
        stale.text.contains('2'),
        "names the current version: {}",
        stale.text
    );
    let current = app.get(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(current.etag(), Some("\"2\""));
    assert_eq!(
        current.body["data"]["amount"], 1800,
        "the stale change was not applied"
    );

    // Weak and bare spellings of the version count too; garbage does not.
    let request = app
        .request(Method::PATCH, &path, Some(&app.admin_key))
        .header("If-Match", "W/\"2\"")
        .json(&json!({"data": {"kind": "home"}}));
    let reply = app.send(request).await.expect_status(200);
    assert_eq!(reply.etag(), Some("\"3\""));
    let request = app
        .request(Method::PATCH, &path, Some(&app.admin_key))
        .header("If-Match", "2")
        .json(&json!({"data": {"kind": "car"}}));
    app.send(request)
        .await
        .expect_error(412, "version_mismatch");
    let request = app
        .request(Method::PATCH, &path, Some(&app.admin_key))
        .header("If-Match", "\"abc\"")
        .json(&json!({"data": {"kind": "car"}}));
    app.send(request)
        .await
        .expect_error(400, "invalid_if_match");

    // Without If-Match the change applies to whatever is current.
    let reply = app
        .patch(&path, &app.admin_key, json!({"data": {"note": null}}))
        .await
        .expect_status(200);
    assert_eq!(reply.etag(), Some("\"4\""));
    assert!(
        reply.body["data"].get("note").is_none(),
        "null clears: {}",
        reply.text
    );

    // A patch that changes nothing keeps the version and writes no event.
    let before = app.events(&app.admin_key, "").await.len();
    let reply = app
        .patch(&path, &app.admin_key, json!({"data": {"amount": 1800}}))
        .await
        .expect_status(200);
    assert_eq!(reply.etag(), Some("\"4\""));
    assert_eq!(app.events(&app.admin_key, "").await.len(), before);

    let events = app.events(&app.admin_key, &format!("&case={id}")).await;
    let types: Vec<String> = events.iter().map(|e| text(&e["type"])).collect();
    assert_eq!(
        types,
        [
            "case.created",
            "case.updated",
            "case.status_changed",
            "case.updated",
            "case.updated"
        ]
    );
    assert_eq!(
        events[1]["changes"],
        json!({"amount": {"old": 1500, "new": 1800}, "note": {"old": null, "new": "checked"}})
    );
    assert_eq!(
        events[2]["changes"],
        json!({"status": {"old": "open", "new": "approved"}})
    );
    assert_eq!(
        events[2]["data"]["version"], 2,
        "events carry the case after the change"
    );
}

async fn the_status_route_changes_only_the_status(app: TestApp) {
    let form = app.create_claims_form().await;
    let case = app
        .create_case(&text(&form["id"]), json!({"amount": 5}))
        .await;
    let id = text(&case["id"]);
    let path = format!("/cases/{id}/status");

    let reply = app
        .post(&path, &app.admin_key, json!({"status": "closed"}))
        .await
        .expect_status(200);
    assert_eq!(reply.etag(), Some("\"2\""));
    assert_eq!(reply.body["status"], "closed");
    assert_eq!(reply.body["data"], json!({"amount": 5}));

    let bad = app
        .post(&path, &app.admin_key, json!({"status": "lost"}))
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(bad.details(), pairs(&[("status", "value_not_allowed")]));
    app.post(&path, &app.admin_key, json!({"status": ""}))
        .await
        .expect_error(400, "validation_failed");
    app.send_if_match(Method::POST, &path, 1, Some(json!({"status": "open"})))
        .await
        .expect_error(412, "version_mismatch");
    app.send_if_match(
        Method::POST,
        "/cases/%231/status",
        2,
        Some(json!({"status": "open"})),
    )
    .await
    .expect_status(200);

    let events = app.events(&app.admin_key, &format!("&case={id}")).await;
    let types: Vec<String> = events.iter().map(|e| text(&e["type"])).collect();
    assert_eq!(
        types,
        ["case.created", "case.status_changed", "case.status_changed"]
    );
    assert_eq!(
        events[1]["changes"],
        json!({"status": {"old": "open", "new": "closed"}})
    );
}

async fn a_deleted_case_is_gone_and_leaves_a_case_deleted_event(app: TestApp) {
    let form = text(&app.create_claims_form().await["id"]);
    let case = app
        .create_case_with(
            json!({"form_id": form, "data": {"amount": 1}, "external_refs": {"crm": "C-1"}}),
        )
        .await;
    let other = app.create_case(&form, json!({"amount": 2})).await;
    let id = text(&case["id"]);
    let path = format!("/cases/{id}");

    app.send_if_match(Method::DELETE, &path, 7, None)
        .await
        .expect_error(412, "version_mismatch");
    let deleted = app.delete(&path, &app.admin_key).await.expect_status(200);
    assert_eq!(deleted.body["id"], json!(id));
    assert!(deleted.body["deleted_at"].is_string(), "{}", deleted.text);

    app.get(&path, &app.admin_key)
        .await
        .expect_error(404, "not_found");
    app.get("/cases/%231", &app.admin_key)
        .await
        .expect_error(404, "not_found");
    app.patch(&path, &app.admin_key, json!({"data": {"amount": 3}}))
        .await
        .expect_error(404, "not_found");
    app.post(
        &format!("{path}/status"),
        &app.admin_key,
        json!({"status": "closed"}),
    )
    .await
    .expect_error(404, "not_found");
    app.delete(&path, &app.admin_key)
        .await
        .expect_error(404, "not_found");
    app.get("/cases/by-ref/crm/C-1", &app.admin_key)
        .await
        .expect_error(404, "not_found");
    assert_eq!(list(&app, "").await, [2]);
    assert_eq!(list(&app, "?include_deleted=true").await, [2, 1]);

    let events = app.events(&app.admin_key, &format!("&case={id}")).await;
    let last = events.last().expect("the case has events");
    assert_eq!(last["type"], "case.deleted", "{events:?}");
    assert_eq!(last["data"]["id"], json!(id));
    assert!(last["data"]["deleted_at"].is_string());
    let deletions = app.events(&app.admin_key, "&type=case.deleted").await;
    assert_eq!(deletions.len(), 1, "exactly one deletion: {deletions:?}");

    // The deleted case gave its external reference back; the other case is untouched.
    let again = app
        .create_case_with(json!({"form_id": form, "data": {}, "external_refs": {"crm": "C-1"}}))
        .await;
    let found = app
        .get("/cases/by-ref/crm/C-1", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(found.body["id"], again["id"]);
    let other_now = app
        .get(&format!("/cases/{}", text(&other["id"])), &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(other_now.body, other);
}

async fn external_refs_find_their_case_and_are_unique(app: TestApp) {
    let form = text(&app.create_claims_form().await["id"]);
    let case = app
        .create_case_with(json!({
            "form_id": form,
            "data": {},
            "external_refs": {"crm": "C-1001", "stripe": "cus_1"}
        }))
        .await;
    let found = app
        .get("/cases/by-ref/crm/C-1001", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(found.body, case);
    assert_eq!(found.etag(), Some("\"1\""));
    app.get("/cases/by-ref/stripe/cus_1", &app.admin_key)
        .await
        .expect_status(200);
    for missing in ["/cases/by-ref/crm/C-1002", "/cases/by-ref/erp/C-1001"] {
        app.get(missing, &app.admin_key)
            .await
            .expect_error(404, "not_found");
    }

    let events_before = app.events(&app.admin_key, "").await.len();
    let taken = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form, "data": {}, "external_refs": {"crm": "C-1001"}}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(
        taken.text.contains("#1"),
        "names the holder: {}",
        taken.text
    );
    assert_eq!(
        list(&app, "").await,
        [1],
        "the refused case was not written"
    );
    assert_eq!(app.events(&app.admin_key, "").await.len(), events_before);

    let second = app.create_case(&form, json!({})).await;
    assert_eq!(second["number"], 2, "the refused create used up no number");
    let second_path = format!("/cases/{}", text(&second["id"]));
    app.patch(
        &second_path,
        &app.admin_key,
        json!({"external_refs": {"crm": "C-1001"}}),
    )
    .await
    .expect_error(409, "conflict");

    // Released by its holder, the reference can move.
    let released = app
        .patch(
            "/cases/%231",
            &app.admin_key,
            json!({"external_refs": {"crm": null}}),
        )
        .await
        .expect_status(200);
    assert_eq!(released.body["external_refs"], json!({"stripe": "cus_1"}));
    let moved = app
        .patch(
            &second_path,
            &app.admin_key,
            json!({"external_refs": {"crm": "C-1001"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(moved.body["external_refs"], json!({"crm": "C-1001"}));
    let found = app
        .get("/cases/by-ref/crm/C-1001", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(found.body["id"], second["id"]);

    let bad = app
        .post(
            "/cases",
            &app.admin_key,
            json!({"form_id": form, "data": {}, "external_refs": {"a b": "x", "crm": ""}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        bad.details(),
        pairs(&[
            ("external_refs.a b", "value_not_allowed"),
            ("external_refs.crm", "value_not_allowed"),
        ])
    );
}

async fn concurrent_updates_with_the_same_if_match_let_exactly_one_win(app: TestApp) {
    let form = text(&app.create_claims_form().await["id"]);
    app.create_case(&form, json!({"amount": 0})).await;
    let attempts = (1..=10).map(|i| {
        app.send_if_match(
            Method::PATCH,
            "/cases/%231",
            1,
            Some(json!({"data": {"amount": i}})),
        )
    });
    let replies = futures::future::join_all(attempts).await;
    let won: Vec<&crate::support::Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one writer wins: {replies:?}");
    for lost in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(lost.status, 412, "{}", lost.text);
    }
    let case = app
        .get("/cases/%231", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(case.body["version"], 2);
    assert_eq!(case.body["data"], won[0].body["data"]);
    let updates = app.events(&app.admin_key, "&type=case.updated").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
}
