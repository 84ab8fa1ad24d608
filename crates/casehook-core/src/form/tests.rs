//! Unit tests for form definitions: their JSON shape, `check` and `review_change`.

use serde_json::json;

use super::*;

fn form(value: serde_json::Value) -> FormSpec {
    serde_json::from_value(value).expect("test form must deserialize")
}

fn codes_at(errors: &[FieldError]) -> Vec<(&str, FieldErrorCode)> {
    errors.iter().map(|e| (e.field.as_str(), e.code)).collect()
}

fn check_errors(f: &FormSpec) -> Vec<FieldError> {
    f.check().expect_err("form should be refused")
}

fn select(key: &str, options: &[&str]) -> FieldDef {
    FieldDef {
        options: options.iter().map(|o| FieldOption::new(*o)).collect(),
        ..FieldDef::new(key, FieldType::Select)
    }
}

fn with_fields(fields: Vec<FieldDef>) -> FormSpec {
    FormSpec {
        fields,
        ..FormSpec::new("Claims")
    }
}

#[test]
fn field_types_use_snake_case_names() {
    let names = [
        (FieldType::Text, "text"),
        (FieldType::Number, "number"),
        (FieldType::Date, "date"),
        (FieldType::Datetime, "datetime"),
        (FieldType::Boolean, "boolean"),
        (FieldType::Select, "select"),
        (FieldType::MultiSelect, "multi_select"),
        (FieldType::Array, "array"),
        (FieldType::Object, "object"),
        (FieldType::Url, "url"),
        (FieldType::ApiCall, "api_call"),
    ];
    for (t, name) in names {
        assert_eq!(serde_json::to_value(t).expect("serialize"), json!(name));
        assert_eq!(
            serde_json::from_value::<FieldType>(json!(name)).expect("deserialize"),
            t
        );
        assert_eq!(t.as_str(), name);
    }
}

#[test]
fn a_minimal_field_gets_its_defaults() {
    let f: FieldDef =
        serde_json::from_value(json!({"key": "amount", "type": "number"})).expect("deserialize");
    assert_eq!(f, FieldDef::new("amount", FieldType::Number));
    assert_eq!(f.label, "amount");
    assert!(!f.required);
    assert!(f.options.is_empty() && f.section.is_none() && f.api_call.is_none());
}

#[test]
fn an_explicit_label_is_kept() {
    let f: FieldDef =
        serde_json::from_value(json!({"key": "amount", "label": "Amount (EUR)", "type": "number"}))
            .expect("deserialize");
    assert_eq!(f.label, "Amount (EUR)");
}

#[test]
fn options_read_from_bare_strings_and_objects_and_write_as_objects() {
    let f: FieldDef = serde_json::from_value(json!({
        "key": "tier", "type": "select",
        "options": ["gold", {"value": "silver", "label": "Silver"}, {"value": "bronze"}]
    }))
    .expect("deserialize");
    assert_eq!(
        f.options,
        vec![
            FieldOption::new("gold"),
            FieldOption {
                value: "silver".into(),
                label: Some("Silver".into())
            },
            FieldOption::new("bronze"),
        ]
    );
    let written = serde_json::to_value(&f).expect("serialize");
    assert_eq!(
        written["options"],
        json!([{"value": "gold"}, {"value": "silver", "label": "Silver"}, {"value": "bronze"}])
    );
}

#[test]
fn a_malformed_option_is_refused_with_a_precise_message() {
    let err = serde_json::from_value::<FieldOption>(json!(12)).expect_err("a number is no option");
    assert!(err.to_string().contains("an option"), "{err}");
    let err = serde_json::from_value::<FieldOption>(json!({"label": "x"})).expect_err("no value");
    assert!(err.to_string().contains("value"), "{err}");
}

#[test]
fn an_unknown_field_type_is_refused() {
    let r = serde_json::from_value::<FieldDef>(json!({"key": "a", "type": "color"}));
    assert!(r.is_err());
}

#[test]
fn a_form_round_trips_through_json() {
    let f = form(json!({
        "name": "Claims",
        "description": "Insurance claims",
        "sections": [{"key": "main", "label": "Main"}],
        "fields": [
            {"key": "title", "type": "text", "required": true, "section": "main"},
            {"key": "tier", "type": "multi_select", "options": ["a", "b"]},
            {"key": "score", "type": "api_call", "api_call": {"connection": "bureau", "operation": "score"}}
        ],
        "statuses": ["open", "closed"],
        "default_status": "open"
    }));
    let again: FormSpec =
        serde_json::from_value(serde_json::to_value(&f).expect("serialize")).expect("deserialize");
    assert_eq!(again, f);
    assert_eq!(f.check(), Ok(()));
}

