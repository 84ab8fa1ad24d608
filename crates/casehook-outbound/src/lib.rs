//! casehook's one HTTP client. Every outbound request (webhook deliveries now, API
//! connections later) goes through [`Client::send`], which:
//!
//! - refuses non-public destinations unless the operator allowed them ([`OutboundPolicy`]):
//!   IP-literal URLs before sending, host names on their *resolved* addresses at connect
//!   time, and every redirect hop (redirects are not followed unless configured);
//! - bounds the whole exchange by the request's timeout and the response body by
//!   [`ClientConfig::max_response_body`];
//! - never returns an `Err` or panics: the result is an [`Exchange`], a redacted, bounded
//!   record of what was sent and received, with a classified [`OutboundError`] when
//!   something failed.
//!
//! Typical use, once per process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), casehook_outbound::BuildError> {
//! use casehook_outbound::{Client, ClientConfig, Method, OutboundRequest};
//!
//! let client = Client::new(ClientConfig::default())?;
//! let exchange = client
//!     .send(
//!         OutboundRequest::new(Method::POST, "https://receiver.example/hook")
//!             .with_header("content-type", "application/json")
//!             .with_header("authorization", "Bearer tok_123")
//!             .with_body(br#"{"type":"case.created"}"#.to_vec())
//!             .with_sensitive("tok_123"),
//!     )
//!     .await;
//! if let Some(failure) = exchange.failure() {
//!     println!("{}: retry = {}", failure, failure.is_retryable());
//! }
//! # Ok(()) }
//! ```
//!
//! This crate knows HTTP and addresses; it knows nothing of cases, endpoints or storage.

mod client;
mod error;
mod exchange;
mod policy;
pub mod ranges;
mod redact;
mod resolve;

pub use client::{BuildError, Client, ClientConfig};
pub use error::{ErrorKind, OutboundError};
pub use exchange::{DEFAULT_TIMEOUT, Exchange, OutboundRequest, RecordedRequest, RecordedResponse};
pub use ipnet::IpNet;
pub use policy::{Blocked, OutboundPolicy};
pub use redact::{
    REDACTED, excerpt, is_sensitive_header, is_sensitive_param, redact, redact_headers,
    redact_json, redact_url,
};
pub use reqwest::{Method, Url};

/// Installs rustls' ring crypto provider as the process default, unless a provider is
/// already installed (then that one stays). Safe to call any number of times.
///
/// reqwest is built without a bundled provider, and building a TLS client without one
/// panics; [`Client::new`] calls this itself, and a binary may call it first thing in
/// `main` for other rustls users.
pub fn install_crypto_provider() {
    // `Err` only means some provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
