//! Sending a prepared request with its credentials: headers for Basic, Bearer and API keys;
//! a signature over the request for OAuth 1.0a and AWS SigV4; a challenge and answer for
//! HTTP Digest; and OAuth 2.0 access tokens fetched from the token endpoint, cached until
//! shortly before they expire, fetched once for all concurrent callers, and fetched again
//! after a 401.
//!
//! Every exchange (token requests and Digest challenges included) is returned, so the call
//! log shows each of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use casehook_core::auth::{RequestParts, digest, oauth1, sigv4};
use casehook_core::connection::auth::{OAuth1Method, OAuth2Grant};
use casehook_core::sealed::{MasterKey, context};
use casehook_core::template::form_urlencode;
use casehook_outbound::{Client, Exchange, Method, OutboundRequest};
use casehook_store::Store;
use rand::RngCore;
use time::OffsetDateTime;

use super::prepare::{Credentials, OAuth2Client};

/// Tokens are renewed this long before they expire (or a tenth of their life, if shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// How long a token without `expires_in` is used.
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Token {
    access: String,
    renew_at: Instant,
    /// A refresh token the server rotated in, used for the next refresh.
    refresh: Option<String>,
}

/// Per-process auth state: OAuth 2.0 tokens and Digest nonces, and where rotated refresh
/// tokens are kept for every process.
pub struct AuthState {
    tokens: Mutex<HashMap<OAuth2Client, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    digest: Mutex<HashMap<String, (digest::Challenge, u32)>>,
    kept: KeptRefreshTokens,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthState")
    }
}

/// The exchanges made for one request: the last is the request's own answer.
pub struct Sent {
    pub exchanges: Vec<Exchange>,
    /// Credentials obtained while sending (OAuth 2.0 access tokens), which the answer may
    /// echo: redact them like the prepared request's secrets.
    pub obtained: Vec<String>,
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sent")
            .field("exchanges", &self.exchanges)
            .field(
                "obtained",
                &format_args!("[{} values]", self.obtained.len()),
            )
            .finish()
    }
}

impl Sent {
    fn of(exchanges: Vec<Exchange>) -> Self {
        Self {
            exchanges,
            obtained: Vec::new(),
        }
    }

