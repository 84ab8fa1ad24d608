//! A hook's save-time check and what a payload item maps to.

use serde_json::{Value, json};

use super::*;
use crate::form::{FieldDef, FieldOption};

fn form() -> FormSpec {
    FormSpec {
        fields: vec![
            FieldDef {
                required: true,
                ..FieldDef::new("title", FieldType::Text)
            },
            FieldDef::new("amount", FieldType::Number),
            FieldDef::new("order_id", FieldType::Text),
            FieldDef::new("raw", FieldType::Object),
            FieldDef::new("tags", FieldType::Array),
            FieldDef {
                options: vec![FieldOption::new("web"), FieldOption::new("stripe")],
                ..FieldDef::new("source", FieldType::Select)
            },
        ],
        statuses: vec!["open".into(), "paid".into()],
        ..FormSpec::new("Orders")
    }
}

fn config(value: Value) -> HookConfig {
    let mut value = value;
    value["form_id"] = json!(FormId::new());
    serde_json::from_value(value).expect("a configuration")
}

fn fields_of(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn a_plain_create_hook_is_valid_with_defaults() {
    let hook = config(json!({}));
    assert_eq!(hook.action, HookAction::Create);
    assert_eq!(hook.limits.body_bytes, DEFAULT_BODY_BYTES);
    assert_eq!(
        hook.idempotency.window_secs,
        DEFAULT_IDEMPOTENCY_WINDOW_SECS
    );
    assert!(hook.idempotency.headers);
    hook.check(&form()).expect("valid");
}

#[test]
fn every_problem_is_reported_at_once_with_its_setting() {
    let hook = config(json!({
        "action": "update",
        "event_type": "payment.succeeded",
        "status": "archived",
        "mapping": {
            "rules": [{"path": "$.x[", "field": "amount"}, {"path": "$.y", "field": "nope"}],
            "static_values": {"amount": "lots"},
            "payload_field": "title",
            "external_refs": {"bad source!": "$.id"}
        },
        "idempotency": {"window_secs": 5, "path": "x"},
        "limits": {"body_bytes": 0, "rate_per_second": 0}
    }));
    let errors = hook.check(&form()).expect_err("invalid");
    let fields = fields_of(&errors);
    for expected in [
        "match",
        "event_type",
        "status",
        "mapping.rules[0].path",
        "mapping.rules[1].field",
        "mapping.static_values.amount",
        "mapping.payload_field",
        "mapping.external_refs.bad source!",
        "idempotency.window_secs",
        "idempotency.path",
        "limits.body_bytes",
        "limits.rate_per_second",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing in {fields:?}"
        );
    }
}

#[test]
fn match_rules_are_checked_against_the_form() {
    let bad =
        config(json!({"action": "upsert", "match": {"field": {"key": "raw", "path": "$.id"}}}));
    let errors = bad
        .check(&form())
        .expect_err("object fields cannot be matched");
    assert_eq!(fields_of(&errors), ["match.field.key"]);
    let unknown =
        config(json!({"action": "update", "match": {"field": {"key": "zzz", "path": "$.id"}}}));
    let errors = unknown.check(&form()).expect_err("unknown field");
    assert_eq!(errors[0].code, FieldErrorCode::UnknownField);
    let create = config(json!({"match": {"case_number": {"path": "$.n"}}}));
    assert_eq!(
        fields_of(&create.check(&form()).expect_err("create has no match")),
        ["match"]
    );
    let ok = config(json!({
        "action": "update", "on_no_match": "create",
        "match": {"external_ref": {"source": "stripe", "path": "$.data.object.metadata.ref"}}
    }));
    ok.check(&form()).expect("valid");
    let wrong_no_match = config(json!({
        "action": "upsert", "on_no_match": "create",
        "match": {"case_number": {"path": "$.n"}}
    }));
    assert_eq!(
        fields_of(&wrong_no_match.check(&form()).expect_err("upsert")),
        ["on_no_match"]
    );
}

#[test]
fn event_hooks_name_a_custom_type_and_have_no_mapping() {
    let ok = config(json!({
        "action": "event", "event_type": "payment.succeeded",
        "match": {"external_ref": {"source": "stripe", "path": "$.data.object.id"}}
    }));
    ok.check(&form()).expect("valid");
    let builtin = config(json!({
        "action": "event", "event_type": "case.created",
        "match": {"case_number": {"path": "$.n"}},
        "mapping": {"payload_field": "raw"}
    }));
    let errors = builtin
        .check(&form())
        .expect_err("built-in type and a mapping");
    assert_eq!(fields_of(&errors), ["event_type", "mapping"]);
}

