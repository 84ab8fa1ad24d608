//! The client: one pooled reqwest client behind the SSRF guard, and `send`, which turns an
//! [`OutboundRequest`] into an [`Exchange`] and never fails or panics.
//!
//! Build one [`Client`] per process and clone it freely: clones share the connection pool
//! (keep-alive to frequent receivers is most of the throughput of a delivery worker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect;
use tokio::time::{Instant as Deadline, timeout_at};

use crate::error::{ErrorKind, OutboundError, classify, refused};
use crate::exchange::{Exchange, OutboundRequest, RecordedRequest, RecordedResponse};
use crate::policy::OutboundPolicy;
use crate::redact::{excerpt, redact, redact_headers, redact_url};
use crate::resolve::GuardedResolver;

/// How the client is built. `Default` gives production values with the strict policy.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Which destinations are allowed.
    pub policy: OutboundPolicy,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// How many idle connections per host are kept.
    pub pool_max_idle_per_host: usize,
    /// Limit for establishing a connection (TCP and TLS); a request's own timeout still
    /// bounds the whole exchange.
    pub connect_timeout: Duration,
    /// The `user-agent` sent unless a request sets its own.
    pub user_agent: String,
    /// How much of a response body is read; the rest is left unread and the response is
    /// marked `truncated`.
    pub max_response_body: usize,
    /// Length in bytes of the recorded request and response body excerpts.
    pub excerpt_bytes: usize,
    /// How many redirects to follow; 0 (the default) returns the 3xx response as is. Every
    /// hop is checked against the policy like the first URL, and no `Referer` is sent.
    /// On a hop to another host reqwest drops `authorization` and `cookie`, but custom
    /// credential headers (`x-api-key`, ...) travel along: enable only where the
    /// destinations are trusted.
    pub follow_redirects: u8,
    /// Verify servers' certificates (off only for test systems a connection names).
    pub tls_verify: bool,
    /// Extra trusted roots, PEM (a private CA), beside the built-in ones.
    pub extra_roots_pem: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            policy: OutboundPolicy::default(),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("casehook/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_response_body: 1024 * 1024,
            excerpt_bytes: 4 * 1024,
            follow_redirects: 0,
            tls_verify: true,
            extra_roots_pem: None,
        }
    }
}

/// Why a [`Client`] could not be built (a configuration mistake, found at start-up).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The user agent is not a valid header value.
    #[error("the user agent {0:?} is not a valid header value")]
    UserAgent(String),
    /// The extra roots are not PEM certificates.
    #[error("the CA certificates could not be read: {0}")]
    Roots(#[source] reqwest::Error),
    /// reqwest refused the configuration (e.g. the TLS roots could not be loaded).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The one HTTP client of casehook. Cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// What the client was built from, so variants (other TLS settings) can be built.
    config: Arc<ClientConfig>,
    policy: Arc<OutboundPolicy>,
    max_response_body: usize,
    excerpt_bytes: usize,
}