    pub fn last(&self) -> Option<&Exchange> {
        self.exchanges.last()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A request failed before sending: an exchange that says so, for the log.
fn refused(request: &OutboundRequest, message: String) -> Exchange {
    Exchange::refused(request, casehook_outbound::ErrorKind::Auth, message)
}

impl AuthState {
    pub fn new(store: Store, keys: MasterKey) -> Self {
        Self {
            tokens: Mutex::default(),
            digest: Mutex::default(),
            kept: KeptRefreshTokens { store, keys },
        }
    }

    /// Send `request` with `credentials`, answering challenges and renewing tokens.
    pub async fn send(
        &self,
        client: &Client,
        mut request: OutboundRequest,
        credentials: &Credentials,
    ) -> Sent {
        match credentials {
            Credentials::None => {}
            Credentials::Basic { username, password } => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                request.sensitive.push(encoded.clone());
                request = request.with_header("authorization", format!("Basic {encoded}"));
            }
            Credentials::Bearer(token) => {
                request = request.with_header("authorization", format!("Bearer {token}"));
            }
            Credentials::ApiKey { name, value, query } => {
                if *query {
                    let sep = if request.url.contains('?') { '&' } else { '?' };
                    request.url = format!(
                        "{}{sep}{}={}",
                        request.url,
                        form_urlencode(name),
                        form_urlencode(value)
                    );
                    request.sensitive.push(form_urlencode(value));
                } else {
                    request = request.with_header(name.clone(), value.clone());
                }
            }
            Credentials::OAuth1(creds, method, realm) => {
                let header = match sign_oauth1(&request, creds, *method, realm.as_deref()) {
                    Ok(h) => h,
                    Err(m) => {
                        return Sent::of(vec![refused(&request, m)]);
                    }
                };
                request = request.with_header("authorization", header);
            }
            Credentials::SigV4(creds, region, service) => {
                match sign_sigv4(&request, creds, region, service) {
                    Ok(headers) => {
                        for (n, v) in headers {
                            request = request.with_header(n, v);
                        }
                    }
                    Err(m) => {
                        return Sent::of(vec![refused(&request, m)]);
                    }
                }
            }
            Credentials::Digest { username, password } => {
                return self.send_digest(client, request, username, password).await;
            }
            Credentials::OAuth2(oauth) => return self.send_oauth2(client, request, oauth).await,
        }
        Sent::of(vec![client.send(request).await])
    }

    async fn send_oauth2(
        &self,
        client: &Client,
        request: OutboundRequest,
        oauth: &OAuth2Client,
    ) -> Sent {
        let slot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            tokens.entry(oauth.clone()).or_default().clone()
        };
        let mut exchanges = Vec::new();
        let mut obtained = Vec::new();
        for _ in 0..2 {
            // One caller fetches; the others wait on the slot and use its token. After a
            // 401 the refused token is marked expired, so a fresh one here is a replacement
            // another caller already fetched.
            let token = {
                let mut held = slot.lock().await;
                let fresh = held
                    .as_ref()
                    .filter(|t| t.renew_at > Instant::now())
                    .map(|t| t.access.clone());
                match fresh {
                    Some(access) => access,
                    None => {
                        // A process's first refresh starts from the token kept by the last
                        // one to rotate it (this process before a restart, or another).
                        let refresh = match held.as_ref() {
                            Some(t) => t.refresh.clone(),
                            None => self.kept.load(oauth).await,
                        };
                        let (token, used) = self
                            .fetch_token_with(client, oauth, refresh, &mut exchanges)
                            .await;
                        match token {
                            Ok(mut t) => {
                                // A server that hands out no new refresh token leaves the
                                // one in use valid (RFC 6749, section 6): keep it.
                                if t.refresh.is_none() {
                                    t.refresh = used;
                                } else if t.refresh != used
                                    && let Some(rotated) = &t.refresh
                                {
                                    self.kept.keep(oauth, rotated).await;
                                }
                                let access = t.access.clone();
                                *held = Some(t);
                                access
                            }
                            // Keep what is held: a refresh token the server rotated in
                            // is the only one it still accepts. The request is not sent;
                            // say why, so the token endpoint's answer is not taken for
                            // the API's.
                            Err(message) => {
                                exchanges.push(refused(&request, format!("oauth2: {message}")));
                                return Sent {
                                    exchanges,
                                    obtained,
                                };
                            }
                        }
                    }
                }
            };
            let mut attempt = request
                .clone()
                .with_header("authorization", format!("Bearer {token}"));
            attempt.sensitive.push(token.clone());
            obtained.push(token.clone());
            let exchange = client.send(attempt).await;
            let unauthorized = exchange.status() == Some(401);
            exchanges.push(exchange);
            if !unauthorized {
                break;
            }
            // A 401 with a token we thought valid: it was revoked or expired early. Mark it
            // expired (unless another caller already replaced it), keeping its rotated
            // refresh token, and try once more.
            let mut held = slot.lock().await;
            if let Some(t) = held.as_mut().filter(|t| t.access == token) {
                t.renew_at = Instant::now();
            }
        }
        Sent {
            exchanges,
            obtained,
        }
    }

    /// Fetch a token with `refresh` (for the refresh-token grant); when that fails and
    /// another process has kept a newer refresh token since, try once more with it. Returns
    /// the token and the refresh token the successful request used.
    async fn fetch_token_with(
        &self,
        client: &Client,
        oauth: &OAuth2Client,
        refresh: Option<String>,
        exchanges: &mut Vec<Exchange>,
    ) -> (Result<Token, String>, Option<String>) {
        let (exchange, token) = fetch_token(client, oauth, refresh.clone()).await;
        exchanges.push(exchange);
        if token.is_err() && oauth.grant == OAuth2Grant::RefreshToken {
            let kept = self.kept.load(oauth).await;
            if kept.is_some() && kept != refresh {
                let (exchange, token) = fetch_token(client, oauth, kept.clone()).await;
                exchanges.push(exchange);
                return (token, kept);
            }
        }
        (token, refresh)
    }