#[test]
fn by_default_top_level_keys_are_fields() {
    let hook =
        config(json!({"mapping": {"static_values": {"source": "web"}, "payload_field": "raw"}}));
    let item = object(json!({"title": "Broken pipe", "amount": "12.5", "extra": true}));
    let mapped = hook.map_item(&item, &form());
    assert_eq!(mapped.data["title"], "Broken pipe");
    assert_eq!(
        mapped.data["extra"], true,
        "unknown keys are kept for validation to refuse"
    );
    assert_eq!(mapped.data["source"], "web");
    assert_eq!(mapped.data["raw"], Value::Object(item.clone()));
    assert!(mapped.problems.is_empty());

    let ignoring = config(json!({"mapping": {"unknown_keys": "ignore"}}));
    let mapped = ignoring.map_item(&item, &form());
    assert!(!mapped.data.contains_key("extra"));
}

#[test]
fn rules_fill_only_their_fields_and_missing_values_are_left_out() {
    let hook = config(json!({"mapping": {
        "rules": [
            {"path": "$.data.object.amount", "field": "amount"},
            {"path": "$.data.object.description", "field": "title"}
        ],
        "external_refs": {"stripe": "$.data.object.id", "crm": "$.data.object.customer"}
    }}));
    let item =
        object(json!({"data": {"object": {"id": "pi_1", "amount": 2000}}, "title": "ignored"}));
    let mapped = hook.map_item(&item, &form());
    assert_eq!(mapped.data.get("amount"), Some(&json!(2000)));
    assert!(!mapped.data.contains_key("title"), "{:?}", mapped.data);
    assert!(mapped.problems.is_empty(), "{:?}", mapped.problems);
    assert_eq!(
        mapped.external_refs.get("stripe").map(String::as_str),
        Some("pi_1")
    );
    assert!(!mapped.external_refs.contains_key("crm"));
}

#[test]
fn match_keys_come_from_the_payload() {
    let by_ref = config(json!({
        "action": "update",
        "match": {"external_ref": {"source": "stripe", "path": "$.data.object.metadata.order"}}
    }));
    let item = object(json!({"data": {"object": {"metadata": {"order": 1234}}}}));
    assert_eq!(
        by_ref.match_key(&item).expect("a key"),
        Some(MatchKey::ExternalRef {
            source: "stripe".into(),
            reference: "1234".into()
        })
    );
    let missing = by_ref
        .match_key(&object(json!({"data": {}})))
        .expect_err("nothing at the path");
    assert_eq!(missing.code, FieldErrorCode::ValueMissing);
    assert_eq!(missing.field, "match");

    let by_number =
        config(json!({"action": "update", "match": {"case_number": {"path": "$.case"}}}));
    assert_eq!(
        by_number
            .match_key(&object(json!({"case": "#12"})))
            .expect("key"),
        Some(MatchKey::Number(12))
    );
    assert_eq!(
        by_number
            .match_key(&object(json!({"case": 7})))
            .expect("key"),
        Some(MatchKey::Number(7))
    );
    let bad = by_number
        .match_key(&object(json!({"case": "x"})))
        .expect_err("not a number");
    assert_eq!(bad.code, FieldErrorCode::ValueNotNumeric);

    let create = config(json!({}));
    assert_eq!(
        create.match_key(&object(json!({"a": 1}))).expect("no rule"),
        None
    );
}

#[test]
fn the_idempotency_path_reads_a_scalar_from_the_body() {
    let hook = config(json!({"idempotency": {"path": "$.id"}}));
    assert_eq!(
        hook.idempotency_from_body(&json!({"id": "evt_1"})),
        Ok(Some("evt_1".into()))
    );
    assert_eq!(hook.idempotency_from_body(&json!({"other": 1})), Ok(None));
    assert!(
        hook.idempotency_from_body(&json!({"id": {"a": 1}}))
            .is_err()
    );
    assert_eq!(
        config(json!({})).idempotency_from_body(&json!({"id": 1})),
        Ok(None)
    );
}
