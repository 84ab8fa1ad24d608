//! API connections, API-call fields and secrets end to end: forms, connections and secrets
//! configured over the API, cases written over the API, and local stub APIs on 127.0.0.1
//! ([`crate::stub_api`]) answering the calls the workers make.
//!
//! - `seed`: the seed's examples (VAT check, address lookup, company enrichment, credit check);
//! - `runs`: the cache, case writes that never wait, retries, failures;
//! - `triggers`: on update, own write-backs, manual runs, dry runs, manual override;
//! - `secrets`: the secrets API and save-time validation of API-call fields;
//! - `leak`: a planted secret never comes back out, whatever path a call takes;
//! - `tenancy`: another workspace sees none of it.

mod leak;
mod runs;
mod secrets;
mod seed;
mod tenancy;
mod triggers;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestApp, text};

/// Create a workspace secret as admin.
pub async fn put_secret(app: &TestApp, name: &str, value: &str) -> Value {
    app.post(
        "/secrets",
        &app.admin_key,
        json!({"name": name, "value": value}),
    )
    .await
    .expect_status(201)
    .body
}

/// Create a connection as admin; returns it as the API shows it.
pub async fn create_connection(app: &TestApp, body: Value) -> Value {
    app.post("/connections", &app.admin_key, body)
        .await
        .expect_status(201)
        .body
}

/// Create a form named `name` with `fields`; returns its id.
pub async fn form_with(app: &TestApp, name: &str, fields: Value) -> String {
    let form = app
        .create_form(json!({"name": name, "fields": fields}))
        .await;
    text(&form["id"])
}

/// The case as the API shows it.
pub async fn get_case(app: &TestApp, case: &str) -> Value {
    app.get(&format!("/cases/{case}"), &app.admin_key)
        .await
        .expect_status(200)
        .body
}

/// The API-call field states of a case.
pub async fn states(app: &TestApp, case: &str) -> Vec<Value> {
    app.get(&format!("/cases/{case}/api-calls"), &app.admin_key)
        .await
        .expect_status(200)
        .items()
}

/// One field's state, if it has one.
pub async fn state_of(app: &TestApp, case: &str, field: &str) -> Option<Value> {
    states(app, case)
        .await
        .into_iter()
        .find(|s| s["field"] == field)
}

/// Poll a field's state until `done` holds for it (at most 20 s).
pub async fn state_when(
    app: &TestApp,
    case: &str,
    field: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = state_of(app, case, field).await;
        if let Some(state) = state.as_ref().filter(|s| done(s)) {
            return state.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the state of `{field}` on case {case} never got there: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait for a field's first settled state (ok or failed).
pub async fn settled(app: &TestApp, case: &str, field: &str) -> Value {
    state_when(app, case, field, |s| {
        s["status"] == "ok" || s["status"] == "failed"
    })
    .await
}

/// Wait for a settled state that differs from `before` (a later run's).
pub async fn settled_after(app: &TestApp, case: &str, field: &str, before: &Value) -> Value {
    state_when(app, case, field, |s| {
        (s["status"] == "ok" || s["status"] == "failed") && s["updated_at"] != before["updated_at"]
    })
    .await
}

/// `api_call.failed` events of a case.
pub async fn failures_of(app: &TestApp, case: &str) -> Vec<Value> {
    app.events(
        &app.admin_key,
        &format!("&type=api_call.failed&case={case}"),
    )
    .await
}

/// The call log filtered by `query` (`case=…&field=…`).
pub async fn call_log(app: &TestApp, query: &str) -> Vec<Value> {
    app.get(&format!("/api-calls?limit=500&{query}"), &app.admin_key)
        .await
        .expect_status(200)
        .items()
}
