//! Unit tests for API-call field configuration: parsing, defaults, `check` against the form,
//! and which response mapping applies.

use serde_json::{Value, json};

use super::*;
use crate::error::FieldErrorCode;
use crate::mapping::{ArrayMode, MappingRule};

/// A company-onboarding form: a VAT check, a credit bureau score and an address lookup.
fn onboarding() -> FormSpec {
    serde_json::from_value(json!({
        "name": "Company onboarding",
        "fields": [
            {"key": "vat_number", "type": "text"},
            {"key": "country", "type": "text"},
            {"key": "customer_id", "type": "text"},
            {"key": "postcode", "type": "text"},
            {"key": "vat_valid", "type": "api_call",
             "api_config": {"url": "https://api.vatcheck.example/check?vat={data.vat_number}"}},
            {"key": "credit_score", "type": "api_call",
             "connection": "bureau", "operation": "score"},
            {"key": "risk_band", "type": "text"},
            {"key": "addresses", "type": "array"}
        ]
    }))
    .expect("test form must deserialize")
}

fn spec(value: Value) -> ApiCallSpec {
    ApiCallSpec::from_json(&value).expect("test api_call configuration must parse")
}

/// The VAT check as the API Call field spec writes it.
fn vat_check() -> Value {
    json!({
        "api_config": {
            "url": "https://api.vatcheck.example/check?vat={data.vat_number}",
            "auth": {"type": "header", "key": "X-API-Key", "value": "{secret.vatcheck_key}"},
            "response_mapping": "$.valid"
        },
        "trigger": "on_update",
        "trigger_fields": ["vat_number"]
    })
}

fn problems(value: Value, key: &str) -> Vec<FieldError> {
    spec(value).check(key, &onboarding(), "api_call")
}

