//! The API Call field seed's examples against local stub APIs: VAT-number validation,
//! address lookup with an array answer, company enrichment through a connection, and a
//! credit check whose answer decides what happens to the case.

use serde_json::{Value, json};

use super::{call_log, create_connection, failures_of, form_with, get_case, put_secret, settled};
use crate::receiver::Receiver;
use crate::stub_api::{Reply, StubApi};
use crate::support::{TestApp, api_tests, text};

api_tests!(
    vat_validation_encodes_the_number_in_path_and_query_and_maps_the_answer,
    address_lookup_maps_an_array_answer_as_first_all_count_join_and_each,
    company_enrichment_posts_a_typed_json_body_through_a_connection_operation,
    a_declined_credit_check_fails_with_api_call_failed_and_an_approved_one_maps_the_score,
);

async fn vat_validation_encodes_the_number_in_path_and_query_and_maps_the_answer(app: TestApp) {
    let stub = StubApi::start(|_, _| {
        Reply::Json(
            200,
            json!({"valid": true, "name": "ACME GmbH", "address": {"city": "Berlin"}}),
        )
    })
    .await;
    put_secret(&app, "vat_key", "vat-key-123").await;
    let form = form_with(
        &app,
        "Suppliers",
        json!([
            {"key": "vat", "type": "text"},
            {"key": "company_name", "type": "text"},
            {"key": "vat_valid", "type": "boolean"},
            {"key": "city", "type": "text"},
            {
                "key": "vat_check", "name": "VAT check", "type": "api_call",
                "api_config": {
                    "url": format!("{}/vat/{{data.vat}}", stub.url),
                    "method": "GET",
                    "params": {"number": "{data.vat}", "case": "{case.number}"},
                    "headers": {"X-Case": "{case.id}"},
                    "auth": {"type": "header", "key": "X-Api-Key", "value": "{secret.vat_key}"},
                    "response_mapping": {
                        "company_name": "$.name", "vat_valid": "$.valid", "city": "$.address.city"
                    }
                },
                "trigger": "on_create", "retry": 3, "timeout": 30000, "cache_duration": 0
            }
        ]),
    )
    .await;
    // Characters that would change the URL's meaning if they were not encoded.
    let case = app
        .create_case(&form, json!({"vat": "DE 123/456?x&y"}))
        .await;
    let id = text(&case["id"]);

    let state = settled(&app, &id, "vat_check").await;
    assert_eq!(state["status"], "ok", "{state}");
    assert_eq!(state["attempts"], 1, "{state}");
    assert_eq!(state["cached"], false, "{state}");
    assert!(state["error"].is_null(), "{state}");
    assert!(state["fetched_at"].is_string(), "{state}");
    assert!(state["duration_ms"].is_i64(), "{state}");

    let seen = stub.wait_for("/vat/", 1).await;
    assert_eq!(seen.len(), 1, "one call: {seen:?}");
    let call = &seen[0];
    assert_eq!(call.method, "GET");
    assert_eq!(
        call.path, "/vat/DE%20123%2F456%3Fx%26y",
        "one encoded segment"
    );
    let mut query: Vec<&str> = call.query.split('&').collect();
    query.sort_unstable();
    assert_eq!(
        query,
        vec![
            format!("case={}", case["number"]).as_str(),
            "number=DE+123%2F456%3Fx%26y"
        ],
        "query values are form-encoded"
    );
    assert_eq!(call.header("x-api-key"), "vat-key-123");
    assert_eq!(call.header("x-case"), id);

    let data = &get_case(&app, &id).await["data"];
    assert_eq!(data["company_name"], "ACME GmbH", "{data}");
    assert_eq!(data["vat_valid"], true, "{data}");
    assert_eq!(data["city"], "Berlin", "{data}");
}

