//! Bad input never breaks the inbound path: generated requests (arbitrary bytes, JSON-ish
//! fragments, form and multipart fragments, any Content-Type, extra headers, path suffixes)
//! sent to one token-verified hook are never answered 5xx, every refusal is our JSON error,
//! every success names cases that exist, and nothing is ever written halfway.
//!
//! proptest drives the requests from a blocking thread (`spawn_blocking`), each sent on the
//! test's runtime with `Handle::block_on`, so shrinking works as usual. Runs 64 cases per
//! backend (`PROPTEST_CASES` changes it); failures are not persisted to files.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::inbound::create_hook;
use crate::support::{Reply, TestApp, api_tests, text};

api_tests!(
    generated_requests_never_break_the_inbound_path,
    a_nul_character_in_a_payload_is_never_a_server_error,
);

/// The hook's shared token, sent in `x-hook-token`.
const TOKEN: &str = "fuzz-token-3b9c41d2e8f7a6b5";
/// The hook's body limit: some generated bodies exceed it.
const BODY_LIMIT: usize = 2048;

/// How the request carries the hook's token.
#[derive(Clone, Debug)]
enum Token {
    Right,
    /// A wrong token (possibly empty).
    Wrong(String),
    Missing,
    /// A wrong token and the right one, in two headers.
    Twice,
}

/// One generated request to the hook.
#[derive(Clone)]
struct Generated {
    suffix: String,
    content_type: Option<Vec<u8>>,
    token: Token,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("suffix", &self.suffix)
            .field(
                "content_type",
                &self.content_type.as_deref().map(String::from_utf8_lossy),
            )
            .field("token", &self.token)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>(),
            )
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Generated {
    fn token_is_right(&self) -> bool {
        matches!(self.token, Token::Right | Token::Twice)
    }
}

/// Bytes a header value may hold: visible ASCII, space, tab and obs-text (0x80..=0xff).
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => 0x20u8..0x7f,
            1 => 0x80u8..=0xff,
            1 => Just(b'\t'),
        ],
        0..max,
    )
}

fn suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => Just(String::new()),
        2 => Just("/skipvalidate".to_owned()),
        2 => Just("/skiptriggers".to_owned()),
        1 => Just("/skiptriggers/skipvalidate".to_owned()),
        1 => Just("/skipvalidate/skipvalidate".to_owned()),
        1 => Just("/".to_owned()),
        1 => Just("//skipvalidate/".to_owned()),
        1 => Just("/..".to_owned()),
        1 => "(/[a-zA-Z0-9._~-]{0,12}){1,3}",
        1 => "/%[0-9A-Fa-f]{2}[a-z]{0,4}",
        1 => "/skipvalidate\\?[a-zA-Z0-9=&%+_-]{0,30}",
        1 => "\\?[a-zA-Z0-9=&%+_-]{0,30}",
    ]
}

/// Content-Type values: accepted ones with and without random parameters, refused ones,
/// garbage, and none.
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    let known = prop_oneof![
        Just("application/json"),
        Just("application/json; charset=utf-8"),
        Just("Application/JSON;charset=\"UTF-8\""),
        Just("application/vnd.acme.order+json"),
        Just("text/json"),
        Just("application/json; charset=latin1"),
        Just("application/x-www-form-urlencoded"),
        Just("application/x-www-form-urlencoded; charset=iso-8859-1"),
        Just("multipart/form-data; boundary=XyZ"),
        Just("multipart/form-data; boundary=\"XyZ\""),
        Just("multipart/form-data"),
        Just("multipart/form-data; boundary="),
        Just("multipart/mixed; boundary=XyZ"),
        Just("text/plain"),
        Just("application/xml"),
        Just("*/*"),
        Just("application/"),
        Just(";;;"),
        Just(""),
    ];
    let params = prop_oneof![
        3 => Just(String::new()),
        1 => "(;[ ]?[a-zA-Z*-]{0,10}=(\"[a-zA-Z0-9 ;=]{0,10}\"|[a-zA-Z0-9/._=-]{0,10})){1,3}",
    ];
    prop_oneof![
        6 => (known, params).prop_map(|(ct, p)| Some(format!("{ct}{p}").into_bytes())),
        1 => Just(None),
        1 => header_bytes(40).prop_map(Some),
    ]
}

