//! Writing values into URLs and headers, and taking secrets back out of logged text.
//!
//! Small enough to write here rather than depend on a crate, and exact: the byte sets below are
//! RFC 3986's unreserved characters and the WHATWG `application/x-www-form-urlencoded` set.

use std::fmt::Write;

/// Percent-encode everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`), so
/// the result stays inside one path segment (`/` becomes `%2F`, `?` `%3F`, space `%20`).
pub fn percent_encode_path_segment(s: &str) -> String {
    encode(
        s,
        |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b),
        false,
    )
}

/// `application/x-www-form-urlencoded` encoding of one name or value: `A-Z a-z 0-9 * - . _`
/// kept, space as `+`, everything else percent-encoded as UTF-8.
pub fn form_urlencode(s: &str) -> String {
    encode(
        s,
        |b| b.is_ascii_alphanumeric() || b"*-._".contains(&b),
        true,
    )
}

fn encode(s: &str, keep: impl Fn(u8) -> bool, space_as_plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A description of the first character that may not appear in a header value: control
/// characters other than horizontal tab (CR and LF could end the header; NUL and the rest are
/// refused by HTTP implementations anyway).
pub(crate) fn first_header_forbidden(s: &str) -> Option<&'static str> {
    s.chars().find_map(|c| match c {
        '\r' => Some("a carriage return (CR)"),
        '\n' => Some("a line feed (LF)"),
        '\0' => Some("a NUL character"),
        '\t' => None,
        c if c.is_ascii_control() => Some("a control character"),
        _ => None,
    })
}

/// The mark that replaces a secret in redacted text.
pub const REDACTED: &str = "**redacted**";

/// `text` with every occurrence of each secret replaced by `**redacted**`: raw, and in each
/// form the templates and content encoders write it (JSON-escaped, percent-encoded,
/// form-encoded), so a URL, header, JSON or form body can be logged safely.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut needles: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let json = serde_json::Value::String(secret.clone()).to_string();
        let json_inner = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(&json)
            .to_owned();
        for form in [
            secret.clone(),
            json_inner,
            percent_encode_path_segment(secret),
            form_urlencode(secret),
        ] {
            if !needles.contains(&form) {
                needles.push(form);
            }
        }
    }
    // Longest first: a secret that contains another must be replaced whole.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles
        .iter()
        .fold(text.to_owned(), |acc, needle| acc.replace(needle, REDACTED))
}
