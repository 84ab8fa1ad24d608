//! Outgoing webhooks end to end: endpoints configured over the API, cases changed over the
//! API, and a real receiver on 127.0.0.1 seeing signed deliveries that follow the retry
//! policy exactly (with a fast test schedule), with every attempt in the log.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::receiver::{Answer, Receiver};
use crate::support::{TestApp, api_tests};

/// Create an endpoint from `config` (merged over a name and the receiver's URL).
async fn endpoint(app: &TestApp, receiver: &Receiver, config: Value) -> Value {
    let mut body = json!({"name": "receiver", "url": receiver.url});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), config) {
        body.extend(extra);
    }
    app.post("/endpoints", &app.admin_key, body)
        .await
        .expect_status(201)
        .body
}

/// Fast retries for tests: no jitter, `secs` between tries.
fn fast_retry(secs: &[u64]) -> Value {
    json!({"schedule_secs": secs, "jitter": false})
}

/// Poll the endpoint's deliveries until `done` holds for them (at most 20 s).
async fn deliveries_until(
    app: &TestApp,
    endpoint: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let items = app
            .get(
                &format!("/deliveries?endpoint_id={endpoint}"),
                &app.admin_key,
            )
            .await
            .expect_status(200)
            .items();
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never settled: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn states(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|d| d["state"].as_str().unwrap_or("?"))
        .collect()
}

async fn detail(app: &TestApp, delivery: &Value) -> Value {
    app.get(
        &format!("/deliveries/{}", delivery["id"].as_str().expect("id")),
        &app.admin_key,
    )
    .await
    .expect_status(200)
    .body
}

async fn a_created_case_is_delivered_signed(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(
        &app,
        &receiver,
        json!({"subscriptions": {"event_types": ["case.*"]}}),
    )
    .await;
    let secret = created["secret"]
        .as_str()
        .expect("the secret is shown on creation")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["health"], "setup");
    let case = app
        .create_case(form["id"].as_str().expect("id"), json!({"amount": 1250}))
        .await;

    let got = receiver.wait_for(1).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(body["type"], "case.created");
    assert_eq!(body["resource_type"], "case");
    assert_eq!(body["resource_id"], case["id"]);
    assert_eq!(body["data"]["data"]["amount"], json!(1250));
    // An independent implementation of Standard Webhooks accepts the signature.
    let verifier = standardwebhooks::Webhook::new(&secret).expect("the secret parses");
    verifier
        .verify(&request.body, &request.headers)
        .expect("the signature verifies");
    let mut tampered = request.body.to_vec();
    tampered[10] ^= 1;
    assert!(
        verifier.verify(&tampered, &request.headers).is_err(),
        "a tampered body fails"
    );

    let id = created["id"].as_str().expect("id");
    let items = deliveries_until(&app, id, |d| states(d) == ["succeeded"]).await;
    assert_eq!(
        items[0]["message_id"].as_str(),
        Some(request.header("webhook-id"))
    );
    let log = detail(&app, &items[0]).await;
    let attempts = log["attempt_log"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["verdict"], "success");
    assert_eq!(attempts[0]["request"]["method"], "POST");
    let health = app
        .get(&format!("/endpoints/{id}/health"), &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(health["state"], "live");
    assert_eq!(health["last_hour"]["attempts"], 1);
    assert_eq!(health["last_hour"]["success_rate"], 1.0);
}

async fn failures_are_retried_with_the_same_webhook_id(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(500), Answer::Status(503)]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(&app, &receiver, json!({"retry": fast_retry(&[0, 1])})).await;
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.starts_with("msg_")),
        "{ids:?}"
    );
    // The second retry waited for its scheduled second.
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(900),
        "{:?}",
        got[2].at - got[1].at
    );
    let items = deliveries_until(&app, created["id"].as_str().expect("id"), |d| {
        states(d) == ["succeeded"]
    })
    .await;
    assert_eq!(items[0]["attempts"], 3);
    let log = detail(&app, &items[0]).await;
    let verdicts: Vec<&Value> = log["attempt_log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|a| &a["verdict"])
        .collect();
    assert_eq!(verdicts, vec!["retry", "retry", "success"]);
    assert_eq!(log["attempt_log"][0]["error_kind"], "http_status");
}

