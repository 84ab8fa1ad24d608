use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::macros::datetime;

use super::*;
use crate::case::{Change, Changes, Data};
use crate::event::{Actor, ActorKind};
use crate::form::{FieldDef, FieldType};
use crate::ids::{CaseId, EventId, FormId, WorkspaceId};

fn obj(v: Value) -> Data {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("test input is an object"),
    }
}

fn case() -> Case {
    Case {
        id: CaseId::new(),
        workspace_id: WorkspaceId::new(),
        form_id: FormId::new(),
        number: 42,
        status: "open".into(),
        data: obj(json!({
            "customer_id": "cus_1",
            "amount": 99.5,
            "items": [{"sku": "A&B"}, {"sku": "C"}],
        })),
        external_refs: BTreeMap::new(),
        version: 3,
        created_by: Actor::system(),
        created_at: datetime!(2024-05-01 10:00:00 UTC),
        updated_at: datetime!(2024-05-01 11:00:00 UTC),
        deleted_at: None,
    }
}

fn event_for(case: &Case, event_type: &str, changes: Option<Changes>) -> Event {
    Event {
        id: EventId::new(),
        sequence: 9,
        workspace_id: case.workspace_id,
        event_type: event_type.into(),
        case_id: Some(case.id),
        form_id: Some(case.form_id),
        actor: Actor {
            kind: ActorKind::ApiKey,
            id: Some("key_1".into()),
            name: "CRM sync".into(),
            chain: 0,
        },
        data: json!({"id": case.id.to_string(), "number": case.number, "data": Value::Object(case.data.clone())}),
        changes,
        skip_triggers: false,
        // A non-UTC offset: the envelope must still say UTC.
        occurred_at: datetime!(2024-05-01 13:30:05.25 +02:00),
    }
}

fn form() -> FormSpec {
    FormSpec {
        fields: vec![
            FieldDef::new("customer_id", FieldType::Text),
            FieldDef::new("amount", FieldType::Number),
            FieldDef::new("items", FieldType::Array),
        ],
        ..FormSpec::new("Orders")
    }
}

fn spec(v: Value) -> ContentSpec {
    serde_json::from_value(v).expect("valid content spec")
}

fn check_errors(s: &ContentSpec) -> Vec<FieldError> {
    let form = form();
    s.check(&[&form]).expect_err("refused")
}

#[test]
fn the_envelope_of_case_created_has_every_key_but_changes() {
    let c = case();
    let e = event_for(&c, "case.created", None);
    let env = envelope(&e);
    assert_eq!(
        env,
        json!({
            "id": e.id.to_string(),
            "type": "case.created",
            "timestamp": "2024-05-01T11:30:05.25Z",
            "workspace_id": c.workspace_id.to_string(),
            "actor": {"kind": "api_key", "id": "key_1", "name": "CRM sync"},
            "resource_type": "case",
            "resource_id": c.id.to_string(),
            "data": e.data,
        })
    );
    let keys: Vec<&String> = env.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "timestamp",
            "workspace_id",
            "actor",
            "resource_type",
            "resource_id",
            "data"
        ]
    );
}

#[test]
fn the_envelope_of_case_updated_carries_its_changes() {
    let c = case();
    let mut changes = Changes::new();
    changes.insert(
        "amount".into(),
        Change {
            old: json!(10),
            new: json!(99.5),
        },
    );
    let env = envelope(&event_for(&c, "case.updated", Some(changes)));
    assert_eq!(env["changes"], json!({"amount": {"old": 10, "new": 99.5}}));
    // An empty change set is left out rather than sent as `{}`.
    let env = envelope(&event_for(&c, "case.updated", Some(Changes::new())));
    assert!(env.get("changes").is_none());
}

#[test]
fn events_without_a_case_are_about_the_workspace() {
    let c = case();
    let mut e = event_for(&c, "payment.succeeded", None);
    e.case_id = None;
    let env = envelope(&e);
    assert_eq!(env["resource_type"], "workspace");
    assert_eq!(env["resource_id"], json!(c.workspace_id.to_string()));
}

