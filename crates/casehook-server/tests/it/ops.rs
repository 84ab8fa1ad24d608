//! What operators and client generators rely on: liveness, readiness naming the database,
//! Prometheus metrics labelled by route, and an OpenAPI 3 document that matches what the
//! router serves.

use std::collections::BTreeSet;

use reqwest::Method;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::json;

use crate::support::{TestApp, api_tests};

api_tests!(
    healthz_answers_ok,
    readyz_names_the_database,
    metrics_count_requests_by_route,
    the_openapi_document_describes_the_api,
    every_documented_operation_is_served_and_needs_a_key,
    shutdown_stops_the_server,
);

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

async fn healthz_answers_ok(app: TestApp) {
    let reply = app.get_root("/healthz").await.expect_status(200);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

async fn readyz_names_the_database(app: TestApp) {
    let reply = app.get_root("/readyz").await.expect_status(200);
    assert_eq!(
        reply.body,
        json!({"status": "ready", "database": app.database})
    );
}

async fn metrics_count_requests_by_route(app: TestApp) {
    for _ in 0..3 {
        app.get("/forms", &app.admin_key).await.expect_status(200);
    }
    app.get("/forms", "chk_wrong").await.expect_status(401);
    let reply = app.get_root("/metrics").await.expect_status(200);
    let content_type = reply
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let counter = |status: &str| {
        reply
            .text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter(|l| l.contains("route=\"/api/v1/forms\""))
            .filter(|l| l.contains("method=\"GET\""))
            .find(|l| l.contains(&format!("status=\"{status}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    // Other tests in this process count on the same recorder: at least ours are there.
    let ok = counter("200").unwrap_or_else(|| panic!("no counter for GET /forms: {}", reply.text));
    assert!(ok >= 3.0, "{ok}");
    assert!(counter("401").is_some_and(|n| n >= 1.0), "{}", reply.text);
    assert!(
        reply.text.contains("http_request_duration_seconds"),
        "durations are recorded too"
    );
}

async fn the_openapi_document_describes_the_api(app: TestApp) {
    let reply = app
        .get_root("/api/v1/openapi.json")
        .await
        .expect_status(200);
    let doc = reply.body;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "OpenAPI 3, got `{version}`");
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let paths = doc["paths"].as_object().expect("paths");
    let expected: [(&str, &[&str]); 12] = [
        ("/forms", &["get", "post"]),
        ("/forms/{id}", &["get", "put"]),
        ("/forms/{id}/archive", &["post"]),
        ("/cases", &["get", "post"]),
        ("/cases/{case}", &["get", "patch", "delete"]),
        ("/cases/{case}/status", &["post"]),
        ("/cases/by-ref/{source}/{reference}", &["get"]),
        ("/events", &["get", "post"]),
        ("/event-types", &["get", "post"]),
        ("/event-types/{name}", &["get", "put", "delete"]),
        ("/api-keys", &["get", "post"]),
        ("/workspaces", &["get", "post"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for method in methods {
            assert!(
                item.get(*method).is_some(),
                "{method} {path} is not documented"
            );
        }
    }
    assert!(paths.contains_key("/api-keys/{id}"));
    assert!(paths.contains_key("/workspaces/{id}"));
    // Where external systems send: at the root, without an API key.
    for path in ["/in/{token}", "/in/{token}/{options}"] {
        let item = &paths[path];
        assert!(item["post"].is_object(), "POST {path} is not documented");
        assert_eq!(
            item["servers"][0]["url"], "/",
            "{path} is served at the root"
        );
        assert_eq!(
            item["post"]["security"],
            json!([{}]),
            "{path} needs no API key"
        );
        for status in ["200", "400", "401", "404", "413", "415", "429"] {
            assert!(
                item["post"]["responses"][status].is_object(),
                "{path} does not document {status}"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Case",
        "FormSpec",
        "FieldDef",
        "Event",
        "ErrorBody",
        "FieldError",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    assert!(
        doc["components"]["securitySchemes"]["api_key"].is_object(),
        "the bearer scheme is declared"
    );
}

/// Every documented method of every documented path is served, behind a key; and each path
/// allows exactly its documented methods, so an undocumented method on a documented path
/// would show up in `Allow`.
async fn every_documented_operation_is_served_and_needs_a_key(app: TestApp) {
    let doc = app
        .get_root("/api/v1/openapi.json")
        .await
        .expect_status(200)
        .body;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{} paths", paths.len());
    for (template, item) in paths {
        if item.get("servers").is_some() {
            // Served at the root, not under `/api/v1`, and verified by the hook, not by an
            // API key: an unknown token is a 404, and other methods are not allowed.
            let path = template
                .replace("{token}", "chi_unknown")
                .replace("{options}", "skiptriggers");
            app.send(app.client.post(format!("{}{path}", app.base_url)))
                .await
                .expect_error(404, "not_found");
            app.send(app.client.get(format!("{}{path}", app.base_url)))
                .await
                .expect_status(405);
            continue;
        }
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let documented: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        for method in &documented {
            let method = Method::from_bytes(method.as_bytes()).expect("a method");
            app.send(app.request(method, &path, None).json(&json!({})))
                .await
                .expect_error(401, "unauthorized");
        }
        let undocumented = METHODS
            .iter()
            .map(|m| m.to_uppercase())
            .find(|m| !documented.contains(m))
            .expect("no path takes every method");
        let method = Method::from_bytes(undocumented.as_bytes()).expect("a method");
        let reply = app
            .send(app.request(method, &path, Some(&app.admin_key)))
            .await
            .expect_error(405, "method_not_allowed");
        let allowed: BTreeSet<String> = reply
            .headers
            .get(ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty() && m != "HEAD")
            .collect();
        assert_eq!(
            allowed, documented,
            "{template}: served and documented methods differ"
        );
    }
}

async fn shutdown_stops_the_server(app: TestApp) {
    app.get_root("/healthz").await.expect_status(200);
    let base = app.base_url.clone();
    let client = app.client.clone();
    app.shutdown().await.expect("serving ends cleanly");
    let after = client.get(format!("{base}/healthz")).send().await;
    assert!(
        after.is_err(),
        "the port is closed after shutdown: {after:?}"
    );
}