async fn exhausted_retries_leave_a_failed_delivery_to_recover(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(500), Answer::Status(500)]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(&app, &receiver, json!({"retry": fast_retry(&[0])})).await;
    let id = created["id"].as_str().expect("id");
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let items = deliveries_until(&app, id, |d| states(d) == ["failed"]).await;
    assert!(
        items[0]["last_error"]
            .as_str()
            .expect("error")
            .contains("gave up after 2 attempts")
    );
    assert_eq!(
        app.get(&format!("/endpoints/{id}/health"), &app.admin_key)
            .await
            .body["state"],
        "attention"
    );

    // The receiver is fixed (it now answers 200): recover everything that failed.
    let recovered = app
        .post(
            &format!("/endpoints/{id}/recover"),
            &app.admin_key,
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await
        .expect_status(202)
        .body;
    assert_eq!(recovered["recovered"], 1);
    let again = app
        .post(
            &format!("/endpoints/{id}/recover"),
            &app.admin_key,
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await
        .body;
    assert!(again["recovered"].as_u64() <= Some(1), "{again}");
    let items = deliveries_until(&app, id, |d| states(d) == ["succeeded"]).await;
    assert_eq!(items.len(), 1, "recovery reuses the delivery");
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "one more request, not a duplicate");
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
}

async fn client_errors_fail_at_once_and_gone_disables(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(400), Answer::Status(410)]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(&app, &receiver, json!({"retry": fast_retry(&[0, 0, 0])})).await;
    let id = created["id"].as_str().expect("id");
    let form_id = form["id"].as_str().expect("id");
    app.create_case(form_id, json!({})).await;
    let items = deliveries_until(&app, id, |d| states(d) == ["failed"]).await;
    assert_eq!(items[0]["attempts"], 1, "400 is not retried");
    assert_eq!(items[0]["last_status"], 400);

    app.create_case(form_id, json!({})).await;
    deliveries_until(&app, id, |d| states(d) == ["failed", "failed"]).await;
    let endpoint = app
        .get(&format!("/endpoints/{id}"), &app.admin_key)
        .await
        .body;
    assert_eq!(endpoint["enabled"], false);
    assert_eq!(endpoint["health"], "disabled");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("410")
    );
    let disabled = app.events(&app.admin_key, "&type=endpoint.disabled").await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["data"]["endpoint_id"], json!(id));

    // While disabled, new events are not delivered to it.
    app.create_case(form_id, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2);
}

async fn retry_after_is_honoured(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::RetryAfter(429, 1)]).await;
    let form = app.create_claims_form().await;
    endpoint(&app, &receiver, json!({"retry": fast_retry(&[0])})).await;
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let got = receiver.wait_for(2).await;
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(950),
        "{:?}",
        got[1].at - got[0].at
    );
}

async fn a_hanging_receiver_times_out(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Hang]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(
        &app,
        &receiver,
        json!({"timeout_secs": 1, "retry": fast_retry(&[0])}),
    )
    .await;
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let items = deliveries_until(&app, created["id"].as_str().expect("id"), |d| {
        states(d) == ["succeeded"]
    })
    .await;
    let log = detail(&app, &items[0]).await;
    assert_eq!(log["attempt_log"][0]["error_kind"], "timeout");
    assert_eq!(log["attempt_log"][0]["verdict"], "retry");
    assert_eq!(log["attempt_log"][1]["verdict"], "success");
}

async fn when_and_if_choose_the_events(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let form = app.create_claims_form().await;
    let form_id = form["id"].as_str().expect("id");
    endpoint(
        &app,
        &receiver,
        json!({
            "subscriptions": {"event_types": ["case.status_changed"], "forms": [form_id]},
            "condition": "event.changes.status.new == \"approved\" && case.data.amount > 1000",
        }),
    )
    .await;
    let big = app.create_case(form_id, json!({"amount": 5000})).await;
    let small = app.create_case(form_id, json!({"amount": 10})).await;
    for (case, status) in [(&big, "closed"), (&small, "approved"), (&big, "approved")] {
        app.post(
            &format!("/cases/{}/status", case["id"].as_str().expect("id")),
            &app.admin_key,
            json!({"status": status}),
        )
        .await
        .expect_status(200);
    }
    let got = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = receiver.received();
    assert_eq!(
        got_all.len(),
        1,
        "only the big case's approval matches: {got:?}"
    );
    let body = got_all[0].json();
    assert_eq!(body["type"], "case.status_changed");
    assert_eq!(body["resource_id"], big["id"]);
}

