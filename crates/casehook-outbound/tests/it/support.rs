//! Test servers and clients: `spawn_server()` starts the receiver app on `127.0.0.1:0` and
//! reports how many requests and connections reached it, so tests can prove that a
//! refused request never left the process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use casehook_outbound::{Client, ClientConfig, OutboundPolicy};
use futures::stream::{self, StreamExt};
use tokio::net::TcpListener;

/// What a test server saw.
#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
    pub connections: AtomicUsize,
    pub streamed_bytes: AtomicU64,
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Server {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

/// Starts the receiver app:
/// - `/ok` answers 200 `hello`;
/// - `/echo` answers 200 with the request body and an `x-echo` header copying the
///   request's `x-echo`, plus a `set-cookie`;
/// - `/redirect?to=URL` answers 302 to `URL`;
/// - `/referer` answers with the request's `referer` header, or `no referer`;
/// - `/endless` streams `x` bytes forever;
/// - `/stall` sends headers and 5 bytes, then nothing;
/// - `/sized?n=N` answers exactly N bytes.
pub async fn spawn_server() -> Server {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/ok", any(|| async { "hello" }))
        .route("/echo", any(echo))
        .route("/referer", get(referer))
        .route("/redirect", any(redirect))
        .route("/endless", get(endless))
        .route("/stall", get(stall))
        .route("/sized", get(sized))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&seen),
            count_requests,
        ))
        .with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a local address");
    let counter = Arc::clone(&seen);
    let listener = listener.tap_io(move |_| {
        counter.connections.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the test server runs")
    });
    Server { addr, seen }
}

async fn count_requests(
    State(seen): State<Arc<Seen>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    if let Some(value) = headers.get("x-echo") {
        response.headers_mut().insert("x-echo", value.clone());
    }
    response.headers_mut().insert(
        header::SET_COOKIE,
        "session=abc123".parse().expect("a valid header value"),
    );
    response
}

async fn referer(headers: HeaderMap) -> Vec<u8> {
    match headers.get(header::REFERER) {
        Some(value) => value.as_bytes().to_vec(),
        None => b"no referer".to_vec(),
    }
}

async fn redirect(Query(to): Query<To>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to)]).into_response()
}

async fn endless(State(seen): State<Arc<Seen>>) -> Response {
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let body = stream::repeat_with(move || {
        seen.streamed_bytes
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, Infallible>(chunk.clone())
    });
    Body::from_stream(body).into_response()
}

async fn stall() -> Response {
    let body = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"start")) })
        .chain(stream::pending());
    Body::from_stream(body).into_response()
}

#[derive(serde::Deserialize)]
struct Size {
    n: usize,
}

async fn sized(Query(size): Query<Size>) -> Vec<u8> {
    vec![b'y'; size.n]
}

/// A listener that accepts connections and never answers (held until the test ends).
pub async fn spawn_silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A port nothing listens on: bind, note the port, drop the listener.
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// A policy that allows loopback only (IPv4 and IPv6), as the tests need.
pub fn loopback_policy() -> OutboundPolicy {
    OutboundPolicy {
        allow_cidrs: vec![
            "127.0.0.0/8".parse().expect("a test range"),
            "::1/128".parse().expect("a test range"),
        ],
        ..OutboundPolicy::default()
    }
}

/// A client that may reach loopback, with otherwise default settings.
pub fn loopback_client() -> Client {
    client_with(|_| {})
}

/// A client from the default config with loopback allowed, adjusted by `f`.
pub fn client_with(f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig {
        policy: loopback_policy(),
        ..ClientConfig::default()
    };
    f(&mut config);
    Client::new(config).expect("the test config builds")
}

/// A short timeout for tests that wait for one to fire.
pub const SHORT: Duration = Duration::from_millis(200);