/// Names the hook's form knows, and some it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("title"),
            Just("amount"),
            Just("tags"),
            Just("note"),
            Just("due"),
            Just("paid"),
            Just("raw"),
        ]
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("vip"),
            Just("eu"),
            Just("2026-12-01"),
            Just("31/12/2026"),
            Just("12.50"),
            Just("true"),
            Just(""),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object a sender would plausibly send: the form's fields with values of their types
/// (or text that converts), now and then a wrong one.
fn plausible() -> impl Strategy<Value = Value> {
    (
        prop::option::of(".{0,30}"),
        prop::option::of(prop_oneof![
            any::<i32>().prop_map(Value::from),
            Just(Value::from("12.50")),
            Just(Value::from("twelve")),
        ]),
        prop::option::of(prop::sample::subsequence(vec!["vip", "eu"], 0..=2)),
        prop::option::of(prop_oneof![
            Just("2026-12-01"),
            Just("2026-02-30"),
            Just("")
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(object()),
    )
        .prop_map(|(title, amount, tags, due, paid, raw)| {
            let mut item = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    item.insert(k.to_owned(), v);
                }
            };
            put("title", title.map(Value::from));
            put("amount", amount);
            put("tags", tags.map(|t| json!(t)));
            put("due", due.map(Value::from));
            put("paid", paid.map(Value::from));
            put("raw", raw);
            Value::Object(item)
        })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..6)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>()))
}

/// Insert `splice` at `at` (modulo the length), or cut the text there.
fn mutate(mut bytes: Vec<u8>, at: usize, splice: Vec<u8>, cut: bool) -> Vec<u8> {
    let at = at % (bytes.len() + 1);
    if cut {
        bytes.truncate(at);
    } else {
        bytes.splice(at..at, splice);
    }
    bytes
}

fn form_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("title".to_owned()),
        Just("tags".to_owned()),
        Just("tags[]".to_owned()),
        Just("amount".to_owned()),
        Just("a[b]".to_owned()),
        Just("%FF%FE".to_owned()),
        Just("%zz".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9%+.\\[\\]=_ -]{0,12}",
    ]
}

/// A urlencoded form body.
fn form() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    prop::collection::vec((form_piece(), form_piece(), any::<bool>()), 0..6).prop_map(|pairs| {
        let body = pairs
            .into_iter()
            .map(|(k, v, eq)| if eq { format!("{k}={v}") } else { k })
            .collect::<Vec<_>>()
            .join("&");
        (body.into_bytes(), "application/x-www-form-urlencoded")
    })
}

/// A multipart body with boundary `XyZ`: text parts, JSON parts, file parts, broken parts.
fn multipart() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let disposition = prop_oneof![
        Just(String::new()),
        Just("; filename=\"a.txt\"".to_owned()),
        "; [a-z]{0,8}=\"?[a-zA-Z0-9 ]{0,8}\"?",
    ];
    let part_type = prop_oneof![
        3 => Just(String::new()),
        1 => Just("Content-Type: application/json\r\n".to_owned()),
        1 => Just("Content-Type: application/octet-stream\r\n".to_owned()),
        1 => "Content-Type: [a-z/;= -]{0,20}\r\n",
    ];
    let value = prop_oneof![
        2 => ".{0,16}".prop_map(String::into_bytes),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    let part = (key(), disposition, part_type, value).prop_map(|(name, disp, ct, value)| {
        let mut part =
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{disp}\r\n{ct}\r\n")
                .into_bytes();
        part.extend(value);
        part.extend(b"\r\n");
        part
    });
    (prop::collection::vec(part, 0..4), any::<bool>()).prop_map(|(parts, close)| {
        let mut body = parts.concat();
        if close {
            body.extend(b"--XyZ--\r\n");
        }
        (body, "multipart/form-data; boundary=XyZ")
    })
}

