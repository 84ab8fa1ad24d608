//! Tenant isolation: a key of workspace B neither sees nor touches anything of workspace A.
//!
//! The walk takes its routes from the OpenAPI document, so a route added later is walked too;
//! a route whose path parameter or body this file does not know fails the walk, asking for
//! A's value (or a plausible body) to be added here.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp, api_tests, text};

api_tests!(
    every_route_answers_404_for_another_workspaces_resources,
    lists_never_show_another_workspaces_data,
    names_and_external_refs_are_scoped_to_their_workspace,
    emitting_an_event_about_another_workspaces_case_is_404,
    the_feed_filtered_by_another_workspaces_case_id_is_404,
    ids_in_bodies_never_reach_another_workspace,
);

/// What workspace A holds, by the names path parameters use.
struct WorkspaceA {
    workspace_id: String,
    form_id: String,
    case_id: String,
    admin_key_id: String,
    member: crate::support::IssuedKey,
    event_type: &'static str,
    event_id: String,
    endpoint_id: String,
    delivery_id: String,
    hook_id: String,
    hook_request_id: String,
    connection_id: String,
    action_id: String,
    events: usize,
}

const FIELDS: &str = r#"[
    {"key": "amount", "type": "number"},
    {"key": "kind", "type": "select", "options": ["car", "home"]},
    {"key": "note", "type": "text"}
]"#;

fn fields() -> Value {
    serde_json::from_str(FIELDS).expect("FIELDS is JSON")
}

