//! The secret leak test the API-call issue asks for: a known value is planted as a workspace
//! secret and as connections' literal credentials, every path a call can take is exercised
//! against a stub API that echoes its credentials back (in its JSON body and in response
//! headers), and then every answer the API gave, the server's log output and (on SQLite) the
//! database files are searched for the value in every spelling: raw, percent- and
//! form-encoded, JSON-escaped, and base64 at any alignment (as inside a Basic header).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::{form_with, get_case, settled, state_when};
use crate::stub_api::{Reply, Seen, StubApi};
use crate::support::{Reply as ApiReply, TestApp, api_tests, text};

api_tests!(a_planted_secret_never_appears_in_answers_logs_or_the_database);

/// The planted value. Its tail has characters that every encoding spells differently.
const SECRET: &str = "s3cr3t-VALUE-9f8e7d+/=&";
/// The part of it that stays the same in the raw, percent-, form- and JSON spellings.
const CORE: &str = "s3cr3t-VALUE-9f8e7d";

/// Everything the server wrote through `tracing`, from every test of this process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Install (once) a subscriber that keeps the server's log output at debug level.
fn server_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let filter = tracing_subscriber::EnvFilter::new(
            "casehook_server=debug,casehook_engine=debug,casehook_store=debug,\
             casehook_outbound=debug,casehook_core=debug,tower_http=debug",
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(logs.clone())
            .with_ansi(false)
            .try_init()
            .expect("no other test installs a global subscriber");
        logs
    })
}

/// The spellings to look for: the core of the value (raw, percent-, form- and JSON
/// spellings all contain it), and its base64 at each of the three alignments, in both
/// alphabets, so it is found inside any longer base64 text.
fn needles() -> Vec<String> {
    let mut needles = vec![CORE.to_owned()];
    for value in [SECRET, CORE] {
        for k in 0..3 {
            let mut bytes = vec![0u8; k];
            bytes.extend_from_slice(value.as_bytes());
            let whole_groups = bytes.len() / 3 * 4;
            let skip = if k == 0 { 0 } else { 4 };
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(&bytes);
                needles.push(encoded[skip..whole_groups].to_owned());
            }
        }
    }
    needles.sort();
    needles.dedup();
    needles
}

/// Every answer the test received, as text (status, headers and body).
#[derive(Default)]
struct Collected(Vec<(String, String)>);

impl Collected {
    fn add(&mut self, reply: ApiReply) -> ApiReply {
        let headers: String = reply
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        self.0.push((
            reply.what.clone(),
            format!("{}\n{headers}\n{}", reply.status, reply.text),
        ));
        reply
    }
}

fn assert_clean(what: &str, haystack: &[u8]) {
    for needle in needles() {
        if let Some(at) = haystack
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            let from = at.saturating_sub(200);
            let to = (at + needle.len() + 200).min(haystack.len());
            panic!(
                "{what} leaks the secret as `{needle}`: …{}…",
                String::from_utf8_lossy(&haystack[from..to])
            );
        }
    }
}

/// What the stub API answers: the credentials it received, echoed in the body and in
/// response headers; `/fail` as a 500, `/refuse` as a refusal an error rule catches, and
/// `/hang` never.
fn echo(seen: &Seen, _: usize) -> Reply {
    let echoed = json!({
        "authorization": seen.header("authorization"),
        "x_token": seen.header("x-token"),
        "x_custom_auth": seen.header("x-custom-auth"),
        "path": seen.path,
        "query": seen.query,
        "body": String::from_utf8_lossy(&seen.body),
    });
    let headers = vec![
        (
            "x-echo-authorization".to_owned(),
            seen.header("authorization").to_owned(),
        ),
        ("x-echo-query".to_owned(), seen.query.clone()),
        ("x-echo-path".to_owned(), seen.path.clone()),
    ];
    match seen.path.as_str() {
        "/fail" => Reply::JsonWithHeaders(500, echoed, headers),
        "/hang" => Reply::Hang,
        "/refuse" => {
            Reply::JsonWithHeaders(200, json!({"decision": "decline", "echo": echoed}), headers)
        }
        _ => Reply::JsonWithHeaders(200, echoed, headers),
    }
}

/// The operations every literal-credential connection offers.
fn operations() -> Value {
    json!({
        "echo": {"path": "/echo"},
        "fail": {"path": "/fail"},
        "slow": {"path": "/hang"},
        "refuse": {"path": "/refuse",
                   "error_rules": [{"path": "$.decision", "equals": "decline"}]}
    })
}

