//! Redaction in the record of a real exchange: a planted secret travels in a header, the
//! query and the body, is echoed back by the server, and appears nowhere recorded.

use casehook_outbound::{Method, OutboundRequest, REDACTED};

use crate::support::{free_port, loopback_client, spawn_server};

const SECRET: &str = "sk_live_hunter2";

#[tokio::test]
async fn a_planted_secret_appears_nowhere_in_the_record() {
    let server = spawn_server().await;
    let request = OutboundRequest::new(
        Method::POST,
        server.url(&format!("/echo?key={SECRET}&page=1&other={SECRET}")),
    )
    .with_header("Authorization", format!("Bearer {SECRET}"))
    .with_header("x-echo", format!("echo-{SECRET}"))
    .with_header("webhook-signature", "v1,c2lnbmF0dXJl")
    .with_body(format!(r#"{{"token":"{SECRET}","n":1}}"#))
    .with_sensitive(SECRET);
    let exchange = loopback_client().send(request).await;
    assert!(exchange.is_success(), "{exchange:?}");

    // The server really received the secret: redaction only touches the record.
    let response = exchange.response.as_ref().expect("a response");
    assert!(String::from_utf8_lossy(&response.body).contains(SECRET));

    let recorded = format!("{:?} {:?}", exchange.request, response);
    assert!(!recorded.contains("hunter2"), "{recorded}");

    let header = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let sent = &exchange.request.headers;
    assert_eq!(header(sent, "authorization").as_deref(), Some(REDACTED));
    assert_eq!(header(sent, "x-echo"), Some(format!("echo-{REDACTED}")));
    assert_eq!(
        header(sent, "webhook-signature").as_deref(),
        Some("v1,c2lnbmF0dXJl")
    );
    assert_eq!(
        exchange.request.url,
        server.url(&format!("/echo?key={REDACTED}&page=1&other={REDACTED}"))
    );
    assert_eq!(
        exchange.request.body_excerpt,
        format!(r#"{{"token":"{REDACTED}","n":1}}"#)
    );
    assert_eq!(
        header(&response.headers, "x-echo"),
        Some(format!("echo-{REDACTED}"))
    );
    assert_eq!(
        header(&response.headers, "set-cookie").as_deref(),
        Some(REDACTED)
    );
    assert!(response.body_excerpt.contains(REDACTED));
}

#[tokio::test]
async fn error_messages_do_not_leak_the_url_or_secrets() {
    let port = free_port().await;
    let request = OutboundRequest::new(
        Method::GET,
        format!("http://127.0.0.1:{port}/{SECRET}?q={SECRET}"),
    )
    .with_sensitive(SECRET);
    let exchange = loopback_client().send(request).await;
    let error = exchange.error.expect("refused port");
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    assert!(!exchange.request.url.contains("hunter2"));
}

#[test]
fn request_debug_output_shows_no_values() {
    let request = OutboundRequest::new(Method::POST, "https://x.example/?q=1")
        .with_header("authorization", format!("Bearer {SECRET}"))
        .with_body(SECRET)
        .with_sensitive(SECRET);
    let debug = format!("{request:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("authorization"), "{debug}");
}
