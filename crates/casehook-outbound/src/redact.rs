//! Redaction: turning what was sent and received into text that is safe to store and show.
//!
//! Two rules, applied everywhere an exchange is recorded (and reusable by the workers and
//! the API layer):
//! 1. Every *sensitive value* the caller names (secrets, tokens it put into the request) is
//!    replaced wherever it appears, also in its percent-encoded, form-encoded and
//!    JSON-escaped spellings, because templates escape values per context.
//! 2. Headers and query parameters whose *names* mark them as credentials are replaced
//!    whole, even when nobody told us their value.
//!
//! `webhook-signature` (and other `*-signature` headers) stay visible on purpose: they are
//! HMAC outputs that cannot be turned back into the signing secret, and a receiver
//! debugging a verification failure needs to compare them.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Header names that always carry credentials (compared lower-case).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
];

/// Fragments that mark a header or query-parameter name as a credential.
const CREDENTIAL_FRAGMENTS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "apikey",
    "api-key",
    "api_key",
    "credential",
    "session",
];

/// Query parameter names that are credentials by convention although they contain none of
/// the fragments (`?key=` for API keys, `?sig=` / `X-Amz-Signature` in presigned URLs,
/// whose signature *is* the bearer credential, unlike a webhook signature header).
const CREDENTIAL_PARAMS: &[&str] = &["key", "sig", "signature", "x-amz-signature", "auth"];