/// A form, a case with an external reference, a custom event type with an event, a second
/// key; then workspace B.
async fn populate(app: &TestApp) -> (WorkspaceA, Tenant) {
    let admin = &app.admin_key;
    // A secret, a connection with an operation, and a form with an API-call field using it.
    app.post(
        "/secrets",
        admin,
        json!({"name": "a_secret", "value": "A's own secret"}),
    )
    .await
    .expect_status(201);
    let connection = app
        .post(
            "/connections",
            admin,
            json!({"name": "a_crm", "base_url": "http://127.0.0.1:9",
                   "auth": {"type": "bearer", "token": "{secret.a_secret}"},
                   "operations": {"lookup": {"path": "/lookup"}}}),
        )
        .await
        .expect_status(201)
        .body;
    let connection_id = text(&connection["id"]);
    let mut form_fields = fields();
    form_fields.as_array_mut().expect("FIELDS is a list").push(
        json!({"key": "lookup", "type": "api_call", "trigger": "manual",
                     "connection": "a_crm", "operation": "lookup"}),
    );
    let form = app
        .create_form(
            json!({"name": "Claims", "statuses": ["open", "closed"], "fields": form_fields}),
        )
        .await;
    let form_id = text(&form["id"]);
    let case = app
        .create_case_with(json!({
            "form_id": form_id,
            "data": {"amount": 100, "kind": "car"},
            "external_refs": {"crm": "A-1"}
        }))
        .await;
    let case_id = text(&case["id"]);
    app.post(
        "/event-types",
        admin,
        json!({"name": "order.shipped", "description": "A's", "schema": {"type": "object"}}),
    )
    .await
    .expect_status(201);
    app.post(
        "/events",
        admin,
        json!({"type": "order.shipped", "case": case_id, "data": {"carrier": "dhl"}}),
    )
    .await
    .expect_status(201);
    let member = app.create_key("member").await;
    let keys = app.get("/api-keys", admin).await.expect_status(200).items();
    let admin_key_id = keys
        .iter()
        .find(|k| k["role"] == "admin")
        .map(|k| text(&k["id"]))
        .expect("the bootstrap admin key is listed");
    // An endpoint whose only delivery fails at once (nothing listens on port 9, no retries).
    let endpoint = app
        .post(
            "/endpoints",
            admin,
            json!({"name": "A's", "url": "http://127.0.0.1:9/hook", "retry": {"schedule_secs": []}}),
        )
        .await
        .expect_status(201)
        .body;
    let endpoint_id = text(&endpoint["id"]);
    app.create_case_with(json!({"form_id": form_id, "data": {"amount": 1}}))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let delivery_id = loop {
        let items = app
            .get(&format!("/deliveries?endpoint_id={endpoint_id}"), admin)
            .await
            .expect_status(200)
            .items();
        if let Some(d) = items.iter().find(|d| d["state"] == "failed") {
            break text(&d["id"]);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the case created after the endpoint was never delivered to it: {items:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let event_id = text(&app.events(admin, "").await[0]["id"]);
    // An inbound hook with a secret, and one request in its log.
    let hook = crate::inbound::create_hook(
        app,
        json!({"name": "A's hook", "form_id": form_id, "verifications": [{"kind": "token", "query": "t"}]}),
    )
    .await;
    let hook_id = text(&hook["id"]);
    let secret = text(&hook["secrets"][0]["secrets"][0]["secret"]);
    let logged = crate::inbound::post_json(
        app,
        &format!("{}?t={secret}", text(&hook["url_path"])),
        json!({"amount": 2}),
    )
    .await
    .expect_status(200);
    let hook_request_id = text(&logged.body["request_id"]);
    let action = app
        .post(
            "/actions",
            admin,
            json!({"name": "a_action", "subscriptions": {"event_types": ["order.*"]},
                   "connection": "a_crm", "operation": "lookup"}),
        )
        .await
        .expect_status(201)
        .body;
    let action_id = text(&action["id"]);
    let workspaces = app.get("/workspaces", admin).await.expect_status(200);
    let workspace_id = text(&workspaces.items()[0]["id"]);
    let events = app.events(admin, "").await.len();
    let b = app.create_workspace("B").await;
    assert_ne!(b.id, workspace_id);
    let a = WorkspaceA {
        workspace_id,
        form_id,
        case_id,
        admin_key_id,
        member,
        event_type: "order.shipped",
        event_id,
        endpoint_id,
        delivery_id,
        hook_id,
        hook_request_id,
        connection_id,
        action_id,
        events,
    };
    (a, b)
}

/// A's values for one path parameter; every parameter of every documented path must be
/// known here.
fn values_for(a: &WorkspaceA, template: &str, name: &str) -> Vec<String> {
    let resource = template.split('/').nth(1).unwrap_or_default();
    match (resource, name) {
        ("forms", "id") => vec![a.form_id.clone()],
        // A case is named by id, by `#N` (URL-encoded) and by plain `N`.
        ("cases", "case") => vec![a.case_id.clone(), "%231".into(), "1".into()],
        ("cases", "source") => vec!["crm".into()],
        ("cases", "reference") => vec!["A-1".into()],
        ("workspaces", "id") => vec![a.workspace_id.clone()],
        ("api-keys", "id") => vec![a.admin_key_id.clone(), a.member.id.clone()],
        ("event-types", "name") => vec![a.event_type.into()],
        ("endpoints", "id") => vec![a.endpoint_id.clone()],
        ("deliveries", "id") => vec![a.delivery_id.clone()],
        ("inbound-hooks", "id") => vec![a.hook_id.clone()],
        ("inbound-hooks", "request") => vec![a.hook_request_id.clone()],
        ("inbound-hooks", "index") => vec!["0".into()],
        ("cases", "field") => vec!["lookup".into()],
        ("secrets", "name") => vec!["a_secret".into()],
        ("connections", "id") => vec![a.connection_id.clone()],
        ("connections", "operation") => vec!["lookup".into()],
        ("actions", "id") => vec![a.action_id.clone()],
        _ => panic!(
            "{template}: no value of workspace A for `{{{name}}}`; add one to tenancy.rs \
             so this route is part of the isolation walk"
        ),
    }
}

/// Every concrete path for a template, one per combination of A's values.
fn concrete_paths(a: &WorkspaceA, template: &str) -> Vec<String> {
    let mut paths = vec![template.to_owned()];
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closed path parameter") + start;
        let name = &rest[start + 1..end];
        let placeholder = format!("{{{name}}}");
        let values = values_for(a, template, name);
        paths = paths
            .iter()
            .flat_map(|p| values.iter().map(|v| p.replacen(&placeholder, v, 1)))
            .collect();
        rest = &rest[end + 1..];
    }
    paths
}

/// A body the route would accept if the resource were B's, so that only the lookup can
/// refuse it.
fn plausible_body(a: &WorkspaceA, method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("get" | "delete", _) => None,
        ("post", "/endpoints/{id}/enable" | "/endpoints/{id}/disable" | "/endpoints/{id}/test")
        | ("post", "/endpoints/{id}/secret/rotate" | "/deliveries/{id}/retry") => None,
        ("put", "/endpoints/{id}") => {
            Some(json!({"name": "Hijacked", "url": "https://x.example/"}))
        }
        ("post", "/endpoints/{id}/replay") => Some(json!({"event_id": a.event_id})),
        ("post", "/endpoints/{id}/recover") => Some(json!({"since": "2000-01-01T00:00:00Z"})),
        ("post", "/forms/{id}/archive") => None,
        ("post", "/inbound-hooks/{id}/rotate-url")
        | ("post", "/inbound-hooks/{id}/verifications/{index}/rotate")
        | ("post", "/inbound-hooks/{id}/requests/{request}/replay") => None,
        ("put", "/inbound-hooks/{id}") => Some(json!({"name": "Hijacked", "form_id": a.form_id})),
        ("put", "/forms/{id}") => {
            Some(json!({"name": "Hijacked", "statuses": ["open", "closed"], "fields": fields()}))
        }
        ("patch", "/cases/{case}") => Some(json!({"data": {"amount": 1}, "status": "closed"})),
        ("post", "/cases/{case}/status") => Some(json!({"status": "closed"})),
        ("post", "/cases/{case}/api-calls/{field}/run")
        | ("post", "/cases/{case}/api-calls/{field}/dry-run") => None,
        // With If-Match, a PUT names an existing secret (without, it would create B's own).
        ("put", "/secrets/{name}") => Some(json!({"value": "hijacked"})),
        ("put", "/connections/{id}") => {
            Some(json!({"name": "hijacked", "base_url": "https://x.example"}))
        }
        ("post", "/connections/{id}/operations/{operation}/dry-run")
        | ("post", "/actions/{id}/dry-run") => Some(json!({"case": a.case_id})),
        ("put", "/actions/{id}") => {
            Some(json!({"name": "hijacked", "api_config": {"url": "https://x.example/"}}))
        }
        ("put", "/event-types/{name}") => {
            Some(json!({"description": "hijacked", "schema": {"type": "string"}}))
        }
        _ => panic!(
            "{} {template}: no plausible body; add one to tenancy.rs so this route is part \
             of the isolation walk",
            method.to_uppercase()
        ),
    }
}

async fn every_route_answers_404_for_another_workspaces_resources(app: TestApp) {
    let (a, b) = populate(&app).await;
    let doc = app
        .get("/openapi.json", &app.admin_key)
        .await
        .expect_status(200)
        .body;
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut walked = 0;
    for (template, item) in paths {
        // Paths with a server of their own (`/in/{token}`) are not under `/api/v1` and take
        // no API key: the token in the URL names the hook, whichever workspace it is in.
        if !template.contains('{') || item.get("servers").is_some() {
            continue;
        }
        let item = item.as_object().expect("a path item");
        for method in ["get", "put", "post", "patch", "delete"] {
            if !item.contains_key(method) {
                continue;
            }
            let body = plausible_body(&a, method, template);
            for path in concrete_paths(&a, template) {
                let http =
                    Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
                let mut request = app.request(http, &path, Some(&b.admin_key));
                if let Some(body) = &body {
                    request = request.json(body);
                }
                if template == "/secrets/{name}" && method == "put" {
                    request = request.header("If-Match", "\"1\"");
                }
                app.send(request).await.expect_error(404, "not_found");
                walked += 1;
            }
        }
    }
    // Forms 3, cases 3 × 4 + 1, workspaces 1, keys 2 × 2, event types 3 = 24: the walk ran.
    assert!(walked >= 24, "only {walked} requests walked");

    // Nothing of A moved.
    let admin = &app.admin_key;
    let form = app
        .get(&format!("/forms/{}", a.form_id), admin)
        .await
        .expect_status(200);
    assert_eq!(form.body["version"], 1, "{}", form.text);
    assert_eq!(form.body["spec"]["name"], "Claims");
    assert!(form.body["archived_at"].is_null(), "{}", form.text);
    let case = app
        .get(&format!("/cases/{}", a.case_id), admin)
        .await
        .expect_status(200);
    assert_eq!(case.body["version"], 1, "{}", case.text);
    assert_eq!(case.body["status"], "open");
    assert_eq!(case.body["data"], json!({"amount": 100, "kind": "car"}));
    app.get("/cases", &a.member.secret).await.expect_status(200);
    let event_type = app
        .get("/event-types/order.shipped", admin)
        .await
        .expect_status(200);
    assert_eq!(event_type.body["description"], "A's");
    assert_eq!(event_type.body["schema"], json!({"type": "object"}));
    assert!(event_type.body.get("archived_at").is_none());
    assert_eq!(
        app.events(admin, "").await.len(),
        a.events,
        "no event was written"
    );
    let endpoint = app
        .get(&format!("/endpoints/{}", a.endpoint_id), admin)
        .await
        .expect_status(200);
    assert_eq!(endpoint.body["version"], 1, "{}", endpoint.text);
    assert_eq!(endpoint.body["enabled"], true);
    let delivery = app
        .get(&format!("/deliveries/{}", a.delivery_id), admin)
        .await
        .expect_status(200);
    assert_eq!(delivery.body["state"], "failed", "{}", delivery.text);
    for path in [
        "/secrets/a_secret".to_owned(),
        format!("/connections/{}", a.connection_id),
        format!("/actions/{}", a.action_id),
    ] {
        let reply = app.get(&path, admin).await.expect_status(200);
        assert_eq!(reply.body["version"], 1, "{path}: {}", reply.text);
    }
    assert!(
        app.get("/cases/1/api-calls", admin)
            .await
            .expect_status(200)
            .items()
            .is_empty(),
        "B ran none of A's API calls"
    );
    // And B's key is a working key: the 404s are about A's resources, not about B.
    app.get("/forms", &b.admin_key).await.expect_status(200);
}

async fn lists_never_show_another_workspaces_data(app: TestApp) {
    let (a, b) = populate(&app).await;
    let key = &b.admin_key;
    for path in [
        "/forms",
        "/forms?include_archived=true",
        "/cases",
        "/cases?include_deleted=true",
        "/events",
        "/events?after=0",
        "/endpoints",
        "/deliveries",
        "/deliveries?state=failed",
    ] {
        let reply = app.get(path, key).await.expect_status(200);
        assert!(reply.items().is_empty(), "{}: {}", reply.what, reply.text);
    }
    let by_form = app
        .get(&format!("/cases?form_id={}", a.form_id), key)
        .await
        .expect_status(200);
    assert!(by_form.items().is_empty(), "{}", by_form.text);

    let keys = app.get("/api-keys", key).await.expect_status(200).items();
    assert_eq!(keys.len(), 1, "only B's own admin key: {keys:?}");
    assert_eq!(keys[0]["workspace_id"], json!(b.id));

    let types = app
        .get("/event-types?include_archived=true", key)
        .await
        .expect_status(200)
        .items();
    assert!(
        types.iter().all(|t| t["builtin"] == true),
        "A's custom type leaked: {types:?}"
    );

    let workspaces = app.get("/workspaces", key).await.expect_status(200).items();
    assert_eq!(workspaces.len(), 1, "{workspaces:?}");
    assert_eq!(workspaces[0]["id"], json!(b.id));
    assert_eq!(workspaces[0]["name"], "B");

    // A still sees its own, and only its own.
    let a_keys = app
        .get("/api-keys", &app.admin_key)
        .await
        .expect_status(200)
        .items();
    assert!(
        a_keys
            .iter()
            .all(|k| k["workspace_id"] == json!(a.workspace_id))
    );
    assert_eq!(a_keys.len(), 2);
}

async fn names_and_external_refs_are_scoped_to_their_workspace(app: TestApp) {
    let (a, b) = populate(&app).await;
    let key = &b.admin_key;
    app.post(
        "/event-types",
        key,
        json!({"name": "order.shipped", "description": "B's"}),
    )
    .await
    .expect_status(201);
    let form = app
        .post(
            "/forms",
            key,
            json!({"name": "B's claims", "fields": fields()}),
        )
        .await
        .expect_status(201);
    let case = app
        .post(
            "/cases",
            key,
            json!({"form_id": form.body["id"], "data": {}, "external_refs": {"crm": "A-1"}}),
        )
        .await
        .expect_status(201);
    assert_eq!(case.body["number"], 1, "case numbers count per workspace");

    let in_b = app
        .get("/cases/by-ref/crm/A-1", key)
        .await
        .expect_status(200);
    assert_eq!(in_b.body["id"], case.body["id"]);
    let in_a = app
        .get("/cases/by-ref/crm/A-1", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(in_a.body["id"], json!(a.case_id));
    let b_type = app
        .get("/event-types/order.shipped", key)
        .await
        .expect_status(200);
    assert_eq!(b_type.body["description"], "B's");
    let a_type = app
        .get("/event-types/order.shipped", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(a_type.body["description"], "A's");
    // B's `#1` is B's case.
    let first = app.get("/cases/%231", key).await.expect_status(200);
    assert_eq!(first.body["id"], case.body["id"]);
    // And B's first event is B's sequence 1.
    let events = app.events(key, "").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["workspace_id"], json!(b.id));
}

async fn emitting_an_event_about_another_workspaces_case_is_404(app: TestApp) {
    let (a, b) = populate(&app).await;
    let key = &b.admin_key;
    // A's custom type is not in B's catalog.
    app.post("/events", key, json!({"type": "order.shipped", "data": {}}))
        .await
        .expect_error(400, "unknown_event_type");
    app.post("/event-types", key, json!({"name": "order.shipped"}))
        .await
        .expect_status(201);
    for case in [a.case_id.as_str(), "#1", "1"] {
        app.post(
            "/events",
            key,
            json!({"type": "order.shipped", "case": case, "data": {}}),
        )
        .await
        .expect_error(404, "not_found");
    }
    assert!(app.events(key, "").await.is_empty());
    assert_eq!(app.events(&app.admin_key, "").await.len(), a.events);
    // `#1` names no case of B in the feed filter either.
    app.get("/events?case=%231", key)
        .await
        .expect_error(404, "not_found");
}

async fn the_feed_filtered_by_another_workspaces_case_id_is_404(app: TestApp) {
    let (a, b) = populate(&app).await;
    // No events leak either way; but a case of another workspace is "not found" everywhere
    // else (and `case=#N` is a 404 here), so an id must be too.
    app.get(&format!("/events?case={}", a.case_id), &b.admin_key)
        .await
        .expect_error(404, "not_found");
}

async fn ids_in_bodies_never_reach_another_workspace(app: TestApp) {
    let (a, b) = populate(&app).await;
    let key = &b.admin_key;
    // A's form named in a body is as unknown to B as in a path.
    app.post(
        "/cases",
        key,
        json!({"form_id": a.form_id, "data": {"amount": 1}}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/cases",
        key,
        json!({"form_id": a.form_id, "data": {"nope": 1}}),
    )
    .await
    .expect_error(404, "not_found");
    assert!(
        app.get("/cases", key)
            .await
            .expect_status(200)
            .items()
            .is_empty()
    );
    // B's own resources, by id, are there for B.
    app.get(&format!("/workspaces/{}", b.id), key)
        .await
        .expect_status(200);
    let keys = app.get("/api-keys", key).await.expect_status(200).items();
    app.get(&format!("/api-keys/{}", text(&keys[0]["id"])), key)
        .await
        .expect_status(200);
    assert_eq!(app.events(&app.admin_key, "").await.len(), a.events);
}
