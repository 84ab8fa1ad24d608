//! `application/x-www-form-urlencoded` bodies, and the name rules forms and multipart share:
//! a name given twice, or written `name[]`, collects its values in a list.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::PayloadError;
use crate::validate::shorten;

/// The fields of a form in order, each with its values; becomes the JSON object.
#[derive(Debug, Default)]
pub(super) struct Fields {
    /// Name, values in order, and whether the name was written with `[]`.
    entries: Vec<(String, Vec<Value>, bool)>,
    index: HashMap<String, usize>,
}

/// A field's name is empty (or is just `[]`).
#[derive(Debug)]
pub(super) struct EmptyName;

impl Fields {
    /// Add one value under `name`; `name[]` adds to the list `name`.
    pub(super) fn add(&mut self, name: &str, value: Value) -> Result<(), EmptyName> {
        let (key, brackets) = match name.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (name, false),
        };
        if key.is_empty() {
            return Err(EmptyName);
        }
        if let Some(&i) = self.index.get(key) {
            if let Some(entry) = self.entries.get_mut(i) {
                entry.1.push(value);
                entry.2 |= brackets;
            }
        } else {
            self.index.insert(key.to_owned(), self.entries.len());
            self.entries.push((key.to_owned(), vec![value], brackets));
        }
        Ok(())
    }

    /// The object: a name seen once without `[]` holds its value, any other a list.
    pub(super) fn into_map(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .map(|(key, mut values, brackets)| {
                let value = match values.pop() {
                    Some(only) if values.is_empty() && !brackets => only,
                    Some(last) => {
                        values.push(last);
                        Value::Array(values)
                    }
                    None => Value::Array(values),
                };
                (key, value)
            })
            .collect()
    }
}

/// Parse a urlencoded body (WHATWG URL Standard §5.1): `&`-separated `name=value` pairs, `+`
/// for space, `%XX` escapes decoded to bytes that must then be UTF-8. Empty pairs are
/// skipped, a pair without `=` has an empty value, and a `%` not followed by two hex digits
/// stays as it is.
pub(super) fn parse(body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    let mut fields = Fields::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let name = String::from_utf8(decode(name)).map_err(|_| {
            PayloadError::MalformedForm(
                "a field name is not valid UTF-8 after percent-decoding".to_owned(),
            )
        })?;
        let value = String::from_utf8(decode(value)).map_err(|_| {
            PayloadError::MalformedForm(format!(
                "the value of field `{}` is not valid UTF-8 after percent-decoding",
                shorten(&name)
            ))
        })?;
        fields
            .add(&name, Value::String(value))
            .map_err(|EmptyName| {
                PayloadError::MalformedForm(
                    "the form has a field with an empty name; every field needs a name".to_owned(),
                )
            })?;
    }
    Ok(fields.into_map())
}

/// Percent-decode one name or value, `+` as space.
fn decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let escaped = match b {
            b'%' => s
                .get(i + 1)
                .and_then(|&h| hex(h))
                .zip(s.get(i + 2).and_then(|&l| hex(l))),
            _ => None,
        };
        if let Some((high, low)) = escaped {
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(if b == b'+' { b' ' } else { b });
            i += 1;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
