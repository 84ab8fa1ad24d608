//! Unit tests for case data validation: one section per field type, then the modes.

use serde_json::{Map, Value, json};

use super::*;
use crate::form::FieldOption;

fn field(key: &str, t: FieldType) -> FieldDef {
    FieldDef::new(key, t)
}

fn with_options(key: &str, t: FieldType, options: &[&str]) -> FieldDef {
    FieldDef {
        options: options.iter().map(|o| FieldOption::new(*o)).collect(),
        ..field(key, t)
    }
}

fn required(f: FieldDef) -> FieldDef {
    FieldDef {
        required: true,
        ..f
    }
}

fn form(fields: Vec<FieldDef>) -> FormSpec {
    FormSpec {
        fields,
        ..FormSpec::new("test")
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("test input must be an object, got {other}"),
    }
}

fn ok(f: &FormSpec, input: Value, mode: Mode) -> Value {
    match validate_data(f, &obj(input), mode, false) {
        Ok(m) => Value::Object(m),
        Err(e) => panic!("expected valid data, got {e:?}"),
    }
}

fn errs(f: &FormSpec, input: Value, mode: Mode) -> Vec<FieldError> {
    validate_data(f, &obj(input), mode, false).expect_err("expected invalid data")
}

fn codes(errors: &[FieldError]) -> Vec<(&str, FieldErrorCode)> {
    errors.iter().map(|e| (e.field.as_str(), e.code)).collect()
}

/// The outcome of one value for a non-required field of type `t`.
fn one(t: FieldType, v: Value) -> Result<Value, FieldErrorCode> {
    check_value(&with_options("f", t, &["gold", "silver", "bronze"]), &v)
}

fn one_opts(t: FieldType, v: Value) -> Result<Value, FieldErrorCode> {
    let f = match t {
        FieldType::Select | FieldType::MultiSelect => with_options("f", t, &["gold", "silver"]),
        _ => field("f", t),
    };
    check_value(&f, &v)
}

use FieldErrorCode as C;

#[test]
fn text_takes_strings_as_they_are() {
    assert_eq!(one(FieldType::Text, json!(" hi ")), Ok(json!(" hi ")));
    assert_eq!(one(FieldType::Text, json!("")), Ok(json!("")));
    for v in [json!(1), json!(true), json!(["a"]), json!({})] {
        assert_eq!(one(FieldType::Text, v), Err(C::WrongType));
    }
}

#[test]
fn numbers_are_taken_from_json_numbers_and_numeric_strings() {
    let t = FieldType::Number;
    assert_eq!(one(t, json!(12)), Ok(json!(12)));
    assert_eq!(one(t, json!(-3.5)), Ok(json!(-3.5)));
    assert_eq!(one(t, json!("12")), Ok(json!(12)));
    assert_eq!(one(t, json!(" -7 ")), Ok(json!(-7)));
    assert_eq!(one(t, json!("12.5")), Ok(json!(12.5)));
    assert_eq!(one(t, json!("1e3")), Ok(json!(1000.0)));
    assert_eq!(one(t, json!("18446744073709551615")), Ok(json!(u64::MAX)));
    let Ok(Value::Number(n)) = one(t, json!("12")) else {
        panic!("12 is a number")
    };
    assert!(n.is_i64(), "integer strings stay integers");
}

#[test]
fn non_numbers_and_non_finite_strings_are_not_numeric() {
    for v in [
        json!("abc"),
        json!(""),
        json!(" "),
        json!("NaN"),
        json!("inf"),
        json!("-infinity"),
        json!("1e999"),
        json!("12abc"),
        json!("1,5"),
        json!(true),
        json!([1]),
        json!({"n": 1}),
    ] {
        assert_eq!(
            one(FieldType::Number, v.clone()),
            Err(C::ValueNotNumeric),
            "{v}"
        );
    }
}

#[test]
fn dates_are_real_calendar_days_written_yyyy_mm_dd() {
    let t = FieldType::Date;
    assert_eq!(one(t, json!("2024-02-29")), Ok(json!("2024-02-29")));
    for v in [
        json!("2023-02-29"),
        json!("2024-13-01"),
        json!("2024-04-31"),
        json!("2024-1-05"),
        json!("+2024-01-05"),
        json!("2024-01-05T00:00:00Z"),
        json!(" 2024-01-05"),
        json!("05/01/2024"),
        json!(20240105),
    ] {
        assert_eq!(one(t, v.clone()), Err(C::WrongDate), "{v}");
    }
}

