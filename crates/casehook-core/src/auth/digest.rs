//! HTTP Digest access authentication (RFC 7616, compatible with RFC 2617 and RFC 2069):
//! reading a server's `WWW-Authenticate` challenges and answering one with an
//! `Authorization: Digest …` header value.
//!
//! Some APIs and devices accept only Digest, which never sends the password: the client
//! proves it knows it by hashing it with the server's nonce and the request. The flow is
//! the outbound client's job (send, get a 401, [`parse_challenges`], [`choose`],
//! [`authorization`], send again, reuse the nonce with an increasing `nc`); the pieces here
//! are pure and checked against the RFCs' examples.
//!
//! Supported: algorithms MD5, SHA-256 and SHA-512-256 and their `-sess` variants, `qop=auth`
//! and challenges without `qop` (RFC 2069), `userhash`, and `username*` (RFC 8187) for
//! usernames that are not plain ASCII. Not supported: `qop=auth-int` (it would need the
//! body, and servers that offer it also offer `auth`) and algorithms outside RFC 7616.

use std::fmt;

use md5::Md5;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256, Sha512_256};

mod parse;

/// The RFC 8187 `attr-char`s, kept as they are in `username*`; the rest is `%XX`.
const ATTR_CHAR_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The hash algorithm of a challenge (RFC 7616 §3.3 `algorithm`; MD5 when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5`: the default, still the only one many servers offer.
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`: SHA-512/256 of FIPS 180-4 (not truncated SHA-512).
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    const ALL: [Self; 6] = [
        Self::Md5,
        Self::Md5Sess,
        Self::Sha256,
        Self::Sha256Sess,
        Self::Sha512_256,
        Self::Sha512_256Sess,
    ];

    /// The name as sent in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// The algorithm named `name` (case-insensitive), if it is one of RFC 7616's.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(name))
    }

    /// Whether this is a `-sess` variant, whose A1 also covers the nonce and cnonce.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Preference when a server offers several: stronger hashes first.
    fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
            Self::Sha512_256 | Self::Sha512_256Sess => 3,
        }
    }

    /// `H(data)` in lower-case hex.
    fn hash(self, data: &str) -> String {
        let data = data.as_bytes();
        match self {
            Self::Md5 | Self::Md5Sess => hex::encode(Md5::digest(data)),
            Self::Sha256 | Self::Sha256Sess => hex::encode(Sha256::digest(data)),
            Self::Sha512_256 | Self::Sha512_256Sess => hex::encode(Sha512_256::digest(data)),
        }
    }
}

/// A quality of protection a server offers (RFC 7616 §3.3 `qop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    /// `auth`: authentication of the method and request-target.
    Auth,
    /// `auth-int`: also covers the body; offered by some servers, not used by this client.
    AuthInt,
}

/// One `Digest` challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space, echoed back and hashed into A1.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Data the server wants back unchanged.
    pub opaque: Option<String>,
    /// The hash algorithm (MD5 when the challenge names none).
    pub algorithm: Algorithm,
    /// The offered qops (unknown values left out); `None` when the challenge has no `qop`,
    /// i.e. an RFC 2069 server.
    pub qop: Option<Vec<Qop>>,
    /// `stale=true`: the nonce expired but the credentials were right, so retry with the new
    /// nonce rather than report bad credentials.
    pub stale: bool,
    /// `userhash=true`: send `H(username:realm)` instead of the username.
    pub userhash: bool,
    /// `charset=UTF-8`: the server expects UTF-8 usernames and passwords (this client always
    /// encodes them as UTF-8).
    pub charset_utf8: bool,
}

impl Challenge {
    /// Whether [`authorization`] can answer this challenge: `qop=auth` offered, or no `qop`
    /// at all with a non-session algorithm.
    pub fn is_usable(&self) -> bool {
        match &self.qop {
            Some(offered) => offered.contains(&Qop::Auth),
            None => !self.algorithm.is_session(),
        }
    }
}