/// A body and the Content-Type its sender would normally give it.
fn body() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let json = |v: Value| (v.to_string().into_bytes(), "application/json");
    prop_oneof![
        6 => plausible().prop_map(json),
        2 => object().prop_map(json),
        1 => prop::collection::vec(plausible(), 0..4).prop_map(move |items| json(Value::Array(items))),
        1 => prop::collection::vec(object(), 0..3).prop_map(move |items| json(Value::Array(items))),
        1 => json_value().prop_map(json),
        2 => (object(), any::<usize>(), header_bytes(6), any::<bool>()).prop_map(
            |(v, at, splice, cut)| (mutate(v.to_string().into_bytes(), at, splice, cut), "application/json")
        ),
        2 => form(),
        2 => multipart(),
        1 => (multipart(), any::<usize>(), prop::collection::vec(any::<u8>(), 0..8), any::<bool>())
            .prop_map(|((b, ct), at, splice, cut)| (mutate(b, at, splice, cut), ct)),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, "application/json")),
        1 => prop::collection::vec(any::<u8>(), BODY_LIMIT - 16..BODY_LIMIT + 64)
            .prop_map(|b| (b, "application/octet-stream")),
    ]
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        8 => Just(Token::Right),
        1 => "[a-zA-Z0-9 _-]{0,40}".prop_map(Token::Wrong),
        1 => Just(Token::Missing),
        1 => Just(Token::Twice),
    ]
}

/// Extra headers: idempotency headers with keys that repeat (and too long ones), headers
/// casehook reads for other checks, and arbitrary ones.
fn extra_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        Just("idempotency-key".to_owned()),
        Just("webhook-id".to_owned()),
        Just("x-github-delivery".to_owned()),
        Just("x-shopify-webhook-id".to_owned()),
        Just("x-forwarded-for".to_owned()),
        Just("x-hook-token".to_owned()),
        Just("authorization".to_owned()),
        Just("auth-key".to_owned()),
        Just("content-encoding".to_owned()),
        Just("accept".to_owned()),
        "x-[a-z0-9-]{1,12}",
    ];
    let value = prop_oneof![
        2 => prop_oneof![Just("delivery-1"), Just("delivery-2"), Just(" "), Just("gzip")]
            .prop_map(|v| v.as_bytes().to_vec()),
        1 => Just(vec![b'k'; 300]),
        2 => header_bytes(40),
    ];
    prop::collection::vec((name, value), 0..4)
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        suffix(),
        body(),
        prop_oneof![3 => Just(None), 2 => content_type().prop_map(Some)],
        token(),
        extra_headers(),
    )
        .prop_map(|(suffix, (body, natural), ct, token, headers)| Generated {
            suffix,
            content_type: ct.unwrap_or_else(|| Some(natural.as_bytes().to_vec())),
            token,
            headers,
            body,
        })
}

async fn send(app: &TestApp, path: &str, g: &Generated) -> Reply {
    let mut builder = app
        .client
        .post(format!("{}{path}{}", app.base_url, g.suffix))
        .body(g.body.clone());
    if let Some(ct) = &g.content_type {
        let value = HeaderValue::from_bytes(ct).expect("generated header bytes are valid");
        builder = builder.header(CONTENT_TYPE, value);
    }
    match &g.token {
        Token::Right => builder = builder.header("x-hook-token", TOKEN),
        Token::Wrong(t) => builder = builder.header("x-hook-token", t.as_str()),
        Token::Missing => {}
        Token::Twice => {
            builder = builder
                .header("x-hook-token", "not-the-token")
                .header("x-hook-token", TOKEN);
        }
    }
    for (name, value) in &g.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a generated header name");
        let value = HeaderValue::from_bytes(value).expect("generated header bytes are valid");
        builder = builder.header(name, value);
    }
    app.send(builder).await
}

