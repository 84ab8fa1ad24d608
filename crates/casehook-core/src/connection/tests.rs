//! Unit tests for connections, operations, inline `api_config`, response mapping spellings,
//! auth methods and error rules.

use serde_json::{Value, json};

use super::auth::{ClientAuth, KeyPlacement, OAuth1Method, OAuth2Grant};
use super::*;
use crate::mapping::ArrayMode;

fn connection(value: Value) -> ConnectionConfig {
    serde_json::from_value(value).expect("test connection must deserialize")
}

fn request(value: Value) -> RequestSpec {
    serde_json::from_value(value).expect("test request must deserialize")
}

fn auth(value: Value) -> AuthMethod {
    serde_json::from_value(value).expect("test auth method must deserialize")
}

fn rule(value: Value) -> ErrorRule {
    serde_json::from_value(value).expect("test error rule must deserialize")
}

fn template(text: &str) -> Template {
    Template::parse(text).expect("test template must parse")
}

fn fields(problems: &[FieldError]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

fn message_at<'a>(problems: &'a [FieldError], field: &str) -> &'a str {
    problems
        .iter()
        .find(|p| p.field == field)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("no problem at `{field}` in {problems:?}"))
}

fn operation_problems(spec: &RequestSpec) -> Vec<FieldError> {
    let mut problems = Vec::new();
    spec.check_operation("operations.score", &mut problems);
    problems
}

fn inline_problems(spec: &RequestSpec) -> Vec<FieldError> {
    let mut problems = Vec::new();
    spec.check_inline("api_config", &mut problems);
    problems
}

/// A credit bureau: a base URL, a default header, an operation scoring a customer.
fn bureau() -> ConnectionConfig {
    connection(json!({
        "description": "Credit bureau",
        "base_url": "https://api.bureau.example/v2",
        "headers": {"X-Client": "casehook"},
        "timeout_ms": 10000,
        "rate_limit": {"per_second": 5.0, "burst": 10},
        "operations": {
            "score": {
                "method": "POST",
                "path": "/customers/{data.customer_id}/score",
                "headers": {"X-Request-Id": "{case.id}"},
                "body": {"national_id": "{data.national_id}", "consent": true},
                "response_mapping": {"credit_score": "$.score", "risk_band": "$.band"},
                "error_rules": [{"status": [404], "message": "unknown customer"}]
            },
            "lookup-address": {
                "path": "/addresses",
                "params": {"postcode": "{data.postcode}"},
                "response_mapping": {"rules": [
                    {"path": "$.addresses[*].line", "field": "addresses", "mode": "all"}
                ]}
            }
        }
    }))
}

// --- ConnectionConfig::check ---------------------------------------------------------------

#[test]
fn a_complete_connection_passes_check() {
    let c = bureau();
    assert_eq!(c.check(), []);
    assert_eq!(c.timeout_ms, 10_000);
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            per_second: 5.0,
            burst: Some(10)
        })
    );
    let lookup = &c.operations["lookup-address"];
    assert_eq!(lookup.method, Method::Get, "GET when not given");
    assert_eq!(
        lookup.query.get("postcode").map(Template::as_str),
        Some("{data.postcode}"),
        "`params` is read as `query`"
    );
}

#[test]
fn a_connection_gets_defaults_for_timeout_tls_and_operations() {
    let c = connection(json!({"base_url": "https://crm.example"}));
    assert_eq!(c.timeout_ms, DEFAULT_TIMEOUT_MS);
    assert_eq!(c.tls, Tls::default());
    assert!(c.tls.verify, "certificates are verified unless turned off");
    assert!(c.operations.is_empty() && c.headers.is_empty() && c.rate_limit.is_none());
    assert_eq!(c.check(), []);
}

#[test]
fn a_connection_round_trips_through_json() {
    let c = bureau();
    let again: ConnectionConfig =
        serde_json::from_value(serde_json::to_value(&c).expect("serialize")).expect("parse");
    assert_eq!(again, c);
}

#[test]
fn unknown_connection_and_operation_keys_are_refused() {
    let err = serde_json::from_value::<ConnectionConfig>(
        json!({"base_url": "https://crm.example", "timeout": 5000}),
    )
    .expect_err("`timeout` is spelled `timeout_ms` on a connection");
    assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    let err = serde_json::from_value::<RequestSpec>(json!({"path": "/x", "verb": "GET"}))
        .expect_err("unknown key in an operation");
    assert!(err.to_string().contains("unknown field `verb`"), "{err}");
}