#[test]
fn a_minimal_form_needs_only_a_name() {
    let f = form(json!({"name": "Tickets"}));
    assert_eq!(f, FormSpec::new("Tickets"));
    assert_eq!(f.check(), Ok(()));
}

#[test]
fn fields_are_found_by_key() {
    let f = with_fields(vec![
        FieldDef::new("a", FieldType::Text),
        FieldDef::new("b", FieldType::Url),
    ]);
    assert_eq!(f.field("b").map(|d| d.field_type), Some(FieldType::Url));
    assert!(f.field("c").is_none());
}

#[test]
fn the_initial_status_falls_back_to_the_first_status_then_open() {
    let mut f = FormSpec::new("x");
    assert_eq!(f.initial_status(), "open");
    f.statuses = vec!["new".into(), "done".into()];
    assert_eq!(f.initial_status(), "new");
    f.default_status = Some("done".into());
    assert_eq!(f.initial_status(), "done");
}

#[test]
fn the_name_must_be_present_and_not_too_long() {
    assert_eq!(
        codes_at(&check_errors(&FormSpec::new("  "))),
        [("name", FieldErrorCode::InvalidDefinition)]
    );
    assert_eq!(FormSpec::new("é".repeat(200)).check(), Ok(()));
    assert_eq!(
        codes_at(&check_errors(&FormSpec::new("x".repeat(201)))),
        [("name", FieldErrorCode::InvalidDefinition)]
    );
}

#[test]
fn field_keys_follow_the_key_syntax() {
    assert!(is_valid_key("a"));
    assert!(is_valid_key("claim_amount_2"));
    assert!(is_valid_key(&format!("a{}", "b".repeat(63))));
    for bad in ["", "A", "1a", "_a", "a-b", "a b", "aé", "Amount"] {
        assert!(!is_valid_key(bad), "{bad:?}");
    }
    assert!(!is_valid_key(&format!("a{}", "b".repeat(64))));

    let f = with_fields(vec![
        FieldDef::new("ok", FieldType::Text),
        FieldDef::new("Bad", FieldType::Text),
    ]);
    let errors = check_errors(&f);
    assert_eq!(
        codes_at(&errors),
        [("fields[1].key", FieldErrorCode::InvalidDefinition)]
    );
    assert!(errors[0].message.contains("Bad"));
}

#[test]
fn a_duplicate_field_key_is_reported_at_the_second_occurrence() {
    let f = with_fields(vec![
        FieldDef::new("a", FieldType::Text),
        FieldDef::new("b", FieldType::Text),
        FieldDef::new("a", FieldType::Number),
    ]);
    assert_eq!(
        codes_at(&check_errors(&f)),
        [("fields[2].key", FieldErrorCode::DuplicateKey)]
    );
}

#[test]
fn selects_need_distinct_non_empty_options() {
    let f = with_fields(vec![
        select("none", &[]),
        select("dup", &["a", "b", "a"]),
        FieldDef::new("multi", FieldType::MultiSelect),
        select("blank", &["a", " "]),
    ]);
    assert_eq!(
        codes_at(&check_errors(&f)),
        [
            ("fields[0].options", FieldErrorCode::InvalidDefinition),
            (
                "fields[1].options[2].value",
                FieldErrorCode::InvalidDefinition
            ),
            ("fields[2].options", FieldErrorCode::InvalidDefinition),
            (
                "fields[3].options[1].value",
                FieldErrorCode::InvalidDefinition
            ),
        ]
    );
}

#[test]
fn options_are_only_for_selects() {
    let text = FieldDef {
        options: vec![FieldOption::new("a")],
        ..FieldDef::new("t", FieldType::Text)
    };
    assert_eq!(
        codes_at(&check_errors(&with_fields(vec![text]))),
        [("fields[0].options", FieldErrorCode::InvalidDefinition)]
    );
}

#[test]
fn api_call_configuration_is_only_for_api_call_fields() {
    let ok = FieldDef {
        api_call: Some(json!({"api_config": {"url": "https://api.example/x"}})),
        ..FieldDef::new("a", FieldType::ApiCall)
    };
    let bad = FieldDef {
        api_call: Some(json!({})),
        ..FieldDef::new("b", FieldType::Text)
    };
    assert_eq!(
        codes_at(&check_errors(&with_fields(vec![ok, bad]))),
        [("fields[1].api_call", FieldErrorCode::InvalidDefinition)]
    );
}

