//! The SSRF guard on real sockets: literal addresses are refused before connecting, names
//! on their resolved addresses, and nothing refused ever reaches the server.

use casehook_outbound::{Client, ClientConfig, ErrorKind, Method, OutboundPolicy, OutboundRequest};

use crate::support::{client_with, loopback_client, spawn_server};

fn strict_client() -> Client {
    Client::new(ClientConfig::default()).expect("the default config builds")
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest::new(Method::GET, url)
}

#[tokio::test]
async fn literal_loopback_is_blocked_by_default_and_never_connects() {
    let server = spawn_server().await;
    let exchange = strict_client().send(get(server.url("/ok"))).await;

    let error = exchange.error.expect("blocked");
    assert_eq!(error.kind, ErrorKind::BlockedBySsrfGuard);
    assert!(error.message.contains("127.0.0.1"), "{}", error.message);
    assert!(error.message.contains("loopback"), "{}", error.message);
    assert!(exchange.response.is_none());
    assert!(!error.is_retryable());
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn other_spellings_of_loopback_are_blocked_too() {
    let server = spawn_server().await;
    let port = server.addr.port();
    for url in [
        format!("http://[::1]:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.0.0.1:{port}/ok"),
        format!("http://0.0.0.0:{port}/ok"),
    ] {
        let exchange = strict_client().send(get(url.clone())).await;
        let kind = exchange.error.map(|e| e.kind);
        assert_eq!(kind, Some(ErrorKind::BlockedBySsrfGuard), "{url}");
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn localhost_is_blocked_through_the_resolver() {
    let server = spawn_server().await;
    let url = format!("http://localhost:{}/ok", server.addr.port());
    let exchange = strict_client().send(get(url)).await;

    let error = exchange.error.expect("blocked");
    assert_eq!(error.kind, ErrorKind::BlockedBySsrfGuard);
    assert!(
        error.message.contains("host localhost"),
        "{}",
        error.message
    );
    assert!(error.message.contains("127.0.0.1"), "{}", error.message);
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn loopback_is_reachable_when_its_range_is_allowed() {
    let server = spawn_server().await;
    let client = loopback_client();
    for url in [
        server.url("/ok"),
        format!("http://localhost:{}/ok", server.addr.port()),
    ] {
        let exchange = client.send(get(url.clone())).await;
        assert!(exchange.is_success(), "{url}: {:?}", exchange.error);
        let response = exchange.response.expect("a response");
        assert_eq!(response.body, b"hello");
        assert_eq!(exchange.remote_addr, Some(server.addr));
    }
}

#[tokio::test]
async fn allow_hosts_opens_one_name_and_nothing_else() {
    let server = spawn_server().await;
    let client = client_with(|config| {
        config.policy = OutboundPolicy {
            allow_hosts: vec!["localhost".into()],
            ..OutboundPolicy::default()
        };
    });
    let by_name = format!("http://localhost:{}/ok", server.addr.port());
    assert!(client.send(get(by_name)).await.is_success());

    let by_address = client.send(get(server.url("/ok"))).await;
    let kind = by_address.error.map(|e| e.kind);
    assert_eq!(kind, Some(ErrorKind::BlockedBySsrfGuard));
}

#[tokio::test]
async fn allow_private_networks_turns_the_guard_off() {
    let server = spawn_server().await;
    let client = client_with(|config| config.policy = OutboundPolicy::allow_all());
    assert!(client.send(get(server.url("/ok"))).await.is_success());
}
