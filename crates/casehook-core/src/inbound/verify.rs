//! Verification of incoming webhook requests: the checks an inbound hook applies
//! ([`Verification`]), their save-time validation, and [`verify`], which decides whether one
//! request is let in.
//!
//! Everything is pure: the server reads the socket, the clock and the hook's active secrets,
//! and passes them in as a [`RequestView`]. Secrets and signatures are compared in constant
//! time, and a refusal ([`Denied`]) explains itself to the sender's operator without ever
//! repeating a secret, an expected signature or the token that was sent.
//!
//! - `config`: save-time checks of a configuration and of a secret, secret generation.
//! - `request`: reading headers, query parameters and the client address.
//! - `credentials`: token, HTTP Basic and IP allow-list verifiers.
//! - `presets`: the signature verifiers, generic HMAC and vendors.
//! - `primitives`: constant-time comparison, HMACs, timestamps.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

mod config;
mod credentials;
mod presets;
mod primitives;
mod request;

pub use config::{MAX_SECRET_LEN, MAX_TOLERANCE_SECS};
pub use request::client_address;

/// One check an inbound hook applies to every request; a hook may list several, all must pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Verification {
    /// A shared token in a header (`Authorization: Bearer <t>` is accepted when header is
    /// "authorization") or a query parameter; exactly one of the two.
    Token {
        /// The header that carries the token.
        #[serde(default)]
        header: Option<String>,
        /// The query parameter that carries the token.
        #[serde(default)]
        query: Option<String>,
    },
    /// HTTP Basic: the username is configuration, the password is the secret.
    Basic {
        /// The username the sender must present.
        username: String,
    },
    /// Client address must fall in one of `allow` (CIDRs or single IPs, v4/v6). The address is
    /// the TCP peer, unless the peer is in `trusted_proxies`: then walk `X-Forwarded-For` from
    /// the right, skipping trusted proxies; the first untrusted one is the client (if all are
    /// trusted, the leftmost).
    IpAllowList {
        /// Networks (`10.0.0.0/8`, `2001:db8::/32`) or single addresses allowed to send.
        allow: Vec<String>,
        /// Reverse proxies in front of casehook whose `X-Forwarded-For` is believed.
        #[serde(default)]
        trusted_proxies: Vec<String>,
    },
    /// Generic HMAC.
    Hmac {
        /// The header holding the signature.
        header: String,
        /// The hash function of the HMAC.
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// How the signature is written in the header.
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Text before the signature in the header, e.g. "sha256=".
        #[serde(default)]
        prefix: Option<String>,
        /// What is signed: a template over `{body}` and `{timestamp}`; default "{body}".
        #[serde(default)]
        signed_content: Option<String>,
        /// Header holding the timestamp; required when the template uses {timestamp}.
        #[serde(default)]
        timestamp_header: Option<String>,
        /// When set (and a timestamp header is configured), timestamps further than this from
        /// now (either way) are refused.
        #[serde(default)]
        tolerance_secs: Option<u64>,
    },
    /// Standard Webhooks (webhook-id / webhook-timestamp / webhook-signature), secret
    /// `whsec_…`. Default tolerance 300 s.
    StandardWebhooks {
        /// How far the timestamp may be from now, either way (300 s when absent).
        #[serde(default)]
        tolerance_secs: Option<u64>,
    },
    /// Stripe: `Stripe-Signature: t=…,v1=…[,v1=…][,v0=…]`, HMAC-SHA256 hex over "{t}.{body}"
    /// keyed with the endpoint secret string as bytes (NOT base64-decoded, even though it
    /// starts with whsec_). Default tolerance 300 s.
    Stripe {
        /// How far the timestamp may be from now, either way (300 s when absent).
        #[serde(default)]
        tolerance_secs: Option<u64>,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
    Github {},
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>`.
    Shopify {},
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{body}">`,
    /// timestamps older/newer than 5 minutes refused.
    Slack {},
}

/// The hash function of a generic HMAC signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1: only for senders that offer nothing better.
    Sha1,
    /// HMAC-SHA256, what most senders use.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic HMAC signature is written in its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// What verification reads of a request. Header names are lowercase; a header may appear
/// several times.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// The request's headers in arrival order, names lowercase.
    pub headers: &'a [(String, String)],
    /// The raw query string without '?', if any.
    pub query: Option<&'a str>,
    /// The raw body, exactly as received (signatures cover these bytes).
    pub body: &'a [u8],
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The server's clock, in seconds since 1970.
    pub now_unix: i64,
}

/// Why a request was refused, as a stable code for logs, metrics and API responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// A header, query parameter or credential the check needs is absent.
    MissingCredentials,
    /// The credential is present but not in the expected form.
    Malformed,
    /// The signed timestamp is too far from now (a replay or a wrong clock).
    StaleTimestamp,
    /// The token, password or signature does not match any active secret.
    Mismatch,
    /// The client address is not on the allow list.
    AddressNotAllowed,
    /// The hook has no usable secret, so nothing can verify.
    NoSecret,
}

impl DenyReason {
    /// The snake_case code, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::Malformed => "malformed",
            Self::StaleTimestamp => "stale_timestamp",
            Self::Mismatch => "mismatch",
            Self::AddressNotAllowed => "address_not_allowed",
            Self::NoSecret => "no_secret",
        }
    }
}

/// A refused request: the code, and a sentence for the sender's operator naming what is
/// wrong. The sentence never contains a secret, an expected signature or a received token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// Why, as a stable code.
    pub reason: DenyReason,
    /// Why, for a human.
    pub message: String,
}

impl Denied {
    pub(crate) fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl Verification {
    /// The serde tag of this kind (`"token"`, `"standard_webhooks"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Basic { .. } => "basic",
            Self::IpAllowList { .. } => "ip_allow_list",
            Self::Hmac { .. } => "hmac",
            Self::StandardWebhooks { .. } => "standard_webhooks",
            Self::Stripe { .. } => "stripe",
            Self::Github {} => "github",
            Self::Shopify {} => "shopify",
            Self::Slack {} => "slack",
        }
    }

    /// Whether this check needs a secret; only the IP allow list does not.
    pub fn needs_secret(&self) -> bool {
        !matches!(self, Self::IpAllowList { .. })
    }
}

/// Decide whether a request passes one check.
///
/// `secrets` are the hook's active secrets (one, or two while a secret is rotated); the
/// request passes if it verifies under any of them. Every candidate pair is compared in
/// constant time, without stopping at the first match.
pub fn verify(v: &Verification, secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    if let Verification::IpAllowList {
        allow,
        trusted_proxies,
    } = v
    {
        return credentials::ip_allow_list(allow, trusted_proxies, req);
    }
    // An empty secret would let an empty token in; it counts as no secret at all.
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(Denied::new(
            DenyReason::NoSecret,
            format!(
                "the inbound hook has no secret configured for its `{}` check",
                v.kind()
            ),
        ));
    }
    presets::verify_with_secrets(v, &secrets, req)
}

/// The headers whose values must be redacted when a request to a hook with this check is
/// logged (lowercase).
pub fn secret_header_names(v: &Verification) -> Vec<String> {
    match v {
        Verification::Token {
            header: Some(h), ..
        } => vec![h.to_ascii_lowercase()],
        Verification::Basic { .. } => vec!["authorization".to_owned()],
        _ => Vec::new(),
    }
}

/// The query parameters whose values must be redacted when a request to a hook with this
/// check is logged.
pub fn secret_query_names(v: &Verification) -> Vec<String> {
    match v {
        Verification::Token { query: Some(q), .. } => vec![q.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
