//! Standard Webhooks signatures: the signing secret (`whsec_…`), signing an outgoing message
//! and verifying an incoming one.
//!
//! The scheme is fixed by the specification (<https://www.standardwebhooks.com/>) so that any
//! receiver using an official Standard Webhooks library verifies our messages unchanged:
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, where the key
//! is the base64-decoded part of the secret after `whsec_`. Several signatures may be sent,
//! space-separated, so that a secret can be rotated without downtime.
//!
//! Pure functions only: the caller supplies the clock (`now_unix`) and reads the headers.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix that marks a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signature version of HMAC-SHA256 signatures; others (`v1a`, ed25519) are skipped.
pub const SIGNATURE_VERSION: &str = "v1";

/// The tolerance the reference libraries use for `webhook-timestamp`: five minutes each way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// Bytes of key material in a generated secret (the spec asks for at least 24).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// The longest key accepted: the spec's maximum of 512 bits.
pub const MAX_SECRET_BYTES: usize = 64;

/// Standard alphabet, padding optional: secrets pasted from other providers' consoles come
/// both with and without `=` padding, and both mean the same key.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A symmetric signing secret. Its `Debug` never shows the key, and it is deliberately not
/// `Serialize`: writing it out must be an explicit `to_whsec()`.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

/// Why a signing secret was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the signing secret is empty")]
    Empty,
    #[error(
        "the signing secret is not valid base64 (expected `whsec_` followed by base64, e.g. `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`)"
    )]
    NotBase64,
    #[error("the signing secret decodes to {0} bytes; at most {MAX_SECRET_BYTES} are allowed")]
    TooLong(usize),
}

impl SigningSecret {
    /// Parse `whsec_<base64>`. The prefix is optional on input, as in the reference libraries
    /// (some providers show the bare base64); surrounding whitespace from copy-paste is ignored.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let s = s.trim();
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = LENIENT_BASE64
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(&key)
    }

    /// A secret from raw key bytes (1 to 64 of them).
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretError> {
        match key.len() {
            0 => Err(SecretError::Empty),
            n if n > MAX_SECRET_BYTES => Err(SecretError::TooLong(n)),
            _ => Ok(Self { key: key.to_vec() }),
        }
    }

    /// A fresh secret of 32 random bytes from the thread-local CSPRNG (seeded by the OS).
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// The secret as users see and paste it: `whsec_` + standard base64 (with padding).
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the
        // signature well-defined without a panic path.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(**redacted**)")
    }
}

impl PartialEq for SigningSecret {
    /// Constant-time, so comparing a guess with a stored secret leaks nothing.
    fn eq(&self, other: &Self) -> bool {
        self.key.ct_eq(&other.key).into()
    }
}

impl Eq for SigningSecret {}

impl FromStr for SigningSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The `v1,<base64>` signature of one message with one secret.
///
/// `msg_id` must not contain `.` (the spec's separator); ours are `msg_…` identifiers we make.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = secret.mac(msg_id, timestamp, body);
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(mac))
}

/// The `webhook-signature` header value: one signature per secret, space-separated. During a
/// rotation's overlap window pass the new and the old secret, so receivers holding either
/// one verify the message.
pub fn signature_header(
    secrets: &[&SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a message failed verification. The messages name the header at fault, since they are
/// shown to whoever configured the sender.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no signing secret is configured to verify with")]
    NoSecret,
    #[error("the `{0}` header is missing or empty")]
    MissingHeader(&'static str),
    #[error("the `webhook-timestamp` header is not a whole number of seconds since 1970: `{0}`")]
    BadTimestamp(String),
    #[error(
        "the `webhook-timestamp` is {age_secs} s in the past; at most {tolerance_secs} s is accepted (replayed message or wrong clock)"
    )]
    TooOld { age_secs: i64, tolerance_secs: i64 },
    #[error(
        "the `webhook-timestamp` is {ahead_secs} s in the future; at most {tolerance_secs} s is accepted (wrong clock)"
    )]
    TooNew {
        ahead_secs: i64,
        tolerance_secs: i64,
    },
    #[error(
        "the `webhook-signature` header holds no `v1,<base64>` signature (signatures are `v1,` followed by base64, space-separated)"
    )]
    NoV1Signature,
    #[error(
        "no `v1` signature matches: the body, `webhook-id` or `webhook-timestamp` was altered, or the secret differs"
    )]
    NoMatch,
}

/// Verify a Standard Webhooks message.
///
/// Accepts when any `v1` signature in `signature_header` matches the message under any of
/// `secrets` (a receiver mid-rotation holds two). Other versions (such as `v1a`) and
/// malformed entries are skipped, as the spec requires for forward compatibility. The
/// timestamp must lie within `tolerance_secs` of `now_unix` in both directions: too old is
/// a possible replay, too new a wrong clock. Signatures are compared in constant time.
pub fn verify(
    secrets: &[&SigningSecret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    // Header parsers strip surrounding whitespace already; trimming again only serves
    // callers that read headers by hand. The id itself is signed exactly as given.
    let timestamp_header = timestamp_header.trim();
    if msg_id.trim().is_empty() {
        return Err(VerifyError::MissingHeader("webhook-id"));
    }
    if timestamp_header.is_empty() {
        return Err(VerifyError::MissingHeader("webhook-timestamp"));
    }
    if signature_header.trim().is_empty() {
        return Err(VerifyError::MissingHeader("webhook-signature"));
    }
    let timestamp = parse_timestamp(timestamp_header)?;
    check_timestamp(timestamp, now_unix, tolerance_secs)?;

    let candidates: Vec<Vec<u8>> = signature_header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, sig)| LENIENT_BASE64.decode(sig).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoV1Signature);
    }
    // Every pair is compared (no early exit), so timing says nothing about which one matched.
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = secret.mac(msg_id, timestamp, body);
        for candidate in &candidates {
            matched |= expected.as_slice().ct_eq(candidate);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

fn parse_timestamp(header: &str) -> Result<i64, VerifyError> {
    // Only plain digits (with an optional minus) are a valid timestamp: `+5` or `1e9` would
    // sign a different string than the sender's.
    let digits = header.strip_prefix('-').unwrap_or(header);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp(shorten(header)));
    }
    header
        .parse::<i64>()
        .map_err(|_| VerifyError::BadTimestamp(shorten(header)))
}

fn check_timestamp(timestamp: i64, now_unix: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let age = now_unix.saturating_sub(timestamp);
    if age > tolerance_secs {
        return Err(VerifyError::TooOld {
            age_secs: age,
            tolerance_secs,
        });
    }
    let ahead = timestamp.saturating_sub(now_unix);
    if ahead > tolerance_secs {
        return Err(VerifyError::TooNew {
            ahead_secs: ahead,
            tolerance_secs,
        });
    }
    Ok(())
}

/// Header values are echoed in errors; a hostile sender's megabyte header is not.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests;
