//! Connection reuse: sequential requests from one client (and its clones) share a
//! keep-alive connection.

use casehook_outbound::{Method, OutboundRequest};

use crate::support::{loopback_client, spawn_server};

#[tokio::test]
async fn clones_share_one_pooled_connection() {
    let server = spawn_server().await;
    let client = loopback_client();
    let clone = client.clone();
    for c in [&client, &clone, &client] {
        let exchange = c
            .send(OutboundRequest::new(Method::POST, server.url("/ok")))
            .await;
        assert!(exchange.is_success(), "{exchange:?}");
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(server.connections(), 1);
}