async fn content_and_protocols(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let form = app.create_claims_form().await;
    let form_id = form["id"].as_str().expect("id");
    let content = json!({"mode": "fields", "fields": ["data.amount", "case.number"], "custom": {"source": "casehook", "ref": "case-{case.number}"}});
    endpoint(
        &app,
        &receiver,
        json!({"content": content, "protocol": "json_array"}),
    )
    .await;
    endpoint(
        &app,
        &receiver,
        json!({"content": content, "protocol": "form", "method": "PUT"}),
    )
    .await;
    endpoint(
        &app,
        &receiver,
        json!({"content": content, "method": "GET"}),
    )
    .await;
    let case = app.create_case(form_id, json!({"amount": 42})).await;
    let number = case["number"].as_i64().expect("number");
    let got = receiver.wait_for(3).await;
    let by_method = |m: &str, ct: &str| {
        got.iter()
            .find(|r| r.method == m && r.header("content-type").starts_with(ct))
            .unwrap_or_else(|| panic!("no {m} {ct} request in {got:?}"))
    };
    let array = by_method("POST", "application/json").json();
    assert_eq!(
        array,
        json!([{"amount": 42, "number": number, "source": "casehook", "ref": format!("case-{number}")}])
    );
    let form_body = String::from_utf8(
        by_method("PUT", "application/x-www-form-urlencoded")
            .body
            .to_vec(),
    )
    .expect("text");
    assert!(
        form_body.contains("amount=42") && form_body.contains("source=casehook"),
        "{form_body}"
    );
    let get = got.iter().find(|r| r.method == "GET").expect("a GET");
    let query = get.uri.query().expect("content in the query");
    assert!(
        query.contains("amount=42") && query.contains(&format!("ref=case-{number}")),
        "{query}"
    );
    assert!(get.body.is_empty());
}

async fn invalid_configuration_is_refused_precisely(app: TestApp) {
    let form = app.create_claims_form().await;
    let reply = app
        .post(
            "/endpoints",
            &app.admin_key,
            json!({
                "name": "bad",
                "url": "not a url",
                "subscriptions": {"forms": [form["id"]]},
                "condition": "case.data.amount >",
                "content": {"mode": "fields", "fields": ["data.missing"]},
                "response_mapping": {"rules": [{"path": "$[", "field": "amount"}]},
                "auth": {"type": "bearer", "token": ""},
            }),
        )
        .await
        .expect_error(400, "validation_failed");
    let fields: Vec<String> = reply.details().into_iter().map(|(f, _)| f).collect();
    for expected in ["url", "condition", "auth"] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} not in {fields:?}"
        );
    }
    assert!(
        fields.iter().any(|f| f.starts_with("content")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("response_mapping")),
        "{fields:?}"
    );
    assert!(
        app.get("/endpoints", &app.admin_key)
            .await
            .items()
            .is_empty(),
        "nothing was stored"
    );
    app.post(
        "/endpoints",
        &app.admin_key,
        json!({"name": "x", "url": "https://x.example", "retries": 3}),
    )
    .await
    .expect_error(400, "validation_failed");
}

