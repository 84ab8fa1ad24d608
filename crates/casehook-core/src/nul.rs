//! U+0000 (NUL) in text. PostgreSQL cannot store it in TEXT or JSONB, and no case field
//! needs it, so casehook refuses it at the edge on every backend alike, naming where it was
//! found, instead of failing in the database.

use serde_json::Value;

/// Where the first NUL in a JSON value is: a path such as `title`, `raw.note`, `tags[2]`,
/// or `raw.<key>` for a key that holds one itself. `None` when there is none.
pub fn find_nul(value: &Value) -> Option<String> {
    find_in(value, String::new())
}

fn find_in(value: &Value, at: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_in(v, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let name = k.replace('\0', "\u{FFFD}");
            let here = if at.is_empty() {
                name
            } else {
                format!("{at}.{name}")
            };
            if k.contains('\0') {
                return Some(here);
            }
            find_in(v, here)
        }),
        _ => None,
    }
}

/// Whether JSON text escapes a NUL (`\u0000`) anywhere. Raw NUL bytes cannot appear in JSON
/// strings (the parser refuses control characters), so this finds every NUL a parse would
/// produce, without parsing. A backslash that is itself escaped (`\\u0000`) is text, not an
/// escape.
pub fn has_escaped_nul(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u'
            && backslashes % 2 == 1
            && json.get(i + 1..i + 5).is_some_and(|hex| hex == b"0000")
        {
            return true;
        }
        backslashes = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_nul_in_values_and_keys_with_their_path() {
        assert_eq!(find_nul(&json!({"a": "x", "b": 1})), None);
        assert_eq!(find_nul(&json!({"title": "a\u{0}b"})), Some("title".into()));
        assert_eq!(
            find_nul(&json!({"raw": {"k": ["ok", "\u{0}"]}})),
            Some("raw.k[1]".into())
        );
        assert_eq!(
            find_nul(&json!({"raw": {"k\u{0}": 1}})),
            Some("raw.k\u{FFFD}".into())
        );
    }

    #[test]
    fn finds_escaped_nul_in_json_text_but_not_an_escaped_backslash() {
        assert!(has_escaped_nul(br#"{"a":"x\u0000"}"#));
        assert!(has_escaped_nul(br#"{"a\u0000":1}"#));
        assert!(
            has_escaped_nul(br#"{"a":"\\\u0000"}"#),
            "an escaped backslash, then the escape"
        );
        assert!(!has_escaped_nul(br#"{"a":"\\u0000"}"#), "the text \\u0000");
        assert!(!has_escaped_nul(br#"{"a":"\u0001 \u0010"}"#));
        assert!(!has_escaped_nul(br#"{"a":"plain"}"#));
    }

    #[test]
    fn agrees_with_the_parser() {
        for text in [
            r#"{"a":"\u0000"}"#,
            r#"{"a":"\\u0000"}"#,
            r#"["\\\\\u0000"]"#,
            r#"{"\\\\":"\\"}"#,
        ] {
            let parsed: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(
                has_escaped_nul(text.as_bytes()),
                find_nul(&parsed).is_some(),
                "{text}"
            );
        }
    }
}
