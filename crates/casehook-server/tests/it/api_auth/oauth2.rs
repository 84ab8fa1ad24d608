//! OAuth 2.0 against a local authorization server whose tokens expire and can be revoked:
//! one token request for many calls (also concurrent ones), renewal before expiry, one
//! refresh and one retry after a 401, both ways of client authentication, refresh-token
//! rotation, token endpoint failures reported as such, and no secret or token anywhere in
//! what casehook shows or stores.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    assert_failed, assert_hidden, assert_ok, call_log, case_calling, connect, dry_run,
    everything_shown, secret,
};
use crate::auth_servers::oauth2::{ClientAuth, Config, OAuth2Server};
use crate::support::{TestApp, api_tests, text};
use casehook_server::ServerConfig;

api_tests!(
    a_token_is_fetched_once_and_reused_across_calls,
    twenty_concurrent_calls_share_one_token_request,
    an_expiring_token_is_renewed_before_the_call,
    a_revoked_token_is_refreshed_once_and_the_call_retried,
    concurrent_calls_refused_with_a_revoked_token_share_one_new_token,
    client_auth_body_sends_the_client_credentials_in_the_form,
    the_refresh_token_grant_uses_each_rotated_refresh_token,
    a_failed_refresh_keeps_the_rotated_refresh_token,
    a_rotated_refresh_token_outlives_the_process_and_reaches_the_others,
    an_inline_auths_rotated_refresh_token_outlives_the_process_too,
    a_refresh_without_a_new_refresh_token_keeps_the_rotated_one,
    a_token_endpoint_failure_is_reported_as_such,
    a_job_run_stores_the_answer_without_the_echoed_token,
);

/// A connection `api` to `server` (client secret from a workspace secret) and a case whose
/// field `api` calls `GET /thing/42`.
async fn setup(app: &TestApp, server: &OAuth2Server, config: &Config, extra: Value) -> String {
    secret(app, "oauth_cs", config.client_secret).await;
    let mut auth = json!({
        "type": "oauth2", "token_url": server.token_url(), "client_id": config.client_id,
        "client_secret": "{secret.oauth_cs}", "scope": "read write",
        "client_auth": match config.client_auth { ClientAuth::Basic => "basic", ClientAuth::Body => "body" },
    });
    if let Some(refresh) = config.refresh_token {
        auth["grant"] = json!("refresh_token");
        auth["refresh_token"] = json!(refresh);
    }
    let get = json!({"path": "/thing/{data.id}", "method": "GET"});
    connect(app, "api", &server.url, auth, get).await;
    case_calling(app, &["api"], "42", extra).await
}

/// Everything that must never be shown: the client secret and every token.
async fn assert_nothing_leaked(
    app: &TestApp,
    server: &OAuth2Server,
    config: &Config,
    runs: &[Value],
) {
    let mut secrets = vec![config.client_secret.to_owned()];
    secrets.extend(server.access_tokens());
    secrets.extend(server.refresh_tokens());
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let shown = everything_shown(app, runs).await;
    assert_hidden(&shown.iter().collect::<Vec<_>>(), &secrets);
}

