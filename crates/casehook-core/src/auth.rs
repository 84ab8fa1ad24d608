//! Request signing for API connections: the pure parts of the auth methods whose proof
//! depends on the request itself — AWS Signature Version 4, OAuth 1.0a (RFC 5849) and HTTP
//! Digest (RFC 7616).
//!
//! Everything here is deterministic: the caller passes the clock and any nonce, so each
//! algorithm is checked against its published test vectors. Sending, token fetching and
//! retrying after a challenge belong to the outbound client.

pub mod digest;
pub mod oauth1;
pub mod sigv4;

/// The parts of an outgoing request a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// Upper-case method, e.g. `GET`.
    pub method: &'a str,
    /// The full URL, query included, exactly as it will be sent.
    pub url: &'a url::Url,
    /// Headers that will be sent (names in any case), before the signature's own.
    pub headers: &'a [(String, String)],
    /// The body that will be sent (empty for none).
    pub body: &'a [u8],
}