fn fields(problems: &[FieldError]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

fn pairs(mapping: &ResponseMapping) -> Vec<(&str, &str)> {
    mapping
        .rules
        .iter()
        .map(|r| (r.field.as_str(), r.path.as_str()))
        .collect()
}

// --- Parsing ---------------------------------------------------------------------------------

#[test]
fn an_inline_api_config_is_the_source() {
    let s = spec(vat_check());
    let Source::Inline { api_config } = &s.source else {
        panic!("expected an inline source, got {:?}", s.source);
    };
    assert_eq!(
        api_config.url.as_ref().map(|u| u.as_str()),
        Some("https://api.vatcheck.example/check?vat={data.vat_number}")
    );
    assert_eq!(api_config.auth.as_ref().map(|a| a.kind()), Some("api_key"));
    assert_eq!(s.settings.trigger, Triggers::One(Trigger::OnUpdate));
    assert_eq!(s.settings.trigger_fields, ["vat_number"]);
}

#[test]
fn a_connection_and_an_operation_are_the_source() {
    let s = spec(json!({"connection": "bureau", "operation": "score", "retry": 1}));
    assert_eq!(
        s.source,
        Source::Operation {
            connection: "bureau".into(),
            operation: "score".into()
        }
    );
    assert_eq!(s.settings.retry, 1);
}

#[test]
fn neither_or_both_sources_are_refused_with_one_clear_message() {
    let expected = "give one of: an `api_config`, a `connection` and an `operation` (by name), or a `sequence` of steps";
    let config = json!({"url": "https://api.vatcheck.example/check"});
    for value in [
        json!({}),
        json!({"trigger": "manual"}),
        json!({"connection": "bureau"}),
        json!({"operation": "score"}),
        json!({"connection": "bureau", "operation": 7}),
        json!({"api_config": config, "connection": "bureau", "operation": "score"}),
        json!({"api_config": config, "operation": "score"}),
    ] {
        assert_eq!(
            ApiCallSpec::from_json(&value),
            Err(expected.to_owned()),
            "{value}"
        );
    }
    assert_eq!(
        ApiCallSpec::from_json(&json!("https://api.vatcheck.example/check")),
        Err("the api_call configuration is an object".to_owned())
    );
}

#[test]
fn unknown_keys_are_refused() {
    let mut value = vat_check();
    value["retries"] = json!(5);
    let err = ApiCallSpec::from_json(&value).expect_err("`retries` is spelled `retry`");
    assert!(err.contains("unknown field `retries`"), "{err}");

    let err = ApiCallSpec::from_json(&json!({
        "api_config": {"url": "https://api.vatcheck.example/check", "verb": "GET"}
    }))
    .expect_err("unknown key inside api_config");
    assert!(
        err.starts_with("api_config: ") && err.contains("unknown field `verb`"),
        "{err}"
    );
}

#[test]
fn bad_setting_values_are_refused_when_parsing() {
    for (value, expected) in [
        (
            json!({"connection": "c", "operation": "o", "trigger": "on_delete"}),
            "did not match any variant of untagged enum Triggers",
        ),
        (
            json!({"connection": "c", "operation": "o", "retry": -1}),
            "invalid value: integer `-1`, expected u32",
        ),
        (
            json!({"connection": "c", "operation": "o", "timeout": "10s"}),
            "invalid type: string \"10s\", expected u64",
        ),
    ] {
        let err = ApiCallSpec::from_json(&value).expect_err("refused");
        assert!(err.contains(expected), "{value}: {err}");
    }
}

#[test]
fn settings_default_to_three_retries_thirty_seconds_no_cache_and_on_create() {
    let s = spec(json!({"connection": "bureau", "operation": "score"}));
    assert_eq!(
        s.settings,
        Settings {
            trigger: Triggers::One(Trigger::OnCreate),
            trigger_fields: vec![],
            schedule: None,
            retry: DEFAULT_RETRY,
            timeout: DEFAULT_TIMEOUT_MS,
            cache_duration: 0,
            response_mapping: None,
        }
    );
    assert_eq!((DEFAULT_RETRY, DEFAULT_TIMEOUT_MS), (3, 30_000));
    assert!(s.settings.trigger.has(Trigger::OnCreate));
    assert!(!s.settings.trigger.has(Trigger::OnUpdate));
}

#[test]
fn triggers_are_one_or_many() {
    let s = spec(
        json!({"connection": "c", "operation": "o", "trigger": "scheduled",
                        "schedule": "@daily"}),
    );
    assert_eq!(s.settings.trigger, Triggers::One(Trigger::Scheduled));
    let s = spec(json!({"connection": "c", "operation": "o",
                        "trigger": ["on_create", "on_update", "manual"]}));
    assert_eq!(
        s.settings.trigger,
        Triggers::Many(vec![Trigger::OnCreate, Trigger::OnUpdate, Trigger::Manual])
    );
    assert!(s.settings.trigger.has(Trigger::OnUpdate) && s.settings.trigger.has(Trigger::Manual));
    assert!(!s.settings.trigger.has(Trigger::Scheduled));
}

#[test]
fn a_configuration_round_trips_through_json() {
    for value in [
        vat_check(),
        json!({"connection": "bureau", "operation": "score", "trigger": ["on_create", "manual"],
               "retry": 5, "timeout": 10000, "cache_duration": 3600,
               "response_mapping": {"credit_score": "$.score", "risk_band": "$.band"}}),
    ] {
        let s = spec(value);
        let written = serde_json::to_value(&s).expect("serialize");
        assert_eq!(ApiCallSpec::from_json(&written), Ok(s.clone()), "{written}");
        let via_serde: ApiCallSpec = serde_json::from_value(written).expect("deserialize");
        assert_eq!(via_serde, s);
    }
}

#[test]
fn serde_deserialize_goes_through_from_json() {
    let err = serde_json::from_value::<ApiCallSpec>(json!({"connection": "bureau"}))
        .expect_err("no operation");
    assert_eq!(
        err.to_string(),
        "give one of: an `api_config`, a `connection` and an `operation` (by name), or a `sequence` of steps"
    );
}

// --- check -----------------------------------------------------------------------------------

#[test]
fn a_well_formed_configuration_has_no_problems() {
    assert_eq!(problems(vat_check(), "vat_valid"), []);
    let credit = json!({
        "connection": "bureau", "operation": "score",
        "trigger": ["on_create", "on_update"], "trigger_fields": ["customer_id"],
        "retry": 10, "timeout": 120000, "cache_duration": MAX_CACHE_SECS,
        "response_mapping": {"credit_score": "$.score", "risk_band": "$.band"}
    });
    assert_eq!(problems(credit, "credit_score"), []);
}

#[test]
fn a_data_placeholder_must_name_a_field_of_the_form() {
    let value = json!({"api_config": {
        "url": "https://api.vatcheck.example/check?vat={data.vat_no}&c={data.country}"
    }});
    let found = problems(value, "vat_valid");
    assert_eq!(
        found,
        [FieldError::new(
            "api_call.api_config.url",
            FieldErrorCode::InvalidDefinition,
            "`{data.vat_no}` names no field of the form"
        )]
    );
    // Other roots are not form fields; a bare `{data}` is the whole case data.
    let value = json!({"api_config": {
        "url": "https://api.vatcheck.example/check/{case.id}?all={data}"
    }});
    assert_eq!(problems(value, "vat_valid"), []);
}

#[test]
fn unknown_data_fields_are_reported_where_they_are_written() {
    let value = json!({"api_config": {
        "connection": "bureau",
        "path": "/customers/{data.customer}/score",
        "method": "POST",
        "headers": {"X-Country": "{data.land}"},
        "query": {"zip": "{data.zip}"},
        "body": {"customer": {"id": "{data.cust_id}"}, "lines": ["{data.street}"]}
    }});
    assert_eq!(
        fields(&problems(value, "credit_score")),
        [
            "api_call.api_config.path",
            "api_call.api_config.headers.X-Country",
            "api_call.api_config.query.zip",
            "api_call.api_config.body.customer.id",
            "api_call.api_config.body.lines[0]",
        ]
    );
    let whole_body = json!({"api_config": {
        "url": "https://api.bureau.example/score", "method": "POST", "body": "{data.applicant}"
    }});
    assert_eq!(
        fields(&problems(whole_body, "credit_score")),
        ["api_call.api_config.body"]
    );
}

#[test]
fn inline_config_problems_are_reported_under_api_config() {
    let value = json!({"api_config": {"url": "ftp://files.example/{data.vat_number}"}});
    let found = problems(value, "vat_valid");
    assert_eq!(fields(&found), ["api_call.api_config.url"]);
    assert!(
        found[0].message.contains("does not start with"),
        "{found:?}"
    );
}

#[test]
fn connection_and_operation_names_are_checked() {
    let found = problems(
        json!({"connection": "credit bureau", "operation": "score/v2"}),
        "credit_score",
    );
    assert_eq!(
        fields(&found),
        ["api_call.connection", "api_call.operation"]
    );
}

#[test]
fn inline_auth_with_a_literal_secret_is_refused() {
    let value = json!({"api_config": {
        "url": "https://api.vatcheck.example/check?vat={data.vat_number}",
        "auth": {"type": "header", "key": "X-API-Key", "value": "vk_live_5f2a"}
    }});
    let found = problems(value, "vat_valid");
    assert_eq!(fields(&found), ["api_call.api_config.auth.value"]);
    assert!(
        found[0]
            .message
            .starts_with("`value` must not be written into the form"),
        "{}",
        found[0].message
    );
}

#[test]
fn trigger_fields_must_be_other_fields_of_the_form() {
    let value = json!({"connection": "bureau", "operation": "score", "trigger": "on_update",
                       "trigger_fields": ["customer_id", "credit_score", "customer_no"]});
    let found = problems(value, "credit_score");
    assert_eq!(
        found,
        [
            FieldError::new(
                "api_call.trigger_fields[1]",
                FieldErrorCode::InvalidDefinition,
                "`credit_score` is not another field of the form"
            ),
            FieldError::new(
                "api_call.trigger_fields[2]",
                FieldErrorCode::InvalidDefinition,
                "`customer_no` is not another field of the form"
            ),
        ]
    );
}

#[test]
fn trigger_fields_need_the_on_update_trigger() {
    let value = json!({"connection": "bureau", "operation": "score",
                       "trigger": ["on_create", "manual"], "trigger_fields": ["customer_id"]});
    let found = problems(value, "credit_score");
    assert_eq!(
        found,
        [FieldError::new(
            "api_call.trigger_fields",
            FieldErrorCode::InvalidDefinition,
            "`trigger_fields` needs the `on_update` trigger"
        )]
    );
}

#[test]
fn a_scheduled_field_needs_a_schedule_that_parses() {
    let found = problems(
        json!({"connection": "bureau", "operation": "score", "trigger": "scheduled"}),
        "credit_score",
    );
    assert_eq!(
        found,
        [FieldError::new(
            "api_call.schedule",
            FieldErrorCode::InvalidDefinition,
            "a scheduled field needs a `schedule` (cron, e.g. `0 6 * * *`)"
        )]
    );
    let found = problems(
        json!({"connection": "bureau", "operation": "score", "trigger": "scheduled",
               "schedule": "*/0 * * * *"}),
        "credit_score",
    );
    assert_eq!(fields(&found), ["api_call.schedule"]);
    assert_eq!(
        Err(found[0].message.clone()),
        crate::schedule::Schedule::parse("*/0 * * * *").map(|_| ()),
        "the cron parser's own sentence"
    );
    for ok in ["0 */6 * * *", "@daily", "30 0 6 * * 1-5"] {
        let value = json!({"connection": "bureau", "operation": "score",
                           "trigger": ["scheduled", "manual"], "schedule": ok});
        assert_eq!(problems(value, "credit_score"), [], "{ok}");
    }
}

#[test]
fn a_schedule_needs_the_scheduled_trigger() {
    let found = problems(
        json!({"connection": "bureau", "operation": "score", "schedule": "0 6 * * *"}),
        "credit_score",
    );
    assert_eq!(
        found,
        [FieldError::new(
            "api_call.schedule",
            FieldErrorCode::InvalidDefinition,
            "`schedule` needs the `scheduled` trigger"
        )]
    );
}

#[test]
fn retry_timeout_and_cache_are_bounded() {
    let base = |extra: Value| {
        let mut v = json!({"connection": "bureau", "operation": "score"});
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        problems(v, "credit_score")
    };
    assert_eq!(
        base(json!({"retry": 0, "timeout": 100, "cache_duration": 0})),
        []
    );
    assert_eq!(
        base(json!({"retry": 11})),
        [FieldError::new(
            "api_call.retry",
            FieldErrorCode::InvalidDefinition,
            "at most 10 retries"
        )]
    );
    for timeout in [0, 99, 120_001] {
        assert_eq!(
            base(json!({"timeout": timeout})),
            [FieldError::new(
                "api_call.timeout",
                FieldErrorCode::InvalidDefinition,
                "the timeout is 100 to 120000 ms"
            )],
            "{timeout}"
        );
    }
    assert_eq!(
        base(json!({"cache_duration": MAX_CACHE_SECS + 1})),
        [FieldError::new(
            "api_call.cache_duration",
            FieldErrorCode::InvalidDefinition,
            "at most 2592000 seconds"
        )]
    );
}

#[test]
fn mapping_rules_must_name_fields_of_the_form() {
    let value = json!({"connection": "bureau", "operation": "score",
                       "response_mapping": {"credit_score": "$.score", "band": "$.band"}});
    let found = problems(value, "credit_score");
    assert_eq!(fields(&found), ["api_call.response_mapping.rules[0].field"]);
    assert_eq!(found[0].code, FieldErrorCode::UnknownField);

    let value = json!({"connection": "bureau", "operation": "score",
    "response_mapping": {"rules": [
        {"path": "$.addresses[*]", "field": "risk_band", "mode": "all"}
    ]}});
    let found = problems(value, "credit_score");
    assert_eq!(fields(&found), ["api_call.response_mapping.rules[0].mode"]);
}

#[test]
fn an_inline_mapping_is_reported_under_api_config_once() {
    let value = json!({"api_config": {
        "url": "https://api.vatcheck.example/check?vat={data.vat_number}",
        "response_mapping": {"rules": [
            {"path": "$.valid", "field": "vat_ok"},
            {"path": "$[", "field": "vat_valid"}
        ]}
    }});
    let found = problems(value, "vat_valid");
    assert_eq!(
        fields(&found),
        [
            "api_call.api_config.response_mapping.rules[1].path",
            "api_call.api_config.response_mapping.rules[0].field",
        ]
    );
}

#[test]
fn a_lone_mapping_path_fills_the_field_itself_and_must_compile() {
    let found = problems(
        json!({"connection": "bureau", "operation": "score", "response_mapping": "score"}),
        "credit_score",
    );
    assert_eq!(fields(&found), ["api_call.response_mapping.rules[0].path"]);
    assert!(
        found[0].message.contains("a JSONPath starts with `$`"),
        "{}",
        found[0].message
    );
}

// --- mapping() -------------------------------------------------------------------------------

#[test]
fn the_fields_mapping_wins_over_the_inline_and_the_operations() {
    let operation: MappingSpec = MappingSpec::Path("$.from_operation".into());
    let s = spec(json!({
        "api_config": {"url": "https://api.vatcheck.example/check", "response_mapping": "$.inline"},
        "response_mapping": {"vat_valid": "$.field", "country": "$.country_code"}
    }));
    assert_eq!(
        pairs(&s.mapping("vat_valid", Some(&operation))),
        [("country", "$.country_code"), ("vat_valid", "$.field")]
    );
}

#[test]
fn the_inline_mapping_wins_over_the_operations() {
    let operation = MappingSpec::Path("$.from_operation".into());
    let s = spec(json!({
        "api_config": {"url": "https://api.vatcheck.example/check", "response_mapping": "$.valid"}
    }));
    assert_eq!(
        pairs(&s.mapping("vat_valid", Some(&operation))),
        [("vat_valid", "$.valid")]
    );
}

#[test]
fn the_operations_mapping_applies_when_the_field_gives_none() {
    let operation: MappingSpec = serde_json::from_value(json!({"rules": [
        {"path": "$.addresses[*].line", "field": "addresses", "mode": "all"}
    ]}))
    .expect("mapping");
    let s = spec(json!({"connection": "geo", "operation": "lookup-address"}));
    assert_eq!(
        s.mapping("address_lookup", Some(&operation)).rules,
        [MappingRule {
            path: "$.addresses[*].line".into(),
            field: "addresses".into(),
            mode: ArrayMode::All,
        }]
    );
    let lone = MappingSpec::Path("$.score".into());
    assert_eq!(
        pairs(&s.mapping("credit_score", Some(&lone))),
        [("credit_score", "$.score")],
        "an operation's lone path fills the calling field"
    );
}

#[test]
fn without_any_mapping_there_are_no_rules() {
    let s = spec(json!({"connection": "bureau", "operation": "score"}));
    assert_eq!(s.mapping("credit_score", None), ResponseMapping::default());
}

// --- spec_of ---------------------------------------------------------------------------------

#[test]
fn spec_of_finds_parsed_configuration_of_api_call_fields_only() {
    let form = onboarding();
    assert!(matches!(
        spec_of(&form, "credit_score").map(|s| s.source),
        Some(Source::Operation { .. })
    ));
    assert!(matches!(
        spec_of(&form, "vat_valid").map(|s| s.source),
        Some(Source::Inline { .. })
    ));
    assert_eq!(spec_of(&form, "vat_number"), None);
    assert_eq!(spec_of(&form, "nope"), None);
    let mut broken = form.clone();
    broken.fields[5].api_call = Some(json!({"connection": "bureau"}));
    assert_eq!(spec_of(&broken, "credit_score"), None);
}

/// SwiftCase's example: look up the customer, then their invoices, then the payment status.
fn customer_sequence() -> Value {
    json!({
        "sequence": [
            {"name": "customer", "connection": "crm", "operation": "find_customer",
             "outputs": {"id": "$.id", "tier": "$.tier"}},
            {"name": "invoices",
             "api_config": {"url": "https://billing.example/customers/{steps.customer.id}/invoices"},
             "when": "steps.customer.id != null",
             "outputs": {"open": "$.items[?@.status == 'open'].id"}},
            {"name": "payment", "connection": "pay", "operation": "status",
             "when": "size(steps.invoices.open) > 0"}
        ],
        "trigger": "manual",
        "response_mapping": {"risk_band": "$.steps.customer.tier"}
    })
}

#[test]
fn a_sequence_parses_and_passes_its_checks() {
    let s = spec(customer_sequence());
    let Source::Sequence { sequence } = &s.source else {
        panic!("a sequence source: {s:?}");
    };
    assert_eq!(
        sequence.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["customer", "invoices", "payment"]
    );
    assert_eq!(s.check("vat_valid", &onboarding(), "api_call"), []);
}

#[test]
fn a_step_may_only_use_outputs_of_earlier_steps() {
    let mut config = customer_sequence();
    config["sequence"][1]["api_config"]["url"] =
        json!("https://billing.example/c/{steps.payment.state}");
    let problems = spec(config).check("vat_valid", &onboarding(), "api_call");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "api_call.sequence[1].api_config");
    assert!(
        problems[0]
            .message
            .contains("`{steps.payment.state}` names no output of an earlier step"),
        "{}",
        problems[0].message
    );
}

#[test]
fn sequence_steps_are_checked_one_by_one() {
    let config = json!({"sequence": [
        {"name": "a", "connection": "crm", "operation": "x", "when": "steps.a.id ==", "outputs": {"id": "$["}},
        {"name": "a", "connection": "crm"},
    ]});
    let problems = spec(config).check("vat_valid", &onboarding(), "api_call");
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"api_call.sequence[0].when"), "{fields:?}");
    assert!(
        fields.contains(&"api_call.sequence[0].outputs.id"),
        "{fields:?}"
    );
    assert!(fields.contains(&"api_call.sequence[1].name"), "{fields:?}");
    assert!(fields.contains(&"api_call.sequence[1]"), "{fields:?}");
    let empty = spec(json!({"sequence": []})).check("vat_valid", &onboarding(), "api_call");
    assert_eq!(empty[0].field, "api_call.sequence");
}

#[test]
fn steps_placeholders_are_refused_outside_a_sequence() {
    let config = json!({"api_config": {"url": "https://api.example/{steps.a.b}"}});
    let problems = spec(config).check("vat_valid", &onboarding(), "api_call");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "api_call.api_config");
}