fn statuses(run: &Value) -> Vec<Value> {
    run["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|e| e["status"].clone())
        .collect()
}

async fn a_token_is_fetched_once_and_reused_across_calls(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = dry_run(&app, &case, "api").await;
        assert_ok(&run, 200);
        assert_eq!(run["response"]["path"], json!("/thing/42"));
        runs.push(run);
    }
    assert_eq!(
        statuses(&runs[0]),
        [json!(200), json!(200)],
        "token, then call"
    );
    assert_eq!(statuses(&runs[1]), [json!(200)], "the cached token");
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].client_auth, "basic");
    assert_eq!(requests[0].grant_type, "client_credentials");
    assert_eq!(requests[0].scope.as_deref(), Some("read write"));
    assert_eq!(server.resource_statuses(), [200, 200, 200]);
    // The token request is in the call log too.
    let log = call_log(&app).await;
    assert_eq!(log.len(), 4, "{log:#?}");
    let token_calls = log
        .iter()
        .filter(|e| {
            e["request"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/token"))
        })
        .count();
    assert_eq!(token_calls, 1, "{log:#?}");
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn twenty_concurrent_calls_share_one_token_request(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let runs = futures::future::join_all((0..20).map(|_| dry_run(&app, &case, "api"))).await;
    for run in &runs {
        assert_ok(run, 200);
    }
    assert_eq!(server.token_requests().len(), 1, "single flight");
    assert_eq!(server.resource_statuses(), vec![200; 20]);
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn an_expiring_token_is_renewed_before_the_call(app: TestApp) {
    let config = Config {
        lifetime: Duration::from_secs(1),
        ..Config::client_credentials(ClientAuth::Basic)
    };
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let first = dry_run(&app, &case, "api").await;
    assert_ok(&first, 200);
    // Past the token's life (the client renews a tenth of it early).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = dry_run(&app, &case, "api").await;
    assert_ok(&second, 200);
    assert_eq!(
        statuses(&second),
        [json!(200), json!(200)],
        "a new token first"
    );
    assert_eq!(server.token_requests().len(), 2);
    assert_eq!(
        server.resource_statuses(),
        [200, 200],
        "never sent an expired token"
    );
    assert_nothing_leaked(&app, &server, &config, &[first, second]).await;
}

async fn a_revoked_token_is_refreshed_once_and_the_call_retried(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let first = dry_run(&app, &case, "api").await;
    assert_ok(&first, 200);
    server.revoke_all();
    let second = dry_run(&app, &case, "api").await;
    assert_ok(&second, 200);
    assert_eq!(
        statuses(&second),
        [json!(401), json!(200), json!(200)],
        "refused, new token, retried"
    );
    assert_eq!(server.token_requests().len(), 2);
    assert_eq!(server.resource_statuses(), [200, 401, 200]);
    // A token that is refused right after a refresh is not refreshed again.
    server.revoke_all();
    server.fail_next_token_request(
        200,
        json!({"access_token": server.access_tokens()[1], "expires_in": 300}),
    );
    let third = dry_run(&app, &case, "api").await;
    assert_eq!(third["status"], json!(401), "{third:#}");
    assert_failed(&third);
    assert_eq!(server.token_requests().len(), 3, "one refresh per call");
    assert_nothing_leaked(&app, &server, &config, &[first, second, third]).await;
}

async fn concurrent_calls_refused_with_a_revoked_token_share_one_new_token(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    assert_ok(&dry_run(&app, &case, "api").await, 200);
    server.revoke_all();
    let runs = futures::future::join_all((0..10).map(|_| dry_run(&app, &case, "api"))).await;
    for run in &runs {
        assert_ok(run, 200);
    }
    assert_eq!(
        server.token_requests().len(),
        2,
        "the first token and one replacement for all ten callers"
    );
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn client_auth_body_sends_the_client_credentials_in_the_form(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Body);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let run = dry_run(&app, &case, "api").await;
    assert_ok(&run, 200);
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].client_auth, "body");
    assert_eq!(requests[0].status, 200);
    assert_nothing_leaked(&app, &server, &config, &[run]).await;
}

/// The refresh token of every token request, in order.
fn refresh_tokens_sent(server: &OAuth2Server) -> Vec<String> {
    server
        .token_requests()
        .iter()
        .map(|r| r.refresh_token.clone().expect("a refresh token"))
        .collect()
}

/// A dry run of `case` on a second server on the same database (another process, or this
/// one restarted), which must fetch its token with a refresh token kept by the first and
/// then call; its answer.
async fn dry_run_on_a_sibling(app: &TestApp, case: &str) -> Value {
    let other = app.sibling(ServerConfig::default()).await;
    let run = dry_run(&other, case, "api").await;
    assert_ok(&run, 200);
    assert_eq!(statuses(&run), [json!(200), json!(200)], "token, then call");
    run
}

/// No refresh token the server handed out is in the SQLite files in the clear.
fn assert_no_refresh_token_in_the_clear(app: &TestApp, server: &OAuth2Server) {
    for file in app.sqlite_files() {
        let bytes = std::fs::read(&file).expect("read the database file");
        for token in server.refresh_tokens() {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "a refresh token is kept in the clear in {}",
                file.display()
            );
        }
    }
}

fn refresh_config() -> Config {
    Config {
        refresh_token: Some("rt-initial-Xy9/+="),
        ..Config::client_credentials(ClientAuth::Basic)
    }
}

/// Three successful calls, each token revoked after its call: every call after the first is
/// refused once and must refresh with the refresh token that is valid by then.
async fn three_calls_each_refreshing(
    app: &TestApp,
    server: &OAuth2Server,
    case: &str,
) -> Vec<Value> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = dry_run(app, case, "api").await;
        assert_ok(&run, 200);
        runs.push(run);
        server.revoke_all();
    }
    runs
}

