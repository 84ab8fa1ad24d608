//! Properties of `parse_payload` over generated input: no body or Content-Type makes it
//! panic, and a flat form survives encoding as urlencoded and as multipart.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;
use crate::template::form_urlencode;

/// Pieces that assemble into nearly-valid JSON, forms and multipart bodies (boundary `b`).
const FRAGMENTS: &[&str] = &[
    "--b",
    "--b--",
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    "Content-Disposition: form-data; name=\"a\"",
    "Content-Disposition: form-data; name=",
    "; filename=x",
    "name=\"",
    "Content-Type: application/json",
    "Content-Type: text/plain",
    "; charset=latin1",
    "Content-Transfer-Encoding: 8bit",
    "{",
    "}",
    "[",
    "]",
    "[]",
    "\"",
    ":",
    ",",
    "1",
    "a",
    "=",
    "&",
    "%",
    "%C3",
    "%A9",
    "%FF",
    "+",
    "\u{feff}",
    "é",
    "null",
];

const BOUNDARY: &str = "casehook-7MA4YWxkTrZu0gW";

fn content_type() -> impl Strategy<Value = Option<String>> {
    let known = prop::sample::select(vec![
        "application/json",
        "text/json",
        "application/vnd.x+json; charset=utf-8",
        "application/json; charset=latin1",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "text/plain",
    ]);
    prop_oneof![
        Just(None),
        known.prop_map(|s| Some(s.to_owned())),
        "[a-zA-Z0-9'()+_,./:=? -]{0,80}"
            .prop_map(|b| Some(format!("multipart/form-data; boundary=\"{b}\""))),
        "[a-z/+*-]{0,24}(; ?[a-zA-Z]{0,8}=\"?[a-zA-Z0-9 ;\\\\\"=-]{0,10}\"?){0,3}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)
            .prop_map(|f| f.concat().into_bytes()),
    ]
}

/// Flat forms: names that are not empty, do not end in `[]`, and hold no `"` (which a
/// multipart name cannot carry unescaped); any values.
fn flat_form() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name = "\\PC{1,12}".prop_filter("a plain name", |n| !n.ends_with("[]") && !n.contains('"'));
    // NUL is refused (it cannot be stored); `nul_is_refused_wherever_it_is` covers it.
    let value = "(?s).{0,40}".prop_filter("no boundary, no NUL", |v| {
        !v.contains(BOUNDARY) && !v.contains('\0')
    });
    prop::collection::btree_map(name, value, 0..8)
}

fn as_object(form: &BTreeMap<String, String>) -> Map<String, Value> {
    form.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

proptest! {
    #[test]
    fn never_panics(content_type in content_type(), body in body()) {
        let _ = parse_payload(content_type.as_deref(), &body);
    }

    #[test]
    fn errors_keep_their_messages_short(content_type in content_type(), body in body()) {
        if let Err(e) = parse_payload(content_type.as_deref(), &body) {
            prop_assert!(e.to_string().chars().count() <= 250, "{e}");
            prop_assert!(!e.to_string().contains('\0'), "stored in the request log: {e:?}");
            prop_assert!([400, 415].contains(&e.status()));
        }
    }

    #[test]
    fn nul_is_refused_wherever_it_is(form in flat_form(), key in "[a-z]{1,8}", before in "[a-z]{0,4}") {
        let mut form = form;
        form.insert(key, format!("{before}\0"));
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let parsed = parse_payload(Some("application/x-www-form-urlencoded"), body.as_bytes());
        prop_assert_eq!(parsed.map_err(|e| e.code()), Err("invalid_character"));
    }

    #[test]
    fn form_round_trips(form in flat_form()) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let parsed = parse_payload(Some("application/x-www-form-urlencoded"), body.as_bytes());
        prop_assert_eq!(parsed, Ok(Payload::One(as_object(&form))));
    }

    #[test]
    fn multipart_round_trips(form in flat_form(), lf_only in any::<bool>()) {
        // With bare LF line ends a value's final CR reads as part of the line break.
        prop_assume!(!lf_only || form.values().all(|v| !v.ends_with('\r')));
        let nl = if lf_only { "\n" } else { "\r\n" };
        let mut body = format!("preamble{nl}");
        for (k, v) in &form {
            body.push_str(&format!(
                "--{BOUNDARY}{nl}Content-Disposition: form-data; name=\"{k}\"{nl}{nl}{v}{nl}"
            ));
        }
        body.push_str(&format!("--{BOUNDARY}--{nl}"));
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let parsed = parse_payload(Some(&ct), body.as_bytes());
        prop_assert_eq!(parsed, Ok(Payload::One(as_object(&form))));
    }
}
