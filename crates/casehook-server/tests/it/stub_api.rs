//! A stand-in for the third-party APIs that API-call fields reach: a real socket on
//! 127.0.0.1:0 that records every request exactly as it arrived (raw path and query, headers,
//! body) and answers from a test's script — a function of the request and of how many
//! requests reached the same path before it. A script can also hold an answer back until the
//! test releases it, or never answer at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{Notify, watch};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The query as sent, still encoded (empty when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// How the stub answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status and JSON body.
    Json(u16, Value),
    /// This status and JSON body, with extra response headers.
    JsonWithHeaders(u16, Value, Vec<(String, String)>),
    /// 200 with this JSON body, once the test calls [`StubApi::release`].
    Held(Value),
    /// Never answer (the stub keeps the connection open for an hour).
    Hang,
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct Shared {
    seen: Mutex<Vec<Seen>>,
    answered: Mutex<usize>,
    script: Box<Script>,
    arrived: Notify,
    release: watch::Sender<bool>,
}

/// A running stub API; stops when dropped.
pub struct StubApi {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    };
    let before = {
        let mut all = shared.seen.lock().expect("lock");
        let before = all.iter().filter(|s| s.path == seen.path).count();
        all.push(seen.clone());
        before
    };
    shared.arrived.notify_waiters();
    let reply = (shared.script)(&seen, before);
    let response = match reply {
        Reply::Json(status, body) => json_response(status, body, Vec::new()),
        Reply::JsonWithHeaders(status, body, headers) => json_response(status, body, headers),
        Reply::Held(body) => {
            let mut released = shared.release.subscribe();
            let _ = released.wait_for(|r| *r).await;
            json_response(200, body, Vec::new())
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    };
    *shared.answered.lock().expect("lock") += 1;
    shared.arrived.notify_waiters();
    response
}

fn json_response(status: u16, body: Value, headers: Vec<(String, String)>) -> Response {
    let mut response = (
        StatusCode::from_u16(status).expect("a status code"),
        axum::Json(body),
    )
        .into_response();
    for (name, value) in headers {
        response.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(&value).expect("a header value"),
        );
    }
    response
}

impl StubApi {
    /// Start a stub answering every request with `script(request, earlier requests to the
    /// same path)`.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            answered: Mutex::new(0),
            script: Box::new(script),
            arrived: Notify::new(),
            release: watch::channel(false).0,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub API");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// The requests so far whose path starts with `prefix`.
    pub fn seen_at(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(prefix))
            .collect()
    }

    /// How many requests have been answered (a held or hanging one is not).
    pub fn answered(&self) -> usize {
        *self.shared.answered.lock().expect("lock")
    }

    /// Let every held request (and any later one) answer.
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Wait until at least `n` requests reached paths starting with `prefix` (at most 20 s);
    /// returns them.
    pub async fn wait_for(&self, prefix: &str, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let arrived = self.shared.arrived.notified();
            let seen = self.seen_at(prefix);
            if seen.len() >= n {
                return seen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited 20 s for {n} requests to {prefix}; got {}",
                seen.len()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), arrived).await;
        }
    }
}
