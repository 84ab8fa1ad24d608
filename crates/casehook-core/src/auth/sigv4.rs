//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) for API connections whose auth method is
//! "AWS": API Gateway with IAM auth, Lambda function URLs, S3 and any other AWS endpoint.
//!
//! SigV4 proves knowledge of a secret key by an HMAC over a canonical form of the request, so
//! the signature depends on the request itself and must be computed per request. The steps
//! follow AWS's "Create a signed AWS API request" and are each public, so a mismatch reported
//! by AWS (its error carries the canonical request and string to sign it computed) can be
//! compared piece by piece:
//!
//! 1. [`canonical_request`]: method, canonical URI, canonical query, canonical headers, the
//!    list of signed headers and the hex SHA-256 of the body;
//! 2. [`string_to_sign`]: algorithm, timestamp, credential scope and the hash of step 1;
//! 3. [`signing_key`]: an HMAC chain over date, region, service and `aws4_request`;
//! 4. [`signature`]: HMAC of step 2 under the key of step 3.
//!
//! [`sign`] runs them all and returns the headers to add to the request.
//!
//! The canonical URI follows the SDKs: for every service but S3 the path, exactly as it goes on
//! the wire (already percent-encoded once), is normalized (RFC 3986 dot segments removed,
//! empty segments dropped) and each segment is percent-encoded again — AWS's "double
//! encoding". S3 keys are taken literally: no normalization, one encoding. In the query, `+`
//! means a space, as servers decode it. Checked against AWS's SigV4 test suite (`tests.rs`),
//! whose request lines carry raw paths (`/example space/`): those are what
//! [`canonical_request`] takes; a `url::Url` holds them encoded, so [`sign`] encodes them twice.
//!
//! Pure and deterministic: the caller passes the clock; nothing is sent from here.

use std::fmt;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::RequestParts;

/// The algorithm name at the head of the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers the signer produces; a request may not bring its own.
const RESERVED_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An AWS access key, with the session token of temporary (STS) credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id, e.g. `AKIAIOSFODNN7EXAMPLE`; sent in the clear.
    pub access_key_id: String,
    /// The secret access key; never sent, never printed.
    pub secret_access_key: String,
    /// The session token of temporary credentials, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"**redacted**")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "**redacted**"),
            )
            .finish()
    }
}

/// Where a signature is valid: the region (`us-east-1`) and service (`execute-api`, `s3`,
/// `lambda`, …) of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The region the request goes to, e.g. `eu-west-1`.
    pub region: &'a str,
    /// The signing name of the service, e.g. `execute-api`.
    pub service: &'a str,
}

/// Why a request could not be signed. Messages name headers but never show values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The access key id is empty.
    #[error("the AWS access key id is empty")]
    EmptyAccessKeyId,
    /// The access key id has a control character (it goes into the `Authorization` header).
    #[error("the AWS access key id has a control character")]
    InvalidAccessKeyId,
    /// The secret access key is empty.
    #[error("the AWS secret access key is empty")]
    EmptySecretAccessKey,
    /// A session token is given but empty.
    #[error("the AWS session token is empty")]
    EmptySessionToken,
    /// The region is not of the form `[a-z0-9-]+`.
    #[error("the AWS region {0:?} is not made of a-z, 0-9 and '-'")]
    InvalidRegion(String),
    /// The service is not of the form `[a-z0-9-]+`.
    #[error("the AWS service {0:?} is not made of a-z, 0-9 and '-'")]
    InvalidService(String),
    /// A header name is empty or not an HTTP token.
    #[error("the header name {0:?} is not a valid HTTP header name")]
    InvalidHeaderName(String),
    /// A header value (or the session token) contains CR or LF.
    #[error("the value of header {0} contains a line break")]
    HeaderValueLineBreak(String),
    /// The request sets a header the signer produces.
    #[error("the header {0} is set by the AWS signer and cannot be given")]
    ReservedHeader(String),
    /// The URL has no host to sign.
    #[error("the URL has no host")]
    MissingHost,
    /// The clock is outside the years 0000–9999 that the timestamp format can express.
    #[error("the signing time is outside the years 0000-9999")]
    DateOutOfRange,
}

/// The canonical request of step 1 and the `SignedHeaders` list it ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// The canonical request, lines joined by `\n` (no trailing newline).
    pub text: String,
    /// The lower-case names of the signed headers, sorted and joined by `;`.
    pub signed_headers: String,
}