async fn address_lookup_maps_an_array_answer_as_first_all_count_join_and_each(app: TestApp) {
    let stub = StubApi::start(|_, _| {
        Reply::Json(
            200,
            json!({"results": [
                {"street": "1 Main St", "city": "Springfield", "zip": "11111"},
                {"street": "2 Oak Ave", "city": "Shelbyville", "zip": "22222"},
                {"street": "3 Elm Rd", "city": "Springfield", "zip": "33333"}
            ]}),
        )
    })
    .await;
    let form = form_with(
        &app,
        "Deliveries",
        json!([
            {"key": "postcode", "type": "text"},
            {"key": "street", "type": "text"},
            {"key": "cities", "type": "array"},
            {"key": "match_count", "type": "number"},
            {"key": "streets", "type": "text"},
            {"key": "addresses", "type": "array"},
            {
                "key": "address_lookup", "type": "api_call",
                "api_config": {
                    "url": format!("{}/addresses?postcode={{data.postcode}}", stub.url),
                    "response_mapping": {"rules": [
                        {"path": "$.results[*].street", "field": "street"},
                        {"path": "$.results[*].city", "field": "cities", "mode": "all"},
                        {"path": "$.results[*]", "field": "match_count", "mode": "count"},
                        {"path": "$.results[*].street", "field": "streets",
                         "mode": {"join": {"separator": " | "}}},
                        {"path": "$.results[*]", "field": "addresses",
                         "mode": {"each": {"fields": {"$.street": "street", "$.zip": "zip"}}}}
                    ]}
                }
            }
        ]),
    )
    .await;
    let case = app
        .create_case(&form, json!({"postcode": "SW1A 1AA"}))
        .await;
    let id = text(&case["id"]);

    let state = settled(&app, &id, "address_lookup").await;
    assert_eq!(state["status"], "ok", "{state}");
    let seen = stub.wait_for("/addresses", 1).await;
    assert_eq!(
        seen[0].query, "postcode=SW1A+1AA",
        "a query value in the URL"
    );

    let data = get_case(&app, &id).await["data"].clone();
    assert_eq!(data["street"], "1 Main St", "first item: {data}");
    assert_eq!(
        data["cities"],
        json!(["Springfield", "Shelbyville", "Springfield"]),
        "all items: {data}"
    );
    assert_eq!(data["match_count"], 3, "count: {data}");
    assert_eq!(
        data["streets"], "1 Main St | 2 Oak Ave | 3 Elm Rd",
        "join: {data}"
    );
    assert_eq!(
        data["addresses"],
        json!([
            {"street": "1 Main St", "zip": "11111"},
            {"street": "2 Oak Ave", "zip": "22222"},
            {"street": "3 Elm Rd", "zip": "33333"}
        ]),
        "each: {data}"
    );
    assert!(
        data.get("address_lookup").is_none(),
        "with a mapping, the field itself is not filled: {data}"
    );
}

async fn company_enrichment_posts_a_typed_json_body_through_a_connection_operation(app: TestApp) {
    let stub =
        StubApi::start(|_, _| Reply::Json(200, json!({"industry": "Software", "employees": 420})))
            .await;
    put_secret(&app, "crm_token", "crm-token-xyz").await;
    let connection = create_connection(
        &app,
        json!({
            "name": "crm",
            "description": "Company data",
            "base_url": format!("{}/crm/v2", stub.url),
            "headers": {"X-Client": "casehook"},
            "timeout_ms": 5000,
            "auth": {"type": "bearer", "token": "{secret.crm_token}"},
            "operations": {"enrich": {
                "path": "/companies/{data.company_id}/enrich",
                "method": "POST",
                "headers": {"X-Case-Number": "{case.number}"},
                "body": {
                    "domain": "{data.domain}",
                    "amount": "{data.amount}",
                    "vip": "{data.vip}",
                    "case": {"number": "{case.number}", "label": "Case #{case.number}"}
                },
                "response_mapping": {"industry": "$.industry", "employees": "$.employees"}
            }}
        }),
    )
    .await;
    assert_eq!(
        connection["auth"],
        json!({"type": "bearer", "token": "{secret.crm_token}"}),
        "a secret reference is shown as written"
    );
    let form = form_with(
        &app,
        "Leads",
        json!([
            {"key": "company_id", "type": "text"},
            {"key": "domain", "type": "text"},
            {"key": "amount", "type": "number"},
            {"key": "vip", "type": "boolean"},
            {"key": "industry", "type": "text"},
            {"key": "employees", "type": "number"},
            {"key": "enrichment", "type": "api_call", "connection": "crm", "operation": "enrich"}
        ]),
    )
    .await;
    let case = app
        .create_case(
            &form,
            json!({"company_id": "acme 42", "domain": "acme.example", "amount": 1234.5, "vip": true}),
        )
        .await;
    let id = text(&case["id"]);
    let number = case["number"].as_i64().expect("a case number");

    let state = settled(&app, &id, "enrichment").await;
    assert_eq!(state["status"], "ok", "{state}");
    let seen = stub.wait_for("/crm/v2/", 1).await;
    let call = &seen[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/crm/v2/companies/acme%2042/enrich");
    assert_eq!(call.header("authorization"), "Bearer crm-token-xyz");
    assert_eq!(
        call.header("x-client"),
        "casehook",
        "the connection's headers"
    );
    assert_eq!(call.header("x-case-number"), number.to_string());
    assert!(call.header("content-type").starts_with("application/json"));
    assert_eq!(
        call.json(),
        json!({
            "domain": "acme.example",
            "amount": 1234.5,
            "vip": true,
            "case": {"number": number, "label": format!("Case #{number}")}
        }),
        "a lone placeholder keeps its JSON type"
    );

    let data = get_case(&app, &id).await["data"].clone();
    assert_eq!(data["industry"], "Software", "{data}");
    assert_eq!(data["employees"], 420, "{data}");

    let log = call_log(&app, &format!("case={id}&field=enrichment")).await;
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["connection_id"], connection["id"]);
    assert_eq!(log[0]["operation"], "enrich");
    assert_eq!(log[0]["verdict"], "ok");
    assert_eq!(log[0]["dry_run"], false);
    assert_eq!(log[0]["status"], 200);
    let logged = log[0]["request"].to_string();
    assert!(
        !logged.contains("crm-token-xyz"),
        "the token is redacted: {logged}"
    );
}