#[test]
fn the_default_spec_is_the_envelope() {
    assert_eq!(ContentSpec::default(), ContentSpec::Envelope);
    assert_eq!(spec(json!({"mode": "envelope"})), ContentSpec::Envelope);
    let c = case();
    let e = event_for(&c, "case.created", None);
    assert_eq!(
        ContentSpec::Envelope.build(&e, Some(&c)).expect("ok"),
        envelope(&e)
    );
    ContentSpec::Envelope.check(&[]).expect("nothing to check");
}

#[test]
fn selected_fields_are_written_under_their_last_name_or_alias() {
    let s = spec(json!({
        "mode": "fields",
        "fields": [
            "data.customer_id",
            "case.number",
            "event.type",
            {"path": "case.id", "as": "case_id"},
            "data.items.1.sku",
            "data.missing_value",
        ],
    }));
    let c = case();
    let e = event_for(&c, "case.created", None);
    let out = s.build(&e, Some(&c)).expect("builds");
    assert_eq!(
        out,
        json!({
            "customer_id": "cus_1",
            "number": 42,
            "type": "case.created",
            "case_id": c.id.to_string(),
            "sku": "C",
            "missing_value": null,
        })
    );
}

#[test]
fn custom_fields_are_static_or_templated_and_keep_types() {
    let s = spec(json!({
        "mode": "fields",
        "fields": ["data.customer_id"],
        "custom": {
            "source": "casehook",
            "version": 2,
            "total": "{data.amount}",
            "title": "Order #{case.number} for {data.customer_id}",
            "nested": {"kind": "{event.type}", "skus": ["{data.items.0.sku}"]},
            "absent": "{data.nothing}",
            "absent_text": "x{data.nothing}y",
        },
    }));
    let form = form();
    // `data.nothing` is not a field: check refuses it, build still renders it empty.
    assert!(s.check(&[&form]).is_err());
    let c = case();
    let out = s
        .build(&event_for(&c, "case.updated", None), Some(&c))
        .expect("builds");
    assert_eq!(
        out,
        json!({
            "customer_id": "cus_1",
            "absent": null,
            "absent_text": "xy",
            "nested": {"kind": "case.updated", "skus": ["A&B"]},
            "source": "casehook",
            "title": "Order #42 for cus_1",
            "total": 99.5,
            "version": 2,
        })
    );
}

#[test]
fn without_a_case_only_the_event_is_available() {
    let s = spec(json!({"mode": "fields", "fields": ["event.type", "data.customer_id"]}));
    let c = case();
    let out = s
        .build(&event_for(&c, "payment.succeeded", None), None)
        .expect("builds");
    assert_eq!(
        out,
        json!({"type": "payment.succeeded", "customer_id": null})
    );
}

#[test]
fn secrets_in_custom_fields_are_resolved_and_reported() {
    let s = spec(json!({"mode": "fields", "custom": {"token": "{secret.crm_token}", "n": 1}}));
    let c = case();
    let e = event_for(&c, "case.created", None);
    let source = |name: &str| (name == "crm_token").then(|| "tok_123".to_owned());
    let out = s.build_with_secrets(&e, Some(&c), &source).expect("builds");
    assert_eq!(out.value, json!({"n": 1, "token": "tok_123"}));
    assert_eq!(out.secrets_used, ["tok_123"]);
    assert_eq!(s.secret_names(), ["crm_token"]);

    // Without the secret the delivery fails instead of sending an empty token.
    let err = s.build(&e, Some(&c)).expect_err("no secrets");
    assert_eq!(
        err,
        ContentError::SecretUnavailable {
            key: "token".into(),
            name: "crm_token".into()
        }
    );
    assert!(err.to_string().contains("{secret.crm_token}"), "{err}");
}

#[test]
fn a_good_spec_passes_the_check() {
    let s = spec(json!({
        "mode": "fields",
        "fields": ["data.customer_id", "data.items.0.sku", "case.number", "case.data.amount",
                   "event.type", {"path": "event.data.number", "as": "n"}, "data", {"path": "case.id", "as": "cid"}],
        "custom": {"t": "{secret.api_key} {case.status} {event.changes}", "x": [1, "{data.amount}"]},
    }));
    let form = form();
    s.check(&[&form]).expect("valid");
}