/// A username and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username, hashed into A1 and sent (or its hash, with `userhash`).
    pub username: String,
    /// The password; it is never sent.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"**redacted**")
            .finish()
    }
}

/// Why a challenge cannot be read or answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The header does not follow the `WWW-Authenticate` grammar.
    #[error("malformed WWW-Authenticate header at byte {at}: {reason}")]
    Malformed {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// A Digest challenge carries a token68 instead of parameters.
    #[error("a Digest challenge must carry parameters, not a token68")]
    Token68,
    /// A Digest challenge lacks a required parameter.
    #[error("a Digest challenge lacks the `{0}` parameter")]
    MissingParameter(&'static str),
    /// A Digest challenge repeats a parameter.
    #[error("a Digest challenge repeats the `{0}` parameter")]
    DuplicateParameter(String),
    /// The challenge offers `qop` values, but not `auth`.
    #[error("the Digest challenge offers no qop this client supports (only `auth` is)")]
    UnsupportedQop,
    /// A `-sess` algorithm without `qop`, which has no cnonce to hash.
    #[error("a Digest `-sess` algorithm needs a qop")]
    SessionWithoutQop,
    /// A value that cannot be sent: a method that is not a token, an empty URI or cnonce,
    /// or a control character.
    #[error("the Digest `{0}` value cannot be sent in a header")]
    InvalidValue(&'static str),
    /// `nc` counts requests with a nonce, starting at 1.
    #[error("the Digest nonce count must be at least 1")]
    ZeroNonceCount,
}

/// The `Digest` challenges of a `WWW-Authenticate` header value, in header order.
///
/// One header may hold several challenges (e.g. SHA-256 and MD5) and other schemes
/// (`Basic`, `Bearer`, …), which are skipped. So are Digest challenges with an algorithm
/// outside RFC 7616. A header that breaks the grammar, or a Digest challenge without
/// `realm` or `nonce`, is an error.
pub fn parse_challenges(www_authenticate: &str) -> Result<Vec<Challenge>, DigestError> {
    let mut out = Vec::new();
    for raw in parse::challenges(www_authenticate)? {
        if !raw.scheme.eq_ignore_ascii_case("Digest") {
            continue;
        }
        if raw.token68.is_some() {
            return Err(DigestError::Token68);
        }
        if let Some(challenge) = interpret(raw.params)? {
            out.push(challenge);
        }
    }
    Ok(out)
}

fn interpret(params: Vec<(String, String)>) -> Result<Option<Challenge>, DigestError> {
    for (i, (name, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(DigestError::DuplicateParameter(name.clone()));
        }
    }
    let get = |wanted: &str| {
        params
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    let is_true = |wanted: &str| get(wanted).is_some_and(|v| v.eq_ignore_ascii_case("true"));

    let realm = get("realm").ok_or(DigestError::MissingParameter("realm"))?;
    let nonce = get("nonce").ok_or(DigestError::MissingParameter("nonce"))?;
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(name) => match Algorithm::from_name(name) {
            Some(algorithm) => algorithm,
            None => return Ok(None),
        },
    };
    let qop = get("qop").map(|list| {
        list.split(',')
            .filter_map(|item| match item.trim() {
                q if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
                q if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
                _ => None,
            })
            .collect()
    });
    Ok(Some(Challenge {
        realm: realm.to_owned(),
        nonce: nonce.to_owned(),
        opaque: get("opaque").map(str::to_owned),
        algorithm,
        qop,
        stale: is_true("stale"),
        userhash: is_true("userhash"),
        charset_utf8: get("charset").is_some_and(|v| v.eq_ignore_ascii_case("UTF-8")),
    }))
}

/// The challenge to answer: the strongest usable one (SHA-512-256, then SHA-256, then
/// MD5), the first in header order on a tie. Challenges offering only `auth-int`, and
/// `-sess` ones without `qop`, are never chosen.
pub fn choose(challenges: &[Challenge]) -> Option<&Challenge> {
    let mut best: Option<&Challenge> = None;
    for challenge in challenges.iter().filter(|c| c.is_usable()) {
        if best.is_none_or(|b| challenge.algorithm.strength() > b.algorithm.strength()) {
            best = Some(challenge);
        }
    }
    best
}

/// The `Authorization` header value answering `challenge` (RFC 7616 §3.4), e.g.
/// `Digest username="Mufasa", realm="…", uri="/dir/index.html", algorithm=MD5, nonce="…",
/// nc=00000001, cnonce="…", qop=auth, response="…", opaque="…"`.
///
/// `method` is the request method, `uri` the request-target exactly as sent (path and
/// query), `nc` how many requests, this one included, have used this nonce, and `cnonce` a
/// fresh random string. Without `qop` (RFC 2069) `nc` and `cnonce` are not used.
pub fn authorization(
    challenge: &Challenge,
    credentials: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Result<String, DigestError> {
    let with_qop = match &challenge.qop {
        Some(offered) if offered.contains(&Qop::Auth) => true,
        Some(_) => return Err(DigestError::UnsupportedQop),
        None => false,
    };
    let algorithm = challenge.algorithm;
    if algorithm.is_session() && !with_qop {
        return Err(DigestError::SessionWithoutQop);
    }
    if method.is_empty() || !method.bytes().all(parse::is_tchar) {
        return Err(DigestError::InvalidValue("method"));
    }
    if uri.is_empty() {
        return Err(DigestError::InvalidValue("uri"));
    }
    if with_qop {
        if nc == 0 {
            return Err(DigestError::ZeroNonceCount);
        }
        if cnonce.is_empty() {
            return Err(DigestError::InvalidValue("cnonce"));
        }
    }

    let realm = &challenge.realm;
    let nonce = &challenge.nonce;
    let nc = format!("{nc:08x}");
    let h = |data: String| algorithm.hash(&data);

    let mut ha1 = h(format!(
        "{}:{realm}:{}",
        credentials.username, credentials.password
    ));
    if algorithm.is_session() {
        ha1 = h(format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = h(format!("{method}:{uri}"));
    let response = if with_qop {
        h(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        h(format!("{ha1}:{nonce}:{ha2}"))
    };

    let username = if challenge.userhash {
        format!(
            "username=\"{}\"",
            h(format!("{}:{realm}", credentials.username))
        )
    } else if credentials
        .username
        .bytes()
        .any(|b| !b.is_ascii() || parse::is_forbidden_control(b))
    {
        let encoded = utf8_percent_encode(&credentials.username, ATTR_CHAR_KEPT);
        format!("username*=UTF-8''{encoded}")
    } else {
        format!("username={}", quote("username", &credentials.username)?)
    };

    let mut fields = vec![
        username,
        format!("realm={}", quote("realm", realm)?),
        format!("uri={}", quote("uri", uri)?),
        format!("algorithm={}", algorithm.name()),
        format!("nonce={}", quote("nonce", nonce)?),
    ];
    if with_qop {
        fields.push(format!("nc={nc}"));
        fields.push(format!("cnonce={}", quote("cnonce", cnonce)?));
        fields.push("qop=auth".to_owned());
    }
    fields.push(format!("response=\"{response}\""));
    if let Some(opaque) = &challenge.opaque {
        fields.push(format!("opaque={}", quote("opaque", opaque)?));
    }
    if challenge.userhash {
        fields.push("userhash=true".to_owned());
    }
    Ok(format!("Digest {}", fields.join(", ")))
}

/// A quoted-string with `"` and `\` escaped; control characters are refused so that a value
/// can never end the header early.
fn quote(field: &'static str, value: &str) -> Result<String, DigestError> {
    if value.bytes().any(parse::is_forbidden_control) {
        return Err(DigestError::InvalidValue(field));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests;