async fn a_declined_credit_check_fails_with_api_call_failed_and_an_approved_one_maps_the_score(
    app: TestApp,
) {
    let stub = StubApi::start(|seen, _| {
        let amount = seen.json()["amount"].as_f64().unwrap_or(0.0);
        if amount > 10_000.0 {
            Reply::Json(200, json!({"decision": "decline", "score": 410}))
        } else {
            Reply::Json(200, json!({"decision": "approve", "score": 720}))
        }
    })
    .await;
    // An outgoing webhook that alerts on failed API calls.
    let alerts = Receiver::start(vec![]).await;
    app.post(
        "/endpoints",
        &app.admin_key,
        json!({"name": "alerts", "url": alerts.url,
               "subscriptions": {"event_types": ["api_call.failed"]}}),
    )
    .await
    .expect_status(201);
    create_connection(
        &app,
        json!({
            "name": "bureau",
            "base_url": stub.url,
            "operations": {"credit_check": {
                "path": "/credit",
                "method": "POST",
                "body": {"applicant": "{data.applicant}", "amount": "{data.amount}"},
                "error_rules": [
                    {"path": "$.decision", "equals": "decline", "message": "credit declined"}
                ],
                "response_mapping": {"credit_score": "$.score", "credit_decision": "$.decision"}
            }}
        }),
    )
    .await;
    let form = form_with(
        &app,
        "Loans",
        json!([
            {"key": "applicant", "type": "text"},
            {"key": "amount", "type": "number"},
            {"key": "credit_score", "type": "number"},
            {"key": "credit_decision", "type": "text"},
            {"key": "credit", "type": "api_call", "connection": "bureau",
             "operation": "credit_check", "retry": 0}
        ]),
    )
    .await;
    let approved = text(
        &app.create_case(&form, json!({"applicant": "Ann", "amount": 5000}))
            .await["id"],
    );
    let declined = text(
        &app.create_case(&form, json!({"applicant": "Bob", "amount": 50000}))
            .await["id"],
    );

    let ok = settled(&app, &approved, "credit").await;
    assert_eq!(ok["status"], "ok", "{ok}");
    let data = get_case(&app, &approved).await["data"].clone();
    assert_eq!(data["credit_score"], 720, "{data}");
    assert_eq!(data["credit_decision"], "approve", "{data}");
    assert!(failures_of(&app, &approved).await.is_empty());

    let failed = settled(&app, &declined, "credit").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"], "credit declined", "{failed}");
    assert_eq!(
        failed["attempts"], 1,
        "an error rule is not retried: {failed}"
    );
    let data = get_case(&app, &declined).await["data"].clone();
    assert!(
        data.get("credit_score").is_none() && data.get("credit_decision").is_none(),
        "a refused answer maps nothing: {data}"
    );
    let events = failures_of(&app, &declined).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["field"], "credit");
    assert_eq!(events[0]["data"]["error"], "credit declined");

    // The alert reaches the outgoing webhook, about the declined case.
    let delivered = alerts.wait_for(1).await;
    let alert: Value = delivered[0].json();
    assert_eq!(alert["type"], "api_call.failed", "{alert}");
    assert_eq!(alert["resource_id"], declined.as_str(), "{alert}");
    assert_eq!(alert["data"]["error"], "credit declined", "{alert}");
}
