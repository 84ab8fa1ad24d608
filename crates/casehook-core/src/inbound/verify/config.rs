//! Save-time checks of a [`Verification`] and of the secrets it is given, secret generation,
//! and the `signed_content` template both the check and the verifier read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::Verification;
use super::request::parse_net;
use crate::signing::SigningSecret;
use crate::{FieldError, FieldErrorCode};

/// The longest secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 512;

/// The widest timestamp tolerance accepted: one day.
pub const MAX_TOLERANCE_SECS: u64 = 86_400;

/// Random bytes in a secret casehook picks.
const GENERATED_SECRET_BYTES: usize = 32;

/// One piece of a `signed_content` template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part<'a> {
    /// Text signed as written.
    Literal(&'a str),
    /// `{body}`: the raw body.
    Body,
    /// `{timestamp}`: the timestamp header's value.
    Timestamp,
    /// `{other}`: refused at save time; signed as written if it ever reaches a request.
    Unknown(&'a str),
}

/// Split a template into literal text and `{name}` placeholders (a name is letters, digits
/// and `_`); any other brace is literal text.
pub(super) fn template_parts(template: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(open) = template[i..].find('{').map(|o| o + i) {
        let placeholder = template[open + 1..].find('}').and_then(|close| {
            let name = &template[open + 1..open + 1 + close];
            let is_name =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            is_name.then_some(name)
        });
        let Some(name) = placeholder else {
            i = open + 1;
            continue;
        };
        if literal_start < open {
            parts.push(Part::Literal(&template[literal_start..open]));
        }
        let whole = &template[open..open + name.len() + 2];
        parts.push(match name {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            _ => Part::Unknown(whole),
        });
        i = open + name.len() + 2;
        literal_start = i;
    }
    if literal_start < template.len() {
        parts.push(Part::Literal(&template[literal_start..]));
    }
    parts
}

/// Whether `name` is a valid HTTP field name (RFC 9110 `token`).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Verification {
    /// Check the configuration at save time, reporting every problem at once with its path
    /// under `at` (e.g. `verifications[0]`).
    pub fn check(&self, at: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError::new(
                format!("{at}.{field}"),
                FieldErrorCode::InvalidDefinition,
                message,
            ));
        };
        match self {
            Self::Token { header, query } => {
                match (header, query) {
                    (Some(_), Some(_)) | (None, None) => err(
                        "header",
                        "a token check takes exactly one of `header` and `query`".to_owned(),
                    ),
                    _ => {}
                }
                if let Some(h) = header {
                    check_header_name(&mut err, "header", h);
                }
                if let Some(q) = query
                    && (q.is_empty() || q.contains(['&', '=', '#', ' ']))
                {
                    err(
                        "query",
                        format!(
                            "`{q}` is not a query parameter name (non-empty, without `&`, `=`, `#` or spaces)"
                        ),
                    );
                }
            }
            Self::Basic { username } => {
                if username.is_empty()
                    || username.contains(':')
                    || username.chars().any(char::is_control)
                {
                    err(
                        "username",
                        "the username must be non-empty, without `:` or control characters"
                            .to_owned(),
                    );
                }
            }
            Self::IpAllowList {
                allow,
                trusted_proxies,
            } => {
                if allow.is_empty() {
                    err(
                        "allow",
                        "the allow list needs at least one address or network".to_owned(),
                    );
                }
                for (list, name) in [(allow, "allow"), (trusted_proxies, "trusted_proxies")] {
                    for (i, entry) in list.iter().enumerate() {
                        if parse_net(entry).is_none() {
                            err(
                                &format!("{name}[{i}]"),
                                format!(
                                    "`{entry}` is not an IP address or CIDR network (e.g. `192.0.2.0/24`, `2001:db8::1`)"
                                ),
                            );
                        }
                    }
                }
            }
            Self::Hmac {
                header,
                signed_content,
                timestamp_header,
                tolerance_secs,
                ..
            } => {
                check_header_name(&mut err, "header", header);
                if let Some(ts) = timestamp_header {
                    check_header_name(&mut err, "timestamp_header", ts);
                }
                let template = signed_content.as_deref().unwrap_or("{body}");
                let parts = template_parts(template);
                for part in &parts {
                    if let Part::Unknown(p) = part {
                        err(
                            "signed_content",
                            format!(
                                "unknown placeholder `{p}`; only `{{body}}` and `{{timestamp}}` exist"
                            ),
                        );
                    }
                }
                if parts.iter().filter(|p| **p == Part::Body).count() != 1 {
                    err(
                        "signed_content",
                        "the signed content must contain `{body}` exactly once".to_owned(),
                    );
                }
                if timestamp_header.is_none() && parts.contains(&Part::Timestamp) {
                    err(
                        "timestamp_header",
                        "the signed content uses `{timestamp}`, so a `timestamp_header` is needed"
                            .to_owned(),
                    );
                }
                check_tolerance(&mut err, *tolerance_secs);
            }
            Self::StandardWebhooks { tolerance_secs } | Self::Stripe { tolerance_secs } => {
                check_tolerance(&mut err, *tolerance_secs);
            }
            Self::Github {} | Self::Shopify {} | Self::Slack {} => {}
        }
        errors
    }

    /// Check a secret before it is stored. The message never repeats the secret.
    pub fn check_secret(&self, secret: &str) -> Result<(), String> {
        if !self.needs_secret() {
            return Err(format!("a `{}` check takes no secret", self.kind()));
        }
        if secret.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(format!(
                "the secret is {} bytes long; at most {MAX_SECRET_LEN} are accepted",
                secret.len()
            ));
        }
        // Header values arrive trimmed and cannot hold control characters, so such a token
        // could never match.
        if let Self::Token {
            header: Some(_), ..
        } = self
            && (secret.trim() != secret || secret.chars().any(char::is_control))
        {
            return Err(
                "a token sent in a header cannot start or end with spaces or hold control characters"
                    .to_owned(),
            );
        }
        if let Self::StandardWebhooks { .. } = self {
            SigningSecret::parse(secret).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A fresh secret, for the kinds where casehook may choose it; `None` where the sender
    /// issues the secret (Stripe, Shopify, Slack) or none is used (IP allow list).
    pub fn generate_secret(&self) -> Option<String> {
        match self {
            Self::Token { .. } | Self::Basic { .. } | Self::Hmac { .. } | Self::Github {} => {
                let mut bytes = [0u8; GENERATED_SECRET_BYTES];
                rand::rng().fill_bytes(&mut bytes);
                Some(URL_SAFE_NO_PAD.encode(bytes))
            }
            Self::StandardWebhooks { .. } => Some(SigningSecret::generate().to_whsec()),
            Self::Stripe { .. } | Self::Shopify {} | Self::Slack {} | Self::IpAllowList { .. } => {
                None
            }
        }
    }
}

fn check_header_name(err: &mut impl FnMut(&str, String), field: &str, name: &str) {
    if !is_header_name(name) {
        err(field, format!("`{name}` is not a valid HTTP header name"));
    }
}

fn check_tolerance(err: &mut impl FnMut(&str, String), tolerance_secs: Option<u64>) {
    if let Some(t) = tolerance_secs
        && !(1..=MAX_TOLERANCE_SECS).contains(&t)
    {
        err(
            "tolerance_secs",
            format!("the tolerance must be 1 to {MAX_TOLERANCE_SECS} seconds, not {t}"),
        );
    }
}
