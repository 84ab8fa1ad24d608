//! Multi-step API calls end to end (SwiftCase's "look up the customer, then their invoices,
//! then the payment status"): each step sees the earlier steps' outputs, a step whose
//! condition is false is skipped (no request), and the field's mapping reads the steps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::{TestApp, api_tests};

api_tests!(
    a_sequence_chains_lookups_and_maps_the_last_answer,
    a_step_whose_condition_is_false_is_skipped,
    a_failing_step_fails_the_run_naming_the_step,
    an_action_runs_a_sequence_when_a_case_is_created,
    a_failing_action_emits_api_call_failed_naming_it,
);

/// A billing system on 127.0.0.1: customers by email, their invoices, payment states. It
/// records every path it is asked for.
struct Billing {
    url: String,
    paths: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Billing {
    async fn start() -> Self {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let record = move |p: String| {
            seen.lock().expect("lock").push(p);
        };
        let (r1, r2, r3) = (record.clone(), record.clone(), record);
        let app = axum::Router::new()
            .route(
                "/customers",
                get(move |Query(q): Query<std::collections::HashMap<String, String>>| {
                    let email = q.get("email").cloned().unwrap_or_default();
                    r1(format!("/customers?email={email}"));
                    async move {
                        match email.as_str() {
                            "ann@example.com" => axum::Json(json!({"id": "c-42", "tier": "gold"})),
                            "bob@example.com" => axum::Json(json!({"id": "c-7", "tier": "silver"})),
                            _ => axum::Json(json!({"id": null})),
                        }
                    }
                }),
            )
            .route(
                "/customers/{id}/invoices",
                get(move |Path(id): Path<String>| {
                    r2(format!("/customers/{id}/invoices"));
                    async move {
                        let items = if id == "c-42" {
                            json!([{"id": "inv-1", "status": "paid"}, {"id": "inv-2", "status": "open"}])
                        } else {
                            json!([{"id": "inv-9", "status": "paid"}])
                        };
                        axum::Json(json!({"items": items}))
                    }
                }),
            )
            .route(
                "/payments/{invoice}",
                get(move |Path(invoice): Path<String>| {
                    r3(format!("/payments/{invoice}"));
                    async move {
                        if invoice == "inv-2" {
                            (axum::http::StatusCode::OK, axum::Json(json!({"state": "overdue"})))
                        } else {
                            (axum::http::StatusCode::BAD_GATEWAY, axum::Json(json!({"error": "down"})))
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the billing stub");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            paths,
            _task: task,
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

/// A connection to the billing system, and a form whose `collections` field runs the three
/// steps by hand. `payment_step` is the third step's request.
async fn setup(app: &TestApp, billing: &Billing, payment_step: Value) -> String {
    app.post(
        "/connections",
        &app.admin_key,
        json!({
            "name": "billing",
            "base_url": billing.url,
            "operations": {
                "find_customer": {"path": "/customers", "query": {"email": "{data.email}"}}
            }
        }),
    )
    .await
    .expect_status(201);
    let form = app
        .create_form(json!({
            "name": "Collections",
            "fields": [
                {"key": "email", "type": "text"},
                {"key": "tier", "type": "text"},
                {"key": "payment_state", "type": "text"},
                {"key": "collections", "type": "api_call", "trigger": "manual",
                 "sequence": [
                     {"name": "customer", "connection": "billing", "operation": "find_customer",
                      "outputs": {"id": "$.id", "tier": "$.tier"}},
                     {"name": "invoices",
                      "api_config": {"connection": "billing", "path": "/customers/{steps.customer.id}/invoices"},
                      "when": "steps.customer.id != null",
                      "outputs": {"open": "$.items[?@.status == 'open'].id"}},
                     payment_step
                 ],
                 "response_mapping": {"tier": "$.steps.customer.tier", "payment_state": "$.steps.payment.state"}}
            ]
        }))
        .await;
    form["id"].as_str().expect("a form id").to_owned()
}

fn payment_step() -> Value {
    json!({"name": "payment",
           "api_config": {"connection": "billing", "path": "/payments/{steps.invoices.open}"},
           "when": "type(steps.invoices.open) == string",
           "outputs": {"state": "$.state"}})
}

/// Run a field by hand and wait for its state to settle.
async fn run(app: &TestApp, case: &str, field: &str) -> Value {
    app.post(
        &format!("/cases/{case}/api-calls/{field}/run"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect_status(202);
    for _ in 0..200 {
        let states = app
            .get(&format!("/cases/{case}/api-calls"), &app.admin_key)
            .await
            .expect_status(200)
            .items();
        // Settled, and nothing left under way.
        if let Some(state) = states
            .into_iter()
            .find(|s| s["field"] == field && s.get("run").is_none())
        {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run of {field} never settled");
}

async fn a_sequence_chains_lookups_and_maps_the_last_answer(app: TestApp) {
    let billing = Billing::start().await;
    let form = setup(&app, &billing, payment_step()).await;
    app.create_case(&form, json!({"email": "ann@example.com"}))
        .await;
    let state = run(&app, "1", "collections").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert_eq!(
        billing.paths(),
        [
            "/customers?email=ann@example.com",
            "/customers/c-42/invoices",
            "/payments/inv-2"
        ]
    );
    let case = app
        .get("/cases/1", &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["tier"], "gold", "{case}");
    assert_eq!(case["data"]["payment_state"], "overdue", "{case}");
    // Each step's call is in the log, with its connection.
    let log = app
        .get("/api-calls?field=collections", &app.admin_key)
        .await
        .expect_status(200)
        .items();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter()
            .all(|e| e["connection_id"].is_string() && e["verdict"] == "ok")
    );
}

async fn a_step_whose_condition_is_false_is_skipped(app: TestApp) {
    let billing = Billing::start().await;
    let form = setup(&app, &billing, payment_step()).await;
    app.create_case(&form, json!({"email": "bob@example.com"}))
        .await;
    let dry = app
        .post(
            "/cases/1/api-calls/collections/dry-run",
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(dry["skipped"], json!(["payment"]), "{dry}");
    assert_eq!(dry["error"], Value::Null, "{dry}");
    assert_eq!(dry["mapped"]["tier"], "silver", "{dry}");
    assert_eq!(
        billing.paths(),
        [
            "/customers?email=bob@example.com",
            "/customers/c-7/invoices"
        ],
        "no payment lookup without an open invoice"
    );
    // A dry run writes nothing.
    let case = app
        .get("/cases/1", &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["version"], 1, "{case}");
}

async fn a_failing_step_fails_the_run_naming_the_step(app: TestApp) {
    let billing = Billing::start().await;
    let failing = json!({"name": "payment",
                         "api_config": {"connection": "billing", "path": "/payments/unknown"},
                         "outputs": {"state": "$.state"}});
    let form = setup(&app, &billing, failing).await;
    app.create_case(&form, json!({"email": "ann@example.com", "tier": "bronze"}))
        .await;
    let dry = app
        .post(
            "/cases/1/api-calls/collections/dry-run",
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(200)
        .body;
    let error = dry["error"].as_str().expect("the run failed");
    assert!(error.starts_with("step `payment`: "), "{error}");
    assert_eq!(
        dry["would_retry"], true,
        "a 502 is worth another try: {dry}"
    );
    // Nothing was mapped from the steps that did succeed.
    assert_eq!(dry["mapped"], json!({}), "{dry}");
}

/// The action's sequence: the customer, then their invoices; the tier goes into the case.
fn action_body(form: &str, condition: &str, customer_path: &str) -> Value {
    json!({
        "name": "enrich-collections",
        "subscriptions": {"event_types": ["case.created"], "forms": [form]},
        "condition": condition,
        "sequence": [
            {"name": "customer", "api_config": {"connection": "billing", "path": customer_path,
                                                 "query": {"email": "{data.email}"}},
             "outputs": {"id": "$.id", "tier": "$.tier"}},
            {"name": "invoices",
             "api_config": {"connection": "billing", "path": "/customers/{steps.customer.id}/invoices"},
             "outputs": {"open": "$.items[?@.status == 'open'].id"}}
        ],
        "retry": 0,
        "response_mapping": {"tier": "$.steps.customer.tier"}
    })
}

/// Wait until case #1 satisfies `done`.
async fn wait_case(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let case = app
            .get("/cases/1", &app.admin_key)
            .await
            .expect_status(200)
            .body;
        if done(&case) {
            return case;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("case #1 never got there");
}

async fn an_action_runs_a_sequence_when_a_case_is_created(app: TestApp) {
    let billing = Billing::start().await;
    let form = setup(&app, &billing, payment_step()).await;
    app.post(
        "/actions",
        &app.admin_key,
        action_body(
            &form,
            "case.data.email.endsWith('@example.com')",
            "/customers",
        ),
    )
    .await
    .expect_status(201);
    app.create_case(&form, json!({"email": "ann@example.com"}))
        .await;
    let case = wait_case(&app, |c| c["data"]["tier"] == "gold").await;
    assert_eq!(case["version"], 2, "one write-back: {case}");
    assert_eq!(
        billing.paths(),
        [
            "/customers?email=ann@example.com",
            "/customers/c-42/invoices"
        ]
    );
    // The action's own write-back (a case.updated) does not run it again, and a case the
    // condition rules out does not run it at all.
    app.create_case(&form, json!({"email": "zed@elsewhere.example"}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(billing.paths().len(), 2, "{:?}", billing.paths());
}

async fn a_failing_action_emits_api_call_failed_naming_it(app: TestApp) {
    let billing = Billing::start().await;
    let form = setup(&app, &billing, payment_step()).await;
    app.post(
        "/actions",
        &app.admin_key,
        action_body(&form, "true", "/nowhere"),
    )
    .await
    .expect_status(201);
    app.create_case(&form, json!({"email": "ann@example.com"}))
        .await;
    let mut failed = Vec::new();
    for _ in 0..200 {
        failed = app.events(&app.admin_key, "&type=api_call.failed").await;
        if !failed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = failed.first().expect("an api_call.failed event");
    assert_eq!(event["data"]["action"], "enrich-collections", "{event}");
    let error = event["data"]["error"].as_str().expect("an error");
    assert!(error.starts_with("step `customer`: "), "{error}");
}