#[test]
fn the_base_url_must_be_an_absolute_http_url_without_query_or_credentials() {
    let cases = [
        ("ftp://files.example", "is not an http or https URL"),
        ("api.example/v1", "is not a URL"),
        (
            "https://user:pw@api.example",
            "put credentials in the auth method",
        ),
        ("https://api.example/v1#top", "has a fragment"),
        ("https://api.example/v1?key=1", "has no query"),
    ];
    for (base_url, expected) in cases {
        let problems = connection(json!({"base_url": base_url})).check();
        assert_eq!(fields(&problems), ["base_url"], "{base_url}");
        assert!(
            problems[0].message.contains(expected),
            "{base_url}: {}",
            problems[0].message
        );
        assert_eq!(problems[0].code, FieldErrorCode::InvalidDefinition);
    }
}

#[test]
fn the_connection_timeout_is_between_one_second_and_two_minutes() {
    for ok in [1_000, MAX_TIMEOUT_MS] {
        let c = connection(json!({"base_url": "https://crm.example", "timeout_ms": ok}));
        assert_eq!(c.check(), [], "{ok}");
    }
    for bad in [999, MAX_TIMEOUT_MS + 1, 0] {
        let c = connection(json!({"base_url": "https://crm.example", "timeout_ms": bad}));
        let problems = c.check();
        assert_eq!(fields(&problems), ["timeout_ms"], "{bad}");
        assert_eq!(problems[0].message, "the timeout is 1000 to 120000 ms");
    }
}

#[test]
fn the_rate_limit_is_a_positive_rate_with_a_burst_of_at_least_one() {
    let mut c = connection(json!({"base_url": "https://crm.example"}));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        c.rate_limit = Some(RateLimit {
            per_second: bad,
            burst: None,
        });
        assert_eq!(fields(&c.check()), ["rate_limit.per_second"], "{bad}");
    }
    c.rate_limit = Some(RateLimit {
        per_second: 0.5,
        burst: Some(0),
    });
    let problems = c.check();
    assert_eq!(fields(&problems), ["rate_limit.burst"]);
    c.rate_limit = Some(RateLimit {
        per_second: 0.5,
        burst: Some(1),
    });
    assert_eq!(c.check(), []);
}

#[test]
fn a_private_ca_must_be_pem() {
    let mut c = connection(json!({"base_url": "https://crm.internal", "tls": {"verify": true}}));
    c.tls.ca_pem = Some("MIIBszCCAVmgAwIBAgIU".into());
    assert_eq!(fields(&c.check()), ["tls.ca_pem"]);
    c.tls.ca_pem = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    assert_eq!(c.check(), []);
}

#[test]
fn header_names_are_tokens_and_values_use_request_roots() {
    let c = connection(json!({
        "base_url": "https://crm.example",
        "headers": {
            "X Bad": "1",
            "X-Token": "{secret.crm_token}",
            "X-Typo": "{dta.customer_id}"
        }
    }));
    let problems = c.check();
    assert_eq!(fields(&problems), ["headers.X Bad", "headers.X-Typo"]);
    assert_eq!(
        message_at(&problems, "headers.X Bad"),
        "a header name is letters, digits, `-` and `_`"
    );
    assert!(
        message_at(&problems, "headers.X-Typo").contains("`dta` is not one of"),
        "{problems:?}"
    );
}

#[test]
fn operation_names_are_checked_and_problems_carry_the_operation_path() {
    let c = connection(json!({
        "base_url": "https://crm.example",
        "operations": {"get customer": {"path": "customers"}}
    }));
    let problems = c.check();
    assert_eq!(
        fields(&problems),
        ["operations.get customer", "operations.get customer.path"]
    );
    assert_eq!(
        problems[0].message,
        "`get customer` is not a valid name: 1–64 letters, digits, `_` and `-`"
    );
    assert_eq!(
        problems[1].message,
        "the path starts with `/` (it is appended to the base URL)"
    );
}

#[test]
fn a_connection_holds_at_most_a_hundred_operations() {
    let mut c = connection(json!({"base_url": "https://crm.example"}));
    for i in 0..=MAX_OPERATIONS {
        c.operations
            .insert(format!("op{i}"), request(json!({"path": "/x"})));
    }
    assert_eq!(fields(&c.check()), ["operations"]);
    c.operations.remove("op0");
    assert_eq!(c.check(), []);
}

#[test]
fn check_name_accepts_letters_digits_dash_and_underscore_up_to_64() {
    for ok in ["crm", "credit-bureau_2", &"a".repeat(64)] {
        assert_eq!(check_name("connection", ok), None, "{ok}");
    }
    for bad in ["", "crm.example", "bureau/score", "é", &"a".repeat(65)] {
        let e = check_name("connection", bad).expect("refused");
        assert_eq!(e.field, "connection", "{bad}");
    }
}

// --- RequestSpec::check_operation ----------------------------------------------------------