impl Client {
    /// Builds the client. Installs the ring crypto provider if none is installed yet.
    pub fn new(config: ClientConfig) -> Result<Self, BuildError> {
        crate::install_crypto_provider();
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| BuildError::UserAgent(config.user_agent.clone()))?;
        let policy = Arc::new(config.policy.clone());
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &config.extra_roots_pem {
            let roots =
                reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(BuildError::Roots)?;
            builder = builder.tls_certs_merge(roots);
        }
        if !config.tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .user_agent(user_agent)
            // A proxy would do the resolving, out of the guard's sight.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
            .redirect(redirect_policy(&policy, config.follow_redirects))
            // A Referer would hand the previous URL, query credentials included, to
            // whatever host a redirect points at.
            .referer(false)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build()
            .map_err(BuildError::Http)?;
        Ok(Self {
            http,
            policy,
            max_response_body: config.max_response_body,
            excerpt_bytes: config.excerpt_bytes,
            config: Arc::new(config),
        })
    }

    /// A client like this one (same policy, pool and limits) with other TLS settings: for
    /// a connection to a system with a private CA, or a test system without verification.
    pub fn with_tls(
        &self,
        verify: bool,
        extra_roots_pem: Option<String>,
    ) -> Result<Self, BuildError> {
        Self::new(ClientConfig {
            tls_verify: verify,
            extra_roots_pem,
            ..(*self.config).clone()
        })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// Sends `req` and records the exchange. Never fails: a refused destination, a
    /// malformed request, a transport failure or a timeout end up in
    /// [`Exchange::error`]; a non-2xx status is a normal response (see
    /// [`Exchange::failure`]).
    pub async fn send(&self, req: OutboundRequest) -> Exchange {
        let started = Instant::now();
        let deadline = Deadline::now() + req.timeout;
        let request = RecordedRequest {
            method: req.method.clone(),
            url: redact_url(&req.url, &req.sensitive),
            headers: redact_headers(&req.headers, &req.sensitive),
            body_excerpt: req.body.as_deref().map_or_else(String::new, |body| {
                excerpt(body, self.excerpt_bytes, &req.sensitive)
            }),
            body_len: req.body.as_ref().map_or(0, Vec::len),
        };
        let sensitive = req.sensitive.clone();
        let (response, error, remote_addr) = match self.perform(req, deadline).await {
            Ok(done) => done,
            Err(error) => (None, Some(error), None),
        };
        Exchange {
            request,
            response,
            error: error.map(|mut e| {
                e.message = redact(&e.message, &sensitive);
                e
            }),
            duration: started.elapsed(),
            remote_addr,
        }
    }

    /// Everything from parsing the URL to reading the body. `Err` when no response
    /// arrived; a failure while reading the body comes back beside the response.
    async fn perform(
        &self,
        req: OutboundRequest,
        deadline: Deadline,
    ) -> Result<Received, OutboundError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| OutboundError::new(ErrorKind::InvalidUrl, format!("invalid URL: {e}")))?;
        self.policy.check_target(&url).map_err(|r| refused(&r))?;
        let headers = header_map(&req.headers)?;
        let mut builder = self.http.request(req.method, url).headers(headers);
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let mut response = match timeout_at(deadline, builder.send()).await {
            Err(_) => return Err(timed_out(req.timeout)),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(response)) => response,
        };
        let remote_addr = response.remote_addr();
        let status = response.status().as_u16();
        let url = redact_url(response.url().as_str(), &req.sensitive);
        let headers = redact_headers(&header_list(response.headers()), &req.sensitive);

        let mut body = Vec::new();
        let mut truncated = false;
        let mut error = None;
        loop {
            match timeout_at(deadline, response.chunk()).await {
                Err(_) => error = Some(timed_out(req.timeout)),
                Ok(Err(e)) => error = Some(classify(e)),
                Ok(Ok(None)) => {}
                Ok(Ok(Some(chunk))) => {
                    let room = self.max_response_body - body.len();
                    if chunk.len() <= room {
                        body.extend_from_slice(&chunk);
                        continue;
                    }
                    // A byte beyond the limit arrived: keep the limit's worth and stop
                    // reading; dropping the response closes the connection.
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                }
            }
            break;
        }
        let body_excerpt = excerpt(&body, self.excerpt_bytes, &req.sensitive);
        let response = RecordedResponse {
            status,
            url,
            headers,
            body,
            body_excerpt,
            truncated,
        };
        Ok((Some(response), error, remote_addr))
    }
}

/// A response (if any), a failure (if any), and the peer address.
type Received = (
    Option<RecordedResponse>,
    Option<OutboundError>,
    Option<std::net::SocketAddr>,
);

fn timed_out(timeout: Duration) -> OutboundError {
    OutboundError::new(
        ErrorKind::Timeout,
        format!("the exchange did not complete within {timeout:?}"),
    )
}

/// Redirects are off unless asked for; when on, every hop passes the same checks as the
/// first URL (literal addresses here, names in the resolver).
fn redirect_policy(policy: &Arc<OutboundPolicy>, max_hops: u8) -> redirect::Policy {
    if max_hops == 0 {
        return redirect::Policy::none();
    }
    let policy = Arc::clone(policy);
    redirect::Policy::custom(move |attempt| {
        // `previous` holds the original URL and every hop so far.
        if attempt.previous().len() > usize::from(max_hops) {
            return attempt.stop();
        }
        match policy.check_target(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// The caller's headers as a reqwest header map; the name (not the value, which may be a
/// secret) is quoted when one is invalid.
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, OutboundError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = |what: &str| {
            // The closest stored kind: a configuration problem a retry will not fix.
            OutboundError::new(
                ErrorKind::InvalidUrl,
                format!("invalid header {what} for {name:?}"),
            )
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name"))?;
        let header_value = HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// Response headers as text pairs (non-UTF-8 values lossily converted).
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
