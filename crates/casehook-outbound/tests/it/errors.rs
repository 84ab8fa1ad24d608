//! Failure classification, each provoked for real: a refused port, a silent server, a
//! name that cannot resolve, TLS spoken to a plain-HTTP port, malformed input.

use std::time::Duration;

use casehook_outbound::{ErrorKind, Method, OutboundRequest};

use crate::support::{SHORT, client_with, free_port, loopback_client, spawn_server, spawn_silent};

fn get(url: String) -> OutboundRequest {
    OutboundRequest::new(Method::GET, url)
}

fn kind_of(exchange: &casehook_outbound::Exchange) -> Option<ErrorKind> {
    exchange.error.as_ref().map(|e| e.kind)
}

#[tokio::test]
async fn a_refused_port_is_a_connect_error() {
    let port = free_port().await;
    let exchange = loopback_client()
        .send(get(format!("http://127.0.0.1:{port}/")))
        .await;
    assert_eq!(kind_of(&exchange), Some(ErrorKind::Connect), "{exchange:?}");
    assert!(exchange.error.expect("an error").is_retryable());
    assert!(exchange.response.is_none());
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let addr = spawn_silent().await;
    let exchange = loopback_client()
        .send(get(format!("http://{addr}/")).with_timeout(SHORT))
        .await;
    assert_eq!(kind_of(&exchange), Some(ErrorKind::Timeout), "{exchange:?}");
    assert!(exchange.duration >= SHORT);
    assert!(exchange.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn a_body_that_stalls_times_out_and_keeps_what_arrived() {
    let server = spawn_server().await;
    let exchange = loopback_client()
        .send(get(server.url("/stall")).with_timeout(SHORT))
        .await;
    assert_eq!(kind_of(&exchange), Some(ErrorKind::Timeout), "{exchange:?}");
    let response = exchange.response.expect("headers arrived");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"start");
}

#[tokio::test]
async fn a_name_that_cannot_resolve_is_a_dns_error() {
    // A label over 63 characters: the system resolver rejects it without sending a query,
    // so the test stays off the network.
    let host = format!("{}.example", "a".repeat(70));
    let exchange = loopback_client().send(get(format!("http://{host}/"))).await;
    assert_eq!(kind_of(&exchange), Some(ErrorKind::Dns), "{exchange:?}");
}

#[tokio::test]
async fn tls_to_a_plain_http_port_is_a_tls_error() {
    let server = spawn_server().await;
    let url = format!("https://{}/ok", server.addr);
    let exchange = loopback_client().send(get(url)).await;
    assert_eq!(kind_of(&exchange), Some(ErrorKind::Tls), "{exchange:?}");
}

#[tokio::test]
async fn malformed_urls_are_invalid_urls() {
    let client = loopback_client();
    for url in [
        "not a url",
        "http://",
        "/relative/path",
        "http://exa mple.com/",
    ] {
        let exchange = client.send(get(url.to_owned())).await;
        assert_eq!(kind_of(&exchange), Some(ErrorKind::InvalidUrl), "{url}");
    }
}

#[tokio::test]
async fn other_schemes_are_refused_as_invalid_urls() {
    let client = client_with(|c| c.policy = casehook_outbound::OutboundPolicy::allow_all());
    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1/",
    ] {
        let exchange = client.send(get(url.to_owned())).await;
        let error = exchange.error.expect("refused");
        assert_eq!(error.kind, ErrorKind::InvalidUrl, "{url}");
        assert!(error.message.contains("scheme"), "{}", error.message);
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn an_invalid_header_is_refused_without_showing_the_value() {
    let server = spawn_server().await;
    let exchange = loopback_client()
        .send(
            get(server.url("/ok"))
                .with_header("x-token", "line\nbreak-hunter2")
                .with_sensitive("hunter2"),
        )
        .await;
    let error = exchange.error.expect("refused");
    assert_eq!(error.kind, ErrorKind::InvalidUrl);
    assert!(
        error.message.contains("invalid header value"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn non_success_statuses_are_responses_with_an_http_status_failure() {
    let server = spawn_server().await;
    let exchange = loopback_client().send(get(server.url("/missing"))).await;
    assert!(exchange.error.is_none());
    assert_eq!(exchange.status(), Some(404));
    assert!(!exchange.is_success());
    assert_eq!(
        exchange.failure().map(|e| e.kind),
        Some(ErrorKind::HttpStatus)
    );
}

#[test]
fn installing_the_crypto_provider_twice_is_harmless() {
    casehook_outbound::install_crypto_provider();
    casehook_outbound::install_crypto_provider();
}
