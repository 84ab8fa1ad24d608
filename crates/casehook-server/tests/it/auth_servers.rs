//! Verifier servers for outbound auth, on `127.0.0.1:0`: each one checks a credential the
//! way the real service would, with its own small code over `hmac`, `sha1`, `sha2`, `md-5`
//! and `base64` — never with `casehook_core::auth` — so a mistake shared by our signer and
//! its unit tests cannot hide here. Every verifier is first checked against the method's
//! published example (RFC 5849 §1.2, AWS's SigV4 test suite, RFC 7616 §3.9.1).
//!
//! [`CheckServer`] runs one stateless check per request (Basic, Bearer, API keys, OAuth 1.0a,
//! SigV4) and answers 200 or 401 with the reason; [`oauth2::OAuth2Server`] and
//! [`digest::DigestServer`] keep state (tokens, nonces); [`apache`] starts a real apache2.

pub mod apache;
pub mod digest;
pub mod oauth2;
mod signatures;

pub use signatures::{AwsKey, OAuth1Client, oauth1, sigv4};

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A server task on `127.0.0.1:0`; aborted when dropped.
#[derive(Debug)]
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `router` on a free port of 127.0.0.1.
pub async fn serve(router: axum::Router) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a verifier port on 127.0.0.1");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Running {
        url: format!("http://{addr}"),
        task,
    }
}

/// A request as the verifier received it: the request-target exactly as sent.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    /// The first value of a header, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The raw query, without `?`.
    pub fn query(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    /// The query's pairs, form-decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_pairs(self.query().as_bytes())
            .into_iter()
            .map(|(n, v)| lossy(n, v))
            .collect()
    }
}

fn lossy(name: Vec<u8>, value: Vec<u8>) -> (String, String) {
    (
        String::from_utf8_lossy(&name).into_owned(),
        String::from_utf8_lossy(&value).into_owned(),
    )
}

/// One request and what the check said of it.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub request: Incoming,
    pub outcome: Result<(), String>,
}

type Check = Box<dyn Fn(&Incoming) -> Result<(), String> + Send + Sync>;

struct CheckState {
    check: Check,
    seen: Mutex<Vec<Verdict>>,
}

/// Answers every request with 200 `{"ok": true, …}` when its check passes, else 401
/// `{"error": reason}`; keeps every verdict.
pub struct CheckServer {
    pub url: String,
    state: Arc<CheckState>,
    _running: Running,
}

impl CheckServer {
    pub async fn start(
        check: impl Fn(&Incoming) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let state = Arc::new(CheckState {
            check: Box::new(check),
            seen: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(checked)
            .with_state(state.clone());
        let running = serve(router).await;
        Self {
            url: running.url.clone(),
            state,
            _running: running,
        }
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        self.state.seen.lock().expect("verdicts lock").clone()
    }

    /// The reasons of the refused requests.
    pub fn refusals(&self) -> Vec<String> {
        self.verdicts()
            .into_iter()
            .filter_map(|v| v.outcome.err())
            .collect()
    }

    pub fn accepted(&self) -> usize {
        self.verdicts().iter().filter(|v| v.outcome.is_ok()).count()
    }
}

async fn checked(
    State(state): State<Arc<CheckState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Incoming {
        method,
        uri,
        headers,
        body,
    };
    let outcome = (state.check)(&request);
    let answer = match &outcome {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"ok": true, "path": request.uri.path()})),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": reason})),
        )
            .into_response(),
    };
    state
        .seen
        .lock()
        .expect("verdicts lock")
        .push(Verdict { request, outcome });
    answer
}

// ---- the simple schemes --------------------------------------------------------------

/// `Authorization: Basic base64(user:password)` (RFC 7617).
pub fn basic(
    user: &'static str,
    password: &'static str,
) -> impl Fn(&Incoming) -> Result<(), String> {
    move |r| {
        let value = r.header("authorization").ok_or("no Authorization header")?;
        let encoded = value.strip_prefix("Basic ").ok_or("not Basic")?;
        let decoded = BASE64
            .decode(encoded)
            .map_err(|e| format!("not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| "not UTF-8")?;
        match text.split_once(':') {
            Some((u, p)) if u == user && p == password => Ok(()),
            Some((u, _)) if u == user => Err("wrong password".into()),
            _ => Err("unknown user".into()),
        }
    }
}

/// `Authorization: Bearer <token>` (RFC 6750).
pub fn bearer(token: &'static str) -> impl Fn(&Incoming) -> Result<(), String> {
    move |r| match r
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        Some(t) if t == token => Ok(()),
        Some(_) => Err("wrong token".into()),
        None => Err("no bearer token".into()),
    }
}

/// An API key in the header `name`.
pub fn key_header(
    name: &'static str,
    key: &'static str,
) -> impl Fn(&Incoming) -> Result<(), String> {
    move |r| match r.header(name) {
        Some(k) if k == key => Ok(()),
        Some(_) => Err("wrong key".into()),
        None => Err(format!("no {name} header")),
    }
}

/// An API key in the query parameter `name`, exactly once.
pub fn key_query(
    name: &'static str,
    key: &'static str,
) -> impl Fn(&Incoming) -> Result<(), String> {
    move |r| {
        let keys: Vec<String> = r
            .query_pairs()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        match keys.as_slice() {
            [k] if k == key => Ok(()),
            [_] => Err("wrong key".into()),
            _ => Err(format!("{} `{name}` parameters", keys.len())),
        }
    }
}

// ---- shared pieces -------------------------------------------------------------------

/// The parameters of an auth header of `scheme` (`OAuth`, `Digest`, `AWS4-HMAC-SHA256`):
/// `name=value` or `name="quoted \"value\""`, separated by commas.
pub fn auth_params(header: &str, scheme: &str) -> Option<Vec<(String, String)>> {
    let (given, rest) = header.split_once(' ')?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=') {
            name.push(c);
        }
        if name.is_empty() {
            return Some(out);
        }
        chars.next()?; // '='
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// The value of parameter `name` (lower case) of [`auth_params`]'s output.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("no `{name}` parameter"))
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~`, upper-case hex.
pub fn pct_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding; with `plus_is_space`, `+` is a space as in forms.
pub fn pct_decode(text: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let hex = |j: usize| {
            text.get(j..j + 2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match text[i] {
            b'%' if hex(i + 1).is_some() => {
                out.push(hex(i + 1).expect("checked"));
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `application/x-www-form-urlencoded` pairs, raw bytes.
pub fn form_pairs(text: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    text.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let at = pair.iter().position(|b| *b == b'=');
            let (n, v) = match at {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            (pct_decode(n, true), pct_decode(v, true))
        })
        .collect()
}

pub fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