#[test]
fn an_operation_needs_a_path_and_takes_url_auth_and_connection_from_its_connection() {
    let spec = request(json!({
        "connection": "crm",
        "url": "https://crm.example/x",
        "auth": {"type": "bearer", "token": "{secret.t}"}
    }));
    let problems = operation_problems(&spec);
    assert_eq!(
        fields(&problems),
        [
            "operations.score.url",
            "operations.score.auth",
            "operations.score.connection",
            "operations.score.path",
        ]
    );
    assert_eq!(
        problems[0].message,
        "an operation takes its `url` from its connection; give a `path`"
    );
    assert_eq!(
        problems[3].message,
        "an operation needs a `path`, such as `/customers/{data.customer_id}`"
    );
}

#[test]
fn operation_templates_may_use_only_request_roots() {
    let spec = request(json!({
        "method": "POST",
        "path": "/customers/{customer.id}",
        "headers": {"X-Ref": "{case.number}"},
        "query": {"lang": "{user.lang}"},
        "body": {"items": [{"sku": "{item.sku}"}]}
    }));
    let problems = operation_problems(&spec);
    assert_eq!(
        fields(&problems),
        [
            "operations.score.path",
            "operations.score.query.lang",
            "operations.score.body",
        ]
    );
    assert!(
        message_at(&problems, "operations.score.body").starts_with("at `items[0].sku`: "),
        "{problems:?}"
    );
    for root in REQUEST_ROOTS {
        let spec = request(json!({"path": format!("/x/{{{root}.a}}")}));
        assert_eq!(operation_problems(&spec), [], "{root}");
    }
}

#[test]
fn a_get_operation_takes_no_body() {
    let spec = request(json!({"path": "/search", "body": {"q": "{data.name}"}}));
    let problems = operation_problems(&spec);
    assert_eq!(fields(&problems), ["operations.score.body"]);
    assert_eq!(
        problems[0].message,
        "a GET request has no body; use `query`"
    );
}

#[test]
fn a_bad_body_template_is_reported_with_its_place() {
    let spec = request(json!({"method": "PUT", "path": "/x", "body": {"note": "{data.note"}}));
    let problems = operation_problems(&spec);
    assert_eq!(fields(&problems), ["operations.score.body"]);
    assert!(
        problems[0].message.starts_with("at `note`: ")
            && problems[0].message.contains("never closed"),
        "{}",
        problems[0].message
    );
}

#[test]
fn a_form_body_is_a_flat_object() {
    let flat = request(json!({
        "method": "POST", "path": "/token", "body_format": "form",
        "body": {"grant": "x", "n": 1, "ok": true}
    }));
    assert_eq!(operation_problems(&flat), []);
    for body in [
        json!({"a": {"b": 1}}),
        json!({"a": [1]}),
        json!(["a"]),
        json!("a=1"),
    ] {
        let nested = request(json!({
            "method": "POST", "path": "/token", "body_format": "form", "body": body
        }));
        let problems = operation_problems(&nested);
        assert_eq!(fields(&problems), ["operations.score.body"], "{body}");
        assert_eq!(
            problems[0].message,
            "a form body is a flat object of names and values"
        );
    }
}

#[test]
fn response_mapping_paths_must_compile() {
    let spec = request(json!({
        "path": "/x",
        "response_mapping": {"rules": [
            {"path": "$.ok", "field": "a"},
            {"path": "$[", "field": "b"}
        ]}
    }));
    assert_eq!(
        fields(&operation_problems(&spec)),
        ["operations.score.response_mapping.rules[1].path"]
    );
    let lone = request(json!({"path": "/x", "response_mapping": "score"}));
    assert_eq!(
        fields(&operation_problems(&lone)),
        ["operations.score.response_mapping.rules[0].path"],
        "a lone path is compiled too"
    );
}

#[test]
fn error_rules_are_checked_with_their_index() {
    let spec = request(json!({
        "path": "/x",
        "error_rules": [{"status": ["5xx"]}, {"status": [700]}]
    }));
    let problems = operation_problems(&spec);
    assert_eq!(
        fields(&problems),
        ["operations.score.error_rules[1].status"]
    );
    assert_eq!(problems[0].message, "700 is not an HTTP status");
}

// --- RequestSpec::check_inline -------------------------------------------------------------

/// A VAT-number check with an API key from a workspace secret.
fn vat_check() -> RequestSpec {
    request(json!({
        "url": "https://api.vatcheck.example/check?vat={data.vat_number}",
        "auth": {"type": "header", "key": "X-API-Key", "value": "{secret.vatcheck_key}"},
        "response_mapping": "$.valid"
    }))
}

#[test]
fn an_inline_url_with_secret_referenced_auth_passes() {
    assert_eq!(inline_problems(&vat_check()), []);
}

