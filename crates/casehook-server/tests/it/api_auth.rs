//! Outbound auth end to end: connections with each auth method, called by API-call fields
//! of a case (dry runs, jobs) against the independent verifiers of [`crate::auth_servers`].
//! Every test also checks that no credential shows in the dry run's answer or the call log.
//!
//! Here: Basic, Bearer, API keys, OAuth 1.0a and AWS SigV4; OAuth 2.0 and Digest (with a
//! real apache2) are in the submodules.

mod digest;
mod oauth2;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::auth_servers::{self, AwsKey, CheckServer, OAuth1Client};
use crate::support::{TestApp, api_tests, text};

api_tests!(
    basic_auth_is_accepted_and_a_wrong_password_is_refused,
    bearer_tokens_are_accepted_and_a_wrong_token_is_refused,
    api_keys_in_a_header_or_the_query_are_accepted_and_wrong_ones_refused,
    oauth1_hmac_sha1_signs_a_get_with_query_parameters,
    oauth1_hmac_sha256_signs_a_post_with_a_form_body,
    oauth1_with_a_wrong_consumer_secret_is_refused,
    sigv4_signs_a_get_with_a_query_and_an_encoded_path,
    sigv4_signs_a_post_with_a_json_body_and_a_session_token,
    sigv4_with_a_wrong_secret_or_region_is_refused,
);

/// Create the connection `name` to `base_url` with `auth` and the operation `call`.
pub async fn connect(app: &TestApp, name: &str, base_url: &str, auth: Value, call: Value) {
    app.post(
        "/connections",
        &app.admin_key,
        json!({"name": name, "base_url": base_url, "auth": auth, "operations": {"call": call}}),
    )
    .await
    .expect_status(201);
}

/// Store a workspace secret.
pub async fn secret(app: &TestApp, name: &str, value: &str) {
    app.post(
        "/secrets",
        &app.admin_key,
        json!({"name": name, "value": value}),
    )
    .await
    .expect_status(201);
}

