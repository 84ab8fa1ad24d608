//! Header values with parameters: a Content-Type (`type/subtype; name=value`, RFC 9110
//! §8.3.1) and the parameters of a part's Content-Disposition (RFC 7578 §4.2).

use crate::validate::shorten;

/// A Content-Type: its `type/subtype` in lower case and its parameters in order.
#[derive(Debug)]
pub(super) struct MediaType {
    /// `type/subtype`, lower case.
    pub(super) essence: String,
    /// Parameter names in lower case, values as written (quotes removed).
    pub(super) params: Vec<(String, String)>,
}

impl MediaType {
    /// Parse a Content-Type value; the error says what is wrong with it.
    pub(super) fn parse(value: &str) -> Result<MediaType, String> {
        let (essence, params) = value.split_once(';').unwrap_or((value, ""));
        let essence = essence.trim();
        let well_formed = essence
            .split_once('/')
            .is_some_and(|(t, s)| is_token(t) && is_token(s));
        if !well_formed {
            return Err("it is not of the form `type/subtype`".to_owned());
        }
        Ok(MediaType {
            essence: essence.to_ascii_lowercase(),
            params: parse_params(params, true)?,
        })
    }

    /// The value of parameter `name` (lower case).
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a charset parameter, if any, names UTF-8 (or its subset US-ASCII).
    pub(super) fn charset_is_utf8(&self) -> bool {
        self.param("charset").is_none_or(|c| {
            ["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|ok| c.eq_ignore_ascii_case(ok))
        })
    }
}

/// Parse `; name=value; name="quoted value"` (the text after the first `;`). Names are lower
/// cased; a name given twice is an error.
///
/// `backslash_escapes` follows RFC 9110 (`\"` in a quoted value is `"`). Content-Disposition
/// does not use it: browsers write a name's `"` as `%22` and leave `\` as it is (HTML's
/// multipart/form-data encoding), so there a quoted value ends at the next `"`.
pub(super) fn parse_params(
    mut rest: &str,
    backslash_escapes: bool,
) -> Result<Vec<(String, String)>, String> {
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return Ok(params);
        }
        let Some((name, after)) = rest.split_once('=') else {
            return Err("a parameter has no `=`".to_owned());
        };
        let name = name.trim();
        if !is_token(name) {
            return Err("a parameter name is not a token".to_owned());
        }
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let (v, end) = read_quoted(quoted, backslash_escapes)
                .ok_or_else(|| format!("the quoted value of `{}` is not closed", shorten(name)))?;
            value = v;
            rest = quoted[end..].trim_start();
            if !(rest.is_empty() || rest.starts_with(';')) {
                return Err(format!(
                    "text follows the quoted value of `{}`",
                    shorten(name)
                ));
            }
        } else {
            let end = after.find(';').unwrap_or(after.len());
            value = after[..end].trim_end().to_owned();
            rest = &after[end..];
            if value.is_empty() || value.contains(['"', ' ', '\t']) {
                return Err(format!(
                    "the value of `{}` is empty or malformed",
                    shorten(name)
                ));
            }
        }
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(format!("the parameter `{}` is given twice", shorten(&name)));
        }
        params.push((name, value));
    }
}

/// The content of a quoted string (after its opening quote) and the byte offset just past its
/// closing quote; `None` if it is not closed.
fn read_quoted(s: &str, backslash_escapes: bool) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, i + 1)),
            '\\' if backslash_escapes => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// An RFC 9110 token: one or more visible ASCII characters other than delimiters.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