#[test]
fn an_inline_config_takes_a_connection_and_a_path_but_no_auth() {
    let spec = request(json!({"connection": "bureau", "path": "/score/{data.customer_id}"}));
    assert_eq!(inline_problems(&spec), []);
    let spec = request(json!({
        "connection": "credit bureau",
        "path": "score",
        "auth": {"type": "bearer", "token": "{secret.t}"}
    }));
    let problems = inline_problems(&spec);
    assert_eq!(
        fields(&problems),
        [
            "api_config.connection",
            "api_config.auth",
            "api_config.path"
        ]
    );
    assert_eq!(
        message_at(&problems, "api_config.auth"),
        "the connection's auth is used; remove `auth`"
    );
}

#[test]
fn an_inline_config_needs_exactly_one_of_url_or_connection_and_path() {
    let cases = [
        json!({}),
        json!({"path": "/x"}),
        json!({"connection": "crm"}),
        json!({"connection": "crm", "url": "https://crm.example/x"}),
        json!({"url": "https://crm.example", "path": "/x"}),
    ];
    for case in cases {
        let problems = inline_problems(&request(case.clone()));
        assert_eq!(fields(&problems), ["api_config.url"], "{case}");
        assert_eq!(
            problems[0].message,
            "give either a `url`, or a `connection` and a `path`"
        );
    }
}

#[test]
fn an_inline_url_must_start_with_a_fixed_http_scheme_and_host() {
    let cases = [
        ("{data.url}", "does not start with `https://` or `http://`"),
        ("ftp://files.example/{data.f}", "does not start with"),
        (
            "https://{data.host}/x",
            "has no host before its first placeholder",
        ),
        ("https:///x", "has no host before its first placeholder"),
        ("https://{dta.host}/x", "`dta` is not one of"),
    ];
    for (url, expected) in cases {
        let problems = inline_problems(&request(json!({"url": url})));
        assert_eq!(fields(&problems), ["api_config.url"], "{url}");
        assert!(
            problems[0].message.contains(expected),
            "{url}: {}",
            problems[0].message
        );
    }
}

#[test]
fn a_placeholder_cannot_complete_the_host_or_port_of_an_inline_url() {
    // Rendered as a path segment, `.evil.example` keeps its dots: the host would become
    // `api.vatcheck.example.evil.example`.
    for url in [
        "https://api.vatcheck.example{data.suffix}/check",
        "https://api.vatcheck.example:{data.port}/check",
        "https://{data.user}@api.vatcheck.example/check",
    ] {
        let problems = inline_problems(&request(json!({"url": url})));
        assert_eq!(fields(&problems), ["api_config.url"], "{url}");
    }
    for url in [
        "https://api.vatcheck.example/{data.country}/check",
        "https://api.vatcheck.example?vat={data.vat_number}",
        "https://api.vatcheck.example:8443/check?vat={data.vat_number}",
        "https://api.vatcheck.example",
    ] {
        assert_eq!(inline_problems(&request(json!({"url": url}))), [], "{url}");
    }
}

#[test]
fn credentials_cannot_be_written_into_an_inline_url() {
    let problems = inline_problems(&request(
        json!({"url": "https://me:hunter2@api.vatcheck.example/check"}),
    ));
    assert_eq!(fields(&problems), ["api_config.url"]);
    assert_eq!(
        problems[0].message,
        "put credentials in the auth method, not in the URL"
    );
}

#[test]
fn inline_auth_is_checked_and_refuses_literal_secrets() {
    let spec = request(json!({
        "url": "https://api.bureau.example/score",
        "auth": {"type": "basic", "username": "casehook", "password": "hunter2"}
    }));
    let problems = inline_problems(&spec);
    assert_eq!(fields(&problems), ["api_config.auth.password"]);
    assert!(
        problems[0]
            .message
            .starts_with("`password` must not be written into the form"),
        "{}",
        problems[0].message
    );
    let spec = request(json!({
        "url": "https://api.bureau.example/score",
        "auth": {"type": "bearer", "token": "{data.token}"}
    }));
    let problems = inline_problems(&spec);
    assert_eq!(fields(&problems), ["api_config.auth.token"]);
    assert!(
        problems[0]
            .message
            .ends_with("; credentials may only use `{secret.<name>}`"),
        "{}",
        problems[0].message
    );
}

// --- MappingSpec -----------------------------------------------------------------------------

#[test]
fn a_mapping_reads_in_its_three_spellings() {
    let full: MappingSpec = serde_json::from_value(json!({"rules": [
        {"path": "$.addresses[*].line", "field": "addresses", "mode": "all"}
    ]}))
    .expect("full form");
    let MappingSpec::Rules(mapping) = &full else {
        panic!("expected rules, got {full:?}");
    };
    assert_eq!(mapping.rules[0].mode, ArrayMode::All);

    let by_field: MappingSpec =
        serde_json::from_value(json!({"credit_score": "$.score", "risk_band": "$.band"}))
            .expect("field map");
    assert!(matches!(by_field, MappingSpec::Fields(_)), "{by_field:?}");

    let lone: MappingSpec = serde_json::from_value(json!("$.valid")).expect("lone path");
    assert_eq!(lone, MappingSpec::Path("$.valid".into()));

    assert!(serde_json::from_value::<MappingSpec>(json!(["$.a"])).is_err());
    assert!(serde_json::from_value::<MappingSpec>(json!({"score": 1})).is_err());
}