#[test]
fn sections_are_declared_well_formed_and_unique() {
    let mut f = with_fields(vec![
        FieldDef {
            section: Some("main".into()),
            ..FieldDef::new("a", FieldType::Text)
        },
        FieldDef {
            section: Some("other".into()),
            ..FieldDef::new("b", FieldType::Text)
        },
        FieldDef {
            section: Some("Bad Key".into()),
            ..FieldDef::new("c", FieldType::Text)
        },
    ]);
    f.sections = vec![
        Section {
            key: "main".into(),
            label: "Main".into(),
        },
        Section {
            key: "main".into(),
            label: "Again".into(),
        },
        Section {
            key: "Bad Key".into(),
            label: "Bad".into(),
        },
    ];
    assert_eq!(
        codes_at(&check_errors(&f)),
        [
            ("sections[1].key", FieldErrorCode::DuplicateKey),
            ("sections[2].key", FieldErrorCode::InvalidDefinition),
            // The malformed section is reported once, not again for the field naming it.
            ("fields[1].section", FieldErrorCode::InvalidDefinition),
        ]
    );
}

#[test]
fn statuses_are_non_empty_and_unique_and_hold_the_default() {
    let mut f = FormSpec::new("x");
    f.statuses = vec!["open".into(), "".into(), "open".into()];
    f.default_status = Some("closed".into());
    assert_eq!(
        codes_at(&check_errors(&f)),
        [
            ("statuses[1]", FieldErrorCode::InvalidDefinition),
            ("statuses[2]", FieldErrorCode::InvalidDefinition),
            ("default_status", FieldErrorCode::InvalidDefinition),
        ]
    );
}

#[test]
fn without_statuses_any_non_empty_default_goes() {
    let mut f = FormSpec::new("x");
    f.default_status = Some("triage".into());
    assert_eq!(f.check(), Ok(()));
    f.default_status = Some(" ".into());
    assert_eq!(
        codes_at(&check_errors(&f)),
        [("default_status", FieldErrorCode::InvalidDefinition)]
    );
}

#[test]
fn check_reports_every_problem_at_once() {
    let f = form(json!({
        "name": "",
        "fields": [
            {"key": "9lives", "type": "text"},
            {"key": "a", "type": "select"},
            {"key": "a", "type": "number", "options": ["x"], "section": "nowhere"}
        ],
        "statuses": ["open"],
        "default_status": "closed"
    }));
    assert_eq!(
        codes_at(&check_errors(&f)),
        [
            ("name", FieldErrorCode::InvalidDefinition),
            ("fields[0].key", FieldErrorCode::InvalidDefinition),
            ("fields[1].options", FieldErrorCode::InvalidDefinition),
            ("fields[2].key", FieldErrorCode::DuplicateKey),
            ("fields[2].section", FieldErrorCode::InvalidDefinition),
            ("fields[2].options", FieldErrorCode::InvalidDefinition),
            ("default_status", FieldErrorCode::InvalidDefinition),
        ]
    );
}

#[test]
fn an_unchanged_form_needs_no_review() {
    let f = with_fields(vec![
        select("tier", &["a", "b"]),
        FieldDef::new("n", FieldType::Number),
    ]);
    let review = review_change(&f, &f);
    assert!(review.is_empty());
    assert!(review.errors().is_empty());
}

#[test]
fn a_removed_field_is_reported() {
    let old = with_fields(vec![
        FieldDef::new("a", FieldType::Text),
        FieldDef::new("b", FieldType::Text),
    ]);
    let new = with_fields(vec![
        FieldDef::new("b", FieldType::Text),
        FieldDef::new("c", FieldType::Text),
    ]);
    let review = review_change(&old, &new);
    assert_eq!(
        review,
        FormChangeReview {
            narrowed: vec![],
            removed: vec!["a".into()]
        }
    );
    assert!(!review.is_empty());
}

#[test]
fn a_type_change_narrows_unless_it_is_a_safe_widening() {
    use FieldType::*;
    let safe = [(Select, Text), (Date, Text), (Datetime, Text), (Url, Text)];
    let narrowing = [
        (Text, Number),
        (Number, Text),
        (Boolean, Text),
        (Date, Datetime),
        (Select, MultiSelect),
        (Text, ApiCall),
        (Array, Object),
        (ApiCall, Text),
        (Text, Url),
    ];
    for (from, to) in safe {
        let old = with_fields(vec![FieldDef::new("f", from)]);
        let new = with_fields(vec![FieldDef::new("f", to)]);
        assert!(review_change(&old, &new).is_empty(), "{from} -> {to}");
    }
    for (from, to) in narrowing {
        let old = with_fields(vec![FieldDef::new("f", from)]);
        let new = with_fields(vec![FieldDef::new("f", to)]);
        assert_eq!(review_change(&old, &new).narrowed, ["f"], "{from} -> {to}");
    }
}

