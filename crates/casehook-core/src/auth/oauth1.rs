//! OAuth 1.0a request signing (RFC 5849): the `Authorization: OAuth …` header for a request
//! made with client (consumer) credentials and, usually, token credentials.
//!
//! Some APIs still authenticate every call this way, so a connection must be able to sign
//! each outgoing request. Only the signing is here — HMAC-SHA1 (RFC 5849 §3.4.2) and the
//! widespread HMAC-SHA256 variant; the redirection-based flows that obtain tokens (§2) are
//! out of scope, and so are PLAINTEXT and RSA-SHA1.
//!
//! The signature covers the method, the base string URI, the query parameters, the
//! protocol parameters and — only for a single-part `application/x-www-form-urlencoded`
//! body — the body parameters (§3.4.1). The caller supplies the nonce and the timestamp, so
//! the result is deterministic and checked against the RFC's own examples.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode};
use sha1::Sha1;
use sha2::Sha256;

use super::RequestParts;

/// RFC 5849 §3.6: everything but the unreserved characters `ALPHA DIGIT - . _ ~` is
/// percent-encoded, with upper-case hex digits.
const UNRESERVED_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The protocol parameters [`authorization`] sets itself; a request that already carries one
/// in its query or body would send it twice.
const OWN_PROTOCOL_PARAMETERS: [&str; 7] = [
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_signature",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_version",
];

/// The signature method: which HMAC signs the base string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `HMAC-SHA1`, the method RFC 5849 §3.4.2 defines.
    HmacSha1,
    /// `HMAC-SHA256`: the same construction with SHA-256, as many providers now require.
    HmacSha256,
}

impl SignatureMethod {
    /// The value of `oauth_signature_method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC-SHA1",
            Self::HmacSha256 => "HMAC-SHA256",
        }
    }
}

/// Client credentials and, when acting for a resource owner, token credentials.
///
/// `Debug` shows the identifiers but never the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The client identifier (`oauth_consumer_key`).
    pub consumer_key: String,
    /// The client shared secret.
    pub consumer_secret: String,
    /// The token identifier (`oauth_token`); `None` for requests made with client
    /// credentials only.
    pub token: Option<String>,
    /// The token shared secret; `None` signs with an empty token secret.
    pub token_secret: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "**redacted**";
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &REDACTED)
            .field("token", &self.token)
            .field(
                "token_secret",
                &self.token_secret.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// The per-request values the caller chooses.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    /// `oauth_nonce`: a random string, unique for this timestamp and client.
    pub nonce: &'a str,
    /// `oauth_timestamp`: seconds since the Unix epoch.
    pub timestamp: u64,
    /// The optional `realm` of the header; it is not signed.
    pub realm: Option<&'a str>,
    /// The signature method.
    pub method: SignatureMethod,
}

/// Why a request cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuth1Error {
    /// The URL has no host (e.g. `mailto:`), so it has no base string URI.
    #[error("the URL has no host, so it cannot be signed with OAuth 1.0a")]
    NoHost,
    /// The query or form body already holds a protocol parameter this signer sets.
    #[error("the request already carries the OAuth protocol parameter `{0}` in its query or body")]
    ProtocolParameterInRequest(String),
    /// The realm holds a control character, which cannot go into a header.
    #[error("the OAuth realm contains a control character")]
    InvalidRealm,
    /// The HMAC implementation refused the key (HMAC takes keys of any length, so this is
    /// not expected to happen).
    #[error("the HMAC key was rejected")]
    Key,
}

/// The `Authorization` header value for `request`: `OAuth realm="…", oauth_consumer_key="…",
/// …, oauth_signature="…"`, every protocol value percent-encoded (RFC 5849 §3.5.1).
///
/// The protocol parameters are `oauth_consumer_key`, `oauth_token` (when there is a token),
/// `oauth_signature_method`, `oauth_timestamp`, `oauth_nonce` and `oauth_version="1.0"`.
pub fn authorization(
    request: &RequestParts<'_>,
    credentials: &Credentials,
    params: Params<'_>,
) -> Result<String, OAuth1Error> {
    let realm = params.realm.map(quote_realm).transpose()?;
    for (name, _) in query_parameters(request.url)
        .into_iter()
        .chain(body_parameters(request))
    {
        if let Some(own) = OWN_PROTOCOL_PARAMETERS
            .iter()
            .find(|own| own.as_bytes() == name.as_slice())
        {
            return Err(OAuth1Error::ProtocolParameterInRequest((*own).to_owned()));
        }
    }

    let timestamp = params.timestamp.to_string();
    let mut protocol: Vec<(&str, &str)> = vec![("oauth_consumer_key", &credentials.consumer_key)];
    if let Some(token) = &credentials.token {
        protocol.push(("oauth_token", token));
    }
    protocol.extend([
        ("oauth_signature_method", params.method.name()),
        ("oauth_timestamp", &timestamp),
        ("oauth_nonce", params.nonce),
        ("oauth_version", "1.0"),
    ]);

    let base = signature_base_string(request, &protocol)?;
    let signature = signature(&base, credentials, params.method)?;
    protocol.push(("oauth_signature", &signature));

    let mut header = String::from("OAuth ");
    if let Some(realm) = realm {
        header.push_str("realm=");
        header.push_str(&realm);
        header.push_str(", ");
    }
    let fields: Vec<String> = protocol
        .iter()
        .map(|(name, value)| {
            format!(
                "{}=\"{}\"",
                encode(name.as_bytes()),
                encode(value.as_bytes())
            )
        })
        .collect();
    header.push_str(&fields.join(", "));
    Ok(header)
}