/// Characters a URL component encoder escapes (everything but RFC 3986 unreserved).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces every occurrence of every sensitive value in `text` with [`REDACTED`].
///
/// Besides the raw value, its URL-component (`%2B`), form (`+` for space) and JSON-escaped
/// spellings are replaced too. Empty values are ignored. Longer values win over shorter
/// ones that overlap them.
pub fn redact<S: AsRef<str>>(text: &str, sensitive: &[S]) -> String {
    let needles = spellings(sensitive);
    if !needles.iter().any(|n| text.contains(n.as_str())) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match needles.iter().find(|n| rest.starts_with(n.as_str())) {
            Some(needle) => {
                out.push_str(REDACTED);
                rest = &rest[needle.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// [`redact`] every string (and object key) inside a JSON value.
pub fn redact_json<S: AsRef<str>>(value: &serde_json::Value, sensitive: &[S]) -> serde_json::Value {
    use serde_json::Value;
    if sensitive.iter().all(|s| s.as_ref().is_empty()) {
        return value.clone();
    }
    match value {
        Value::String(s) => Value::String(redact(s, sensitive)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_json(v, sensitive)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (redact(k, sensitive), redact_json(v, sensitive)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// All spellings of all sensitive values, longest first, without duplicates.
fn spellings<S: AsRef<str>>(sensitive: &[S]) -> Vec<String> {
    let mut needles = Vec::new();
    for value in sensitive
        .iter()
        .map(AsRef::as_ref)
        .filter(|v| !v.is_empty())
    {
        needles.push(value.to_owned());
        let component = utf8_percent_encode(value, COMPONENT).to_string();
        needles.push(component.replace("%20", "+"));
        needles.push(component);
        if let Ok(json) = serde_json::to_string(value) {
            // Drop the surrounding quotes: the value sits inside some larger JSON string.
            needles.push(json[1..json.len() - 1].to_owned());
        }
    }
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
    needles
}

/// Whether a header's name marks its value as a credential (case-insensitive).
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_HEADERS.contains(&name.as_str())
        || CREDENTIAL_FRAGMENTS.iter().any(|f| name.contains(f))
}

/// Whether a query parameter's name marks its value as a credential (case-insensitive).
pub fn is_sensitive_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_PARAMS.contains(&name.as_str())
        || CREDENTIAL_FRAGMENTS.iter().any(|f| name.contains(f))
}

/// Redacts a header list: credential headers (by name) are replaced whole, the others
/// have sensitive values replaced inside them.
pub fn redact_headers<S: AsRef<str>>(
    headers: &[(String, String)],
    sensitive: &[S],
) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_sensitive_header(name) {
                REDACTED.to_owned()
            } else {
                redact(value, sensitive)
            };
            (redact(name, sensitive), value)
        })
        .collect()
}

/// Redacts a URL for logs: the password of the user-info part, the values of credential
/// query parameters, and every sensitive value anywhere. Text that is not a URL is still
/// redacted for sensitive values.
pub fn redact_url<S: AsRef<str>>(url: &str, sensitive: &[S]) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return redact(url, sensitive);
    };
    if parsed.password().is_some() {
        // `set_password` cannot fail on a URL that already has a password.
        let _ = parsed.set_password(Some("redacted"));
    }
    if let Some(query) = parsed.query() {
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if param_is_sensitive(name) => format!("{name}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&query));
    }
    redact(parsed.as_str(), sensitive)
}

fn param_is_sensitive(raw_name: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(&raw_name.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    is_sensitive_param(&decoded)
}

/// A bounded, lossy-UTF-8, redacted excerpt of a body: at most `max_bytes` bytes of text.
///
/// Redaction runs before the cut, over a window long enough to hold any sensitive value
/// that starts inside the excerpt, so a secret straddling the limit is not half shown.
pub fn excerpt<S: AsRef<str>>(body: &[u8], max_bytes: usize, sensitive: &[S]) -> String {
    let longest = spellings(sensitive).first().map_or(0, String::len);
    let window = &body[..body.len().min(max_bytes.saturating_add(longest))];
    let text = redact(&String::from_utf8_lossy(window), sensitive);
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_and_spelling() {
        let secret = ["s3cr3t +/=\"x"];
        let text =
            "a s3cr3t +/=\"x b s3cr3t%20%2B%2F%3D%22x c s3cr3t+%2B%2F%3D%22x d s3cr3t +/=\\\"x";
        assert_eq!(
            redact(text, &secret),
            "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED]"
        );
    }

    #[test]
    fn ignores_empty_values_and_leaves_clean_text_alone() {
        assert_eq!(redact("hello", &[""]), "hello");
        assert_eq!(redact("hello", &["xyz"]), "hello");
        assert_eq!(redact("héllo wörld", &["wö"]), "héllo [REDACTED]rld");
    }

    #[test]
    fn longer_values_win_over_their_prefixes() {
        assert_eq!(redact("tok-abcdef", &["tok", "tok-abcdef"]), "[REDACTED]");
    }

    #[test]
    fn credential_headers_are_replaced_whole() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "X-Client-Secret",
            "x-session-id",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in [
            "content-type",
            "webhook-signature",
            "webhook-id",
            "x-hub-signature-256",
        ] {
            assert!(!is_sensitive_header(name), "{name}");
        }
        let headers = vec![
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("X-Custom".to_owned(), "prefix-hunter2-suffix".to_owned()),
            ("webhook-signature".to_owned(), "v1,AAAA".to_owned()),
        ];
        let redacted = redact_headers(&headers, &["hunter2"]);
        assert_eq!(redacted[0].1, REDACTED);
        assert_eq!(redacted[1].1, "prefix-[REDACTED]-suffix");
        assert_eq!(redacted[2].1, "v1,AAAA");
    }

    #[test]
    fn urls_lose_passwords_credential_params_and_sensitive_values() {
        let none: [&str; 0] = [];
        assert_eq!(
            redact_url(
                "https://user:pw@api.example/x?api_key=1&page=2&sig=3",
                &none
            ),
            "https://user:redacted@api.example/x?api_key=[REDACTED]&page=2&sig=[REDACTED]"
        );
        assert_eq!(
            redact_url("https://api.example/hunter2/x?q=hunter2", &["hunter2"]),
            "https://api.example/[REDACTED]/x?q=[REDACTED]"
        );
        assert_eq!(
            redact_url("not a url hunter2", &["hunter2"]),
            "not a url [REDACTED]"
        );
    }

    #[test]
    fn excerpt_is_bounded_lossy_and_redacted_across_the_cut() {
        assert_eq!(excerpt(b"0123456789", 4, &[""]), "0123");
        assert_eq!(excerpt(b"ab\xffcd", 10, &[""]), "ab\u{fffd}cd");
        // "é" is two bytes: a cut inside it moves back to the boundary.
        assert_eq!(excerpt("aé".as_bytes(), 2, &[""]), "a");
        // The secret starts before the limit and ends after it: never half shown.
        let out = excerpt(b"xxxxxhunter2yyyy", 8, &["hunter2"]);
        assert_eq!(out, "xxxxx[RE");
        assert!(!out.contains("hun"));
    }
}
