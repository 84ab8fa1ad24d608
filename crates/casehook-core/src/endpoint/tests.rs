use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::form::{FieldDef, FieldType};

fn forms() -> (FormId, BTreeMap<FormId, FormSpec>) {
    let mut spec = FormSpec::new("Claims");
    spec.fields = vec![
        FieldDef::new("amount", FieldType::Number),
        FieldDef::new("customer_id", FieldType::Text),
        FieldDef::new("reference", FieldType::Text),
    ];
    let id = FormId::new();
    (id, BTreeMap::from([(id, spec)]))
}

fn config(value: serde_json::Value) -> EndpointConfig {
    EndpointConfig::from_json(value).expect("parses")
}

fn codes(errors: &[FieldError]) -> Vec<(String, FieldErrorCode)> {
    errors.iter().map(|e| (e.field.clone(), e.code)).collect()
}

#[test]
fn defaults_fill_everything_but_the_url() {
    let c = config(json!({"url": "https://example.com/hook"}));
    assert_eq!(c.method, Method::Post);
    assert_eq!(c.timeout_secs, DEFAULT_TIMEOUT_SECS);
    assert_eq!(c.ordering, Ordering::Unordered);
    assert_eq!(c.retry, RetryPolicy::default());
    assert_eq!(c.disable_after_secs, DEFAULT_DISABLE_AFTER_SECS);
    let (_, forms) = forms();
    let compiled = c.check(&forms).expect("valid");
    assert!(compiled.condition.is_none());
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let e = EndpointConfig::from_json(json!({"url": "https://x.example", "retries": 3}))
        .expect_err("unknown key");
    assert!(e.message.contains("retries"), "{}", e.message);
}

#[test]
fn every_problem_is_reported_at_once() {
    let (form, forms) = forms();
    let c = config(json!({
        "url": "ftp://example.com",
        "headers": {"X Bad": "v", "X-Ok": "line\nbreak"},
        "subscriptions": {"event_types": ["case.created", "Not A Type"], "forms": [form, FormId::new()]},
        "condition": "case.data.amount >",
        "content": {"mode": "fields", "fields": ["data.nope"]},
        "timeout_secs": 0,
        "limits": {"max_in_flight": 0},
        "disable_after_secs": 5,
    }));
    let errors = c.check(&forms).expect_err("invalid");
    let fields: Vec<String> = codes(&errors).into_iter().map(|(f, _)| f).collect();
    for expected in [
        "url",
        "headers.X Bad",
        "headers.X-Ok",
        "subscriptions.event_types[1]",
        "subscriptions.forms[1]",
        "condition",
        "timeout_secs",
        "limits",
        "disable_after_secs",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert!(
        fields.iter().any(|f| f.starts_with("content")),
        "{fields:?}"
    );
    assert!(codes(&errors).contains(&("url".into(), FieldErrorCode::InvalidUrl)));
}

#[test]
fn a_condition_on_an_unknown_field_is_refused() {
    let (form, forms) = forms();
    let c = config(json!({
        "url": "https://x.example",
        "subscriptions": {"forms": [form]},
        "condition": "case.data.amonut > 5",
    }));
    let errors = c.check(&forms).expect_err("typo");
    assert_eq!(
        codes(&errors),
        vec![("condition".into(), FieldErrorCode::UnknownField)]
    );
    let ok = config(json!({"url": "https://x.example", "condition": "case.data.amount > 5"}));
    assert!(ok.check(&forms).expect("valid").condition.is_some());
}

#[test]
fn a_response_mapping_needs_forms() {
    let (form, forms) = forms();
    let mapping = json!({"rules": [{"path": "$.id", "field": "reference"}]});
    let unlimited = config(json!({"url": "https://x.example", "response_mapping": mapping}));
    let errors = unlimited.check(&forms).expect_err("no forms");
    assert_eq!(errors[0].field, "response_mapping");
    let limited = config(json!({
        "url": "https://x.example",
        "subscriptions": {"forms": [form]},
        "response_mapping": mapping,
    }));
    limited.check(&forms).expect("valid");
    let unknown = config(json!({
        "url": "https://x.example",
        "subscriptions": {"forms": [form]},
        "response_mapping": {"rules": [{"path": "$.id", "field": "nope"}]},
    }));
    let errors = unknown.check(&forms).expect_err("unknown field");
    assert!(
        errors[0].field.starts_with("response_mapping"),
        "{errors:?}"
    );
}

#[test]
fn event_type_patterns_match_families() {
    assert!(type_matches("*", "case.created"));
    assert!(type_matches("case.*", "case.status_changed"));
    assert!(!type_matches("case.*", "payment.succeeded"));
    assert!(type_matches("payment.succeeded", "payment.succeeded"));
    assert!(!type_matches("payment.succeeded", "payment.failed"));
    assert!(check_pattern("case.*").is_ok());
    assert!(check_pattern("payment.succeeded").is_ok());
    assert!(check_pattern("*").is_ok());
    assert!(check_pattern("ca*se").is_err());
    assert!(check_pattern("").is_err());
}

#[test]
fn credentials_never_show_and_make_the_right_header() {
    let basic = EndpointAuth::Basic {
        username: "u".into(),
        password: "p@ss".into(),
    };
    let (name, value, secrets) = basic.header();
    assert_eq!(
        (name.as_str(), value.as_str()),
        ("Authorization", "Basic dTpwQHNz")
    );
    assert!(secrets.contains(&"p@ss".to_string()));
    assert_eq!(format!("{basic:?}"), "basic");
    assert_eq!(
        basic.public_view(),
        json!({"type": "basic", "username": "u"})
    );
    let key = EndpointAuth::ApiKey {
        header: "X-Api-Key".into(),
        value: "k1".into(),
    };
    assert_eq!(key.header().0, "X-Api-Key");
    assert!(!key.public_view().to_string().contains("k1"));
    assert!(
        EndpointAuth::Bearer {
            token: String::new()
        }
        .check()
        .is_err()
    );
    assert!(
        EndpointAuth::ApiKey {
            header: "Bad Header".into(),
            value: "v".into()
        }
        .check()
        .is_err()
    );
    let parsed: EndpointAuth =
        serde_json::from_value(json!({"type": "bearer", "token": "t"})).expect("parses");
    assert_eq!(parsed, EndpointAuth::Bearer { token: "t".into() });
}