#[test]
fn unknown_data_fields_are_refused_with_their_position() {
    let s = spec(json!({
        "mode": "fields",
        "fields": ["data.customer_id", "data.customer"],
        "custom": {"c": {"deep": ["{case.data.amout}"]}},
    }));
    let errors = check_errors(&s);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].field, "content.fields[1]");
    assert_eq!(errors[0].code, FieldErrorCode::UnknownField);
    assert_eq!(
        errors[0].message,
        "`{data.customer}`: no form this endpoint listens to has a field `customer`"
    );
    assert_eq!(errors[1].field, "content.custom.c.deep[0]");
    assert_eq!(errors[1].code, FieldErrorCode::UnknownField);
}

#[test]
fn a_field_known_to_any_listened_form_is_accepted() {
    let s = spec(json!({"mode": "fields", "fields": ["data.priority"]}));
    let orders = form();
    let tickets = FormSpec {
        fields: vec![FieldDef::new("priority", FieldType::Text)],
        ..FormSpec::new("Tickets")
    };
    s.check(&[&orders, &tickets]).expect("tickets has it");
    assert!(s.check(&[&orders]).is_err());
    assert!(s.check(&[]).is_err());
}

#[test]
fn unknown_roots_and_keys_are_refused() {
    let s = spec(json!({
        "mode": "fields",
        "fields": ["dta.customer_id", "secret.api_key", "case.numbr", "event.kind", "data..x"],
        "custom": {"a": "{sekret.x}", "b": "{secret.a.b}", "c": "{oops"},
    }));
    let errors = check_errors(&s);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "content.fields[0]",
            "content.fields[1]",
            "content.fields[2]",
            "content.fields[3]",
            "content.fields[4]",
            "content.custom.a",
            "content.custom.b",
            "content.custom.c",
        ]
    );
    assert!(
        errors
            .iter()
            .all(|e| e.code == FieldErrorCode::InvalidDefinition)
    );
    assert!(
        errors[0]
            .message
            .contains("`dta` is not one of `event`, `case`, `data`")
    );
    assert!(
        errors[2].message.contains("a case has no `numbr`"),
        "{}",
        errors[2].message
    );
    assert!(
        errors[3].message.contains("envelope has no `kind`"),
        "{}",
        errors[3].message
    );
    assert!(
        errors[6].message.contains("name one secret"),
        "{}",
        errors[6].message
    );
    assert!(
        errors[7].message.contains("never closed"),
        "{}",
        errors[7].message
    );
}

#[test]
fn output_keys_must_be_unique() {
    let s = spec(json!({
        "mode": "fields",
        "fields": ["case.id", "event.id", {"path": "data.amount", "as": "total"}, {"path": "data.amount", "as": ""}],
        "custom": {"total": 1},
    }));
    let errors = check_errors(&s);
    let summary: Vec<(&str, FieldErrorCode)> =
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    assert_eq!(
        summary,
        [
            ("content.fields[1]", FieldErrorCode::DuplicateKey),
            ("content.fields[3]", FieldErrorCode::InvalidDefinition),
            ("content.custom.total", FieldErrorCode::DuplicateKey),
        ]
    );
    assert!(
        errors[0]
            .message
            .contains("already produced by `content.fields[0]`")
    );
}

#[test]
fn specs_serialize_back_to_their_json() {
    let v = json!({
        "mode": "fields",
        "fields": ["data.customer_id", {"path": "case.id", "as": "case_id"}],
        "custom": {"a": "{case.number}"},
    });
    assert_eq!(serde_json::to_value(spec(v.clone())).expect("ok"), v);
    assert_eq!(
        serde_json::to_value(ContentSpec::Envelope).expect("ok"),
        json!({"mode": "envelope"})
    );
    let minimal = spec(json!({"mode": "fields"}));
    assert_eq!(
        minimal,
        ContentSpec::Fields {
            fields: vec![],
            custom: BTreeMap::new()
        }
    );
}

#[test]
fn malformed_specs_get_precise_serde_errors() {
    for (v, expected) in [
        (
            json!({"mode": "everything"}),
            "unknown variant `everything`",
        ),
        (
            json!({"mode": "fields", "fields": [{"path": "a", "alias": "b"}]}),
            "unknown field `alias`",
        ),
        (
            json!({"mode": "fields", "fields": [3]}),
            "a field path such as",
        ),
        (
            json!({"mode": "fields", "extra": 1}),
            "unknown field `extra`",
        ),
    ] {
        let err = serde_json::from_value::<ContentSpec>(v).expect_err("refused");
        assert!(err.to_string().contains(expected), "{err}");
    }
}
