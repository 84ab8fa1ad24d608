//! `ResponseMapping::apply` and the mapping's wire format: modes, coercions, filters.

use serde_json::{Value, json};

use super::*;
use crate::form::{FieldDef, FieldOption};

pub(super) fn form() -> FormSpec {
    let with_options = |key: &str, t, options: &[&str]| FieldDef {
        options: options.iter().map(|o| FieldOption::new(*o)).collect(),
        ..FieldDef::new(key, t)
    };
    FormSpec {
        fields: vec![
            FieldDef::new("ticket_id", FieldType::Text),
            FieldDef::new("amount", FieldType::Number),
            FieldDef::new("due", FieldType::Date),
            FieldDef::new("paid_at", FieldType::Datetime),
            FieldDef::new("active", FieldType::Boolean),
            with_options("tier", FieldType::Select, &["gold", "silver", "1"]),
            with_options("tags", FieldType::MultiSelect, &["vip", "eu", "2"]),
            FieldDef::new("items", FieldType::Array),
            FieldDef::new("meta", FieldType::Object),
            FieldDef::new("link", FieldType::Url),
            FieldDef::new("enrichment", FieldType::ApiCall),
            FieldDef::new("open_count", FieldType::Number),
        ],
        ..FormSpec::new("Tickets")
    }
}

fn response() -> Value {
    json!({
        "id": "T-100",
        "number": 42,
        "total": "1250.50",
        "due": "2026-03-01T23:30:00+02:00",
        "paid": "2026-03-01T10:00:00+01:00",
        "active": "TRUE",
        "tier": 1,
        "labels": ["vip", "eu", "vip", 2],
        "items": [
            {"id": 1, "status": "open", "qty": 2, "name": "Cable"},
            {"id": 2, "status": "done", "qty": 5, "name": "Plug"},
            {"id": 3, "status": "open", "qty": 1}
        ],
        "owner": {"name": "Ada", "email": null},
        "url": "https://example.com/t/100",
        "nothing": null
    })
}

pub(super) fn rule(path: &str, field: &str, mode: ArrayMode) -> MappingRule {
    MappingRule {
        path: path.into(),
        field: field.into(),
        mode,
    }
}

fn apply(rules: Vec<MappingRule>) -> MappingResult {
    ResponseMapping { rules }.apply(&response(), &form())
}

fn one(path: &str, field: &str, mode: ArrayMode) -> Result<Value, FieldError> {
    let mut result = apply(vec![rule(path, field, mode)]);
    match (result.data.remove(field), result.problems.pop()) {
        (Some(v), None) => Ok(v),
        (None, Some(p)) => Err(p),
        other => panic!("one value or one problem expected, got {other:?}"),
    }
}

fn first(path: &str, field: &str) -> Result<Value, FieldError> {
    one(path, field, ArrayMode::First)
}

#[test]
fn modes_are_written_as_words_or_tagged_objects() {
    let mapping: ResponseMapping = serde_json::from_value(json!({"rules": [
        {"path": "$.id", "field": "ticket_id"},
        {"path": "$.labels[*]", "field": "tags", "mode": "all"},
        {"path": "$.items[*]", "field": "open_count", "mode": "count"},
        {"path": "$.items[*].name", "field": "ticket_id", "mode": {"join": {}}},
        {"path": "$.items[*]", "field": "items", "mode": {"each": {"fields": {"$.id": "id"}}}}
    ]}))
    .expect("valid mapping");
    let modes: Vec<&ArrayMode> = mapping.rules.iter().map(|r| &r.mode).collect();
    assert_eq!(modes[0], &ArrayMode::First);
    assert_eq!(modes[1], &ArrayMode::All);
    assert_eq!(modes[2], &ArrayMode::Count);
    assert_eq!(
        modes[3],
        &ArrayMode::Join {
            separator: ", ".into()
        }
    );
    let back = serde_json::to_value(&mapping).expect("serializes");
    assert_eq!(back["rules"][1]["mode"], json!("all"));
    assert_eq!(
        back["rules"][4]["mode"]["each"]["fields"]["$.id"],
        json!("id")
    );
    let roundtrip: ResponseMapping = serde_json::from_value(back).expect("round-trips");
    assert_eq!(roundtrip, mapping);

    let typo =
        serde_json::from_value::<MappingRule>(json!({"path": "$", "field": "x", "mdoe": "all"}));
    assert!(typo.is_err());
    let bad_mode =
        serde_json::from_value::<MappingRule>(json!({"path": "$", "field": "x", "mode": "last"}));
    assert!(bad_mode.is_err());
}