#[test]
fn mapping_spellings_round_trip() {
    for value in [
        json!({"rules": [{"path": "$.score", "field": "credit_score", "mode": "first"}]}),
        json!({"credit_score": "$.score"}),
        json!("$.score"),
    ] {
        let spec: MappingSpec = serde_json::from_value(value.clone()).expect("parse");
        assert_eq!(serde_json::to_value(&spec).expect("serialize"), value);
    }
}

#[test]
fn mapping_rules_come_from_each_spelling() {
    let by_field: MappingSpec =
        serde_json::from_value(json!({"risk_band": "$.band", "credit_score": "$.score"}))
            .expect("field map");
    let rules = by_field.rules(Some("ignored")).rules;
    let pairs: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.field.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [("credit_score", "$.score"), ("risk_band", "$.band")]
    );
    assert!(rules.iter().all(|r| r.mode == ArrayMode::First));

    let lone = MappingSpec::Path("$.valid".into());
    let rules = lone.rules(Some("vat_valid")).rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(
        (rules[0].field.as_str(), rules[0].path.as_str()),
        ("vat_valid", "$.valid")
    );
    assert!(
        lone.rules(None).rules.is_empty(),
        "a lone path needs a field"
    );

    let full: MappingSpec = serde_json::from_value(json!({"rules": [
        {"path": "$.items", "field": "addresses", "mode": "count"}
    ]}))
    .expect("full");
    assert_eq!(
        full.rules(Some("ignored")).rules[0].field,
        "addresses",
        "the full form names its own fields"
    );
}

// --- AuthMethod ------------------------------------------------------------------------------

#[test]
fn every_auth_method_reads_from_its_json_spelling() {
    let cases = [
        (json!({"type": "none"}), "none"),
        (
            json!({"type": "basic", "username": "casehook", "password": "{secret.pw}"}),
            "basic",
        ),
        (
            json!({"type": "bearer", "token": "{secret.crm_token}"}),
            "bearer",
        ),
        (
            json!({"type": "api_key", "name": "api_key", "value": "{secret.k}", "in": "query"}),
            "api_key",
        ),
        (
            json!({"type": "oauth2", "grant": "refresh_token",
                   "token_url": "https://auth.crm.example/oauth/token",
                   "client_id": "casehook", "client_secret": "{secret.cs}",
                   "refresh_token": "{secret.rt}", "scope": "cases.read",
                   "audience": "https://api.crm.example", "client_auth": "body"}),
            "oauth2",
        ),
        (
            json!({"type": "oauth1", "consumer_key": "ck", "consumer_secret": "{secret.cs}",
                   "token": "tk", "token_secret": "{secret.ts}",
                   "signature_method": "HMAC-SHA256", "realm": "crm"}),
            "oauth1",
        ),
        (
            json!({"type": "aws_sigv4", "access_key_id": "AKIDEXAMPLE",
                   "secret_access_key": "{secret.aws}", "session_token": "{secret.st}",
                   "region": "eu-west-1", "service": "execute-api"}),
            "aws_sigv4",
        ),
        (
            json!({"type": "digest", "username": "u", "password": "{secret.pw}"}),
            "digest",
        ),
    ];
    for (value, kind) in cases {
        let method = auth(value.clone());
        assert_eq!(method.kind(), kind);
        assert_eq!(method.check("auth"), [], "{value}");
        assert_eq!(
            serde_json::to_value(&method).expect("serialize"),
            value,
            "{kind} round-trips"
        );
    }
}

#[test]
fn auth_defaults_are_header_keys_client_credentials_basic_client_auth_and_hmac_sha1() {
    let AuthMethod::ApiKey { placement, .. } =
        auth(json!({"type": "api_key", "name": "X-API-Key", "value": "{secret.k}"}))
    else {
        panic!("api_key")
    };
    assert_eq!(placement, KeyPlacement::Header);
    let AuthMethod::OAuth2 {
        grant, client_auth, ..
    } = auth(
        json!({"type": "oauth2", "token_url": "https://auth.example/token",
                    "client_id": "id", "client_secret": "{secret.cs}"}),
    )
    else {
        panic!("oauth2")
    };
    assert_eq!(
        (grant, client_auth),
        (OAuth2Grant::ClientCredentials, ClientAuth::Basic)
    );
    let AuthMethod::OAuth1 {
        signature_method, ..
    } = auth(json!({"type": "oauth1", "consumer_key": "ck", "consumer_secret": "{secret.cs}"}))
    else {
        panic!("oauth1")
    };
    assert_eq!(signature_method, OAuth1Method::HmacSha1);
    assert_eq!(AuthMethod::default(), AuthMethod::None);
}

