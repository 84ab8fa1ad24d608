//! Errors: what went wrong with an exchange, in the categories of
//! [`casehook_core::retry::ErrorKind`] (stored with attempts, and what the retry policy in
//! core decides on), plus a redacted message.
//!
//! reqwest reports one opaque error type; the cause sits somewhere in its source chain
//! (hyper, hyper-util, `io::Error`, rustls, or our own guard's [`Refusal`]). [`classify`]
//! walks that chain once and maps it to an [`ErrorKind`].

use std::error::Error as StdError;
use std::io;

pub use casehook_core::retry::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::policy::{Blocked, Refusal};

/// A failed exchange: its category and a human-readable, redacted message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct OutboundError {
    /// The category, for retry decisions and metrics.
    pub kind: ErrorKind,
    /// What happened, for people. Never contains a sensitive value of the request.
    pub message: String,
}

impl OutboundError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether trying again later can succeed without anyone changing the configuration.
    ///
    /// Transport failures are retryable (a TLS failure too: certificates get renewed); a
    /// refused destination, a malformed request or an oversized body are final. This
    /// agrees with `casehook_core::retry`'s verdicts; for `HttpStatus` the status decides
    /// there (this answers `true`, the safe side for at-least-once delivery).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Dns
            | ErrorKind::Connect
            | ErrorKind::Tls
            | ErrorKind::Timeout
            | ErrorKind::Io
            | ErrorKind::HttpStatus
            | ErrorKind::Auth => true,
            ErrorKind::BlockedBySsrfGuard | ErrorKind::InvalidUrl | ErrorKind::BodyTooLarge => {
                false
            }
        }
    }
}

/// Maps a reqwest error to its kind and a message (not yet redacted).
pub(crate) fn classify(err: reqwest::Error) -> OutboundError {
    // The URL may carry credentials; the exchange records a redacted URL separately.
    let err = err.without_url();
    let mut tls = false;
    let mut io_kind = None;
    let mut cause: Option<&(dyn StdError + 'static)> = Some(&err);
    while let Some(e) = cause {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            let mut error = refused(refusal);
            if err.is_redirect() {
                error.message = format!("redirect refused: {}", error.message);
            }
            return error;
        }
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return OutboundError::new(ErrorKind::BlockedBySsrfGuard, blocked.to_string());
        }
        tls |= e.is::<rustls::Error>();
        cause = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                io_kind.get_or_insert(io.kind());
                // `io::Error::source` skips the wrapped error itself (where rustls puts
                // its error), so step into it explicitly.
                match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn StdError + 'static)),
                    None => io.source(),
                }
            }
            None => e.source(),
        };
    }
    let kind = if err.is_timeout() || io_kind == Some(io::ErrorKind::TimedOut) {
        ErrorKind::Timeout
    } else if tls {
        ErrorKind::Tls
    } else if err.is_dns() {
        ErrorKind::Dns
    } else if err.is_connect() {
        ErrorKind::Connect
    } else if err.is_builder() {
        // reqwest's builder errors are about the URL or request shape: a configuration
        // problem that a retry will not fix.
        ErrorKind::InvalidUrl
    } else {
        ErrorKind::Io
    };
    OutboundError::new(kind, chain_message(&err))
}

/// The error kind and message for a refusal by our own policy.
pub(crate) fn refused(refusal: &Refusal) -> OutboundError {
    match refusal {
        Refusal::Blocked(blocked) => {
            OutboundError::new(ErrorKind::BlockedBySsrfGuard, blocked.to_string())
        }
        Refusal::BadTarget(message) => OutboundError::new(ErrorKind::InvalidUrl, message.clone()),
    }
}

/// The error and its causes joined with ": ", skipping causes already spelled out by the
/// level above (hyper and reqwest often repeat their source in their own message).
fn chain_message(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final_and_transport_failures_retryable() {
        let retryable = |kind| OutboundError::new(kind, "x").is_retryable();
        assert!(!retryable(ErrorKind::BlockedBySsrfGuard));
        assert!(!retryable(ErrorKind::InvalidUrl));
        assert!(!retryable(ErrorKind::BodyTooLarge));
        assert!(retryable(ErrorKind::Connect));
        assert!(retryable(ErrorKind::Dns));
        assert!(retryable(ErrorKind::Tls));
        assert!(retryable(ErrorKind::Timeout));
        assert!(retryable(ErrorKind::Io));
    }

    #[test]
    fn errors_serialise_with_the_stored_kind_names() {
        let error = OutboundError::new(ErrorKind::BlockedBySsrfGuard, "no");
        let json = serde_json::to_string(&error).expect("an error serialises");
        assert_eq!(json, r#"{"kind":"blocked_by_ssrf_guard","message":"no"}"#);
    }
}
