//! HTTP Digest against the RFC 7616 server of [`crate::auth_servers::digest`] (SHA-256 and
//! MD5, nonce reuse with increasing counts, stale nonces, wrong passwords, a server that
//! forgot its nonces) and against a real apache2 with mod_auth_digest, when installed.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    assert_failed, assert_hidden, assert_ok, case_calling, connect, dry_run, everything_shown,
    secret,
};
use crate::auth_servers::apache::{self, Apache, Setup};
use crate::auth_servers::digest::{DigestServer, Seen};
use crate::support::{TestApp, api_tests};

api_tests!(
    digest_prefers_sha256_and_reuses_the_nonce_with_increasing_counts,
    digest_answers_an_md5_only_server_with_md5,
    a_stale_nonce_is_answered_again_once,
    a_wrong_digest_password_fails_after_one_answer_per_call,
    a_nonce_the_server_forgot_is_replaced_by_its_new_challenge,
    apache2_accepts_our_digest_answers_and_refuses_a_wrong_password,
    apache2_stale_nonces_are_answered_with_the_new_nonce,
);

const PASSWORD: &str = "Circle of Life";

/// Connections `good` (password from a secret) and `bad` to `url`, both getting `path`;
/// returns a case calling both.
async fn setup(app: &TestApp, url: &str, user: &str, password: &str, path: &str) -> String {
    secret(app, "digest_pw", password).await;
    let get = json!({"path": path, "method": "GET", "query": {"q": "a b"}});
    let good = json!({"type": "digest", "username": user, "password": "{secret.digest_pw}"});
    let bad = json!({"type": "digest", "username": user, "password": "Circle of Strife"});
    connect(app, "good", url, good, get.clone()).await;
    connect(app, "bad", url, bad, get).await;
    case_calling(app, &["good", "bad"], "1", json!({})).await
}

fn statuses(run: &Value) -> Vec<u16> {
    run["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|e| {
            let status = e["status"].as_u64().expect("a status");
            u16::try_from(status).expect("a status fits")
        })
        .collect()
}

fn accepted(seen: &Seen) -> (String, String, u32) {
    match seen {
        Seen::Accepted {
            algorithm,
            nonce,
            nc,
        } => (algorithm.clone(), nonce.clone(), *nc),
        other => panic!("expected an accepted request, got {other:?}"),
    }
}

async fn assert_password_hidden(app: &TestApp, runs: &[Value]) {
    let shown = everything_shown(app, runs).await;
    assert_hidden(
        &shown.iter().collect::<Vec<_>>(),
        &[PASSWORD, "Circle of Strife"],
    );
}

async fn digest_prefers_sha256_and_reuses_the_nonce_with_increasing_counts(app: TestApp) {
    let server = DigestServer::start(
        "api@casehook.test",
        "Mufasa",
        PASSWORD,
        &["SHA-256", "MD5"],
        None,
    )
    .await;
    let case = setup(&app, &server.url, "Mufasa", PASSWORD, "/dir/index.html").await;

    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = dry_run(&app, &case, "good").await;
        assert_ok(&run, 200);
        runs.push(run);
    }
    assert_eq!(statuses(&runs[0]), [401, 200], "challenge, answer");
    assert_eq!(statuses(&runs[1]), [200], "the nonce reused");
    assert_eq!(statuses(&runs[2]), [200]);
    let seen = server.seen();
    assert_eq!(seen[0], Seen::Challenged);
    let answers: Vec<_> = seen[1..].iter().map(accepted).collect();
    let nonce = &answers[0].1;
    assert_eq!(
        answers,
        [1, 2, 3].map(|nc| ("SHA-256".to_owned(), nonce.clone(), nc)),
        "one nonce, counts 1, 2, 3"
    );
    assert_password_hidden(&app, &runs).await;
}

async fn digest_answers_an_md5_only_server_with_md5(app: TestApp) {
    let server = DigestServer::start("api@casehook.test", "Mufasa", PASSWORD, &["MD5"], None).await;
    let case = setup(&app, &server.url, "Mufasa", PASSWORD, "/dir/index.html").await;

    for _ in 0..2 {
        assert_ok(&dry_run(&app, &case, "good").await, 200);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(accepted(&seen[1]).0, "MD5");
    assert_eq!(accepted(&seen[2]).2, 2);
}

async fn a_stale_nonce_is_answered_again_once(app: TestApp) {
    let server = DigestServer::start(
        "api@casehook.test",
        "Mufasa",
        PASSWORD,
        &["SHA-256"],
        Some(2),
    )
    .await;
    let case = setup(&app, &server.url, "Mufasa", PASSWORD, "/dir/index.html").await;

    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = dry_run(&app, &case, "good").await;
        assert_ok(&run, 200);
        runs.push(run);
    }
    assert_eq!(
        statuses(&runs[2]),
        [401, 200],
        "stale, answered with the new nonce"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[3], Seen::Stale);
    let (first, renewed) = (accepted(&seen[1]), accepted(&seen[4]));
    assert_ne!(first.1, renewed.1, "a new nonce");
    assert_eq!(renewed.2, 1, "counted from 1 again");
    assert_password_hidden(&app, &runs).await;
}