/// The signature base string of RFC 5849 §3.4.1:
/// `METHOD&enc(base string URI)&enc(normalized parameters)`.
///
/// `protocol_params` are the `oauth_*` parameters that will be sent (in the header);
/// `realm` and `oauth_signature` among them are ignored, as is `oauth_signature` in the
/// query or body. Body parameters count only when the request has
/// `Content-Type: application/x-www-form-urlencoded`.
pub fn signature_base_string(
    request: &RequestParts<'_>,
    protocol_params: &[(&str, &str)],
) -> Result<String, OAuth1Error> {
    let base_uri = base_string_uri(request.url)?;

    let mut pairs: Vec<(String, String)> = query_parameters(request.url)
        .into_iter()
        .chain(body_parameters(request))
        .filter(|(name, _)| name.as_slice() != b"oauth_signature")
        .map(|(name, value)| (encode(&name), encode(&value)))
        .chain(
            protocol_params
                .iter()
                .filter(|(name, _)| *name != "realm" && *name != "oauth_signature")
                .map(|(name, value)| (encode(name.as_bytes()), encode(value.as_bytes()))),
        )
        .collect();
    pairs.sort();
    let normalized: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();

    Ok(format!(
        "{}&{}&{}",
        encode(request.method.to_ascii_uppercase().as_bytes()),
        encode(base_uri.as_bytes()),
        encode(normalized.join("&").as_bytes()),
    ))
}

/// The base64 `oauth_signature` of a signature base string (RFC 5849 §3.4.2): the HMAC
/// keyed with `enc(consumer_secret)&enc(token_secret)`.
pub fn signature(
    base_string: &str,
    credentials: &Credentials,
    method: SignatureMethod,
) -> Result<String, OAuth1Error> {
    let key = format!(
        "{}&{}",
        encode(credentials.consumer_secret.as_bytes()),
        encode(credentials.token_secret.as_deref().unwrap_or("").as_bytes()),
    );
    let mac = match method {
        SignatureMethod::HmacSha1 => hmac::<Hmac<Sha1>>(key.as_bytes(), base_string.as_bytes()),
        SignatureMethod::HmacSha256 => hmac::<Hmac<Sha256>>(key.as_bytes(), base_string.as_bytes()),
    }
    .ok_or(OAuth1Error::Key)?;
    Ok(STANDARD.encode(mac))
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}

/// RFC 5849 §3.6 encoding of raw bytes (UTF-8 for text).
fn encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, UNRESERVED_KEPT).to_string()
}

/// §3.4.1.2: scheme and host in lower case (the `url` crate already normalizes them), the
/// port only when it is not the scheme's default, the path, and no query or fragment.
fn base_string_uri(url: &url::Url) -> Result<String, OAuth1Error> {
    let host = url.host_str().ok_or(OAuth1Error::NoHost)?;
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    Ok(format!(
        "{}://{}{}{}",
        url.scheme(),
        host.to_ascii_lowercase(),
        port,
        url.path()
    ))
}

fn query_parameters(url: &url::Url) -> Vec<(Vec<u8>, Vec<u8>)> {
    url.query()
        .map(|q| parse_form(q.as_bytes()))
        .unwrap_or_default()
}

/// §3.4.1.3.1: the body counts only when it is single-part form-urlencoded, as declared by
/// the request's `Content-Type` (parameters such as `charset` allowed).
fn body_parameters(request: &RequestParts<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let is_form = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .is_some_and(|(_, value)| {
            let media_type = value.split(';').next().unwrap_or("").trim();
            media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if is_form {
        parse_form(request.body)
    } else {
        Vec::new()
    }
}

/// Decodes `application/x-www-form-urlencoded` into raw byte pairs: `+` is a space, `%XX` a
/// byte, a pair without `=` has an empty value. Working on bytes keeps non-UTF-8 values
/// exact when they are encoded again.
fn parse_form(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let name = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(part: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus_as_space).collect()
}

/// The realm as an RFC 2617 quoted-string (it is not percent-encoded, as in the RFC's own
/// examples); control characters are refused so the header cannot be split.
fn quote_realm(realm: &str) -> Result<String, OAuth1Error> {
    if realm.chars().any(|c| c.is_control() && c != '\t') {
        return Err(OAuth1Error::InvalidRealm);
    }
    let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{escaped}\""))
}

#[cfg(test)]
mod tests;