#[test]
fn datetimes_are_rfc3339_and_stored_in_utc() {
    let t = FieldType::Datetime;
    assert_eq!(
        one(t, json!("2024-03-26T18:53:16.818049Z")),
        Ok(json!("2024-03-26T18:53:16.818049Z"))
    );
    assert_eq!(
        one(t, json!("2024-03-26T20:53:16+02:00")),
        Ok(json!("2024-03-26T18:53:16Z"))
    );
    assert_eq!(
        one(t, json!("2024-12-31T23:30:00-01:00")),
        Ok(json!("2025-01-01T00:30:00Z"))
    );
    // RFC 3339 lets readers accept a space for the `T`; storage always has the `T`.
    assert_eq!(
        one(t, json!("2024-03-26 18:53:16Z")),
        Ok(json!("2024-03-26T18:53:16Z"))
    );
    for v in [
        json!("2024-03-26"),
        json!("2024-03-26T18:53:16"),
        json!("2024-02-30T00:00:00Z"),
        // Valid RFC 3339, but the UTC instant is in year 10000, which RFC 3339 cannot write.
        json!("9999-12-31T23:30:00-01:00"),
        json!(1711479196),
    ] {
        assert_eq!(one(t, v.clone()), Err(C::WrongDate), "{v}");
    }
}

#[test]
fn booleans_accept_true_and_false_strings() {
    let t = FieldType::Boolean;
    assert_eq!(one(t, json!(true)), Ok(json!(true)));
    assert_eq!(one(t, json!("true")), Ok(json!(true)));
    assert_eq!(one(t, json!("false")), Ok(json!(false)));
    for v in [json!("yes"), json!("True"), json!(1), json!(0), json!([])] {
        assert_eq!(one(t, v.clone()), Err(C::WrongType), "{v}");
    }
}

#[test]
fn a_select_takes_one_of_its_options() {
    let t = FieldType::Select;
    assert_eq!(one_opts(t, json!("gold")), Ok(json!("gold")));
    assert_eq!(one_opts(t, json!("Gold")), Err(C::ValueNotAllowed));
    assert_eq!(one_opts(t, json!("")), Err(C::ValueNotAllowed));
    assert_eq!(one_opts(t, json!(1)), Err(C::WrongType));
    assert_eq!(one_opts(t, json!(["gold"])), Err(C::WrongType));
}

#[test]
fn a_multi_select_takes_a_list_of_options_without_duplicates() {
    let t = FieldType::MultiSelect;
    assert_eq!(
        one_opts(t, json!(["silver", "gold", "silver", "gold"])),
        Ok(json!(["silver", "gold"]))
    );
    assert_eq!(one_opts(t, json!([])), Ok(json!([])));
    assert_eq!(one_opts(t, json!("gold")), Err(C::ValueNotArray));
    assert_eq!(one_opts(t, json!({"0": "gold"})), Err(C::ValueNotArray));
    assert_eq!(one_opts(t, json!(["gold", 1])), Err(C::WrongType));
    assert_eq!(one_opts(t, json!(["gold", "tin"])), Err(C::ValueNotAllowed));
}

#[test]
fn a_multi_select_reports_once_per_field() {
    let f = form(vec![with_options("tags", FieldType::MultiSelect, &["a"])]);
    let e = errs(&f, json!({"tags": ["x", "y", "z"]}), Mode::Create);
    assert_eq!(codes(&e), [("tags", C::ValueNotAllowed)]);
    assert!(e[0].message.contains("\"x\""), "{}", e[0].message);
}

#[test]
fn arrays_and_objects_take_any_content() {
    assert_eq!(
        one(FieldType::Array, json!([1, "a", null])),
        Ok(json!([1, "a", null]))
    );
    assert_eq!(one(FieldType::Array, json!({})), Err(C::ValueNotArray));
    assert_eq!(one(FieldType::Array, json!("[1]")), Err(C::ValueNotArray));
    assert_eq!(
        one(FieldType::Object, json!({"a": [1]})),
        Ok(json!({"a": [1]}))
    );
    assert_eq!(one(FieldType::Object, json!([])), Err(C::WrongType));
    assert_eq!(one(FieldType::Object, json!("{}")), Err(C::WrongType));
}