async fn credentials_and_secrets_stay_hidden(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(500)]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(
        &app,
        &receiver,
        json!({"auth": {"type": "bearer", "token": "tok-SECRET-123"}, "retry": fast_retry(&[0])}),
    )
    .await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["auth"], json!({"type": "bearer"}));
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("authorization"), "Bearer tok-SECRET-123");
    let items = deliveries_until(&app, id, |d| states(d) == ["succeeded"]).await;
    let log = detail(&app, &items[0]).await.to_string();
    assert!(
        !log.contains("tok-SECRET-123"),
        "the attempt log shows the token: {log}"
    );
    let listed = app.get("/endpoints", &app.admin_key).await.text;
    assert!(
        !listed.contains("tok-SECRET-123")
            && !listed.contains(created["secret"].as_str().expect("s"))
    );

    // Admins can read the secret; rotation keeps the old one signing for the overlap.
    let secret = app
        .get(&format!("/endpoints/{id}/secret"), &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(secret["secret"], created["secret"]);
    let member = app.create_key("member").await;
    app.get(&format!("/endpoints/{id}/secret"), &member.secret)
        .await
        .expect_status(403);
    let rotated = app
        .post(
            &format!("/endpoints/{id}/secret/rotate"),
            &app.admin_key,
            json!({"overlap_secs": 3600}),
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(rotated["previous_secret"], created["secret"]);
    assert_ne!(rotated["secret"], created["secret"]);
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let got = receiver.wait_for(3).await;
    let signatures = got[2].header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [&rotated["secret"], &rotated["previous_secret"]] {
        standardwebhooks::Webhook::new(secret.as_str().expect("s"))
            .expect("parses")
            .verify(&got[2].body, &got[2].headers)
            .expect("both secrets verify during the overlap");
    }
}

async fn test_send_and_manual_replay(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(&app, &receiver, json!({})).await;
    let id = created["id"].as_str().expect("id");
    let result = app
        .post(
            &format!("/endpoints/{id}/test"),
            &app.admin_key,
            json!({"type": "case.created"}),
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(result["success"], true);
    assert_eq!(result["status"], 200);
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        app.get(&format!("/endpoints/{id}"), &app.admin_key)
            .await
            .body["health"],
        "ready"
    );
    assert!(
        app.get(&format!("/deliveries?endpoint_id={id}"), &app.admin_key)
            .await
            .items()
            .is_empty()
    );
    app.post(
        &format!("/endpoints/{id}/recover"),
        &app.admin_key,
        json!({"since": "yesterday"}),
    )
    .await
    .expect_error(400, "invalid_body");

    let case = app
        .create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let items = deliveries_until(&app, id, |d| states(d) == ["succeeded"]).await;
    let replay = app
        .post(
            &format!("/endpoints/{id}/replay"),
            &app.admin_key,
            json!({"event_id": items[0]["event_id"]}),
        )
        .await
        .expect_status(202)
        .body;
    assert_eq!(replay["origin"], "replay");
    let items = deliveries_until(&app, id, |d| states(d) == ["succeeded", "succeeded"]).await;
    assert_ne!(items[0]["message_id"], items[1]["message_id"]);
    let retried = app
        .post(
            &format!("/deliveries/{}/retry", items[1]["id"].as_str().expect("id")),
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(202)
        .body;
    assert_eq!(retried["state"], "pending");
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["resource_id"], case["id"]);
    let filtered = app
        .get(
            &format!(
                "/deliveries?case={}&state=succeeded",
                case["id"].as_str().expect("id")
            ),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .items();
    assert!(!filtered.is_empty());
}

async fn a_failed_test_send_says_what_came_back(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(503)]).await;
    let created = endpoint(&app, &receiver, json!({})).await;
    let id = created["id"].as_str().expect("id");
    let result = app
        .post(&format!("/endpoints/{id}/test"), &app.admin_key, json!({}))
        .await
        .expect_status(200)
        .body;
    assert_eq!(result["success"], false);
    assert_eq!(result["status"], 503);
    assert_eq!(result["verdict"], "retry");
    assert_eq!(result["error_kind"], "http_status");
    assert_eq!(
        app.get(&format!("/endpoints/{id}"), &app.admin_key)
            .await
            .body["health"],
        "setup"
    );
}

async fn private_addresses_are_refused_by_the_guard(app: TestApp) {
    let form = app.create_claims_form().await;
    let created = app
        .post(
            "/endpoints",
            &app.admin_key,
            json!({"name": "internal", "url": "http://10.255.255.1/hook", "retry": fast_retry(&[0])}),
        )
        .await
        .expect_status(201)
        .body;
    let id = created["id"].as_str().expect("id");
    app.create_case(form["id"].as_str().expect("id"), json!({}))
        .await;
    let items = deliveries_until(&app, id, |d| states(d) == ["failed"]).await;
    let log = detail(&app, &items[0]).await;
    assert_eq!(
        log["attempt_log"].as_array().expect("log").len(),
        1,
        "not retried"
    );
    assert_eq!(log["attempt_log"][0]["error_kind"], "blocked_by_ssrf_guard");
}

async fn ordered_endpoints_keep_a_cases_events_in_order(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Status(500)]).await;
    let form = app.create_claims_form().await;
    let created = endpoint(
        &app,
        &receiver,
        json!({"ordering": "ordered_per_case", "retry": fast_retry(&[1])}),
    )
    .await;
    let case = app
        .create_case(form["id"].as_str().expect("id"), json!({"amount": 1}))
        .await;
    let case_id = case["id"].as_str().expect("id");
    app.patch(
        &format!("/cases/{case_id}"),
        &app.admin_key,
        json!({"data": {"amount": 2}}),
    )
    .await
    .expect_status(200);
    let got = receiver.wait_for(3).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        types,
        ["case.created", "case.created", "case.updated"],
        "the update waited for the retried creation"
    );
    deliveries_until(&app, created["id"].as_str().expect("id"), |d| {
        states(d) == ["succeeded", "succeeded"]
    })
    .await;
}