/// A form with a text field `id` and, per connection, a manual API-call field of the same
/// name calling its `call` operation (with `extra` settings); returns a new case's id.
pub async fn case_calling(app: &TestApp, connections: &[&str], id: &str, extra: Value) -> String {
    let mut fields = vec![json!({"key": "id", "type": "text"})];
    for c in connections {
        let mut field = json!({
            "key": c, "type": "api_call", "connection": c, "operation": "call",
            "trigger": "manual",
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            field[k] = v.clone();
        }
        fields.push(field);
    }
    let form = app
        .create_form(json!({"name": "Calls", "fields": fields}))
        .await;
    let case = app.create_case(&text(&form["id"]), json!({"id": id})).await;
    text(&case["id"])
}

/// Dry-run the API-call `field` of `case`; the whole answer.
pub async fn dry_run(app: &TestApp, case: &str, field: &str) -> Value {
    app.post(
        &format!("/cases/{case}/api-calls/{field}/dry-run"),
        &app.admin_key,
        json!({}),
    )
    .await
    .expect_status(200)
    .body
}

/// The call log, newest first.
pub async fn call_log(app: &TestApp) -> Vec<Value> {
    app.get("/api-calls?limit=500", &app.admin_key)
        .await
        .expect_status(200)
        .items()
}

/// Assert a dry run succeeded with `status`.
#[track_caller]
pub fn assert_ok(run: &Value, status: u16) {
    assert_eq!(run["status"], json!(status), "{run:#}");
    assert_eq!(run["error"], Value::Null, "{run:#}");
}

/// Assert a dry run failed with a reason.
#[track_caller]
pub fn assert_failed(run: &Value) {
    assert!(
        run["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the failure is reported: {run:#}"
    );
}

/// Assert that none of `secrets` (nor their form-, percent- or Basic-encoded spellings)
/// shows in any of `shown`.
#[track_caller]
pub fn assert_hidden(shown: &[&Value], secrets: &[&str]) {
    for value in shown {
        let text = value.to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            let spellings = [
                (*s).to_owned(),
                auth_servers::pct_encode(s.as_bytes()),
                auth_servers::pct_encode(s.as_bytes()).replace("%20", "+"),
                serde_json::to_string(s).expect("a JSON string")[1..]
                    .trim_end_matches('"')
                    .to_owned(),
            ];
            for spelling in spellings {
                assert!(!text.contains(&spelling), "`{spelling}` leaked into {text}");
            }
        }
    }
}

/// The dry runs and the whole call log, for [`assert_hidden`].
pub async fn everything_shown(app: &TestApp, runs: &[Value]) -> Vec<Value> {
    let mut all = runs.to_vec();
    all.extend(call_log(app).await);
    all
}

async fn basic_auth_is_accepted_and_a_wrong_password_is_refused(app: TestApp) {
    let server = CheckServer::start(auth_servers::basic("ada", "pa:ss wörd")).await;
    secret(&app, "basic_pw", "pa:ss wörd").await;
    let get = json!({"path": "/thing/{data.id}", "method": "GET"});
    let good = json!({"type": "basic", "username": "ada", "password": "{secret.basic_pw}"});
    let bad = json!({"type": "basic", "username": "ada", "password": "nope-Secret-9"});
    connect(&app, "good", &server.url, good, get.clone()).await;
    connect(&app, "bad", &server.url, bad, get).await;
    let case = case_calling(&app, &["good", "bad"], "42", json!({})).await;

    let ok = dry_run(&app, &case, "good").await;
    assert_ok(&ok, 200);
    assert_eq!(ok["response"]["path"], json!("/thing/42"));
    let refused = dry_run(&app, &case, "bad").await;
    assert_eq!(refused["status"], json!(401));
    assert_failed(&refused);
    assert_eq!(server.refusals(), ["wrong password"]);

    let shown = everything_shown(&app, &[ok, refused]).await;
    let basic = BASE64.encode("ada:pa:ss wörd");
    let wrong = BASE64.encode("ada:nope-Secret-9");
    assert_hidden(
        &shown.iter().collect::<Vec<_>>(),
        &["pa:ss wörd", "nope-Secret-9", &basic, &wrong],
    );
}

async fn bearer_tokens_are_accepted_and_a_wrong_token_is_refused(app: TestApp) {
    let server = CheckServer::start(auth_servers::bearer("tok_live_7Hq9")).await;
    let get = json!({"path": "/thing", "method": "GET"});
    connect(
        &app,
        "good",
        &server.url,
        json!({"type": "bearer", "token": "tok_live_7Hq9"}),
        get.clone(),
    )
    .await;
    connect(
        &app,
        "bad",
        &server.url,
        json!({"type": "bearer", "token": "tok_dead_0000"}),
        get,
    )
    .await;
    let case = case_calling(&app, &["good", "bad"], "42", json!({})).await;

    let ok = dry_run(&app, &case, "good").await;
    assert_ok(&ok, 200);
    let refused = dry_run(&app, &case, "bad").await;
    assert_eq!(refused["status"], json!(401));
    assert_failed(&refused);
    assert_eq!(server.refusals(), ["wrong token"]);
    let shown = everything_shown(&app, &[ok, refused]).await;
    assert_hidden(
        &shown.iter().collect::<Vec<_>>(),
        &["tok_live_7Hq9", "tok_dead_0000"],
    );
}

async fn api_keys_in_a_header_or_the_query_are_accepted_and_wrong_ones_refused(app: TestApp) {
    let in_header = CheckServer::start(auth_servers::key_header("x-key", "hk/9+Zz")).await;
    let in_query = CheckServer::start(auth_servers::key_query("access", "qk 9+&=Zz")).await;
    let get = json!({"path": "/thing", "method": "GET", "query": {"page": "2"}});
    let key = |value: &str, place: &str| {
        json!({"type": "api_key", "name": if place == "header" { "X-Key" } else { "access" },
               "value": value, "in": place})
    };
    connect(
        &app,
        "h_good",
        &in_header.url,
        key("hk/9+Zz", "header"),
        get.clone(),
    )
    .await;
    connect(
        &app,
        "h_bad",
        &in_header.url,
        key("hk-wrong-1", "header"),
        get.clone(),
    )
    .await;
    connect(
        &app,
        "q_good",
        &in_query.url,
        key("qk 9+&=Zz", "query"),
        get.clone(),
    )
    .await;
    connect(
        &app,
        "q_bad",
        &in_query.url,
        key("qk-wrong-2", "query"),
        get,
    )
    .await;
    let case = case_calling(
        &app,
        &["h_good", "h_bad", "q_good", "q_bad"],
        "1",
        json!({}),
    )
    .await;

    let mut runs = Vec::new();
    for field in ["h_good", "q_good"] {
        let run = dry_run(&app, &case, field).await;
        assert_ok(&run, 200);
        runs.push(run);
    }
    for field in ["h_bad", "q_bad"] {
        let run = dry_run(&app, &case, field).await;
        assert_eq!(run["status"], json!(401), "{run:#}");
        assert_failed(&run);
        runs.push(run);
    }
    assert_eq!(in_header.refusals(), ["wrong key"]);
    assert_eq!(in_query.refusals(), ["wrong key"]);
    // The key joins the template's own query.
    let sent = &in_query.verdicts()[0].request;
    assert!(
        sent.query_pairs().contains(&("page".into(), "2".into())),
        "{sent:?}"
    );
    let shown = everything_shown(&app, &runs).await;
    let secrets = ["hk/9+Zz", "hk-wrong-1", "qk 9+&=Zz", "qk-wrong-2"];
    assert_hidden(&shown.iter().collect::<Vec<_>>(), &secrets);
}

fn oauth1_client(method: &'static str) -> OAuth1Client {
    OAuth1Client {
        consumer_key: "dpf43f3p2l4k3l03",
        consumer_secret: "kd94hf93 k423&kf44",
        token: "nnch734d00sl2jdk",
        token_secret: "pfkkdhi9+sl3r4s00",
        method,
    }
}

fn oauth1_auth(client: &OAuth1Client, consumer_secret: &str) -> Value {
    json!({
        "type": "oauth1", "consumer_key": client.consumer_key,
        "consumer_secret": consumer_secret, "token": client.token,
        "token_secret": "{secret.oauth1_ts}", "signature_method": client.method,
        "realm": "Photos",
    })
}

async fn oauth1_hmac_sha1_signs_a_get_with_query_parameters(app: TestApp) {
    let client = oauth1_client("HMAC-SHA1");
    let server = CheckServer::start(auth_servers::oauth1(client.clone())).await;
    secret(&app, "oauth1_ts", client.token_secret).await;
    let get = json!({
        "path": "/photos/{data.id}", "method": "GET",
        "query": {"file": "vacation {data.id}.jpg", "size": "original", "odd": "a~b*c!'()"},
    });
    connect(
        &app,
        "photos",
        &server.url,
        oauth1_auth(&client, client.consumer_secret),
        get,
    )
    .await;
    let case = case_calling(&app, &["photos"], "a b/42", json!({})).await;

    let first = dry_run(&app, &case, "photos").await;
    assert_ok(&first, 200);
    // A second request has a new nonce, which the verifier insists on.
    let second = dry_run(&app, &case, "photos").await;
    assert_ok(&second, 200);
    assert_eq!(server.accepted(), 2, "{:?}", server.refusals());
    let sent = &server.verdicts()[0].request;
    assert_eq!(sent.uri.path(), "/photos/a%20b%2F42");
    assert!(
        sent.query_pairs()
            .contains(&("file".into(), "vacation a b/42.jpg".into()))
    );
    let shown = everything_shown(&app, &[first, second]).await;
    assert_hidden(
        &shown.iter().collect::<Vec<_>>(),
        &[client.consumer_secret, client.token_secret],
    );
}

async fn oauth1_hmac_sha256_signs_a_post_with_a_form_body(app: TestApp) {
    let client = oauth1_client("HMAC-SHA256");
    let server = CheckServer::start(auth_servers::oauth1(client.clone())).await;
    secret(&app, "oauth1_ts", client.token_secret).await;
    let post = json!({
        "path": "/statuses/update", "method": "POST", "query": {"include_entities": "true"},
        "body_format": "form",
        "body": {"status": "Hello Ladies + Gentlemen, a signed OAuth request!", "case": "{data.id}"},
    });
    connect(
        &app,
        "tweets",
        &server.url,
        oauth1_auth(&client, client.consumer_secret),
        post,
    )
    .await;
    let case = case_calling(&app, &["tweets"], "7 & 8", json!({})).await;

    let run = dry_run(&app, &case, "tweets").await;
    assert_ok(&run, 200);
    let verdicts = server.verdicts();
    assert_eq!(verdicts.len(), 1);
    let sent = &verdicts[0].request;
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded"),
        "the body parameters were signed as a form"
    );
    let body = auth_servers::form_pairs(&sent.body);
    assert!(
        body.contains(&(b"case".to_vec(), b"7 & 8".to_vec())),
        "{body:?}"
    );
    let shown = everything_shown(&app, &[run]).await;
    assert_hidden(
        &shown.iter().collect::<Vec<_>>(),
        &[client.consumer_secret, client.token_secret],
    );
}