async fn a_wrong_digest_password_fails_after_one_answer_per_call(app: TestApp) {
    let server =
        DigestServer::start("api@casehook.test", "Mufasa", PASSWORD, &["SHA-256"], None).await;
    let case = setup(&app, &server.url, "Mufasa", PASSWORD, "/dir/index.html").await;

    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = dry_run(&app, &case, "bad").await;
        assert_eq!(run["status"], json!(401), "{run:#}");
        assert_failed(&run);
        // First call: challenge, wrong answer. Second: the known nonce refused, then the
        // fresh one refused: nothing more.
        assert_eq!(statuses(&run), [401, 401], "{run:#}");
        runs.push(run);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4, "no loop: {seen:?}");
    assert!(
        seen[1..].iter().all(|s| matches!(s, Seen::Refused(_))),
        "{seen:?}"
    );
    assert_password_hidden(&app, &runs).await;
}

async fn a_nonce_the_server_forgot_is_replaced_by_its_new_challenge(app: TestApp) {
    let server =
        DigestServer::start("api@casehook.test", "Mufasa", PASSWORD, &["SHA-256"], None).await;
    let case = setup(&app, &server.url, "Mufasa", PASSWORD, "/dir/index.html").await;

    assert_ok(&dry_run(&app, &case, "good").await, 200);
    // A restarted server knows none of its old nonces and says so without `stale=true`.
    server.forget_nonces();
    let run = dry_run(&app, &case, "good").await;
    assert_ok(&run, 200);
    assert_eq!(statuses(&run), [401, 200], "{run:#}");
    let seen = server.seen();
    assert_eq!(seen[2], Seen::Refused("unknown nonce".into()), "{seen:?}");
    assert_eq!(accepted(&seen[3]).2, 1);
    // And the new nonce is reused from then on.
    let next = dry_run(&app, &case, "good").await;
    assert_eq!(statuses(&next), [200], "{next:#}");
}

fn apache_setup(nonce_lifetime: u32, nc_check: bool) -> Setup {
    Setup {
        realm: "casehook digest",
        user: "ada",
        password: PASSWORD,
        nonce_lifetime,
        nc_check,
    }
}

async fn apache2_accepts_our_digest_answers_and_refuses_a_wrong_password(app: TestApp) {
    let setup_ = apache_setup(300, true);
    let Some(mut apache) = Apache::start(&setup_).await else {
        return;
    };
    let case = setup(&app, &apache.url, setup_.user, PASSWORD, "/thing.json").await;
    let expected: Value = serde_json::from_str(apache::BODY).expect("JSON");

    let mut runs = Vec::new();
    for round in 0..3 {
        let run = dry_run(&app, &case, "good").await;
        assert_eq!(run["error"], Value::Null, "{run:#}\n{}", apache.error_log());
        assert_eq!(run["response"], expected);
        let wanted: &[u16] = if round == 0 { &[401, 200] } else { &[200] };
        assert_eq!(statuses(&run), wanted, "round {round}: {run:#}");
        runs.push(run);
    }
    let bad = dry_run(&app, &case, "bad").await;
    assert_failed(&bad);
    assert_eq!(statuses(&bad), [401, 401], "{bad:#}");
    runs.push(bad);

    // A restarted apache has a new secret: the known nonce is refused (not stale) and
    // the client must take the new challenge.
    apache.restart().await;
    let after = dry_run(&app, &case, "good").await;
    assert_eq!(
        after["error"],
        Value::Null,
        "{after:#}\n{}",
        apache.error_log()
    );
    assert_eq!(statuses(&after), [401, 200], "{after:#}");
    runs.push(after);
    assert_password_hidden(&app, &runs).await;
}

async fn apache2_stale_nonces_are_answered_with_the_new_nonce(app: TestApp) {
    // AuthDigestNcCheck off (apache's default): with it on, apache 2.4.67 refuses the next
    // count of an expired nonce (`nonce-count check failed: 2 != 1`) with a plain challenge
    // before it looks at the nonce's age, so it never says `stale=true`.
    let setup_ = apache_setup(2, false);
    let Some(apache) = Apache::start(&setup_).await else {
        return;
    };
    let case = setup(&app, &apache.url, setup_.user, PASSWORD, "/thing.json").await;

    let first = dry_run(&app, &case, "good").await;
    assert_eq!(
        first["error"],
        Value::Null,
        "{first:#}\n{}",
        apache.error_log()
    );
    // Past the nonce's two-second life: apache answers `stale=true`.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let second = dry_run(&app, &case, "good").await;
    assert_eq!(
        second["error"],
        Value::Null,
        "{second:#}\n{}",
        apache.error_log()
    );
    assert_eq!(statuses(&second), [401, 200], "{second:#}");
    let challenge = second["exchanges"][0]["response"]["headers"].to_string();
    assert!(challenge.contains("stale=true"), "{challenge}");
}