/// Signs `request` at `now` and returns the headers to add to it: `Authorization`,
/// `X-Amz-Date`, `X-Amz-Security-Token` (with temporary credentials) and, for S3 only,
/// `X-Amz-Content-Sha256`.
///
/// Every header in `request.headers` is signed, plus `host` — taken from the URL (with its
/// port when not the scheme's default) unless the request gives its own `Host` — and the
/// added `x-amz-*` headers. The request must be sent with exactly these headers, URL and
/// body; the HTTP client derives `Host` from the URL, so it is not returned. The request may
/// not carry `Authorization` or the `x-amz-*` headers above itself.
pub fn sign(
    request: &RequestParts<'_>,
    credentials: &Credentials,
    scope: Scope<'_>,
    now: OffsetDateTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    validate(credentials, scope)?;
    let amz_date = amz_date(now)?;
    let payload_hash = hex::encode(Sha256::digest(request.body));

    let mut added = vec![("X-Amz-Date".to_owned(), amz_date.clone())];
    if let Some(token) = &credentials.session_token {
        added.push(("X-Amz-Security-Token".to_owned(), token.clone()));
    }
    if is_s3(scope.service) {
        added.push(("X-Amz-Content-Sha256".to_owned(), payload_hash.clone()));
    }

    let mut headers: Vec<(String, String)> = Vec::with_capacity(request.headers.len() + 4);
    for (name, value) in request.headers {
        if RESERVED_HEADERS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
        {
            return Err(SigV4Error::ReservedHeader(name.to_ascii_lowercase()));
        }
        headers.push((name.clone(), value.clone()));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        headers.push(("Host".to_owned(), host_of(request.url)?));
    }
    headers.extend(added.iter().cloned());

    let canonical = canonical_request(
        request.method,
        request.url.path(),
        request.url.query().unwrap_or(""),
        &headers,
        &payload_hash,
        scope.service,
    )?;
    let to_sign = string_to_sign(&amz_date, scope, &canonical.text);
    let key = signing_key(&credentials.secret_access_key, day(&amz_date), scope);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        credentials.access_key_id,
        credential_scope(&amz_date, scope),
        canonical.signed_headers,
        signature(&key, &to_sign),
    );
    let mut out = Vec::with_capacity(added.len() + 1);
    out.push(("Authorization".to_owned(), authorization));
    out.extend(added);
    Ok(out)
}

/// Step 1: the canonical request.
///
/// `path` and `query` are as on the request line (the query without `?`, `""` for none);
/// `headers` are all the headers to sign, `host` and `x-amz-date` included, in any case and
/// order (repeated names are joined by `,` in the given order); `payload_hash` is the hex
/// SHA-256 of the body (or `UNSIGNED-PAYLOAD` where a service allows it); `service` selects
/// the S3 rules for the URI.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
    service: &str,
) -> Result<CanonicalRequest, SigV4Error> {
    let mut lines: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(SigV4Error::InvalidHeaderName(name.clone()));
        }
        if value.contains(['\r', '\n']) {
            return Err(SigV4Error::HeaderValueLineBreak(name.to_ascii_lowercase()));
        }
        lines.push((name.to_ascii_lowercase(), canonical_header_value(value)));
    }
    // Stable: values of a repeated header keep their order.
    lines.sort_by(|a, b| a.0.cmp(&b.0));

    // One `name:value\n` line per name, the values of a repeated name joined by `,`.
    let mut block = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in &lines {
        if names.last() == Some(&name.as_str()) {
            block.pop();
            block.push(',');
        } else {
            block.push_str(name);
            block.push(':');
            names.push(name);
        }
        block.push_str(value);
        block.push('\n');
    }
    let signed_headers = names.join(";");
    let text = format!(
        "{method}\n{}\n{}\n{block}\n{signed_headers}\n{payload_hash}",
        canonical_uri(path, service),
        canonical_query(query),
    );
    Ok(CanonicalRequest {
        text,
        signed_headers,
    })
}

/// Step 2: the string to sign for a canonical request, at `amz_date` (`YYYYMMDD'T'HHMMSS'Z'`).
pub fn string_to_sign(amz_date: &str, scope: Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        credential_scope(amz_date, scope),
        hex::encode(Sha256::digest(canonical_request.as_bytes())),
    )
}