async fn oauth1_with_a_wrong_consumer_secret_is_refused(app: TestApp) {
    let client = oauth1_client("HMAC-SHA1");
    let server = CheckServer::start(auth_servers::oauth1(client.clone())).await;
    secret(&app, "oauth1_ts", client.token_secret).await;
    let get = json!({"path": "/photos", "method": "GET", "query": {"size": "original"}});
    connect(
        &app,
        "photos",
        &server.url,
        oauth1_auth(&client, "not-the-secret"),
        get,
    )
    .await;
    let case = case_calling(&app, &["photos"], "1", json!({})).await;

    let run = dry_run(&app, &case, "photos").await;
    assert_eq!(run["status"], json!(401), "{run:#}");
    assert_failed(&run);
    let refusals = server.refusals();
    assert_eq!(refusals.len(), 1);
    assert!(refusals[0].starts_with("bad signature"), "{refusals:?}");
}

fn aws_key(session_token: Option<&'static str>) -> AwsKey {
    AwsKey {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token,
        region: "eu-west-1",
        service: "execute-api",
    }
}

fn aws_auth(key: &AwsKey, region: &str) -> Value {
    let mut auth = json!({
        "type": "aws_sigv4", "access_key_id": key.access_key_id,
        "secret_access_key": "{secret.aws_secret}", "region": region, "service": key.service,
    });
    if key.session_token.is_some() {
        auth["session_token"] = json!("{secret.aws_session}");
    }
    auth
}