#[test]
fn the_api_call_field_header_spelling_is_an_api_key_in_a_header() {
    let method = auth(json!({"type": "header", "key": "X-API-Key", "value": "{secret.k}"}));
    assert_eq!(
        method,
        AuthMethod::ApiKey {
            name: "X-API-Key".into(),
            value: template("{secret.k}"),
            placement: KeyPlacement::Header,
        }
    );
    assert_eq!(
        serde_json::to_value(&method).expect("serialize"),
        json!({"type": "api_key", "name": "X-API-Key", "value": "{secret.k}", "in": "header"}),
        "written back in the canonical spelling"
    );
}

#[test]
fn unknown_auth_types_and_keys_are_refused() {
    for value in [
        json!({"type": "kerberos"}),
        json!({"type": "bearer", "token": "{secret.t}", "prefix": "Token"}),
        json!({"type": "basic", "username": "u"}),
        json!({"token": "{secret.t}"}),
    ] {
        assert!(
            serde_json::from_value::<AuthMethod>(value.clone()).is_err(),
            "{value}"
        );
    }
}

#[test]
fn debug_shows_only_the_kind() {
    let method = auth(json!({"type": "basic", "username": "u", "password": "hunter2"}));
    assert_eq!(format!("{method:?}"), "basic");
}

#[test]
fn public_view_hides_literal_secrets_and_shows_secret_references() {
    let method = auth(json!({
        "type": "oauth2",
        "token_url": "https://auth.crm.example/token",
        "client_id": "casehook",
        "client_secret": "s3cr3t-literal",
        "refresh_token": "{secret.crm_refresh}"
    }));
    let view = method.public_view();
    assert_eq!(view["type"], "oauth2");
    assert_eq!(view["client_id"], "casehook", "not a secret part");
    assert_eq!(view["token_url"], "https://auth.crm.example/token");
    assert_eq!(view["client_secret"], "(set)");
    assert_eq!(view["refresh_token"], "{secret.crm_refresh}");
    assert!(!view.to_string().contains("s3cr3t"), "{view}");
}

#[test]
fn public_view_never_shows_a_literal_secret_of_any_method() {
    let literal = "hunter2";
    let methods = [
        json!({"type": "basic", "username": "u", "password": literal}),
        json!({"type": "digest", "username": "u", "password": literal}),
        json!({"type": "bearer", "token": literal}),
        json!({"type": "header", "key": "X-API-Key", "value": literal}),
        json!({"type": "oauth2", "token_url": "https://a.example/t", "client_id": "c",
               "client_secret": literal, "refresh_token": literal}),
        json!({"type": "oauth1", "consumer_key": "ck", "consumer_secret": literal,
               "token": "t", "token_secret": literal}),
        json!({"type": "aws_sigv4", "access_key_id": "AKID", "secret_access_key": literal,
               "session_token": literal, "region": "eu-west-1", "service": "s3"}),
    ];
    for value in methods {
        let view = auth(value.clone()).public_view();
        assert!(!view.to_string().contains(literal), "{value} → {view}");
    }
    // A secret mixed with literal text is not a bare reference: it shows as set.
    let view = auth(json!({"type": "api_key", "name": "Authorization",
                           "value": "Token {secret.k}"}))
    .public_view();
    assert_eq!(view["value"], "(set)");
    assert_eq!(
        auth(json!({"type": "none"})).public_view(),
        json!({"type": "none"})
    );
}

#[test]
fn auth_check_refuses_empty_credentials_and_non_secret_placeholders() {
    let method = auth(json!({"type": "basic", "username": "", "password": "{data.password}"}));
    let problems = method.check("auth");
    assert_eq!(fields(&problems), ["auth.password", "auth.username"]);
    assert_eq!(
        message_at(&problems, "auth.username"),
        "`username` is empty"
    );
    assert_eq!(
        message_at(&problems, "auth.password"),
        "unknown placeholder `{data.password}` at byte 0: `data` is not one of `secret`; \
         credentials may only use `{secret.<name>}`"
    );
    let method = auth(json!({"type": "aws_sigv4", "access_key_id": "{case.id}",
                             "secret_access_key": "", "region": "eu-west-1", "service": "s3"}));
    assert_eq!(
        fields(&method.check("auth")),
        ["auth.secret_access_key", "auth.access_key_id"]
    );
}