#[test]
fn urls_are_absolute_http_or_https_with_a_host() {
    for good in [
        "http://example.com",
        "https://example.com/",
        "HTTPS://Example.COM/a/b?c=d#e",
        "https://sub.example.co.uk:8443/path",
        "https://user:pw@example.com/",
        "http://127.0.0.1:8080/x",
        "http://[::1]/",
        "http://[2001:db8::1]:443",
        "https://localhost",
        "https://example.com./",
        "https://bücher.example/",
        "https://my_host.internal/",
        "https://example.com?q",
    ] {
        assert_eq!(one(FieldType::Url, json!(good)), Ok(json!(good)), "{good}");
    }
    for bad in [
        "",
        "example.com",
        "//example.com",
        "ftp://example.com",
        "javascript:alert('http://x')",
        "mailto:a@example.com",
        "http://",
        "http:///path",
        "http://:80",
        "http://exa mple.com",
        " http://example.com",
        "http://example.com/a b",
        "http://example.com\\@evil.com",
        "http://example.com:0",
        "http://example.com:65536",
        "http://example.com:",
        "http://example.com:80a",
        "http://-bad.example",
        "http://a..b",
        "http://1.2.3",
        "http://256.1.1.1",
        "http://0x7f.1",
        "http://[::1",
        "http://[zz::1]/",
        "http://[::1]x",
        "http://user@",
        "http://exa%6dple.com",
        "http://example.com\n",
    ] {
        assert_eq!(
            one(FieldType::Url, json!(bad)),
            Err(C::InvalidUrl),
            "{bad:?}"
        );
    }
    assert_eq!(one(FieldType::Url, json!(42)), Err(C::InvalidUrl));
}

#[test]
fn an_api_call_field_takes_any_value_as_an_override() {
    for v in [
        json!(1),
        json!("x"),
        json!([]),
        json!({"a": 1}),
        json!(false),
    ] {
        assert_eq!(one(FieldType::ApiCall, v.clone()), Ok(v));
    }
}

#[test]
fn null_is_always_accepted_by_check_value() {
    for t in [
        FieldType::Text,
        FieldType::Number,
        FieldType::MultiSelect,
        FieldType::Url,
    ] {
        assert_eq!(one(t, Value::Null), Ok(Value::Null));
    }
    assert_eq!(
        check_value(&required(field("r", FieldType::Text)), &Value::Null),
        Ok(Value::Null)
    );
}

#[test]
fn an_unknown_key_is_refused() {
    let f = form(vec![field("a", FieldType::Text)]);
    let e = errs(&f, json!({"a": "x", "b": 1}), Mode::Create);
    assert_eq!(codes(&e), [("b", C::UnknownField)]);
    let e = errs(&f, json!({"b": 1}), Mode::Update);
    assert_eq!(codes(&e), [("b", C::UnknownField)]);
}

#[test]
fn create_requires_required_fields_unless_skipped() {
    let f = form(vec![
        required(field("title", FieldType::Text)),
        field("note", FieldType::Text),
    ]);
    let e = errs(&f, json!({"note": "x"}), Mode::Create);
    assert_eq!(codes(&e), [("title", C::FieldRequired)]);
    assert_eq!(e[0].message, "title is required");
    let skipped = validate_data(&f, &obj(json!({"note": "x"})), Mode::Create, true);
    assert_eq!(skipped, Ok(obj(json!({"note": "x"}))));
}

#[test]
fn create_refuses_empty_values_for_required_fields() {
    let f = form(vec![
        required(field("a", FieldType::Text)),
        required(field("b", FieldType::Text)),
        required(field("c", FieldType::Text)),
        required(field("d", FieldType::Array)),
        required(field("e", FieldType::Number)),
    ]);
    let input = json!({"a": null, "b": "", "c": " \t", "d": [], "e": " "});
    let e = errs(&f, input.clone(), Mode::Create);
    assert!(e.iter().all(|e| e.code == C::ValueMissing), "{e:?}");
    assert_eq!(e.len(), 5);
    // Skipping waives emptiness, but not a type problem: a blank string is no number.
    let skipped = validate_data(&f, &obj(input), Mode::Create, true).expect_err("e is no number");
    assert_eq!(codes(&skipped), [("e", C::ValueNotNumeric)]);
}

#[test]
fn create_drops_a_null_non_required_field() {
    let f = form(vec![
        field("a", FieldType::Text),
        field("b", FieldType::Number),
    ]);
    assert_eq!(
        ok(&f, json!({"a": null, "b": "3"}), Mode::Create),
        json!({"b": 3})
    );
}

#[test]
fn update_touches_only_the_keys_present() {
    let f = form(vec![
        required(field("title", FieldType::Text)),
        field("n", FieldType::Number),
    ]);
    assert_eq!(ok(&f, json!({}), Mode::Update), json!({}));
    assert_eq!(ok(&f, json!({"n": "4"}), Mode::Update), json!({"n": 4}));
}

#[test]
fn update_keeps_null_to_clear_a_field() {
    let f = form(vec![field("n", FieldType::Number)]);
    assert_eq!(ok(&f, json!({"n": null}), Mode::Update), json!({"n": null}));
}