/// `{"error": {"code", "message"[, "details"]}}` and nothing else, as JSON.
fn is_our_error(reply: &Reply) -> bool {
    let json = reply
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let Some(outer) = reply.body.as_object() else {
        return false;
    };
    let Some(error) = outer.get("error").and_then(Value::as_object) else {
        return false;
    };
    json && outer.len() == 1
        && error["code"].as_str().is_some_and(|c| !c.is_empty())
        && error["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty())
        && error
            .keys()
            .all(|k| matches!(k.as_str(), "code" | "message" | "details"))
}

/// The ids of the cases a 2xx answer names: `case.id`, or each item's for a batch.
fn named_cases(body: &Value) -> Vec<String> {
    match body["items"].as_array() {
        Some(items) => items
            .iter()
            .filter_map(|i| i["case"]["id"].as_str().map(str::to_owned))
            .collect(),
        None => body["case"]["id"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect(),
    }
}

/// Send one generated request and check the property; returns the cases a 2xx names.
async fn check_one(
    app: &TestApp,
    hook_id: &str,
    path: &str,
    g: &Generated,
) -> Result<Vec<String>, String> {
    let reply = send(app, path, g).await;
    let status = reply.status.as_u16();
    if status >= 500 {
        return Err(format!("answered {status}: {}", reply.text));
    }
    // An answer that names a request log entry names one that was written.
    if let Some(id) = reply
        .headers
        .get("casehook-request-id")
        .and_then(|v| v.to_str().ok())
    {
        let logged = app
            .get(
                &format!("/inbound-hooks/{hook_id}/requests/{id}"),
                &app.admin_key,
            )
            .await;
        if logged.status != 200 {
            return Err(format!(
                "answered {status} with request id {id}, which is not in the request log ({})",
                logged.status
            ));
        }
    }
    if !reply.status.is_success() {
        if !is_our_error(&reply) {
            return Err(format!("{status} is not our JSON error: {:?}", reply.text));
        }
        return Ok(Vec::new());
    }
    if !g.token_is_right() {
        return Err(format!(
            "accepted ({status}) without the right token: {}",
            reply.text
        ));
    }
    let named = named_cases(&reply.body);
    if named.is_empty() {
        return Err(format!("{status} names no case: {}", reply.text));
    }
    for id in &named {
        let case = app.get(&format!("/cases/{id}"), &app.admin_key).await;
        if case.status != 200 {
            return Err(format!(
                "{status} names case {id}, which is not there ({})",
                case.status
            ));
        }
    }
    Ok(named)
}

async fn generated_requests_never_break_the_inbound_path(app: TestApp) {
    let form = app
        .create_form(json!({
            "name": "Fuzzed",
            "statuses": ["open", "closed"],
            "fields": [
                {"key": "title", "type": "text"},
                {"key": "amount", "type": "number"},
                {"key": "tags", "type": "multi_select", "options": ["vip", "eu"]},
                {"key": "note", "type": "text"},
                {"key": "due", "type": "date"},
                {"key": "paid", "type": "boolean"},
                {"key": "raw", "type": "object"}
            ]
        }))
        .await;
    let form = text(&form["id"]);
    let hook = create_hook(
        &app,
        json!({"name": "Fuzzed", "form_id": form, "limits": {"body_bytes": BODY_LIMIT},
               "verifications": [{"kind": "token", "header": "x-hook-token", "secret": TOKEN}]}),
    )
    .await;
    let path = text(&hook["url_path"]);
    let hook_id = text(&hook["id"]);
    // The hook takes what a well-behaved sender sends.
    let sane = send(
        &app,
        &path,
        &Generated {
            suffix: String::new(),
            content_type: Some(b"application/json".to_vec()),
            token: Token::Right,
            headers: Vec::new(),
            body: json!({"title": "sane", "amount": 1})
                .to_string()
                .into_bytes(),
        },
    )
    .await
    .expect_status(200);
    let mut first = BTreeSet::new();
    first.extend(named_cases(&sane.body));

    let app = Arc::new(app);
    let handle = tokio::runtime::Handle::current();
    let fuzzing = Arc::clone(&app);
    let named = tokio::task::spawn_blocking(move || {
        let app = fuzzing;
        let config = Config {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(64),
            failure_persistence: None,
            max_shrink_iters: 200,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let named = RefCell::new(first);
        let result = runner.run(&generated(), |g| {
            let cases = handle
                .block_on(check_one(&app, &hook_id, &path, &g))
                .map_err(TestCaseError::fail)?;
            named.borrow_mut().extend(cases);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        named.into_inner()
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    // No partial writes: every case was named by an answer and has its `case.created`.
    let cases: BTreeSet<String> = app
        .get(&format!("/cases?form_id={form}&limit=1000"), &app.admin_key)
        .await
        .expect_status(200)
        .items()
        .iter()
        .map(|c| text(&c["id"]))
        .collect();
    let created: Vec<String> = app
        .events(&app.admin_key, "&type=case.created")
        .await
        .iter()
        .map(|e| text(&e["case_id"]))
        .collect();
    assert_eq!(
        created.len(),
        cases.len(),
        "one case.created per case: {created:?} vs {cases:?}"
    );
    assert_eq!(
        created.iter().cloned().collect::<BTreeSet<_>>(),
        cases,
        "every case has its case.created event"
    );
    assert_eq!(
        named, cases,
        "every case was named by a successful answer, and nothing else was written"
    );
}

/// U+0000 is valid in JSON strings and form values; a sender may send one. It is stored (or
/// refused) like any other character, never a server error, and the request is logged.
async fn a_nul_character_in_a_payload_is_never_a_server_error(app: TestApp) {
    let form = app
        .create_form(json!({
            "name": "Nul",
            "statuses": ["open"],
            "fields": [
                {"key": "title", "type": "text"},
                {"key": "raw", "type": "object"},
                {"key": "id", "type": "text"}
            ]
        }))
        .await;
    let form = text(&form["id"]);
    let plain = create_hook(&app, json!({"name": "Plain", "form_id": form})).await;
    let keyed = create_hook(
        &app,
        json!({"name": "Keyed", "form_id": form, "idempotency": {"path": "$.id"}}),
    )
    .await;
    let sends = [
        (&plain, "application/json", r#"{"title":"a\u0000b"}"#),
        (&plain, "application/x-www-form-urlencoded", "title=a%00b"),
        (&plain, "application/json", r#"{"raw":{"k":"\u0000"}}"#),
        (&plain, "application/json", r#"{"raw":{"\u0000":1}}"#),
        (&plain, "application/json", r#"{"ti\u0000tle":"x"}"#),
        (&keyed, "application/json", r#"{"id":"k\u0000"}"#),
    ];
    let mut accepted = BTreeSet::new();
    for (hook, content_type, body) in sends {
        let reply = crate::inbound::send_in(
            &app,
            &text(&hook["url_path"]),
            &[],
            Some(content_type),
            body,
        )
        .await;
        assert!(
            reply.status.as_u16() < 500,
            "{body}: answered {}: {}",
            reply.status,
            reply.text
        );
        if reply.status.is_success() {
            accepted.extend(named_cases(&reply.body));
        } else {
            assert!(is_our_error(&reply), "{body}: {}", reply.text);
        }
        // Refused alike on both backends: PostgreSQL could not store it.
        assert_eq!(
            reply.body["error"]["code"], "invalid_character",
            "{body}: {}",
            reply.text
        );
        let id = reply
            .headers
            .get("casehook-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{body}: no request id"));
        app.get(
            &format!("/inbound-hooks/{}/requests/{id}", text(&hook["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200);
    }
    let cases: BTreeSet<String> = app
        .get(&format!("/cases?form_id={form}&limit=100"), &app.admin_key)
        .await
        .expect_status(200)
        .items()
        .iter()
        .map(|c| text(&c["id"]))
        .collect();
    assert_eq!(cases, accepted);
    assert!(accepted.is_empty());
    // The API refuses it the same way.
    app.post(
        "/cases",
        &app.admin_key,
        json!({"form_id": form, "data": {"title": "a\u{0}b"}}),
    )
    .await
    .expect_error(400, "invalid_character");
}