    async fn send_digest(
        &self,
        client: &Client,
        request: OutboundRequest,
        username: &str,
        password: &str,
    ) -> Sent {
        let space = origin(&request.url);
        let creds = digest::Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let mut exchanges = Vec::new();
        // Reuse the last nonce of this origin with the next count, if there is one.
        let mut known = {
            let mut map = self.digest.lock().unwrap_or_else(|p| p.into_inner());
            map.get_mut(&space).map(|(c, nc)| {
                *nc += 1;
                (c.clone(), *nc)
            })
        };
        // Whether `known` came from a challenge to this request.
        let mut fresh = false;
        for _ in 0..3 {
            let mut attempt = request.clone();
            if let Some((challenge, nc)) = &known {
                match digest::authorization(
                    challenge,
                    &creds,
                    request.method.as_str(),
                    &request_target(&request.url),
                    *nc,
                    &random_hex(16),
                ) {
                    Ok(header) => attempt = attempt.with_header("authorization", header),
                    Err(e) => {
                        exchanges.push(refused(&request, format!("digest: {e}")));
                        return Sent::of(exchanges);
                    }
                }
            }
            let exchange = client.send(attempt).await;
            let challenge = (exchange.status() == Some(401))
                .then(|| challenge_of(&exchange))
                .flatten();
            let answered_fresh = known.is_some() && fresh;
            exchanges.push(exchange);
            match challenge {
                // A first challenge, a stale nonce, or a remembered nonce the server no
                // longer knows (it restarted): answer with the new nonce.
                Some(c) if !answered_fresh || c.stale => {
                    self.digest
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(space.clone(), (c.clone(), 1));
                    known = Some((c, 1));
                    fresh = true;
                }
                // Refused with the right nonce: the credentials are wrong; stop.
                _ => break,
            }
        }
        Sent::of(exchanges)
    }
}

fn challenge_of(exchange: &Exchange) -> Option<digest::Challenge> {
    let response = exchange.response.as_ref()?;
    let challenges: Vec<digest::Challenge> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .filter_map(|(_, v)| digest::parse_challenges(v).ok())
        .flatten()
        .collect();
    digest::choose(&challenges).cloned()
}

fn origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

fn request_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        Err(_) => "/".to_owned(),
    }
}

fn parts_of(request: &OutboundRequest) -> Result<(url::Url, Vec<(String, String)>), String> {
    let url = url::Url::parse(&request.url).map_err(|e| format!("the URL does not parse: {e}"))?;
    Ok((url, request.headers.clone()))
}

fn sign_oauth1(
    request: &OutboundRequest,
    creds: &oauth1::Credentials,
    method: OAuth1Method,
    realm: Option<&str>,
) -> Result<String, String> {
    let (url, headers) = parts_of(request)?;
    let parts = RequestParts {
        method: request.method.as_str(),
        url: &url,
        headers: &headers,
        body: request.body.as_deref().unwrap_or_default(),
    };
    let nonce = random_hex(16);
    let timestamp = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    oauth1::authorization(
        &parts,
        creds,
        oauth1::Params {
            nonce: &nonce,
            timestamp,
            realm,
            method: match method {
                OAuth1Method::HmacSha1 => oauth1::SignatureMethod::HmacSha1,
                OAuth1Method::HmacSha256 => oauth1::SignatureMethod::HmacSha256,
            },
        },
    )
    .map_err(|e| format!("oauth1: {e}"))
}

fn sign_sigv4(
    request: &OutboundRequest,
    creds: &sigv4::Credentials,
    region: &str,
    service: &str,
) -> Result<Vec<(String, String)>, String> {
    let (url, headers) = parts_of(request)?;
    let parts = RequestParts {
        method: request.method.as_str(),
        url: &url,
        headers: &headers,
        body: request.body.as_deref().unwrap_or_default(),
    };
    sigv4::sign(
        &parts,
        creds,
        sigv4::Scope { region, service },
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| format!("aws sigv4: {e}"))
}

/// Rotated refresh tokens of connections, sealed in the store, so that a restart or another
/// process continues from the newest (a rotating server accepts no other).
struct KeptRefreshTokens {
    store: Store,
    keys: MasterKey,
}

/// What is sealed: the rotated token and the configured one it descends from.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptRefreshToken {
    token: String,
    configured: String,
}