async fn the_refresh_token_grant_uses_each_rotated_refresh_token(app: TestApp) {
    let config = refresh_config();
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let runs = three_calls_each_refreshing(&app, &server, &case).await;
    let requests = server.token_requests();
    let used: Vec<_> = requests.iter().map(|r| r.refresh_token.clone()).collect();
    let handed_out: Vec<_> = server.refresh_tokens().into_iter().map(Some).collect();
    assert_eq!(used, handed_out[..3], "each refresh token once, in order");
    assert!(
        requests
            .iter()
            .all(|r| r.grant_type == "refresh_token" && r.status == 200)
    );
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn a_failed_refresh_keeps_the_rotated_refresh_token(app: TestApp) {
    let config = refresh_config();
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let first = dry_run(&app, &case, "api").await;
    assert_ok(&first, 200);
    server.revoke_all();
    server.fail_next_token_request(503, json!({"error": "temporarily_unavailable"}));
    let failed = dry_run(&app, &case, "api").await;
    assert_failed(&failed);
    let third = dry_run(&app, &case, "api").await;
    assert_ok(&third, 200);
    let rotated = server.refresh_tokens()[1].clone();
    let used = refresh_tokens_sent(&server);
    assert_eq!(
        used,
        [
            config.refresh_token.expect("set").to_owned(),
            rotated.clone(),
            rotated
        ]
    );
    assert_nothing_leaked(&app, &server, &config, &[first, failed, third]).await;
}

async fn a_rotated_refresh_token_outlives_the_process_and_reaches_the_others(app: TestApp) {
    // The server accepts only the newest refresh token. A second server on the same
    // database (another process, or this one restarted) must continue from the token this
    // one was handed, and this one from the token the other was handed after it.
    let config = refresh_config();
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;
    let first = dry_run(&app, &case, "api").await;
    assert_ok(&first, 200);

    let second = dry_run_on_a_sibling(&app, &case).await;

    // Back on the first server, its access token revoked: its refresh token was rotated
    // away by the other, so it takes the one the other kept.
    server.revoke_all();
    let third = dry_run(&app, &case, "api").await;
    assert_ok(&third, 200);
    assert_eq!(
        statuses(&third),
        [json!(401), json!(400), json!(200), json!(200)],
        "refused, refresh refused, refresh with the kept token, call"
    );
    let rotated = server.refresh_tokens();
    let used = refresh_tokens_sent(&server);
    assert_eq!(
        used,
        [
            rotated[0].clone(),
            rotated[1].clone(),
            rotated[1].clone(),
            rotated[2].clone()
        ]
    );

    // A refresh token configured anew replaces whatever was kept: a restarted server sends
    // the new one (refused here, as this server never issued it) and not the kept one.
    let connection = app.get("/connections", &app.admin_key).await.items()[0].clone();
    let auth = json!({
        "type": "oauth2", "grant": "refresh_token", "token_url": server.token_url(),
        "client_id": config.client_id, "client_secret": "{secret.oauth_cs}",
        "scope": "read write", "client_auth": "basic", "refresh_token": "rt-reissued",
    });
    app.put(
        &format!("/connections/{}", text(&connection["id"])),
        &app.admin_key,
        json!({"name": "api", "base_url": server.url, "auth": auth,
               "operations": {"call": {"path": "/thing/{data.id}", "method": "GET"}}}),
    )
    .await
    .expect_status(200);
    let restarted = app.sibling(ServerConfig::default()).await;
    let refused = dry_run(&restarted, &case, "api").await;
    assert_failed(&refused);
    let tried: Vec<_> = server.token_requests()[4..]
        .iter()
        .map(|r| (r.refresh_token.clone().expect("a refresh token"), r.status))
        .collect();
    assert_eq!(tried, [("rt-reissued".to_owned(), 400)]);

    assert_no_refresh_token_in_the_clear(&app, &server);
    assert_nothing_leaked(&app, &server, &config, &[first, second, third, refused]).await;
}

async fn an_inline_auths_rotated_refresh_token_outlives_the_process_too(app: TestApp) {
    // The same as above for a field with its own auth (no connection): the rotated token is
    // kept under an id derived from the grant, and another process continues from it.
    let config = refresh_config();
    let server = OAuth2Server::start(config.clone()).await;
    secret(&app, "oauth_cs", config.client_secret).await;
    secret(&app, "oauth_rt", config.refresh_token.expect("set")).await;
    let auth = json!({
        "type": "oauth2", "grant": "refresh_token", "token_url": server.token_url(),
        "client_id": config.client_id, "client_secret": "{secret.oauth_cs}",
        "scope": "read write", "client_auth": "basic", "refresh_token": "{secret.oauth_rt}",
    });
    let form = app
        .create_form(json!({"name": "Inline", "fields": [
            {"key": "id", "type": "text"},
            {"key": "api", "type": "api_call", "trigger": "manual", "api_config": {
                "url": format!("{}/thing/{{data.id}}", server.url), "method": "GET", "auth": auth}},
        ]}))
        .await;
    let case = text(
        &app.create_case(&text(&form["id"]), json!({"id": "42"}))
            .await["id"],
    );
    let first = dry_run(&app, &case, "api").await;
    assert_ok(&first, 200);

    let second = dry_run_on_a_sibling(&app, &case).await;
    assert_eq!(
        refresh_tokens_sent(&server),
        server.refresh_tokens()[..2],
        "the configured token, then the one the first server kept"
    );
    assert_no_refresh_token_in_the_clear(&app, &server);
    assert_nothing_leaked(&app, &server, &config, &[first, second]).await;
}

async fn a_refresh_without_a_new_refresh_token_keeps_the_rotated_one(app: TestApp) {
    // The server rotates on the first refresh only; after that it answers without a refresh
    // token, and the one in use stays the valid one (RFC 6749, section 6).
    let config = Config {
        rotations: Some(1),
        ..refresh_config()
    };
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    let runs = three_calls_each_refreshing(&app, &server, &case).await;
    let handed_out = server.refresh_tokens();
    assert_eq!(handed_out.len(), 2, "one rotation: {handed_out:?}");
    let used: Vec<_> = server
        .token_requests()
        .iter()
        .map(|r| (r.refresh_token.clone().expect("a refresh token"), r.status))
        .collect();
    let rotated = handed_out[1].clone();
    assert_eq!(
        used,
        [
            (handed_out[0].clone(), 200),
            (rotated.clone(), 200),
            (rotated, 200)
        ]
    );
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn a_token_endpoint_failure_is_reported_as_such(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({})).await;

    server.fail_next_token_request(401, json!({"error": "invalid_client"}));
    server.fail_next_token_request(200, json!({"error": "no token today"}));
    let mut runs = Vec::new();
    for answered in ["401", "no access_token"] {
        let run = dry_run(&app, &case, "api").await;
        assert_failed(&run);
        let error = run["error"].as_str().expect("an error");
        assert!(
            error.contains("token endpoint") && error.contains(answered),
            "the error names the token endpoint and what it did: {run:#}"
        );
        assert_eq!(
            run["response"],
            Value::Null,
            "the token endpoint's answer is not the API's: {run:#}"
        );
        runs.push(run);
    }
    assert!(
        server.resource_statuses().is_empty(),
        "the API was never called without a token"
    );
    assert_nothing_leaked(&app, &server, &config, &runs).await;
}

async fn a_job_run_stores_the_answer_without_the_echoed_token(app: TestApp) {
    let config = Config::client_credentials(ClientAuth::Basic);
    let server = OAuth2Server::start(config.clone()).await;
    let case = setup(&app, &server, &config, json!({"cache_duration": 60})).await;

    for (round, cached) in [(1, false), (2, true)] {
        app.post(
            &format!("/cases/{case}/api-calls/api/run"),
            &app.admin_key,
            json!({}),
        )
        .await
        .expect_status(202);
        let mut state = Value::Null;
        for _ in 0..200 {
            let states = app
                .get(&format!("/cases/{case}/api-calls"), &app.admin_key)
                .await
                .expect_status(200)
                .items();
            state = states.into_iter().next().unwrap_or(Value::Null);
            if state["status"] == json!("ok") && state["cached"] == json!(cached) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state["status"], json!("ok"), "run {round}: {state:#}");
        assert_eq!(state["cached"], json!(cached), "run {round}: {state:#}");
        let stored = app
            .get(&format!("/cases/{case}"), &app.admin_key)
            .await
            .expect_status(200)
            .body;
        assert_eq!(stored["data"]["api"]["ok"], json!(true), "{stored:#}");
        assert_nothing_leaked(&app, &server, &config, &[stored]).await;
    }
    assert_eq!(server.token_requests().len(), 1);
    assert_eq!(
        server.resource_statuses(),
        [200],
        "the second run came from the cache"
    );
}