async fn sigv4_signs_a_get_with_a_query_and_an_encoded_path(app: TestApp) {
    let key = aws_key(None);
    let server = CheckServer::start(auth_servers::sigv4(key.clone())).await;
    secret(&app, "aws_secret", key.secret_access_key).await;
    let get = json!({
        "path": "/things/{data.id}", "method": "GET",
        "query": {"q": "x y", "Z": "1", "a": "b*c~", "empty": ""},
    });
    connect(&app, "aws", &server.url, aws_auth(&key, key.region), get).await;
    let case = case_calling(&app, &["aws"], "a b/42", json!({})).await;

    let run = dry_run(&app, &case, "aws").await;
    assert_ok(&run, 200);
    assert_eq!(server.accepted(), 1, "{:?}", server.refusals());
    assert_eq!(
        server.verdicts()[0].request.uri.path(),
        "/things/a%20b%2F42"
    );
    let shown = everything_shown(&app, &[run]).await;
    assert_hidden(&shown.iter().collect::<Vec<_>>(), &[key.secret_access_key]);
}

async fn sigv4_signs_a_post_with_a_json_body_and_a_session_token(app: TestApp) {
    let key = aws_key(Some("FQoGZXIvYXdzE//session+token=="));
    let server = CheckServer::start(auth_servers::sigv4(key.clone())).await;
    secret(&app, "aws_secret", key.secret_access_key).await;
    secret(&app, "aws_session", key.session_token.expect("a token")).await;
    let post = json!({
        "path": "/items", "method": "POST",
        "headers": {"X-Custom": "a   b  c"},
        "body": {"id": "{data.id}", "n": 1, "note": "ünïcode"},
    });
    connect(&app, "aws", &server.url, aws_auth(&key, key.region), post).await;
    let case = case_calling(&app, &["aws"], "42", json!({})).await;

    let run = dry_run(&app, &case, "aws").await;
    assert_ok(&run, 200);
    let verdicts = server.verdicts();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].outcome, Ok(()));
    let sent = &verdicts[0].request;
    let body: Value = serde_json::from_slice(&sent.body).expect("a JSON body");
    assert_eq!(body["id"], json!("42"));
    let authorization = sent.header("authorization").expect("signed");
    assert!(authorization.contains("x-custom"), "{authorization}");
    assert!(authorization.contains("content-type"), "{authorization}");
    let shown = everything_shown(&app, &[run]).await;
    let secrets = [key.secret_access_key, key.session_token.expect("a token")];
    assert_hidden(&shown.iter().collect::<Vec<_>>(), &secrets);
}

async fn sigv4_with_a_wrong_secret_or_region_is_refused(app: TestApp) {
    let key = aws_key(None);
    let server = CheckServer::start(auth_servers::sigv4(key.clone())).await;
    secret(&app, "aws_secret", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY").await;
    let get = json!({"path": "/things", "method": "GET"});
    connect(
        &app,
        "wrong_secret",
        &server.url,
        aws_auth(&key, key.region),
        get.clone(),
    )
    .await;
    connect(
        &app,
        "wrong_region",
        &server.url,
        aws_auth(&key, "us-east-1"),
        get,
    )
    .await;
    let case = case_calling(&app, &["wrong_secret", "wrong_region"], "1", json!({})).await;

    for field in ["wrong_secret", "wrong_region"] {
        let run = dry_run(&app, &case, field).await;
        assert_eq!(run["status"], json!(401), "{run:#}");
        assert_failed(&run);
    }
    let refusals = server.refusals();
    assert_eq!(refusals.len(), 2);
    assert!(refusals[0].starts_with("bad signature"), "{refusals:?}");
    assert!(refusals[1].contains("expected scope"), "{refusals:?}");
}
