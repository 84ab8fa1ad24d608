//! What the verifiers share: constant-time comparison, HMACs, signature decoding, timestamp
//! freshness, and the refusals they word alike.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

use super::request::present_values;
use super::{Denied, DenyReason, HmacAlgorithm, RequestView, SignatureEncoding};

/// Standard alphabet, padding optional: senders differ on `=` and it changes nothing.
pub(super) const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The refusal for an absent credential; `place` names it ("the `X-Token` header").
pub(super) fn missing(place: &str) -> Denied {
    Denied::new(
        DenyReason::MissingCredentials,
        format!("{place} is missing"),
    )
}

/// The first value of a timestamp header; `shown` is its name as messages print it.
pub(super) fn timestamp_value<'a>(
    req: &'a RequestView<'_>,
    name: &'a str,
    shown: &str,
) -> Result<&'a str, Denied> {
    present_values(req, name)
        .first()
        .copied()
        .ok_or_else(|| missing(&format!("the {shown} header")))
}

/// Seconds since 1970 as plain digits: `+5` or `1e9` would have been signed as other text.
pub(super) fn parse_unix(raw: &str, what: &str) -> Result<i64, Denied> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let parsed = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        Denied::new(
            DenyReason::Malformed,
            format!("{what} is not a whole number of seconds since 1970"),
        )
    })
}

/// Refuse a timestamp further than `tolerance` seconds from now: too old is a possible
/// replay, too new a wrong clock.
pub(super) fn check_fresh(ts: i64, now: i64, tolerance: u64, what: &str) -> Result<(), Denied> {
    let tolerance_i = i64::try_from(tolerance).unwrap_or(i64::MAX);
    let age = now.saturating_sub(ts);
    if age > tolerance_i {
        return Err(Denied::new(
            DenyReason::StaleTimestamp,
            format!("the {what} is {age} s old; at most {tolerance} s is accepted"),
        ));
    }
    let ahead = ts.saturating_sub(now);
    if ahead > tolerance_i {
        return Err(Denied::new(
            DenyReason::StaleTimestamp,
            format!(
                "the {what} is {ahead} s in the future; at most {tolerance} s is accepted \
                 (is the sender's clock wrong?)"
            ),
        ));
    }
    Ok(())
}

/// The signatures that decode; the others can match nothing and are dropped.
pub(super) fn decode_all(texts: Vec<&str>, encoding: SignatureEncoding) -> Vec<Vec<u8>> {
    texts
        .into_iter()
        .filter_map(|t| match encoding {
            SignatureEncoding::Hex => hex::decode(t.trim()).ok(),
            SignatureEncoding::Base64 => LENIENT_BASE64.decode(t.trim()).ok(),
        })
        .filter(|sig| !sig.is_empty())
        .collect()
}

/// Whether any candidate equals any expected value. Every pair is compared, in constant time,
/// without an early exit.
pub(super) fn any_match(expected: &[Vec<u8>], candidates: &[Vec<u8>]) -> bool {
    let mut matched = Choice::from(0);
    for want in expected {
        for got in candidates {
            matched |= want.as_slice().ct_eq(got.as_slice());
        }
    }
    bool::from(matched)
}

/// The HMAC each secret (its text as key bytes) gives over the concatenated `parts`.
pub(super) fn macs(algorithm: HmacAlgorithm, secrets: &[&str], parts: &[&[u8]]) -> Vec<Vec<u8>> {
    secrets
        .iter()
        .filter_map(|s| match algorithm {
            HmacAlgorithm::Sha1 => mac::<Hmac<Sha1>>(s.as_bytes(), parts),
            HmacAlgorithm::Sha256 => mac::<Hmac<Sha256>>(s.as_bytes(), parts),
            HmacAlgorithm::Sha512 => mac::<Hmac<Sha512>>(s.as_bytes(), parts),
        })
        .collect()
}

fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    // HMAC takes keys of any length, so this cannot fail; `None` keeps it panic-free.
    let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

pub(super) fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}