#[test]
fn an_api_key_name_must_be_a_header_or_parameter_name() {
    for name in ["", "X API Key", "X-Key:"] {
        let method = AuthMethod::ApiKey {
            name: name.into(),
            value: template("{secret.k}"),
            placement: KeyPlacement::Header,
        };
        let problems = method.check("auth");
        assert_eq!(fields(&problems), ["auth.name"], "{name:?}");
    }
    let method = auth(json!({"type": "api_key", "name": "api.key_v-2", "value": "{secret.k}"}));
    assert_eq!(method.check("auth"), []);
}

#[test]
fn oauth2_needs_an_http_token_url_and_a_refresh_token_for_that_grant() {
    for bad in [
        "/oauth/token",
        "ftp://auth.example/token",
        "https://id:pw@auth.example/t",
    ] {
        let method = auth(json!({"type": "oauth2", "token_url": bad,
                                 "client_id": "c", "client_secret": "{secret.cs}"}));
        assert_eq!(fields(&method.check("auth")), ["auth.token_url"], "{bad}");
    }
    let method = auth(json!({"type": "oauth2", "grant": "refresh_token",
                             "token_url": "https://auth.example/token",
                             "client_id": "c", "client_secret": "{secret.cs}"}));
    let problems = method.check("auth");
    assert_eq!(fields(&problems), ["auth.refresh_token"]);
    assert_eq!(
        problems[0].message,
        "the refresh_token grant needs a `refresh_token`"
    );
}

#[test]
fn aws_region_and_service_are_lower_case_names() {
    for (region, service, expected) in [
        ("EU-WEST-1", "s3", vec!["auth.region"]),
        ("", "s3", vec!["auth.region"]),
        ("eu-west-1", "S3 ", vec!["auth.service"]),
        ("eu_west_1", "", vec!["auth.region", "auth.service"]),
    ] {
        let method = auth(json!({"type": "aws_sigv4", "access_key_id": "AKID",
                                 "secret_access_key": "{secret.aws}",
                                 "region": region, "service": service}));
        let problems = method.check("auth");
        assert_eq!(fields(&problems), expected, "{region:?} {service:?}");
    }
    let method = auth(json!({"type": "aws_sigv4", "access_key_id": "AKID",
                             "secret_access_key": "{secret.aws}",
                             "region": "EU", "service": "s3"}));
    assert_eq!(
        message_at(&method.check("auth"), "auth.region"),
        "`region` is lower-case letters, digits and `-`, like `eu-west-1`"
    );
}

#[test]
fn literal_secrets_are_refused_part_by_part_but_references_and_public_parts_pass() {
    let method = auth(
        json!({"type": "oauth1", "consumer_key": "ck-literal-is-fine",
                             "consumer_secret": "cs-literal", "token": "tk",
                             "token_secret": "{secret.ts}"}),
    );
    let problems = method.check_no_literal_secrets("api_config.auth");
    assert_eq!(fields(&problems), ["api_config.auth.consumer_secret"]);
    assert!(
        problems[0].message.contains("POST /api/v1/secrets"),
        "{}",
        problems[0].message
    );
    let method = auth(json!({"type": "aws_sigv4", "access_key_id": "AKID",
                             "secret_access_key": "{secret.aws}", "session_token": "st",
                             "region": "eu-west-1", "service": "s3"}));
    assert_eq!(
        fields(&method.check_no_literal_secrets("a")),
        ["a.session_token"]
    );
    assert_eq!(
        auth(json!({"type": "none"})).check_no_literal_secrets("a"),
        []
    );
    assert_eq!(
        vat_check()
            .auth
            .expect("auth")
            .check_no_literal_secrets("a"),
        []
    );
}

#[test]
fn templates_list_every_credential_secret_parts_first() {
    let method = auth(
        json!({"type": "oauth1", "consumer_key": "ck", "consumer_secret": "{secret.cs}",
                             "token": "tk", "token_secret": "{secret.ts}"}),
    );
    let names: Vec<&str> = method.templates().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["consumer_secret", "token_secret", "consumer_key", "token"]
    );
    assert!(auth(json!({"type": "none"})).templates().is_empty());
}

// --- Error rules -----------------------------------------------------------------------------

#[test]
fn a_status_rule_matches_codes_and_classes() {
    let rules = [
        rule(json!({"status": [404], "message": "unknown customer"})),
        rule(json!({"status": ["5xx"], "retry": true})),
    ];
    assert_eq!(
        first_failure(&rules, 404, None),
        Some(Failure {
            message: "unknown customer".into(),
            retry: false
        })
    );
    assert_eq!(
        first_failure(&rules, 503, None),
        Some(Failure {
            message: "HTTP 503 (an error rule)".into(),
            retry: true
        })
    );
    assert_eq!(first_failure(&rules, 200, None), None);
    assert_eq!(first_failure(&rules, 400, None), None);
    assert_eq!(first_failure(&[], 500, None), None);
}

