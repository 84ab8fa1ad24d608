//! Refusals before any handler logic: bodies that are not JSON, too large or of the wrong type,
//! unknown routes and methods, and missing, bad or revoked keys. Every one answers with the
//! JSON error body, whoever produced it (our extractors, axum, or the body limit).

use casehook_server::ServerConfig;
use reqwest::Method;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::json;

use crate::support::{TestApp, api_tests};

api_tests!(
    malformed_json_is_400_malformed_json,
    json_of_the_wrong_shape_is_400_invalid_body,
    a_body_that_is_not_declared_json_is_415,
    a_body_over_the_limit_is_413_in_json,
    unknown_routes_are_404_in_json,
    a_wrong_method_is_405_in_json_with_allow,
    a_missing_key_is_401,
    a_bad_key_is_401,
    a_revoked_key_is_401_right_after_revocation,
);

async fn malformed_json_is_400_malformed_json(app: TestApp) {
    for path in ["/forms", "/cases", "/events"] {
        let request = app
            .request(Method::POST, path, Some(&app.admin_key))
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{not json"#);
        app.send(request).await.expect_error(400, "malformed_json");
    }
}

async fn json_of_the_wrong_shape_is_400_invalid_body(app: TestApp) {
    let reply = app
        .post("/forms", &app.admin_key, json!({"name": 12}))
        .await;
    reply.expect_error(400, "invalid_body");
    let reply = app
        .post(
            "/workspaces",
            &app.admin_key,
            json!({"name": "x", "extra": 1}),
        )
        .await;
    reply.expect_error(400, "invalid_body");
}

async fn a_body_that_is_not_declared_json_is_415(app: TestApp) {
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app
            .request(Method::POST, "/forms", Some(&app.admin_key))
            .body(r#"{"name": "Claims"}"#);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        app.send(request)
            .await
            .expect_error(415, "unsupported_media_type");
    }
    let forms = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert!(forms.items().is_empty(), "nothing was created");
}

async fn a_body_over_the_limit_is_413_in_json(app: TestApp) {
    let small = app
        .sibling(ServerConfig {
            body_limit: 4096,
            ..ServerConfig::default()
        })
        .await;
    let form = small
        .post(
            "/forms",
            &small.admin_key,
            json!({"name": "Within the limit"}),
        )
        .await
        .expect_status(201);
    let form_id = form.body["id"].as_str().expect("a form id").to_owned();

    let big = "x".repeat(10 * 1024);
    let reply = small
        .post(
            "/forms",
            &small.admin_key,
            json!({"name": "Too big", "description": big}),
        )
        .await;
    reply.expect_error(413, "payload_too_large");
    let reply = small
        .post(
            "/cases",
            &small.admin_key,
            json!({"form_id": form_id, "data": {"note": big}}),
        )
        .await;
    reply.expect_error(413, "payload_too_large");

    let forms = small
        .get("/forms", &small.admin_key)
        .await
        .expect_status(200);
    assert_eq!(forms.items().len(), 1, "the oversized form was not created");
    // The default limit (1 MiB) takes the same body.
    app.post(
        "/forms",
        &app.admin_key,
        json!({"name": "Fine elsewhere", "description": "x".repeat(10 * 1024)}),
    )
    .await
    .expect_status(201);
}

async fn unknown_routes_are_404_in_json(app: TestApp) {
    app.get("/nothing-here", &app.admin_key)
        .await
        .expect_error(404, "not_found");
    app.get("/forms/x/y/z", &app.admin_key)
        .await
        .expect_error(404, "not_found");
    app.get_root("/nothing-here")
        .await
        .expect_error(404, "not_found");
    app.get_root("/").await.expect_error(404, "not_found");
    // Without a key too: an unknown route is not an authentication question.
    let request = app.request(Method::GET, "/nothing-here", None);
    app.send(request).await.expect_error(404, "not_found");
}

async fn a_wrong_method_is_405_in_json_with_allow(app: TestApp) {
    let cases: [(Method, &str, &[&str]); 3] = [
        (Method::DELETE, "/forms", &["GET", "POST"]),
        (Method::PUT, "/cases", &["GET", "POST"]),
        (
            Method::POST,
            "/api-keys/00000000-0000-0000-0000-000000000000",
            &["GET", "DELETE"],
        ),
    ];
    for (method, path, allowed) in cases {
        let reply = app
            .send(app.request(method, path, Some(&app.admin_key)))
            .await
            .expect_error(405, "method_not_allowed");
        let allow = reply
            .headers
            .get(ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{}: a 405 names the allowed methods", reply.what))
            .to_owned();
        for m in allowed {
            assert!(
                allow.contains(m),
                "{}: Allow `{allow}` lacks {m}",
                reply.what
            );
        }
    }
    let reply = app
        .send(app.client.post(format!("{}/healthz", app.base_url)))
        .await
        .expect_error(405, "method_not_allowed");
    assert!(reply.headers.contains_key(ALLOW), "{}", reply.what);
}

async fn a_missing_key_is_401(app: TestApp) {
    for (method, path) in [
        (Method::GET, "/forms"),
        (Method::GET, "/cases"),
        (Method::GET, "/events"),
        (Method::GET, "/workspaces"),
    ] {
        app.send(app.request(method, path, None))
            .await
            .expect_error(401, "unauthorized");
    }
    let request = app
        .request(Method::POST, "/forms", None)
        .json(&json!({"name": "Claims"}));
    app.send(request).await.expect_error(401, "unauthorized");
    let forms = app.get("/forms", &app.admin_key).await.expect_status(200);
    assert!(
        forms.items().is_empty(),
        "nothing was created without a key"
    );
}

async fn a_bad_key_is_401(app: TestApp) {
    app.get("/forms", "chk_not_a_key_anyone_was_given")
        .await
        .expect_error(401, "unauthorized");
    // The right secret in the wrong scheme, and an empty bearer.
    for header in [format!("Basic {}", app.admin_key), "Bearer ".to_owned()] {
        let request = app
            .request(Method::GET, "/forms", None)
            .header("Authorization", header);
        app.send(request).await.expect_error(401, "unauthorized");
    }
    // A bad key is still a bad key on a second try (the negative cache answers alike).
    app.get("/forms", "chk_not_a_key_anyone_was_given")
        .await
        .expect_error(401, "unauthorized");
}

async fn a_revoked_key_is_401_right_after_revocation(app: TestApp) {
    let key = app.create_key("member").await;
    // Used once, so the key sits in the server's cache when it is revoked.
    app.get("/cases", &key.secret).await.expect_status(200);
    let revoked = app
        .delete(&format!("/api-keys/{}", key.id), &app.admin_key)
        .await
        .expect_status(200);
    assert!(revoked.body["revoked_at"].is_string(), "{}", revoked.text);
    assert!(
        revoked.body.get("key").is_none(),
        "the secret is never shown again"
    );
    app.get("/cases", &key.secret)
        .await
        .expect_error(401, "unauthorized");
    // The admin key is untouched.
    app.get("/cases", &app.admin_key).await.expect_status(200);
}