/// Step 3: the signing key for a secret on a day (`date` is `YYYYMMDD`) in a scope. It is
/// valid for that whole day, region and service.
pub fn signing_key(secret_access_key: &str, date: &str, scope: Scope<'_>) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret_access_key}").as_bytes(), date);
    let k_region = hmac_sha256(&k_date, scope.region);
    let k_service = hmac_sha256(&k_region, scope.service);
    hmac_sha256(&k_service, "aws4_request")
}

/// Step 4: the hex signature of a string to sign under a signing key.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign))
}

/// The `X-Amz-Date` form of a time: `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub fn amz_date(now: OffsetDateTime) -> Result<String, SigV4Error> {
    let t = now.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return Err(SigV4Error::DateOutOfRange);
    }
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(format).map_err(|_| SigV4Error::DateOutOfRange)
}

fn validate(credentials: &Credentials, scope: Scope<'_>) -> Result<(), SigV4Error> {
    if credentials.access_key_id.is_empty() {
        return Err(SigV4Error::EmptyAccessKeyId);
    }
    if credentials.access_key_id.chars().any(char::is_control) {
        return Err(SigV4Error::InvalidAccessKeyId);
    }
    if credentials.secret_access_key.is_empty() {
        return Err(SigV4Error::EmptySecretAccessKey);
    }
    if let Some(token) = &credentials.session_token {
        if token.is_empty() {
            return Err(SigV4Error::EmptySessionToken);
        }
        if token.contains(['\r', '\n']) {
            return Err(SigV4Error::HeaderValueLineBreak(
                "x-amz-security-token".into(),
            ));
        }
    }
    let scope_name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !scope_name(scope.region) {
        return Err(SigV4Error::InvalidRegion(scope.region.to_owned()));
    }
    if !scope_name(scope.service) {
        return Err(SigV4Error::InvalidService(scope.service.to_owned()));
    }
    Ok(())
}

fn credential_scope(amz_date: &str, scope: Scope<'_>) -> String {
    let Scope { region, service } = scope;
    format!("{}/{region}/{service}/aws4_request", day(amz_date))
}

/// The `YYYYMMDD` day of an `X-Amz-Date` timestamp.
fn day(amz_date: &str) -> &str {
    amz_date.get(..8).unwrap_or(amz_date)
}

fn is_s3(service: &str) -> bool {
    service == "s3"
}

/// `host[:port]` of a URL, the port only when it is not the scheme's default.
fn host_of(url: &url::Url) -> Result<String, SigV4Error> {
    let host = url.host_str().ok_or(SigV4Error::MissingHost)?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// The canonical URI of a request-line path; see the module documentation.
fn canonical_uri(path: &str, service: &str) -> String {
    let segments: Vec<String> = if is_s3(service) {
        // S3 object keys are literal: decode the wire form and encode it once, as S3 does.
        path.split('/').skip(1).map(reencode).collect()
    } else {
        let mut kept: Vec<&str> = Vec::new();
        let mut ends_with_slash = false;
        for segment in path.split('/') {
            ends_with_slash = matches!(segment, "" | "." | "..");
            match segment {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                s => kept.push(s),
            }
        }
        let mut encoded: Vec<String> = kept
            .into_iter()
            .map(|s| percent_encode(s.as_bytes(), ENCODE).to_string())
            .collect();
        if ends_with_slash && !encoded.is_empty() {
            encoded.push(String::new());
        }
        encoded
    };
    format!("/{}", segments.join("/"))
}

/// The canonical query: each name and value decoded (`+` as space) and encoded again, pairs
/// sorted by name then value, a missing `=` read as an empty value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (
                reencode(&name.replace('+', " ")),
                reencode(&value.replace('+', " ")),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-decodes `s` and encodes the bytes again with [`ENCODE`].
fn reencode(s: &str) -> String {
    let bytes: Vec<u8> = percent_decode(s.as_bytes()).collect();
    percent_encode(&bytes, ENCODE).to_string()
}

/// A header value trimmed of surrounding blanks, with runs of spaces collapsed to one.
fn canonical_header_value(value: &str) -> String {
    let words = value.trim_matches([' ', '\t']).split(' ');
    words
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hmac_sha256(key: &[u8], message: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the function
    // total without a panic path.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests;