#[test]
fn update_cannot_empty_a_required_field_unless_skipped() {
    let f = form(vec![required(field("title", FieldType::Text))]);
    for v in [json!(null), json!(""), json!("  ")] {
        let e = errs(&f, json!({ "title": v }), Mode::Update);
        assert_eq!(codes(&e), [("title", C::ValueMissing)]);
    }
    let skipped = validate_data(&f, &obj(json!({"title": null})), Mode::Update, true);
    assert_eq!(skipped, Ok(obj(json!({"title": null}))));
}

#[test]
fn every_problem_is_reported_at_once() {
    let f = form(vec![
        required(field("title", FieldType::Text)),
        required(field("due", FieldType::Date)),
        field("amount", FieldType::Number),
        field("site", FieldType::Url),
        with_options("tier", FieldType::Select, &["gold"]),
        field("flag", FieldType::Boolean),
    ]);
    let input = json!({
        "amount": "abc", "site": "ftp://x", "tier": "tin", "flag": "yes", "extra": 1, "title": 5
    });
    let e = errs(&f, input, Mode::Create);
    assert_eq!(
        codes(&e),
        [
            ("amount", C::ValueNotNumeric),
            ("site", C::InvalidUrl),
            ("tier", C::ValueNotAllowed),
            ("flag", C::WrongType),
            ("extra", C::UnknownField),
            ("title", C::WrongType),
            ("due", C::FieldRequired),
        ]
    );
}

#[test]
fn the_output_keeps_the_input_order_and_normalizes() {
    let f = form(vec![
        field("a", FieldType::Number),
        field("b", FieldType::Datetime),
        field("c", FieldType::Boolean),
        with_options("d", FieldType::MultiSelect, &["x", "y"]),
    ]);
    let out = ok(
        &f,
        json!({"d": ["y", "x", "y"], "c": "true", "b": "2024-01-01T01:00:00+01:00", "a": "1.5"}),
        Mode::Create,
    );
    assert_eq!(
        out,
        json!({"d": ["y", "x"], "c": true, "b": "2024-01-01T00:00:00Z", "a": 1.5})
    );
    let keys: Vec<&String> = out
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["d", "c", "b", "a"]);
}

#[test]
fn messages_name_the_field_and_what_was_expected() {
    let f = form(vec![
        field("amount", FieldType::Number),
        field("note", FieldType::Text),
    ]);
    let e = errs(&f, json!({"amount": "abc"}), Mode::Create);
    assert_eq!(
        e[0].message,
        "amount must be a number, got a string \"abc\""
    );
    let e = errs(&f, json!({"note": [1, 2]}), Mode::Create);
    assert_eq!(e[0].message, "note must be a string, got a list of 2 items");
}

#[test]
fn messages_do_not_echo_long_values() {
    let long = "x".repeat(61);
    let f = form(vec![field("amount", FieldType::Number)]);
    let e = errs(&f, json!({ "amount": long.clone() }), Mode::Create);
    assert_eq!(
        e[0].message,
        "amount must be a number, got a string of 61 characters"
    );
    let e = errs(&f, json!({ long.clone(): 1 }), Mode::Create);
    assert!(!e[0].message.contains(&long), "{}", e[0].message);
    let sixty = "y".repeat(60);
    let e = errs(&f, json!({ "amount": sixty.clone() }), Mode::Create);
    assert!(e[0].message.contains(&sixty));
}

#[test]
fn select_messages_list_a_few_options_or_count_many() {
    let f = form(vec![with_options(
        "tier",
        FieldType::Select,
        &["gold", "silver"],
    )]);
    let e = errs(&f, json!({"tier": "tin"}), Mode::Create);
    assert_eq!(
        e[0].message,
        "tier must be one of \"gold\", \"silver\", got a string \"tin\""
    );
    let many: Vec<String> = (0..11).map(|i| format!("o{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let f = form(vec![with_options("tier", FieldType::Select, &many)]);
    let e = errs(&f, json!({"tier": "tin"}), Mode::Create);
    assert!(
        e[0].message.contains("one of the 11 allowed values"),
        "{}",
        e[0].message
    );
}

#[test]
fn a_status_must_be_non_empty_and_allowed() {
    let mut f = FormSpec::new("x");
    assert_eq!(check_status(&f, "anything"), Ok(()));
    let e = check_status(&f, " ").expect_err("blank status");
    assert_eq!((e.field.as_str(), e.code), ("status", C::ValueMissing));
    f.statuses = vec!["open".into(), "closed".into()];
    assert_eq!(check_status(&f, "closed"), Ok(()));
    let e = check_status(&f, "Closed").expect_err("unknown status");
    assert_eq!((e.field.as_str(), e.code), ("status", C::ValueNotAllowed));
    assert_eq!(
        e.message,
        "status must be one of \"open\", \"closed\", got a string \"Closed\""
    );
    let e = check_status(&f, "").expect_err("empty status");
    assert_eq!(e.code, C::ValueMissing);
}