#[test]
fn first_takes_the_first_match() {
    assert_eq!(first("$.id", "ticket_id"), Ok(json!("T-100")));
    assert_eq!(first("$.items[*].name", "ticket_id"), Ok(json!("Cable")));
    assert_eq!(
        first("$.owner", "meta"),
        Ok(json!({"name": "Ada", "email": null}))
    );
}

#[test]
fn no_match_or_null_leaves_the_field_out_and_says_so() {
    let result = apply(vec![
        rule("$.missing", "ticket_id", ArrayMode::First),
        rule("$.nothing", "amount", ArrayMode::First),
        rule("$.id", "link", ArrayMode::First),
    ]);
    assert!(result.data.is_empty(), "{:?}", result.data);
    let codes: Vec<(&str, FieldErrorCode)> = result
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("ticket_id", FieldErrorCode::ValueMissing),
            ("amount", FieldErrorCode::ValueMissing),
            ("link", FieldErrorCode::InvalidUrl),
        ]
    );
    assert_eq!(
        result.problems[0].message,
        "rules[0] (`$.missing`): the response has no value at this path; the field is left unchanged"
    );
    assert!(
        result.problems[2]
            .message
            .starts_with("rules[2] (`$.id`): a string \"T-100\" does not fit url field `link`")
    );
}

