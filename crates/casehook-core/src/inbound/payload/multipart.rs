//! `multipart/form-data` bodies (RFC 7578) of text fields, split at their boundary as RFC 2046
//! §5.1.1 says: a delimiter is `--boundary` at the start of a line, the line break before it
//! belongs to it, and the last one is `--boundary--`. Preamble and epilogue are ignored. Lines
//! end in CRLF; a bare LF is accepted too, as many clients send it.
//!
//! File parts (with a `filename`) are refused: an inbound hook carries case data, not uploads.

use serde_json::{Map, Value};

use super::form::{EmptyName, Fields};
use super::media::{MediaType, parse_params};
use super::{PayloadError, json_detail};
use crate::validate::shorten;

/// The most parts one body may carry.
pub(super) const MAX_PARTS: usize = 1000;

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY_LEN: usize = 70;

/// Parse a multipart/form-data body; `media` is its Content-Type, with the boundary.
pub(super) fn parse(media: &MediaType, body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    let boundary = boundary(media)?;
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let mut fields = Fields::default();
    let mut at = find_delimiter(body, 0, &delimiter).ok_or_else(|| {
        malformed(format!(
            "the body never starts a line with the boundary `--{}`",
            shorten(boundary)
        ))
    })?;
    let mut number = 0;
    loop {
        number += 1;
        let after = at + delimiter.len();
        let rest = body.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(fields.into_map());
        }
        let start = after
            + line_break(rest).ok_or_else(|| {
                if rest.is_empty() {
                    missing_close(boundary)
                } else {
                    malformed(format!(
                        "a line starts with the boundary `--{}` but goes on with other text",
                        shorten(boundary)
                    ))
                }
            })?;
        if number > MAX_PARTS {
            return Err(malformed(format!(
                "the body has more than {MAX_PARTS} parts"
            )));
        }
        let next =
            find_delimiter(body, start, &delimiter).ok_or_else(|| missing_close(boundary))?;
        // The line break before the next delimiter belongs to the delimiter.
        let mut end = if next > start { next - 1 } else { start };
        if end > start && body.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        part(
            body.get(start..end).unwrap_or_default(),
            number,
            &mut fields,
        )?;
        at = next;
    }
}

/// The boundary parameter, checked against RFC 2046: 1 to 70 characters from a small set, not
/// ending in a space.
fn boundary(media: &MediaType) -> Result<&str, PayloadError> {
    let Some(b) = media.param("boundary") else {
        return Err(malformed(
            "the Content-Type has no boundary parameter; send `multipart/form-data; boundary=…`"
                .to_owned(),
        ));
    };
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if b.is_empty() || b.len() > MAX_BOUNDARY_LEN || b.ends_with(' ') || !b.bytes().all(allowed) {
        return Err(malformed(format!(
            "the boundary `{}` is invalid; it must be 1 to {MAX_BOUNDARY_LEN} letters, digits or \
             '()+_,-./:=? (not ending in a space)",
            shorten(b)
        )));
    }
    Ok(b)
}

/// The first `delimiter` at or after `from` that starts a line.
fn find_delimiter(body: &[u8], from: usize, delimiter: &[u8]) -> Option<usize> {
    (from..body.len()).find(|&i| {
        (i == 0 || body.get(i - 1) == Some(&b'\n'))
            && body.get(i..).is_some_and(|s| s.starts_with(delimiter))
    })
}

/// After a delimiter: optional spaces or tabs, then CRLF or LF. Returns the length up to and
/// including the line break.
fn line_break(rest: &[u8]) -> Option<usize> {
    let pad = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match rest.get(pad..)? {
        [b'\r', b'\n', ..] => Some(pad + 2),
        [b'\n', ..] => Some(pad + 1),
        _ => None,
    }
}

