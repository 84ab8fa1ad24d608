//! An HTTP Digest server (RFC 7616) written from the RFC: it challenges with MD5 and/or
//! SHA-256 and `qop="auth"`, checks the response with its own hashing, refuses a nonce
//! count it has seen, and can make a nonce stale after a number of uses (answering
//! `stale=true` to a right response) or forget all its nonces, as a restarted server does
//! (answering a plain challenge, as apache's mod_auth_digest does).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use md5::Md5;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Running, auth_params, param, serve};

/// `H(data)` of RFC 7616 §3.4.1 for `MD5` or `SHA-256`, lower-case hex.
pub fn h(algorithm: &str, data: &str) -> String {
    match algorithm {
        "MD5" => hex::encode(Md5::digest(data.as_bytes())),
        "SHA-256" => hex::encode(Sha256::digest(data.as_bytes())),
        other => panic!("no such algorithm {other}"),
    }
}

/// The `response` of RFC 7616 §3.4.1 for `qop=auth`.
#[allow(clippy::too_many_arguments)]
pub fn expected_response(
    algorithm: &str,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = h(algorithm, &format!("{user}:{realm}:{password}"));
    let ha2 = h(algorithm, &format!("{method}:{uri}"));
    h(
        algorithm,
        &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
    )
}

/// What a request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No credentials: challenged.
    Challenged,
    /// Accepted with this algorithm, nonce and count.
    Accepted {
        algorithm: String,
        nonce: String,
        nc: u32,
    },
    /// Right response for a nonce made stale: challenged with `stale=true`.
    Stale,
    /// Refused, and why.
    Refused(String),
}

#[derive(Default)]
struct NonceState {
    counts: BTreeSet<u32>,
    uses: u32,
}

struct Inner {
    realm: String,
    user: String,
    password: String,
    /// Offered in this order, one challenge each.
    algorithms: Vec<&'static str>,
    opaque: String,
    /// After this many accepted uses a nonce is stale.
    stale_after: Option<u32>,
    nonces: Mutex<HashMap<String, NonceState>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running Digest server; any path answers `{"ok": true, "user": …}` once authenticated.
pub struct DigestServer {
    pub url: String,
    inner: Arc<Inner>,
    _running: Running,
}

impl DigestServer {
    pub async fn start(
        realm: &str,
        user: &str,
        password: &str,
        algorithms: &[&'static str],
        stale_after: Option<u32>,
    ) -> Self {
        let inner = Arc::new(Inner {
            realm: realm.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            algorithms: algorithms.to_vec(),
            opaque: random(),
            stale_after,
            nonces: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let running = serve(router).await;
        Self {
            url: running.url.clone(),
            inner,
            _running: running,
        }
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().expect("seen lock").clone()
    }

    /// Drop every nonce, as a restarted server would.
    pub fn forget_nonces(&self) {
        self.inner.nonces.lock().expect("nonces lock").clear();
    }
}

fn random() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn challenge(inner: &Inner, stale: bool) -> Response {
    let nonce = random();
    inner
        .nonces
        .lock()
        .expect("nonces lock")
        .insert(nonce.clone(), NonceState::default());
    let mut headers = HeaderMap::new();
    for algorithm in &inner.algorithms {
        let value = format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm={algorithm}, nonce=\"{nonce}\", \
             opaque=\"{}\"{}",
            inner.realm,
            inner.opaque,
            if stale { ", stale=true" } else { "" }
        );
        headers.append(
            "www-authenticate",
            HeaderValue::from_str(&value).expect("a header value"),
        );
    }
    (
        StatusCode::UNAUTHORIZED,
        headers,
        axum::Json(json!({"error": "authenticate"})),
    )
        .into_response()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let (seen, answer) = match header {
        None => (Seen::Challenged, challenge(&inner, false)),
        Some(header) => match check(&inner, method.as_str(), &target, header) {
            Ok(Some(seen)) => {
                let body = json!({"ok": true, "user": inner.user});
                (seen, (StatusCode::OK, axum::Json(body)).into_response())
            }
            Ok(None) => (Seen::Stale, challenge(&inner, true)),
            Err(reason) => (Seen::Refused(reason), challenge(&inner, false)),
        },
    };
    inner.seen.lock().expect("seen lock").push(seen);
    answer
}

/// `Ok(Some)` accepted, `Ok(None)` right but stale, `Err` refused.
fn check(inner: &Inner, method: &str, target: &str, header: &str) -> Result<Option<Seen>, String> {
    let p = auth_params(header, "Digest").ok_or("not a Digest header")?;
    let get = |name: &str| param(&p, name);
    if get("username")? != inner.user {
        return Err("unknown user".into());
    }
    if get("realm")? != inner.realm {
        return Err("wrong realm".into());
    }
    if get("uri")? != target {
        return Err(format!(
            "uri {} is not the request-target {target}",
            get("uri")?
        ));
    }
    if get("opaque")? != inner.opaque {
        return Err("opaque not echoed".into());
    }
    if get("qop")? != "auth" {
        return Err("qop must be auth".into());
    }
    let algorithm = get("algorithm").unwrap_or("MD5");
    let Some(algorithm) = inner.algorithms.iter().find(|a| **a == algorithm) else {
        return Err(format!("algorithm {algorithm} was not offered"));
    };
    let nonce = get("nonce")?;
    let nc_text = get("nc")?;
    if nc_text.len() != 8 {
        return Err("nc is not 8 hex digits".into());
    }
    let nc = u32::from_str_radix(nc_text, 16).map_err(|_| "nc is not hex")?;
    let cnonce = get("cnonce")?;
    let expected = expected_response(
        algorithm,
        &inner.user,
        &inner.realm,
        &inner.password,
        method,
        target,
        nonce,
        nc_text,
        cnonce,
    );
    let mut nonces = inner.nonces.lock().expect("nonces lock");
    let Some(state) = nonces.get_mut(nonce) else {
        return Err("unknown nonce".into());
    };
    if get("response")? != expected {
        return Err("wrong response (password?)".into());
    }
    if inner.stale_after.is_some_and(|n| state.uses >= n) {
        return Ok(None);
    }
    if nc == 0 || !state.counts.insert(nc) {
        return Err(format!("nonce count {nc} replayed"));
    }
    state.uses += 1;
    Ok(Some(Seen::Accepted {
        algorithm: (*algorithm).to_owned(),
        nonce: nonce.to_owned(),
        nc,
    }))
}

#[cfg(test)]
mod tests {
    use super::expected_response;

    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn the_digest_verifier_computes_rfc7616s_examples() {
        let answer = |algorithm| {
            expected_response(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                NONCE,
                "00000001",
                CNONCE,
            )
        };
        assert_eq!(answer("MD5"), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            answer("SHA-256"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }
}