impl KeptRefreshTokens {
    /// The newest refresh token kept for the client's connection, unless a refresh token was
    /// configured since it was kept. Problems are logged: the configured token is used then.
    async fn load(&self, oauth: &OAuth2Client) -> Option<String> {
        let (Some(owner), Some(configured)) = (oauth.kept_under, &oauth.refresh_token) else {
            return None;
        };
        let (_, id) = owner.parts();
        if oauth.grant != OAuth2Grant::RefreshToken {
            return None;
        }
        let sealed = match self.store.rotated_refresh_token(owner).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "kept refresh token unreadable; using the configured one");
                return None;
            }
        };
        let kept: KeptRefreshToken = match self
            .keys
            .open(&sealed, &context::connection_refresh_token(id))
            .map_err(|e| e.to_string())
            .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| e.to_string()))
        {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "kept refresh token does not open; using the configured one");
                return None;
            }
        };
        (kept.configured == *configured).then_some(kept.token)
    }

    /// Keep `rotated` as the connection's newest refresh token. A failure is logged: this
    /// process still holds the token, but a restart would start from an older one.
    async fn keep(&self, oauth: &OAuth2Client, rotated: &str) {
        let (Some(owner), Some(configured)) = (oauth.kept_under, &oauth.refresh_token) else {
            return;
        };
        let (_, id) = owner.parts();
        let kept = KeptRefreshToken {
            token: rotated.to_owned(),
            configured: configured.clone(),
        };
        let sealed = serde_json::to_vec(&kept)
            .map_err(|e| e.to_string())
            .and_then(|plain| {
                self.keys
                    .seal(&plain, &context::connection_refresh_token(id))
                    .map_err(|e| e.to_string())
            });
        let kept = match sealed {
            Ok(sealed) => self
                .store
                .keep_rotated_refresh_token(owner, sealed)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = kept {
            tracing::warn!(connection = %id, error = %e, "the rotated refresh token could not be kept; it lives in this process only");
        }
    }
}

/// Ask the token endpoint for an access token.
async fn fetch_token(
    client: &Client,
    oauth: &OAuth2Client,
    rotated_refresh: Option<String>,
) -> (Exchange, Result<Token, String>) {
    let mut form: Vec<(String, String)> = Vec::new();
    let mut sensitive = vec![oauth.client_secret.clone()];
    match oauth.grant {
        OAuth2Grant::ClientCredentials => {
            form.push(("grant_type".into(), "client_credentials".into()))
        }
        OAuth2Grant::RefreshToken => {
            form.push(("grant_type".into(), "refresh_token".into()));
            let refresh = rotated_refresh
                .or_else(|| oauth.refresh_token.clone())
                .unwrap_or_default();
            sensitive.push(refresh.clone());
            form.push(("refresh_token".into(), refresh));
        }
    }
    if let Some(scope) = &oauth.scope {
        form.push(("scope".into(), scope.clone()));
    }
    if let Some(audience) = &oauth.audience {
        form.push(("audience".into(), audience.clone()));
    }
    let mut request = OutboundRequest::new(Method::POST, oauth.token_url.clone())
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_header("accept", "application/json")
        .with_timeout(Duration::from_secs(30));
    if oauth.basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_urlencode(&oauth.client_id),
            form_urlencode(&oauth.client_secret)
        ));
        sensitive.push(encoded.clone());
        request = request.with_header("authorization", format!("Basic {encoded}"));
    } else {
        form.push(("client_id".into(), oauth.client_id.clone()));
        form.push(("client_secret".into(), oauth.client_secret.clone()));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    sensitive.extend(sensitive.clone().iter().map(|s| form_urlencode(s)));
    request.sensitive.extend(sensitive);
    let started = Instant::now();
    let mut exchange = client.send(request.with_body(body)).await;
    let token = parse_token(&exchange, started);
    if let Ok(t) = &token {
        // The answer carries the token itself: keep it out of the log.
        exchange.redact_response(&[t.access.as_str()]);
        if let Some(r) = &t.refresh {
            exchange.redact_response(&[r.as_str()]);
        }
    }
    (exchange, token)
}

fn parse_token(exchange: &Exchange, started: Instant) -> Result<Token, String> {
    if !exchange.is_success() {
        return Err(match exchange.status() {
            Some(s) => format!("the token endpoint answered {s}"),
            None => "the token endpoint could not be reached".to_owned(),
        });
    }
    let body = exchange.full_body().map_err(|e| e.message.clone())?;
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
    let access = json
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?
        .to_owned();
    let life = json
        .get("expires_in")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFE);
    let margin = RENEW_BEFORE.min(life / 10);
    Ok(Token {
        access,
        renew_at: started + life.saturating_sub(margin),
        refresh: json
            .get("refresh_token")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}