/// The API-call fields: (key, configuration).
fn fields(stub: &str) -> Vec<(&'static str, Value)> {
    let op = |connection: &str, operation: &str| json!({"connection": connection, "operation": operation, "retry": 0});
    vec![
        (
            "inline",
            json!({"retry": 0, "api_config": {
                "url": format!("{stub}/echo?s={{secret.leak}}"),
                "headers": {"X-Token": "{secret.leak}"},
                "auth": {"type": "bearer", "token": "{secret.leak}"}
            }}),
        ),
        ("bearer_echo", op("bearer_lit", "echo")),
        (
            "bearer_mapped",
            json!({"connection": "bearer_lit", "operation": "echo",
                   "response_mapping": {"echoed": "$.authorization"}}),
        ),
        ("basic_echo", op("basic_lit", "echo")),
        ("query_echo", op("query_key", "echo")),
        ("ref_echo", op("by_ref", "echo_path")),
        ("failing", op("bearer_lit", "fail")),
        (
            "timing_out",
            json!({"connection": "bearer_lit", "operation": "slow", "retry": 0, "timeout": 300}),
        ),
        ("refused", op("bearer_lit", "refuse")),
        (
            "cached",
            json!({"connection": "bearer_lit", "operation": "echo", "cache_duration": 300}),
        ),
        (
            "missing",
            json!({"retry": 0, "api_config": {
                "url": format!("{stub}/echo"),
                "headers": {"X-Token": "{secret.absent}"}
            }}),
        ),
    ]
}

