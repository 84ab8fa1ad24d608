//! A webhook receiver on a real socket (127.0.0.1:0) for delivery tests: it records every
//! request and answers from a script — fail the first N, answer 410 or 429 with
//! `Retry-After`, hang past a timeout — then 200 with a configurable JSON body.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How the receiver answers its n-th request (0-based).
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// 429 or 503 with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Never answer within the test's timeouts.
    Hang,
    /// 200 after this many milliseconds.
    Delay(u64),
    /// 200 with this JSON body.
    Json(Value),
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<Vec<Answer>>,
    arrived: Notify,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
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
    let n = {
        let mut received = shared.received.lock().expect("lock");
        received.push(Received {
            method,
            uri,
            headers,
            body,
            at: Instant::now(),
        });
        received.len() - 1
    };
    shared.arrived.notify_waiters();
    let answer = shared.script.lock().expect("lock").get(n).cloned();
    match answer {
        None => (StatusCode::OK, "ok").into_response(),
        Some(Answer::Status(s)) => StatusCode::from_u16(s).expect("a status").into_response(),
        Some(Answer::RetryAfter(s, secs)) => (
            StatusCode::from_u16(s).expect("a status"),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Some(Answer::Json(v)) => axum::Json(v).into_response(),
        Some(Answer::Delay(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// Start a receiver answering its first requests from `script`, then 200.
    pub async fn start(script: Vec<Answer>) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.script.lock().expect("lock") = script;
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Wait until at least `n` requests arrived (at most 20 s), returning them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited 20 s for {n} requests; got {}",
                received.len()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), arrived).await;
        }
    }
}
