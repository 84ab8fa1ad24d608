//! Redirects: not followed unless configured, and every followed hop passes the guard.

use casehook_outbound::{ErrorKind, Method, OutboundPolicy, OutboundRequest};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::support::{Server, client_with, loopback_client, spawn_server};

fn redirect_to(server: &Server, target: &str) -> String {
    let to = utf8_percent_encode(target, NON_ALPHANUMERIC);
    server.url(&format!("/redirect?to={to}"))
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest::new(Method::GET, url)
}

#[tokio::test]
async fn a_302_is_returned_not_followed_by_default() {
    let server = spawn_server().await;
    let exchange = loopback_client()
        .send(get(redirect_to(&server, &server.url("/ok"))))
        .await;
    assert!(exchange.error.is_none(), "{:?}", exchange.error);
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.status, 302);
    let location = response.headers.iter().find(|(n, _)| n == "location");
    assert_eq!(location.map(|(_, v)| v.clone()), Some(server.url("/ok")));
    assert_eq!(
        exchange.failure().map(|e| e.kind),
        Some(ErrorKind::HttpStatus)
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn redirects_are_followed_when_configured() {
    let server = spawn_server().await;
    let client = client_with(|c| c.follow_redirects = 3);
    let exchange = client
        .send(get(redirect_to(&server, &server.url("/ok"))))
        .await;
    assert!(exchange.is_success(), "{exchange:?}");
    let response = exchange.response.expect("a response");
    assert_eq!(response.body, b"hello");
    assert_eq!(response.url, server.url("/ok"));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn hops_beyond_the_limit_return_the_last_redirect() {
    let server = spawn_server().await;
    let client = client_with(|c| c.follow_redirects = 1);
    let second = redirect_to(&server, &server.url("/ok"));
    let exchange = client.send(get(redirect_to(&server, &second))).await;
    assert!(exchange.error.is_none(), "{:?}", exchange.error);
    assert_eq!(exchange.status(), Some(302));
    assert_eq!(server.requests(), 2);
}

fn only_the_literal_allowed() -> OutboundPolicy {
    OutboundPolicy {
        allow_hosts: vec!["127.0.0.1".into()],
        ..OutboundPolicy::default()
    }
}

#[tokio::test]
async fn a_redirect_to_a_blocked_name_is_refused() {
    let server = spawn_server().await;
    let client = client_with(|c| {
        c.policy = only_the_literal_allowed();
        c.follow_redirects = 3;
    });
    let target = format!("http://localhost:{}/ok", server.addr.port());
    let exchange = client.send(get(redirect_to(&server, &target))).await;
    let error = exchange.error.expect("refused");
    assert_eq!(error.kind, ErrorKind::BlockedBySsrfGuard, "{error:?}");
    assert!(error.message.contains("localhost"), "{}", error.message);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_blocked_literal_is_refused() {
    let server = spawn_server().await;
    let client = client_with(|c| {
        c.policy = only_the_literal_allowed();
        c.follow_redirects = 3;
    });
    for target in [
        format!("http://[::1]:{}/ok", server.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let exchange = client.send(get(redirect_to(&server, &target))).await;
        let error = exchange.error.expect("refused");
        assert_eq!(error.kind, ErrorKind::BlockedBySsrfGuard, "{target}");
        assert!(
            error.message.starts_with("redirect refused"),
            "{}",
            error.message
        );
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_never_followed() {
    let server = spawn_server().await;
    let client = client_with(|c| c.follow_redirects = 3);
    // A Location with an authority reaches the redirect policy, which refuses it.
    let exchange = client
        .send(get(redirect_to(&server, "ftp://127.0.0.1/x")))
        .await;
    let kind = exchange.error.map(|e| e.kind);
    assert_eq!(kind, Some(ErrorKind::InvalidUrl));
    // One without (file:///...) is not even a request target for the redirect layer: the
    // 302 itself comes back.
    let exchange = client
        .send(get(redirect_to(&server, "file:///etc/passwd")))
        .await;
    assert!(exchange.error.is_none(), "{:?}", exchange.error);
    assert_eq!(exchange.status(), Some(302));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_followed_redirect_sends_no_referer() {
    let server = spawn_server().await;
    let client = client_with(|c| c.follow_redirects = 3);
    let echo = redirect_to(&server, &server.url("/referer"));
    let exchange = client.send(get(format!("{echo}&token=hunter2"))).await;
    assert!(exchange.is_success(), "{exchange:?}");
    assert_eq!(exchange.response.expect("a response").body, b"no referer");
}