async fn a_planted_secret_never_appears_in_answers_logs_or_the_database(app: TestApp) {
    let logs = server_logs();
    let stub = StubApi::start(echo).await;
    let admin = app.admin_key.clone();
    let mut got = Collected::default();

    got.add(
        app.post("/secrets", &admin, json!({"name": "leak", "value": SECRET}))
            .await
            .expect_status(201),
    );
    got.add(
        app.put(
            "/secrets/leak",
            &admin,
            json!({"value": SECRET, "description": "planted"}),
        )
        .await
        .expect_status(200),
    );
    let bearer = json!({"name": "bearer_lit", "base_url": stub.url, "timeout_ms": 1000,
                        "auth": {"type": "bearer", "token": SECRET}, "operations": operations()});
    let connections = [
        bearer.clone(),
        json!({"name": "basic_lit", "base_url": stub.url,
               "auth": {"type": "basic", "username": "svc", "password": SECRET},
               "operations": {"echo": {"path": "/echo"}}}),
        json!({"name": "query_key", "base_url": stub.url,
               "auth": {"type": "api_key", "name": "code", "value": "{secret.leak}", "in": "query"},
               "operations": {"echo": {"path": "/echo"}}}),
        json!({"name": "by_ref", "base_url": stub.url, "headers": {"X-Custom-Auth": "{secret.leak}"},
               "operations": {"echo_path": {"path": "/echo/{secret.leak}", "method": "POST",
                   "body": {"token": "{secret.leak}", "note": "t={secret.leak}"}}}}),
    ];
    let mut ids = Vec::new();
    for body in connections {
        let reply = got.add(
            app.post("/connections", &admin, body)
                .await
                .expect_status(201),
        );
        ids.push((text(&reply.body["id"]), reply.body["name"].clone()));
    }
    // Replaced, with its literal credentials sent again.
    got.add(
        app.put(&format!("/connections/{}", ids[0].0), &admin, bearer)
            .await
            .expect_status(200),
    );
    assert_eq!(
        get_json(&app, &format!("/connections/{}", ids[0].0)).await["auth"],
        json!({"type": "bearer", "token": "(set)"})
    );

    let stub_url = stub.url.clone();
    let mut spec = vec![
        json!({"key": "ref", "type": "text"}),
        json!({"key": "echoed", "type": "text"}),
    ];
    for (key, config) in fields(&stub_url) {
        let mut field = json!({"key": key, "type": "api_call"});
        if let (Some(field), Value::Object(extra)) = (field.as_object_mut(), config) {
            field.extend(extra);
        }
        spec.push(field);
    }
    let form = form_with(&app, "Leaky", Value::Array(spec)).await;

    let mut cases = Vec::new();
    for n in 0..2 {
        let reply = got.add(
            app.post(
                "/cases",
                &admin,
                json!({"form_id": form, "data": {"ref": format!("r{n}")}}),
            )
            .await
            .expect_status(201),
        );
        let id = text(&reply.body["id"]);
        for (key, _) in fields(&stub_url) {
            settled(&app, &id, key).await;
        }
        cases.push(id);
    }
    let first = &cases[0];

    // Each path ended where it should.
    let state = |key: &'static str| {
        let app = &app;
        async move { settled(app, first, key).await }
    };
    for key in [
        "inline",
        "bearer_echo",
        "bearer_mapped",
        "basic_echo",
        "query_echo",
        "ref_echo",
    ] {
        assert_eq!(state(key).await["status"], "ok", "{key}");
    }
    assert_eq!(
        state("failing").await["error"],
        "the server answered HTTP 500"
    );
    assert_eq!(
        state("timing_out").await["error"],
        "the exchange did not complete within 300ms"
    );
    assert_eq!(
        state("refused").await["error"],
        "the answer's `$.decision` is \"decline\" (an error rule)"
    );
    assert_eq!(
        state("missing").await["error"],
        "the secret `absent` does not exist in this workspace"
    );
    let hit = state_when(&app, &cases[1], "cached", |s| s["cached"] == true).await;
    assert_eq!(hit["status"], "ok", "{hit}");
    let data = get_case(&app, first).await["data"].clone();
    assert_eq!(data["echoed"], "Bearer [REDACTED]", "{data}");

    // The stub did receive the value in every position, so the searches below mean something.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{SECRET}"))
    );
    let seen = stub.seen();
    let encoded = "s3cr3t-VALUE-9f8e7d%2B%2F%3D%26";
    received(&seen, "as a bearer token", |s| {
        s.header("authorization") == format!("Bearer {SECRET}")
    });
    received(&seen, "in a Basic header", |s| {
        s.header("authorization") == basic
    });
    received(&seen, "in a query", |s| {
        s.query.contains(&format!("code={encoded}"))
    });
    received(&seen, "in a header", |s| {
        s.header("x-custom-auth") == SECRET
    });
    received(&seen, "in a path", |s| s.path == format!("/echo/{encoded}"));
    received(&seen, "in a body", |s| {
        s.body.windows(CORE.len()).any(|w| w == CORE.as_bytes())
    });

    // Dry runs of every field and of every operation.
    for (key, _) in fields(&stub_url) {
        let reply = app
            .post(
                &format!("/cases/{first}/api-calls/{key}/dry-run"),
                &admin,
                json!({}),
            )
            .await;
        assert!(
            reply.status == 200 || (key == "missing" && reply.status == 422),
            "{}: {}",
            reply.what,
            reply.text
        );
        got.add(reply);
    }
    for (id, name) in &ids {
        let ops: Vec<&str> = match name.as_str() {
            Some("bearer_lit") => vec!["echo", "fail", "slow", "refuse"],
            Some("by_ref") => vec!["echo_path"],
            _ => vec!["echo"],
        };
        for op in ops {
            let reply = got.add(
                app.post(
                    &format!("/connections/{id}/operations/{op}/dry-run"),
                    &admin,
                    json!({"case": first}),
                )
                .await
                .expect_status(200),
            );
            if op == "slow" {
                assert_eq!(
                    reply.body["error"], "the exchange did not complete within 1s",
                    "the connection's timeout bounds its dry run: {}",
                    reply.text
                );
            }
        }
    }

    // Everything one can read back.
    let mut reads = vec![
        "/secrets".to_owned(),
        "/secrets/leak".to_owned(),
        "/connections".to_owned(),
        "/forms".to_owned(),
        format!("/forms/{form}"),
        "/cases?limit=100".to_owned(),
        "/api-calls?limit=500".to_owned(),
        "/events?limit=1000".to_owned(),
        "/deliveries".to_owned(),
    ];
    for (id, _) in &ids {
        reads.push(format!("/connections/{id}"));
    }
    for case in &cases {
        reads.push(format!("/cases/{case}"));
        reads.push(format!("/cases/{case}/api-calls"));
    }
    for path in reads {
        got.add(app.get(&path, &admin).await.expect_status(200));
    }
    got.add(app.get_root("/metrics").await);

    for (what, body) in &got.0 {
        assert_clean(what, body.as_bytes());
    }
    assert!(
        got.0.len() > 40,
        "the search covered {} answers",
        got.0.len()
    );
    let logged = logs.0.lock().expect("lock").clone();
    assert!(
        String::from_utf8_lossy(&logged).contains("connection created"),
        "the server's log output was captured"
    );
    assert_clean("the server's log output", &logged);
    for file in app.sqlite_files() {
        let bytes = std::fs::read(&file).expect("read the database file");
        assert_clean(&file.display().to_string(), &bytes);
    }
}

#[track_caller]
fn received(seen: &[Seen], what: &str, found: impl Fn(&Seen) -> bool) {
    assert!(
        seen.iter().any(found),
        "the stub never got the secret {what}"
    );
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.get(path, &app.admin_key).await.expect_status(200).body
}