/// One part: headers, an empty line, the content. Adds its field to `fields`.
fn part(bytes: &[u8], number: usize, fields: &mut Fields) -> Result<(), PayloadError> {
    let (headers, content) = split_headers(bytes, number)?;
    let mut disposition = None;
    let mut content_type = None;
    for (name, value) in headers {
        let slot = match name.to_ascii_lowercase().as_str() {
            "content-disposition" => &mut disposition,
            "content-type" => &mut content_type,
            "content-transfer-encoding" => {
                if !["7bit", "8bit", "binary"]
                    .iter()
                    .any(|ok| value.eq_ignore_ascii_case(ok))
                {
                    return Err(malformed(format!(
                        "part {number} uses Content-Transfer-Encoding `{}`; send the content as is",
                        shorten(value)
                    )));
                }
                continue;
            }
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!(
                "part {number} has two {} headers",
                shorten(name)
            )));
        }
    }
    let name = field_name(disposition, number)?;
    let value = field_value(&name, content_type, content)?;
    fields.add(&name, value).map_err(|EmptyName| {
        malformed(format!(
            "part {number} has an empty name; every part needs a name"
        ))
    })
}

/// A header line of a part: its name as written and its trimmed value.
type Header<'a> = (&'a str, &'a str);

/// A part's header lines and its content. A part that ends without the
/// empty line after its headers has empty content.
fn split_headers(bytes: &[u8], number: usize) -> Result<(Vec<Header<'_>>, &[u8]), PayloadError> {
    let mut headers = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], &rest[nl + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok((headers, rest));
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| malformed(format!("part {number} has a header that is not UTF-8")))?;
        let (name, value) = line
            .split_once(':')
            .filter(|(n, _)| super::media::is_token(n))
            .ok_or_else(|| malformed(format!("part {number} has a malformed header line")))?;
        headers.push((name, value.trim()));
    }
    Ok((headers, rest))
}

/// The field name from a Content-Disposition: `form-data; name="…"`, without a filename.
fn field_name(disposition: Option<&str>, number: usize) -> Result<String, PayloadError> {
    let disposition = disposition.ok_or_else(|| {
        malformed(format!(
            "part {number} has no Content-Disposition header; send `form-data; name=\"…\"`"
        ))
    })?;
    let (kind, params) = disposition.split_once(';').unwrap_or((disposition, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed(format!(
            "part {number} has Content-Disposition `{}`; expected form-data",
            shorten(kind.trim())
        )));
    }
    let params = parse_params(params, false).map_err(|why| {
        malformed(format!(
            "part {number} has a malformed Content-Disposition: {why}"
        ))
    })?;
    let Some((_, name)) = params.iter().find(|(n, _)| n == "name") else {
        return Err(malformed(format!(
            "part {number} has no name in its Content-Disposition"
        )));
    };
    if params
        .iter()
        .any(|(n, _)| n == "filename" || n == "filename*")
    {
        return Err(malformed(format!(
            "part `{}` is a file upload; only text fields are accepted",
            shorten(name)
        )));
    }
    Ok(name.clone())
}

/// A part's value: its text, or for an `application/json` part the JSON it holds.
fn field_value(
    name: &str,
    content_type: Option<&str>,
    content: &[u8],
) -> Result<Value, PayloadError> {
    let shown = shorten(name);
    let media = match content_type {
        None => None,
        Some(ct) => Some(MediaType::parse(ct).map_err(|why| {
            malformed(format!(
                "part `{shown}` has a malformed Content-Type: {why}"
            ))
        })?),
    };
    let is_json = media.as_ref().is_some_and(|m| super::is_json(&m.essence));
    if let Some(m) = &media {
        if !(is_json || m.essence == "text/plain") {
            return Err(malformed(format!(
                "part `{shown}` has Content-Type `{}`; only text/plain and application/json parts \
                 are accepted",
                shorten(&m.essence)
            )));
        }
        if !m.charset_is_utf8() {
            return Err(malformed(format!(
                "part `{shown}` is not in UTF-8; send it in UTF-8"
            )));
        }
    }
    let text = std::str::from_utf8(content)
        .map_err(|_| malformed(format!("part `{shown}` is not valid UTF-8")))?;
    if !is_json {
        return Ok(Value::String(text.to_owned()));
    }
    serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(text)).map_err(|e| {
        malformed(format!(
            "part `{shown}` is not valid JSON: {}",
            json_detail(&e)
        ))
    })
}

fn missing_close(boundary: &str) -> PayloadError {
    malformed(format!(
        "the body ends before the closing boundary `--{}--`",
        shorten(boundary)
    ))
}

fn malformed(message: String) -> PayloadError {
    PayloadError::MalformedMultipart(message)
}