#[test]
fn the_first_matching_rule_wins() {
    let rules = [
        rule(json!({"status": [429], "retry": true, "message": "slow down"})),
        rule(json!({"status": ["4xx"], "message": "refused"})),
    ];
    assert_eq!(
        first_failure(&rules, 429, None).map(|f| (f.message, f.retry)),
        Some(("slow down".to_owned(), true))
    );
    assert_eq!(
        first_failure(&rules, 422, None).map(|f| (f.message, f.retry)),
        Some(("refused".to_owned(), false))
    );
}

#[test]
fn a_path_rule_with_equals_turns_a_200_into_a_failure() {
    // The VAT service answers 200 with `"valid": false` for an unknown number.
    let rules = [rule(
        json!({"status": [200], "path": "$.valid", "equals": false}),
    )];
    let invalid = json!({"valid": false, "vat": "DE123"});
    assert_eq!(
        first_failure(&rules, 200, Some(&invalid)),
        Some(Failure {
            message: "the answer's `$.valid` is false (an error rule)".into(),
            retry: false
        })
    );
    assert_eq!(
        first_failure(&rules, 200, Some(&json!({"valid": true}))),
        None
    );
    assert_eq!(first_failure(&rules, 200, Some(&json!({}))), None);
    assert_eq!(
        first_failure(&rules, 200, None),
        None,
        "no JSON body, no match"
    );
    assert_eq!(
        first_failure(&rules, 201, Some(&invalid)),
        None,
        "the status must match too"
    );
}

#[test]
fn a_path_rule_without_equals_matches_when_the_path_exists() {
    let rules = [rule(json!({"path": "$.error.code"}))];
    let failed = json!({"error": {"code": "RATE", "message": "later"}});
    assert_eq!(
        first_failure(&rules, 200, Some(&failed)).map(|f| f.message),
        Some("the answer has `$.error.code` (an error rule)".to_owned())
    );
    assert_eq!(
        first_failure(&rules, 500, Some(&failed)).map(|f| f.retry),
        Some(false),
        "without a status list any status matches"
    );
    assert_eq!(
        first_failure(&rules, 200, Some(&json!({"error": null}))),
        None
    );
}

#[test]
fn equals_compares_json_values_exactly() {
    let rules = [rule(
        json!({"path": "$.results[*].status", "equals": "blocked"}),
    )];
    let body = json!({"results": [{"status": "ok"}, {"status": "blocked"}]});
    assert!(
        first_failure(&rules, 200, Some(&body)).is_some(),
        "any match counts"
    );
    let rules = [rule(json!({"path": "$.code", "equals": 1}))];
    assert!(first_failure(&rules, 200, Some(&json!({"code": "1"}))).is_none());
    assert!(first_failure(&rules, 200, Some(&json!({"code": 1}))).is_some());
}

#[test]
fn error_rule_check_reports_bad_statuses_paths_and_missing_conditions() {
    let cases = [
        (
            json!({"status": [99]}),
            "status",
            "99 is not an HTTP status",
        ),
        (
            json!({"status": [600]}),
            "status",
            "600 is not an HTTP status",
        ),
        (
            json!({"status": ["6xx"]}),
            "status",
            "`6xx` is not a status class like `4xx`",
        ),
        (
            json!({"status": ["404"]}),
            "status",
            "`404` is not a status class like `4xx`",
        ),
        (
            json!({"retry": true}),
            "status",
            "a rule needs a `status` list, a `path`, or both",
        ),
        (
            json!({"status": [200], "equals": false}),
            "equals",
            "`equals` needs a `path`",
        ),
    ];
    for (value, part, message) in cases {
        let problems = rule(value.clone()).check("error_rules[0]");
        assert_eq!(
            problems,
            [FieldError::new(
                format!("error_rules[0].{part}"),
                FieldErrorCode::InvalidDefinition,
                message
            )],
            "{value}"
        );
    }
    let problems = rule(json!({"path": "$["})).check("r");
    assert_eq!(fields(&problems), ["r.path"]);
    assert_eq!(
        rule(json!({"status": [100, 599, "1xx", "5xx"]})).check("r"),
        []
    );
}

#[test]
fn a_status_class_is_one_digit_from_1_to_5_then_xx() {
    for bad in ["+5xx", "05xx", "5XX", "xx", "50x", "5xxx"] {
        let problems = rule(json!({"status": [bad]})).check("r");
        assert_eq!(fields(&problems), ["r.status"], "{bad}");
        let rules = [rule(json!({"status": [bad]}))];
        assert_eq!(first_failure(&rules, 503, None), None, "{bad}");
    }
}

#[test]
fn unknown_error_rule_keys_are_refused() {
    let err = serde_json::from_value::<ErrorRule>(json!({"status": [500], "retries": 2}))
        .expect_err("unknown key");
    assert!(err.to_string().contains("unknown field `retries`"), "{err}");
}