#[test]
fn losing_an_option_narrows_and_adding_one_does_not() {
    let old = with_fields(vec![select("tier", &["a", "b"])]);
    let added = with_fields(vec![select("tier", &["b", "a", "c"])]);
    let lost = with_fields(vec![select("tier", &["a", "c"])]);
    assert!(review_change(&old, &added).is_empty());
    assert_eq!(review_change(&old, &lost).narrowed, ["tier"]);

    let multi = |opts: &[&str]| FieldDef {
        field_type: FieldType::MultiSelect,
        ..select("tags", opts)
    };
    let old = with_fields(vec![multi(&["x", "y"])]);
    assert_eq!(
        review_change(&old, &with_fields(vec![multi(&["x"])])).narrowed,
        ["tags"]
    );
    // A select turned into text keeps every stored string valid, whatever its options were.
    let text = with_fields(vec![FieldDef::new("tier", FieldType::Text)]);
    assert!(review_change(&with_fields(vec![select("tier", &["a"])]), &text).is_empty());
}

#[test]
fn a_required_flag_change_is_not_narrowing() {
    let old = with_fields(vec![FieldDef::new("a", FieldType::Text)]);
    let new = with_fields(vec![FieldDef {
        required: true,
        ..FieldDef::new("a", FieldType::Text)
    }]);
    assert!(review_change(&old, &new).is_empty());
}

#[test]
fn a_review_becomes_incompatible_change_errors() {
    let review = FormChangeReview {
        narrowed: vec!["a".into()],
        removed: vec!["b".into()],
    };
    let errors = review.errors();
    assert_eq!(
        codes_at(&errors),
        [
            ("a", FieldErrorCode::IncompatibleChange),
            ("b", FieldErrorCode::IncompatibleChange)
        ]
    );
}

#[test]
fn every_public_type_describes_itself_for_openapi() {
    use utoipa::PartialSchema;
    let field = serde_json::to_value(FieldDef::schema()).expect("schema serializes");
    let props = &field["properties"];
    assert!(props.get("type").is_some(), "{field}");
    assert!(props.get("api_call").is_some(), "{field}");
    let required = field["required"].as_array().cloned().unwrap_or_default();
    assert!(
        required.contains(&json!("key")) && required.contains(&json!("type")),
        "{field}"
    );
    assert!(!required.contains(&json!("label")), "{field}");
    for schema in [
        FieldType::schema(),
        FieldOption::schema(),
        Section::schema(),
        FormSpec::schema(),
        FormChangeReview::schema(),
    ] {
        assert!(serde_json::to_value(schema).is_ok());
    }
}

/// A credit-score field as the API Call field spec writes it: `name` for the label, and the
/// call's configuration beside `key` and `type`.
fn credit_score_field() -> serde_json::Value {
    json!({
        "key": "credit_score",
        "name": "Credit Score",
        "type": "api_call",
        "api_config": {
            "url": "https://api.bureau.example/v2/score/{data.customer_id}",
            "method": "GET",
            "headers": {"X-API-Key": "{secret.bureau_key}"},
            "params": {"country": "{data.country}"},
            "response_mapping": "$.score"
        },
        "trigger": "on_update",
        "trigger_fields": ["customer_id", "country"],
        "retry": 5,
        "timeout": 10000,
        "cache_duration": 3600,
        "visibility": "hide-when-empty",
        "section": "risk"
    })
}

fn credit_form(field: serde_json::Value) -> FormSpec {
    form(json!({
        "name": "Company onboarding",
        "sections": [{"key": "risk", "label": "Risk"}],
        "fields": [
            {"key": "customer_id", "type": "text", "required": true},
            {"key": "country", "type": "text"},
            field
        ]
    }))
}