async fn responses_map_back_into_the_case(app: TestApp) {
    let receiver = Receiver::start(vec![Answer::Json(
        json!({"result": {"reference": "EXT-77", "score": "12.5"}}),
    )])
    .await;
    let form = app
        .create_form(json!({
            "name": "Orders",
            "fields": [{"key": "amount", "type": "number"}, {"key": "reference", "type": "text"}, {"key": "score", "type": "number"}]
        }))
        .await;
    let form_id = form["id"].as_str().expect("id");
    let created = endpoint(
        &app,
        &receiver,
        json!({
            "subscriptions": {"event_types": ["case.created", "case.updated"], "forms": [form_id]},
            "response_mapping": {"rules": [
                {"path": "$.result.reference", "field": "reference"},
                {"path": "$.result.score", "field": "score"}
            ]},
        }),
    )
    .await;
    let case = app.create_case(form_id, json!({"amount": 3})).await;
    let case_id = case["id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(20);
    let updated = loop {
        let now = app
            .get(&format!("/cases/{case_id}"), &app.admin_key)
            .await
            .body;
        if now["data"]["reference"] == "EXT-77" {
            break now;
        }
        assert!(Instant::now() < deadline, "never mapped: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(updated["data"]["score"], json!(12.5));
    let events = app
        .events(
            &app.admin_key,
            &format!("&case={case_id}&type=case.updated"),
        )
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"]["kind"], "endpoint");
    // The write-back's own case.updated is not sent back to the endpoint.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
    deliveries_until(&app, created["id"].as_str().expect("id"), |d| {
        states(d) == ["succeeded"]
    })
    .await;
}

async fn write_back_loops_between_endpoints_are_cut(app: TestApp) {
    let answers = |base: i64| {
        (0..20)
            .map(|i| Answer::Json(json!({"n": base + i})))
            .collect()
    };
    let (a, b) = (
        Receiver::start(answers(100)).await,
        Receiver::start(answers(200)).await,
    );
    let form = app
        .create_form(json!({"name": "Loop", "fields": [{"key": "score", "type": "number"}]}))
        .await;
    let form_id = form["id"].as_str().expect("id");
    let config = json!({
        "subscriptions": {"forms": [form_id]},
        "response_mapping": {"rules": [{"path": "$.n", "field": "score"}]},
    });
    endpoint(&app, &a, config.clone()).await;
    endpoint(&app, &b, config).await;
    let case = app.create_case(form_id, json!({})).await;
    // Each write-back is sent to the other endpoint only, until the chain passes its limit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let total = a.received().len() + b.received().len();
    let updates = app
        .events(
            &app.admin_key,
            &format!(
                "&case={}&type=case.updated",
                case["id"].as_str().expect("id")
            ),
        )
        .await;
    let chains: Vec<i64> = updates
        .iter()
        .map(|e| e["actor"]["chain"].as_i64().unwrap_or(0))
        .collect();
    assert!(chains.iter().all(|c| (1..=4).contains(c)), "{chains:?}");
    assert_eq!(
        chains.iter().max(),
        Some(&4),
        "the loop ran until the guard: {chains:?}"
    );
    assert!(total <= 2 + 2 * 4, "{total} requests: the loop was not cut");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.received().len() + b.received().len(),
        total,
        "still going"
    );
}

async fn limits_bound_requests_in_flight_and_per_second(app: TestApp) {
    let slow = Receiver::start((0..4).map(|_| Answer::Delay(200)).collect()).await;
    let paced = Receiver::start(vec![]).await;
    let form = app.create_claims_form().await;
    let form_id = form["id"].as_str().expect("id");
    endpoint(&app, &slow, json!({"limits": {"max_in_flight": 1}})).await;
    endpoint(&app, &paced, json!({"limits": {"rate_per_second": 2}})).await;
    for _ in 0..4 {
        app.create_case(form_id, json!({})).await;
    }
    let one_at_a_time = slow.wait_for(4).await;
    for pair in one_at_a_time.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(190),
            "two requests were in flight at once: {:?}",
            pair[1].at - pair[0].at
        );
    }
    let paced = paced.wait_for(4).await;
    let mut first_second = 0;
    for r in &paced {
        if r.at - paced[0].at < Duration::from_millis(900) {
            first_second += 1;
        }
    }
    assert!(
        first_second <= 2,
        "{first_second} requests within the first second at 2/s"
    );
}

api_tests!(
    limits_bound_requests_in_flight_and_per_second,
    write_back_loops_between_endpoints_are_cut,
    a_created_case_is_delivered_signed,
    failures_are_retried_with_the_same_webhook_id,
    exhausted_retries_leave_a_failed_delivery_to_recover,
    client_errors_fail_at_once_and_gone_disables,
    retry_after_is_honoured,
    a_hanging_receiver_times_out,
    when_and_if_choose_the_events,
    content_and_protocols,
    invalid_configuration_is_refused_precisely,
    credentials_and_secrets_stay_hidden,
    test_send_and_manual_replay,
    private_addresses_are_refused_by_the_guard,
    a_failed_test_send_says_what_came_back,
    ordered_endpoints_keep_a_cases_events_in_order,
    responses_map_back_into_the_case
);
