//! An OAuth 2.0 authorization and resource server (RFC 6749, RFC 6750) in one: `POST
//! /token` issues short-lived access tokens for the client-credentials and refresh-token
//! grants (rotating the refresh token on every use), authenticating the client by HTTP Basic
//! or by the form body as configured; every other path is a resource that accepts only a
//! token it issued, not revoked and not expired. It counts everything, and can be told to
//! fail its next token requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Running, form_pairs, pct_decode, serve};

/// How the client must authenticate at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Body,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub client_id: &'static str,
    pub client_secret: &'static str,
    pub client_auth: ClientAuth,
    /// `expires_in` of every token, enforced here too.
    pub lifetime: Duration,
    /// The refresh token the client starts with (refresh-token grant).
    pub refresh_token: Option<&'static str>,
    /// How long the token endpoint takes, to make concurrent callers overlap.
    pub token_delay: Duration,
    /// How many refreshes hand out a new refresh token; after them the server answers
    /// without one and the refresh token in use stays valid (`None`: every refresh rotates).
    pub rotations: Option<usize>,
}

impl Config {
    pub fn client_credentials(client_auth: ClientAuth) -> Self {
        Self {
            client_id: "casehook-client",
            client_secret: "cs: s3cr+t/=&é",
            client_auth,
            lifetime: Duration::from_secs(300),
            refresh_token: None,
            token_delay: Duration::from_millis(100),
            rotations: None,
        }
    }
}

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `basic`, `body` or `none`.
    pub client_auth: &'static str,
    pub grant_type: String,
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
    pub status: u16,
}

struct Issued {
    access: String,
    at: Instant,
    revoked: bool,
}

struct Inner {
    config: Config,
    issued: Mutex<Vec<Issued>>,
    /// The refresh token that is valid now.
    refresh: Mutex<Option<String>>,
    /// Every refresh token handed out, the initial one first.
    refresh_history: Mutex<Vec<String>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    /// Status of every resource request.
    resource: Mutex<Vec<u16>>,
    /// Scripted answers for the next token requests.
    failures: Mutex<VecDeque<(u16, Value)>>,
}

pub struct OAuth2Server {
    pub url: String,
    inner: Arc<Inner>,
    _running: Running,
}

impl OAuth2Server {
    pub async fn start(config: Config) -> Self {
        let refresh = config.refresh_token.map(str::to_owned);
        let inner = Arc::new(Inner {
            refresh_history: Mutex::new(refresh.iter().cloned().collect()),
            refresh: Mutex::new(refresh),
            config,
            issued: Mutex::new(Vec::new()),
            token_requests: Mutex::new(Vec::new()),
            resource: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
        });
        let router = axum::Router::new()
            .route("/token", post(token))
            .fallback(resource)
            .with_state(inner.clone());
        let running = serve(router).await;
        Self {
            url: running.url.clone(),
            inner,
            _running: running,
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner.token_requests.lock().expect("lock").clone()
    }

    /// Statuses of the resource requests, in order.
    pub fn resource_statuses(&self) -> Vec<u16> {
        self.inner.resource.lock().expect("lock").clone()
    }

    /// Every access token issued.
    pub fn access_tokens(&self) -> Vec<String> {
        let issued = self.inner.issued.lock().expect("lock");
        issued.iter().map(|t| t.access.clone()).collect()
    }

    /// Every refresh token handed out (the initial one first).
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.inner.refresh_history.lock().expect("lock").clone()
    }

    /// Revoke every token issued so far.
    pub fn revoke_all(&self) {
        for t in self.inner.issued.lock().expect("lock").iter_mut() {
            t.revoked = true;
        }
    }

    /// Answer the next token request with `status` and `body` instead of a token.
    pub fn fail_next_token_request(&self, status: u16, body: Value) {
        self.inner
            .failures
            .lock()
            .expect("lock")
            .push_back((status, body));
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(inner.config.token_delay).await;
    let form: Vec<(String, String)> = form_pairs(&body)
        .into_iter()
        .map(|(n, v)| (text(n), text(v)))
        .collect();
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut request = TokenRequest {
        client_auth: "none",
        grant_type: field("grant_type").unwrap_or_default(),
        scope: field("scope"),
        refresh_token: field("refresh_token"),
        status: 200,
    };
    let (status, answer) = issue(&inner, &headers, &mut request, &field);
    request.status = status;
    inner.token_requests.lock().expect("lock").push(request);
    let status = StatusCode::from_u16(status).expect("a status");
    (status, axum::Json(answer)).into_response()
}

fn issue(
    inner: &Inner,
    headers: &HeaderMap,
    request: &mut TokenRequest,
    field: &dyn Fn(&str) -> Option<String>,
) -> (u16, Value) {
    let config = &inner.config;
    let invalid_client = (401, json!({"error": "invalid_client"}));
    // RFC 6749 §2.3.1: Basic with the form-encoded id and secret, or both in the body.
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let (id, secret) = match basic {
        Some(encoded) => {
            request.client_auth = "basic";
            let Some(decoded) = BASE64.decode(encoded).ok().map(text) else {
                return invalid_client;
            };
            let Some((id, secret)) = decoded.split_once(':') else {
                return invalid_client;
            };
            (
                text(pct_decode(id.as_bytes(), true)),
                text(pct_decode(secret.as_bytes(), true)),
            )
        }
        None => {
            request.client_auth = "body";
            match (field("client_id"), field("client_secret")) {
                (Some(id), Some(secret)) => (id, secret),
                _ => {
                    request.client_auth = "none";
                    return invalid_client;
                }
            }
        }
    };
    let wanted = match config.client_auth {
        ClientAuth::Basic => "basic",
        ClientAuth::Body => "body",
    };
    if request.client_auth != wanted || id != config.client_id || secret != config.client_secret {
        return invalid_client;
    }
    if let Some(failure) = inner.failures.lock().expect("lock").pop_front() {
        return failure;
    }
    let mut refresh = inner.refresh.lock().expect("lock");
    let new_refresh = match request.grant_type.as_str() {
        "client_credentials" => None,
        "refresh_token" => {
            if refresh.is_none() || request.refresh_token != *refresh {
                return (400, json!({"error": "invalid_grant"}));
            }
            let mut history = inner.refresh_history.lock().expect("lock");
            // The initial token is the history's first: the rest are rotations.
            if config.rotations.is_some_and(|n| history.len() > n) {
                None
            } else {
                // Rotation: the used refresh token is dead from now on.
                let next = format!("rt-{}-{}", history.len(), nonce());
                history.push(next.clone());
                *refresh = Some(next.clone());
                Some(next)
            }
        }
        _ => return (400, json!({"error": "unsupported_grant_type"})),
    };
    let access = format!("at-{}", nonce());
    inner.issued.lock().expect("lock").push(Issued {
        access: access.clone(),
        at: Instant::now(),
        revoked: false,
    });
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": config.lifetime.as_secs(),
    });
    if let Some(r) = new_refresh {
        answer["refresh_token"] = json!(r);
    }
    (200, answer)
}

fn nonce() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

async fn resource(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let valid = inner
        .issued
        .lock()
        .expect("lock")
        .iter()
        .any(|t| t.access == token && !t.revoked && t.at.elapsed() < inner.config.lifetime);
    let status = if valid { 200 } else { 401 };
    inner.resource.lock().expect("lock").push(status);
    if valid {
        // Some APIs echo the caller's credentials: they must not reach logs or cases.
        let body = json!({"ok": true, "path": uri.path(), "seen_token": token});
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
            axum::Json(json!({"error": "invalid_token"})),
        )
            .into_response()
    }
}
