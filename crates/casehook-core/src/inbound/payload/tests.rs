use serde_json::{Map, Value, json};

use super::*;

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const MULTIPART: Option<&str> = Some("multipart/form-data; boundary=XyZ");

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn one(content_type: Option<&str>, body: &str) -> Value {
    match parse_payload(content_type, body.as_bytes()) {
        Ok(Payload::One(m)) => Value::Object(m),
        other => panic!("expected one object, got {other:?}"),
    }
}

fn err(content_type: Option<&str>, body: &[u8]) -> PayloadError {
    match parse_payload(content_type, body) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

/// A multipart body with CRLF line ends from `(headers, content)` parts, boundary `XyZ`.
fn multipart(parts: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (headers, content) in parts {
        body.push_str(&format!("--XyZ\r\n{headers}\r\n\r\n{content}\r\n"));
    }
    body.push_str("--XyZ--\r\n");
    body
}

// JSON

#[test]
fn json_object_is_one_case() {
    let p = parse_payload(JSON, br#"{"name": "Ada", "age": 36}"#).expect("parses");
    assert_eq!(p, Payload::One(object(json!({"name": "Ada", "age": 36}))));
    assert!(!p.is_batch());
    assert_eq!(p.items().len(), 1);
}

#[test]
fn json_array_of_objects_is_a_batch_in_order() {
    let p = parse_payload(JSON, br#"[{"n": 1}, {"n": 2}, {"n": 3}]"#).expect("parses");
    assert!(p.is_batch());
    let items = p.into_items();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2], object(json!({"n": 3})));
}

#[test]
fn array_of_one_object_is_still_a_batch() {
    let p = parse_payload(JSON, br#"[{"n": 1}]"#).expect("parses");
    assert!(p.is_batch());
    assert_eq!(p.items(), vec![&object(json!({"n": 1}))]);
}

#[test]
fn empty_array_is_an_empty_batch() {
    let e = err(JSON, b" [ ] ");
    assert_eq!(e, PayloadError::EmptyBatch);
    assert_eq!((e.code(), e.status()), ("empty_batch", 400));
}

#[test]
fn batch_of_max_items_is_accepted_and_one_more_is_refused() {
    let body = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
    let p = parse_payload(JSON, body(MAX_BATCH_ITEMS).as_bytes()).expect("parses");
    assert_eq!(p.items().len(), MAX_BATCH_ITEMS);
    let e = err(JSON, body(MAX_BATCH_ITEMS + 1).as_bytes());
    assert_eq!(e, PayloadError::BatchTooLarge { items: 1001 });
    assert_eq!(e.code(), "batch_too_large");
    assert_eq!(
        e.to_string(),
        "the array has 1001 items; one batch may carry at most 1000"
    );
}

#[test]
fn non_object_item_is_named_by_its_index() {
    let e = err(JSON, br#"[{}, {}, {}, "x", 5]"#);
    assert_eq!(
        e,
        PayloadError::ItemNotAnObject {
            index: 3,
            found: "a string"
        }
    );
    assert_eq!(e.code(), "not_an_object");
    assert_eq!(
        e.to_string(),
        "the item at index 3 of the array is a string; every item must be a JSON object"
    );
    let e = err(JSON, b"[[{}]]");
    assert!(e.to_string().contains("index 0 of the array is an array"));
}

#[test]
fn scalars_are_not_objects() {
    for (body, found) in [
        (&b"\"hello\""[..], "a string"),
        (b"42", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ] {
        let e = err(JSON, body);
        assert_eq!(e, PayloadError::NotAnObject { found });
        assert_eq!((e.code(), e.status()), ("not_an_object", 400));
    }
    assert_eq!(
        err(JSON, b"\"hello\"").to_string(),
        "the body is a string; send a JSON object, or an array of objects"
    );
}

#[test]
fn malformed_json_gives_line_and_column() {
    let e = err(JSON, b"{\n  \"a\": 1,\n  \"b\": 2 \"c\": 3\n}");
    assert_eq!(e.code(), "malformed_json");
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.to_string(),
        "the body is not valid JSON: expected `,` or `}` at line 3, column 10"
    );
}

#[test]
fn empty_json_body_is_malformed() {
    let e = err(JSON, b"  \r\n");
    assert_eq!(
        e.to_string(),
        "the body is not valid JSON: the body is empty"
    );
    assert_eq!(e.code(), "malformed_json");
}

#[test]
fn malformed_json_message_does_not_echo_the_body() {
    let secret = "s".repeat(500);
    let e = err(JSON, format!("{{\"a\": \"{secret}\" x}}").as_bytes());
    assert!(!e.to_string().contains(&secret[..61]), "{e}");
}

#[test]
fn utf8_bom_is_tolerated() {
    assert_eq!(one(JSON, "\u{feff}{\"a\": \"b\"}"), json!({"a": "b"}));
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let body = "[".repeat(10_000);
    let e = err(JSON, body.as_bytes());
    assert_eq!(e.code(), "malformed_json");
    assert!(e.to_string().contains("recursion limit"), "{e}");
    let body = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert_eq!(err(JSON, body.as_bytes()).code(), "malformed_json");
}

// Content-Type

#[test]
fn json_media_types_and_parameters_are_accepted() {
    for ct in [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
        "application/json; charset=us-ascii",
        "text/json",
        "application/vnd.api+json",
        "application/cloudevents+json; charset=utf-8",
    ] {
        assert_eq!(one(Some(ct), r#"{"a": 1}"#), json!({"a": 1}), "{ct}");
    }
}

#[test]
fn json_in_another_charset_is_refused() {
    let e = err(Some("application/json; charset=ISO-8859-1"), b"{}");
    assert_eq!(
        e,
        PayloadError::UnsupportedCharset {
            media_type: "application/json".to_owned(),
            charset: "ISO-8859-1".to_owned(),
        }
    );
    assert_eq!((e.code(), e.status()), ("unsupported_media_type", 415));
    assert_eq!(
        e.to_string(),
        "charset `ISO-8859-1` is not accepted for application/json; send it in UTF-8"
    );
}

#[test]
fn missing_content_type_is_415() {
    let e = err(None, b"{}");
    assert_eq!(e, PayloadError::MissingContentType);
    assert_eq!((e.code(), e.status()), ("unsupported_media_type", 415));
    assert_eq!(
        e.to_string(),
        "no Content-Type header; send application/json, application/x-www-form-urlencoded or \
         multipart/form-data"
    );
}

#[test]
fn text_plain_is_415() {
    let e = err(Some("text/plain; charset=utf-8"), b"{}");
    assert_eq!((e.code(), e.status()), ("unsupported_media_type", 415));
    assert_eq!(
        e.to_string(),
        "Content-Type `text/plain` is not accepted; send application/json, \
         application/x-www-form-urlencoded or multipart/form-data"
    );
}

#[test]
fn malformed_content_types_are_415_and_shortened() {
    for ct in [
        "",
        "json",
        "application/",
        "/json",
        "application/json; charset",
    ] {
        assert_eq!(err(Some(ct), b"{}").status(), 415, "{ct:?}");
    }
    let long = format!("application/{}", "x".repeat(200));
    let shown = err(Some(&long), b"{}").to_string();
    assert!(shown.len() < 200, "{shown}");
}

// Forms

#[test]
fn form_values_are_strings() {
    assert_eq!(
        one(FORM, "name=Ada&age=36&empty=&bare"),
        json!({"name": "Ada", "age": "36", "empty": "", "bare": ""})
    );
}

#[test]
fn form_repetition_and_brackets_make_lists() {
    assert_eq!(
        one(FORM, "tag=a&x=1&tag=b&one[]=only&tag[]=c"),
        json!({"tag": ["a", "b", "c"], "x": "1", "one": ["only"]})
    );
    assert_eq!(one(FORM, "a[b]=1"), json!({"a[b]": "1"}));
}

#[test]
fn form_plus_and_percent_escapes_are_decoded() {
    assert_eq!(
        one(
            FORM,
            "full+name=Ada+Lovelace&note=50%25+off%21&city=Z%C3%BCrich&raw=%zz%4"
        ),
        json!({"full name": "Ada Lovelace", "note": "50% off!", "city": "Zürich", "raw": "%zz%4"})
    );
    assert_eq!(one(FORM, "k%5B%5D=v"), json!({"k": ["v"]}));
    assert_eq!(one(FORM, "a=1&&b=2&"), json!({"a": "1", "b": "2"}));
}

#[test]
fn form_invalid_utf8_is_malformed() {
    let e = err(FORM, b"name=%FF%FE");
    assert_eq!((e.code(), e.status()), ("malformed_form", 400));
    assert_eq!(
        e.to_string(),
        "the value of field `name` is not valid UTF-8 after percent-decoding"
    );
    assert_eq!(err(FORM, b"%C3=x").code(), "malformed_form");
    assert_eq!(err(FORM, b"a=\xFF").code(), "malformed_form");
}

#[test]
fn form_empty_name_is_malformed() {
    for body in ["=x", "a=1&=2", "[]=x"] {
        let e = err(FORM, body.as_bytes());
        assert_eq!(e.code(), "malformed_form", "{body}");
    }
}

#[test]
fn empty_form_is_an_empty_object() {
    assert_eq!(one(FORM, ""), json!({}));
    assert_eq!(
        one(Some("application/x-www-form-urlencoded; charset=UTF-8"), ""),
        json!({})
    );
}

#[test]
fn form_in_another_charset_is_refused() {
    let e = err(
        Some("application/x-www-form-urlencoded; charset=windows-1252"),
        b"a=1",
    );
    assert_eq!(e.status(), 415);
}

// Multipart

#[test]
fn multipart_text_parts_become_strings() {
    let body = multipart(&[
        (
            "Content-Disposition: form-data; name=\"name\"",
            "Ada Lovelace",
        ),
        (
            "content-disposition: form-data; name=\"note\"\r\nContent-Type: text/plain; charset=utf-8",
            "line one\r\nline two",
        ),
    ]);
    assert_eq!(
        one(MULTIPART, &body),
        json!({"name": "Ada Lovelace", "note": "line one\r\nline two"})
    );
}

#[test]
fn multipart_json_part_holds_its_json() {
    let body = multipart(&[
        (
            "Content-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json",
            r#"{"a": [1, 2]}"#,
        ),
        ("Content-Disposition: form-data; name=\"n\"", "5"),
    ]);
    assert_eq!(
        one(MULTIPART, &body),
        json!({"meta": {"a": [1, 2]}, "n": "5"})
    );
    let bad = multipart(&[(
        "Content-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json",
        "{\"a\": }",
    )]);
    assert_eq!(
        err(MULTIPART, bad.as_bytes()).to_string(),
        "part `meta` is not valid JSON: expected value at line 1, column 7"
    );
}

#[test]
fn multipart_file_part_is_refused() {
    let body = multipart(&[(
        "Content-Disposition: form-data; name=\"doc\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf",
        "%PDF",
    )]);
    let e = err(MULTIPART, body.as_bytes());
    assert_eq!((e.code(), e.status()), ("malformed_multipart", 400));
    assert_eq!(
        e.to_string(),
        "part `doc` is a file upload; only text fields are accepted"
    );
}

#[test]
fn a_refusal_never_echoes_a_nul() {
    // Found by the inbound fuzz test on PostgreSQL: the message is stored in the request
    // log, and PostgreSQL stores no NUL in text.
    let body = multipart(&[(
        "Content-Disposition: form-data; name=\"\0\"; filename=\"a.txt\"",
        "",
    )]);
    let e = err(MULTIPART, body.as_bytes());
    assert_eq!(
        e.to_string(),
        "part `\u{FFFD}` is a file upload; only text fields are accepted"
    );
}

#[test]
fn multipart_other_part_types_are_refused() {
    let body = multipart(&[(
        "Content-Disposition: form-data; name=\"pic\"\r\nContent-Type: image/png",
        "x",
    )]);
    assert_eq!(
        err(MULTIPART, body.as_bytes()).to_string(),
        "part `pic` has Content-Type `image/png`; only text/plain and application/json parts are accepted"
    );
    let body = multipart(&[(
        "Content-Disposition: form-data; name=\"t\"\r\nContent-Transfer-Encoding: base64",
        "eA==",
    )]);
    assert_eq!(
        err(MULTIPART, body.as_bytes()).code(),
        "malformed_multipart"
    );
}

#[test]
fn multipart_without_closing_boundary_is_refused() {
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n";
    let e = err(MULTIPART, body.as_bytes());
    assert_eq!(
        e.to_string(),
        "the body ends before the closing boundary `--XyZ--`"
    );
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ";
    assert_eq!(
        err(MULTIPART, body.as_bytes()).code(),
        "malformed_multipart"
    );
}

#[test]
fn multipart_quoted_name_may_contain_semicolons() {
    let body = multipart(&[("Content-Disposition: form-data; name=\"a;b=c\"", "v")]);
    assert_eq!(one(MULTIPART, &body), json!({"a;b=c": "v"}));
}

#[test]
fn multipart_with_bare_lf_line_ends() {
    let body = "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nfirst\n--XyZ\n\
                Content-Disposition: form-data; name=b\n\nsecond\nline\n--XyZ--\n";
    assert_eq!(
        one(MULTIPART, body),
        json!({"a": "first", "b": "second\nline"})
    );
}

#[test]
fn multipart_preamble_epilogue_and_empty_values() {
    let body = format!(
        "This is the preamble.\r\n{}the epilogue --XyZ",
        multipart(&[
            ("Content-Disposition: form-data; name=\"empty\"", ""),
            ("Content-Disposition: form-data; name=\"x\"", "1"),
        ])
    );
    assert_eq!(one(MULTIPART, &body), json!({"empty": "", "x": "1"}));
}

#[test]
fn multipart_repetition_and_brackets_make_lists() {
    let body = multipart(&[
        ("Content-Disposition: form-data; name=\"tag\"", "a"),
        ("Content-Disposition: form-data; name=\"tag\"", "b"),
        ("Content-Disposition: form-data; name=\"one[]\"", "only"),
    ]);
    assert_eq!(
        one(MULTIPART, &body),
        json!({"tag": ["a", "b"], "one": ["only"]})
    );
}

#[test]
fn multipart_quoted_boundary_with_spaces() {
    let body = "--a b:c\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n--a b:c--";
    let ct = Some("multipart/form-data; boundary=\"a b:c\"");
    assert_eq!(one(ct, body), json!({"k": "v"}));
}

#[test]
fn multipart_empty_body_with_only_closing_boundary_is_empty_object() {
    assert_eq!(one(MULTIPART, "--XyZ--\r\n"), json!({}));
}

#[test]
fn multipart_missing_or_invalid_boundary_is_refused() {
    let seventy_one = format!("multipart/form-data; boundary={}", "b".repeat(71));
    let seventy = format!("multipart/form-data; boundary={}", "b".repeat(70));
    for ct in [
        "multipart/form-data",
        "multipart/form-data; charset=utf-8",
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=\"ends in space \"",
        "multipart/form-data; boundary=a<b",
        &seventy_one,
    ] {
        let e = err(Some(ct), b"--x--");
        assert_eq!((e.code(), e.status()), ("malformed_multipart", 400), "{ct}");
    }
    let body = format!("--{}--", "b".repeat(70));
    assert_eq!(one(Some(&seventy), &body), json!({}));
}

#[test]
fn multipart_part_problems_are_refused() {
    let cases = [
        "--XyZ\r\n\r\nno headers\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--",
        "--XyZ\r\nnot a header\r\n\r\nv\r\n--XyZ--",
        "--XyZX\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--",
        "no boundary at all",
    ];
    for body in cases {
        let e = err(MULTIPART, body.as_bytes());
        assert_eq!(e.code(), "malformed_multipart", "{body:?}");
    }
    let bytes = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\xFF\r\n--XyZ--";
    assert_eq!(
        err(MULTIPART, bytes).to_string(),
        "part `a` is not valid UTF-8"
    );
}

#[test]
fn multipart_part_limit() {
    let part = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n";
    let body = |n: usize| format!("{}--XyZ--", part.repeat(n));
    let p = parse_payload(MULTIPART, body(1000).as_bytes()).expect("parses");
    assert_eq!(p.items()[0]["a"].as_array().map(Vec::len), Some(1000));
    let e = err(MULTIPART, body(1001).as_bytes());
    assert_eq!(e.to_string(), "the body has more than 1000 parts");
}
