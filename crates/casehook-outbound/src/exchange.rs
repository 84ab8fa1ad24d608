//! What goes in and what comes out of [`crate::Client::send`].
//!
//! An [`OutboundRequest`] carries, besides the HTTP parts, the timeout for the whole
//! exchange and the sensitive values to hide. An [`Exchange`] is the record of one try:
//! the request as sent (redacted), the response if one arrived, the error if any, the
//! duration and the peer address. Everything in it except [`RecordedResponse::body`] is
//! redacted and bounded, ready to be stored as a delivery attempt.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;

use crate::error::{ErrorKind, OutboundError};

/// The timeout of a request built with [`OutboundRequest::new`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP request to send.
///
/// `Debug` shows header names and the body length only, never values.
#[derive(Clone)]
pub struct OutboundRequest {
    /// GET, POST, PUT, PATCH, DELETE, ...
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers in order; repeated names are sent repeatedly.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// Limit for the whole exchange: connecting, sending, and reading the response body.
    pub timeout: Duration,
    /// Secret values (API keys, tokens, passwords put into this request) to redact from
    /// everything recorded: URL, headers, body excerpts and error messages.
    pub sensitive: Vec<String>,
}

impl OutboundRequest {
    /// A request without headers or body, with [`DEFAULT_TIMEOUT`].
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
            sensitive: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the timeout of the whole exchange.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a value to redact from the record.
    pub fn with_sensitive(mut self, value: impl Into<String>) -> Self {
        self.sensitive.push(value.into());
        self
    }
}

impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field(
                "url",
                &crate::redact::redact_url(&self.url, &self.sensitive),
            )
            .field("header_names", &names)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field(
                "sensitive",
                &format_args!("[{} values]", self.sensitive.len()),
            )
            .finish()
    }
}

/// The request as recorded: redacted and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method sent.
    pub method: Method,
    /// The URL as given, redacted (see [`crate::redact_url`]).
    pub url: String,
    /// The caller's headers, redacted (see [`crate::redact_headers`]). Headers the client
    /// adds itself (`user-agent`, `content-length`, `host`) are not listed.
    pub headers: Vec<(String, String)>,
    /// The start of the body as lossy UTF-8, redacted, at most `excerpt_bytes` long.
    pub body_excerpt: String,
    /// The full body length in bytes.
    pub body_len: usize,
}

/// The response as received.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The URL that answered (differs from the request's after followed redirects),
    /// redacted.
    pub url: String,
    /// Response headers, redacted (`set-cookie` and other credential headers replaced).
    pub headers: Vec<(String, String)>,
    /// The raw body, up to `max_response_body` bytes; the rest was not read. NOT
    /// redacted (response mapping needs the real values): store `body_excerpt` instead.
    pub body: Vec<u8>,
    /// The start of the body as lossy UTF-8, redacted, at most `excerpt_bytes` long.
    pub body_excerpt: String,
    /// Whether the body was longer than `max_response_body` (so `body` is incomplete).
    pub truncated: bool,
}

impl fmt::Debug for RecordedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedResponse")
            .field("status", &self.status)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_excerpt", &self.body_excerpt)
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// The record of one try: what was sent, what came back, what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The request, redacted.
    pub request: RecordedRequest,
    /// The response, when status and headers arrived (also when reading the body then
    /// failed or timed out: `error` says so and `body` holds what was read).
    pub response: Option<RecordedResponse>,
    /// The transport failure, if any. A non-2xx status is not an error here: see
    /// [`Exchange::failure`].
    pub error: Option<OutboundError>,
    /// From the start of `send` to the end of reading the body (or the failure).
    pub duration: Duration,
    /// The address of the server that answered, when a connection was made.
    pub remote_addr: Option<SocketAddr>,
}

impl Exchange {
    /// The record of a request that was never sent (it could not be signed, say), with
    /// why, so logs show it like any other try.
    pub fn refused(req: &OutboundRequest, kind: ErrorKind, message: impl Into<String>) -> Self {
        const EXCERPT: usize = 2048;
        Self {
            request: RecordedRequest {
                method: req.method.clone(),
                url: crate::redact::redact_url(&req.url, &req.sensitive),
                headers: crate::redact::redact_headers(&req.headers, &req.sensitive),
                body_excerpt: req.body.as_deref().map_or_else(String::new, |body| {
                    crate::redact::excerpt(body, EXCERPT, &req.sensitive)
                }),
                body_len: req.body.as_ref().map_or(0, Vec::len),
            },
            response: None,
            error: Some(OutboundError::new(
                kind,
                crate::redact::redact(&message.into(), &req.sensitive),
            )),
            duration: Duration::ZERO,
            remote_addr: None,
        }
    }

    /// Redact values the response carried (an access token) from what is recorded of it:
    /// the excerpt and the headers. The raw body is dropped, since it holds them too.
    pub fn redact_response(&mut self, values: &[&str]) {
        if let Some(response) = &mut self.response {
            response.body_excerpt = crate::redact::redact(&response.body_excerpt, values);
            response.headers = crate::redact::redact_headers(&response.headers, values);
            response.body.clear();
        }
    }

    /// The response status, if a response arrived.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    /// Whether the exchange completed with a 2xx status and no transport error.
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// Why the exchange did not succeed, or `None` when it did: the transport error, or
    /// an [`ErrorKind::HttpStatus`] error for a non-2xx status (including a 3xx that was
    /// not followed).
    pub fn failure(&self) -> Option<OutboundError> {
        if let Some(error) = &self.error {
            return Some(error.clone());
        }
        match self.status() {
            Some(status) if (200..300).contains(&status) => None,
            Some(status) => Some(OutboundError::new(
                ErrorKind::HttpStatus,
                format!("the server answered HTTP {status}"),
            )),
            // Unreachable by construction: send always sets a response or an error.
            None => Some(OutboundError::new(ErrorKind::Io, "no response")),
        }
    }

    /// The complete response body, for callers that must parse all of it (response
    /// mapping): an [`ErrorKind::BodyTooLarge`] error when it was truncated, or the
    /// exchange's failure when there is no complete response.
    pub fn full_body(&self) -> Result<&[u8], OutboundError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match &self.response {
            Some(response) if response.truncated => Err(OutboundError::new(
                ErrorKind::BodyTooLarge,
                format!(
                    "the response body is larger than the {} bytes allowed",
                    response.body.len()
                ),
            )),
            Some(response) => Ok(&response.body),
            None => Err(OutboundError::new(ErrorKind::Io, "no response")),
        }
    }
}