#[test]
fn all_collects_every_match() {
    assert_eq!(
        one("$.items[*].id", "items", ArrayMode::All),
        Ok(json!([1, 2, 3]))
    );
    // Option values are text: numbers become text, duplicates go.
    assert_eq!(
        one("$.labels[*]", "tags", ArrayMode::All),
        Ok(json!(["vip", "eu", "2"]))
    );
    assert_eq!(one("$.missing[*]", "items", ArrayMode::All), Ok(json!([])));
    let e = one("$.items[*].status", "tags", ArrayMode::All).expect_err("not options");
    assert_eq!(e.code, FieldErrorCode::ValueNotAllowed);
    assert!(
        e.message.contains(r#"a list of "vip", "eu", "2""#),
        "{}",
        e.message
    );
    let e = one("$.items[*]", "tags", ArrayMode::All).expect_err("objects");
    assert_eq!(e.code, FieldErrorCode::WrongType);
}

#[test]
fn count_counts_matches_and_zero_is_an_answer() {
    assert_eq!(
        one(
            "$.items[?@.status == 'open']",
            "open_count",
            ArrayMode::Count
        ),
        Ok(json!(2))
    );
    assert_eq!(
        one(
            "$.items[?@.status == 'lost']",
            "open_count",
            ArrayMode::Count
        ),
        Ok(json!(0))
    );
    assert_eq!(
        one("$.items[*]", "enrichment", ArrayMode::Count),
        Ok(json!(3))
    );
}

#[test]
fn join_makes_text_of_scalars() {
    let comma = ArrayMode::Join {
        separator: ", ".into(),
    };
    assert_eq!(
        one("$.items[*].name", "ticket_id", comma.clone()),
        Ok(json!("Cable, Plug"))
    );
    let pipe = ArrayMode::Join {
        separator: "|".into(),
    };
    assert_eq!(
        one("$.labels[*]", "ticket_id", pipe.clone()),
        Ok(json!("vip|eu|vip|2"))
    );
    // Nulls are skipped; nothing but nulls is no value.
    assert_eq!(
        one("$.owner.*", "ticket_id", pipe.clone()),
        Ok(json!("Ada"))
    );
    let e = one("$.nothing", "ticket_id", pipe.clone()).expect_err("only null");
    assert_eq!(e.code, FieldErrorCode::ValueMissing);
    let e = one("$.items[*]", "ticket_id", pipe).expect_err("objects");
    assert_eq!(e.code, FieldErrorCode::WrongType);
}

#[test]
fn each_maps_items_into_objects() {
    let mode = ArrayMode::Each {
        fields: [
            ("$.id".to_owned(), "ref".to_owned()),
            ("@.name".to_owned(), "label".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        one("$.items[?@.status == 'open']", "items", mode.clone()),
        Ok(json!([{"ref": 1, "label": "Cable"}, {"ref": 3}]))
    );
    assert_eq!(one("$.missing[*]", "items", mode), Ok(json!([])));
}

#[test]
fn values_are_coerced_to_the_field_type() {
    assert_eq!(first("$.total", "amount"), Ok(json!(1250.5)));
    assert_eq!(first("$.number", "ticket_id"), Ok(json!("42")));
    assert_eq!(first("$.active", "active"), Ok(json!(true)));
    assert_eq!(
        first("$.items[0].status", "active").map_err(|e| e.code),
        Err(FieldErrorCode::WrongType)
    );
    assert_eq!(first("$.tier", "tier"), Ok(json!("1")));
    assert_eq!(
        first("$.items[0].status", "tier").map_err(|e| e.code),
        Err(FieldErrorCode::ValueNotAllowed)
    );
    // A timestamp's own calendar date, not the UTC one.
    assert_eq!(first("$.due", "due"), Ok(json!("2026-03-01")));
    assert_eq!(
        first("$.id", "due").map_err(|e| e.code),
        Err(FieldErrorCode::WrongDate)
    );
    assert_eq!(
        first("$.paid", "paid_at"),
        Ok(json!("2026-03-01T09:00:00Z"))
    );
    assert_eq!(
        first("$.url", "link"),
        Ok(json!("https://example.com/t/100"))
    );
    assert_eq!(
        first("$.id", "amount").map_err(|e| e.code),
        Err(FieldErrorCode::ValueNotNumeric)
    );
    assert_eq!(
        first("$.owner", "ticket_id").map_err(|e| e.code),
        Err(FieldErrorCode::WrongType)
    );
    assert_eq!(first("$.labels", "tags"), Ok(json!(["vip", "eu", "2"])));
    assert_eq!(
        first("$.labels", "items"),
        Ok(json!(["vip", "eu", "vip", 2]))
    );
    assert_eq!(
        first("$.id", "items").map_err(|e| e.code),
        Err(FieldErrorCode::ValueNotArray)
    );
    assert_eq!(
        first("$.owner", "enrichment"),
        Ok(json!({"name": "Ada", "email": null}))
    );
}

#[test]
fn filters_select_by_value() {
    assert_eq!(
        one("$.items[?@.status == 'open'].id", "items", ArrayMode::All),
        Ok(json!([1, 3]))
    );
    assert_eq!(
        one(
            "$.items[?@.qty > 1 && @.status != 'done'].name",
            "ticket_id",
            ArrayMode::First
        ),
        Ok(json!("Cable"))
    );
    assert_eq!(
        one(
            "$.items[?match(@.name, 'P.*')].id",
            "amount",
            ArrayMode::First
        ),
        Ok(json!(2))
    );
    assert_eq!(one("$..qty", "items", ArrayMode::All), Ok(json!([2, 5, 1])));
}

#[test]
fn the_deepest_accepted_path_runs_on_a_default_stack() {
    let deepest = format!(
        "$.items[?{}@.qty > 1{}]",
        "(".repeat(MAX_PATH_NESTING - 1),
        ")".repeat(MAX_PATH_NESTING - 1)
    );
    assert_eq!(
        one(&deepest, "items", ArrayMode::All).map(|v| v.as_array().map(Vec::len)),
        Ok(Some(2))
    );
}

#[test]
fn apply_reports_rules_that_check_would_refuse_and_keeps_the_others() {
    let result = apply(vec![
        rule("$.items[", "amount", ArrayMode::First),
        rule("$.id", "nope", ArrayMode::First),
        rule("$.id", "ticket_id", ArrayMode::Count),
        rule("$.id", "ticket_id", ArrayMode::First),
        rule("$.number", "ticket_id", ArrayMode::First),
        rule(
            "$.items[*]",
            "items",
            ArrayMode::Each {
                fields: [("$[".to_owned(), "x".to_owned())].into_iter().collect(),
            },
        ),
    ]);
    assert_eq!(
        result.data,
        json!({"ticket_id": "T-100"})
            .as_object()
            .cloned()
            .unwrap_or_default()
    );
    let codes: Vec<FieldErrorCode> = result.problems.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        [
            FieldErrorCode::InvalidDefinition,
            FieldErrorCode::UnknownField,
            FieldErrorCode::InvalidDefinition,
            FieldErrorCode::DuplicateKey,
            FieldErrorCode::InvalidDefinition,
        ]
    );
}
