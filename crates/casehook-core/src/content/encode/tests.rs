use serde_json::json;

use super::*;

#[test]
fn json_protocols_encode_compactly() {
    let v = json!({"a": 1, "b": [true, null]});
    let (ct, body) = encode(&v, Protocol::Json).expect("ok");
    assert_eq!(
        (ct, body.as_slice()),
        ("application/json", br#"{"a":1,"b":[true,null]}"#.as_slice())
    );
    let (ct, body) = encode(&v, Protocol::JsonArray).expect("ok");
    assert_eq!(ct, "application/json");
    assert_eq!(body, br#"[{"a":1,"b":[true,null]}]"#);
    // JSON bodies need no object at the top.
    assert_eq!(encode(&json!("x"), Protocol::Json).expect("ok").1, b"\"x\"");
}

#[test]
fn protocols_use_snake_case_names() {
    for (p, name) in [
        (Protocol::Json, "json"),
        (Protocol::JsonArray, "json_array"),
        (Protocol::Form, "form"),
    ] {
        assert_eq!(serde_json::to_value(p).expect("ok"), json!(name));
    }
    assert_eq!(Protocol::default(), Protocol::Json);
}

#[test]
fn forms_flatten_nested_objects_and_arrays_with_brackets() {
    let v = json!({
        "name": "Ann",
        "n": 1.5,
        "ok": false,
        "none": null,
        "customer": {"id": 7, "tags": ["a", "b"]},
        "items": [{"sku": "x"}, {"sku": "y", "qty": 2}],
        "empty": {},
        "nothing": [],
    });
    let pairs = query_pairs(&v).expect("object");
    let expected = [
        ("name", "Ann"),
        ("n", "1.5"),
        ("ok", "false"),
        ("none", ""),
        ("customer[id]", "7"),
        ("customer[tags][0]", "a"),
        ("customer[tags][1]", "b"),
        ("items[0][sku]", "x"),
        ("items[1][sku]", "y"),
        ("items[1][qty]", "2"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(pairs, expected);
    let (ct, body) =
        encode(&json!({"customer": {"id": 7}, "ok": true}), Protocol::Form).expect("ok");
    assert_eq!(ct, "application/x-www-form-urlencoded");
    assert_eq!(
        String::from_utf8(body).expect("ascii"),
        "customer%5Bid%5D=7&ok=true"
    );
}

#[test]
fn form_values_are_percent_encoded() {
    let v = json!({"q": "a b&c=d+e/é?#", "k y": "1", "star*-._~": "x"});
    let (_, body) = encode(&v, Protocol::Form).expect("ok");
    assert_eq!(
        String::from_utf8(body).expect("ascii"),
        "q=a+b%26c%3Dd%2Be%2F%C3%A9%3F%23&k+y=1&star*-._%7E=x"
    );
}

#[test]
fn forms_and_queries_need_an_object() {
    for v in [json!([1]), json!("x"), json!(null), json!(3)] {
        let err = encode(&v, Protocol::Form).expect_err("not an object");
        assert!(
            err.to_string().contains("JSON object at the top level"),
            "{err}"
        );
        assert!(query_pairs(&v).is_err());
    }
    assert_eq!(encode(&json!({}), Protocol::Form).expect("ok").1, b"");
}