#[test]
fn an_api_call_field_in_the_api_call_spelling_gathers_its_configuration() {
    let f: FieldDef = serde_json::from_value(credit_score_field()).expect("deserialize");
    assert_eq!(f.key, "credit_score");
    assert_eq!(f.label, "Credit Score", "`name` is the label");
    assert_eq!(f.field_type, FieldType::ApiCall);
    assert_eq!(f.visibility, Some(Visibility::HideWhenEmpty));
    assert_eq!(f.section.as_deref(), Some("risk"));
    let config = f.api_call.as_ref().expect("configuration gathered");
    assert_eq!(
        *config,
        json!({
            "api_config": credit_score_field()["api_config"],
            "trigger": "on_update",
            "trigger_fields": ["customer_id", "country"],
            "retry": 5,
            "timeout": 10000,
            "cache_duration": 3600
        })
    );
    let spec = crate::apicall::ApiCallSpec::from_json(config).expect("a valid api_call");
    assert_eq!(
        (
            spec.settings.retry,
            spec.settings.timeout,
            spec.settings.cache_duration
        ),
        (5, 10_000, 3600)
    );
}

#[test]
fn an_api_call_field_round_trips_in_the_canonical_spelling() {
    let f: FieldDef = serde_json::from_value(credit_score_field()).expect("deserialize");
    let written = serde_json::to_value(&f).expect("serialize");
    assert_eq!(written["label"], "Credit Score");
    assert_eq!(written["visibility"], "hide-when-empty");
    assert_eq!(written["api_call"]["retry"], 5);
    for top in [
        "name",
        "api_config",
        "trigger",
        "retry",
        "timeout",
        "cache_duration",
    ] {
        assert!(
            written.get(top).is_none(),
            "`{top}` is written inside api_call: {written}"
        );
    }
    let again: FieldDef = serde_json::from_value(written).expect("deserialize again");
    assert_eq!(again, f);
    let f = credit_form(credit_score_field());
    let again: FormSpec =
        serde_json::from_value(serde_json::to_value(&f).expect("serialize")).expect("parse");
    assert_eq!(again, f);
}

#[test]
fn an_api_call_field_in_the_api_call_spelling_passes_check() {
    assert_eq!(credit_form(credit_score_field()).check(), Ok(()));
}

#[test]
fn top_level_api_call_keys_join_a_nested_api_call_object() {
    let f: FieldDef = serde_json::from_value(json!({
        "key": "credit_score", "type": "api_call",
        "api_call": {"connection": "bureau", "operation": "score"},
        "retry": 2
    }))
    .expect("deserialize");
    assert_eq!(
        f.api_call,
        Some(json!({"connection": "bureau", "operation": "score", "retry": 2}))
    );
    assert_eq!(
        f.label, "credit_score",
        "the key when neither label nor name is given"
    );
}

#[test]
fn an_api_call_field_without_configuration_is_refused() {
    let f = credit_form(json!({"key": "credit_score", "name": "Credit Score", "type": "api_call"}));
    let errors = check_errors(&f);
    assert_eq!(
        errors,
        [FieldError::new(
            "fields[2].api_call",
            FieldErrorCode::InvalidDefinition,
            "api_call field `credit_score` needs an `api_config` (or a `connection` and an `operation`)"
        )]
    );
}

#[test]
fn an_unparsable_api_call_configuration_is_refused_with_the_field_named() {
    let mut field = credit_score_field();
    // A `connection` beside `api_config` is two sources.
    field["connection"] = json!("bureau");
    let errors = check_errors(&credit_form(field));
    assert_eq!(
        errors,
        [FieldError::new(
            "fields[2].api_call",
            FieldErrorCode::InvalidDefinition,
            "field `credit_score`: give one of: an `api_config`, a `connection` and an `operation` (by name), or a `sequence` of steps"
        )]
    );
}

#[test]
fn api_call_problems_are_reported_under_the_fields_path() {
    let mut field = credit_score_field();
    field["trigger_fields"] = json!(["customer_id", "credit_score"]);
    field["retry"] = json!(11);
    field["api_config"]["url"] = json!("https://api.bureau.example/v2/score/{data.customer}");
    let errors = check_errors(&credit_form(field));
    assert_eq!(
        codes_at(&errors),
        [
            (
                "fields[2].api_call.api_config.url",
                FieldErrorCode::InvalidDefinition
            ),
            (
                "fields[2].api_call.trigger_fields[1]",
                FieldErrorCode::InvalidDefinition
            ),
            (
                "fields[2].api_call.retry",
                FieldErrorCode::InvalidDefinition
            ),
        ]
    );
}

#[test]
fn api_call_keys_on_another_field_type_are_refused() {
    let f = credit_form(json!({"key": "credit_score", "type": "number", "timeout": 10000}));
    assert_eq!(
        codes_at(&check_errors(&f)),
        [("fields[2].api_call", FieldErrorCode::InvalidDefinition)]
    );
}
