//! Response bodies: read up to the limit and no further, excerpts bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use casehook_outbound::{ErrorKind, Method, OutboundRequest};

use crate::support::{client_with, spawn_server};

const LIMIT: usize = 64 * 1024;

fn get(url: String) -> OutboundRequest {
    OutboundRequest::new(Method::GET, url).with_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn an_endless_body_is_truncated_at_the_limit_without_reading_the_rest() {
    let server = spawn_server().await;
    let client = client_with(|c| c.max_response_body = LIMIT);
    let exchange = client.send(get(server.url("/endless"))).await;

    assert!(exchange.error.is_none(), "{:?}", exchange.error);
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.body.len(), LIMIT);
    assert!(response.truncated);
    assert_eq!(
        exchange.full_body().map_err(|e| e.kind),
        Err(ErrorKind::BodyTooLarge)
    );
    // The server stops once socket buffers are full and the connection closes: far less
    // than it would have sent to a reader that kept going.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let streamed = server.seen.streamed_bytes.load(Ordering::SeqCst);
    assert!(
        streamed < 64 * 1024 * 1024,
        "server streamed {streamed} bytes"
    );
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_complete() {
    let server = spawn_server().await;
    let client = client_with(|c| c.max_response_body = LIMIT);
    let exchange = client
        .send(get(server.url(&format!("/sized?n={LIMIT}"))))
        .await;
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.body.len(), LIMIT);
    assert!(!response.truncated);
    assert_eq!(exchange.full_body().map(<[u8]>::len), Ok(LIMIT));
}

#[tokio::test]
async fn excerpts_are_bounded_for_request_and_response() {
    let server = spawn_server().await;
    let client = client_with(|c| c.excerpt_bytes = 16);
    let exchange = client
        .send(OutboundRequest::new(Method::POST, server.url("/echo")).with_body(vec![b'z'; 1000]))
        .await;
    assert_eq!(exchange.request.body_excerpt, "z".repeat(16));
    assert_eq!(exchange.request.body_len, 1000);
    let response = exchange.response.expect("a response");
    assert_eq!(response.body.len(), 1000);
    assert_eq!(response.body_excerpt, "z".repeat(16));
    assert!(!response.truncated);
}
