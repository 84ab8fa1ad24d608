use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn context() -> Value {
    json!({
        "data": {
            "customer_id": "cus 42/x",
            "amount": 12.5,
            "count": 3,
            "vip": true,
            "note": null,
            "items": [{"sku": "A-1"}, {"sku": "B-2"}],
            "address": {"city": "Zürich"},
        },
        "case": {"id": "0190c0de-0000-7000-8000-000000000001", "number": 7},
        "event": {"type": "case.updated"},
        "secret": {"api_key": "from-the-json-never-used"},
    })
}

fn secrets(name: &str) -> Option<String> {
    match name {
        "api_key" => Some("sk_live_123".to_owned()),
        "tricky" => Some("a\"b&c d/é".to_owned()),
        "empty" => Some(String::new()),
        _ => None,
    }
}

fn render(src: &str, escape: Escape, missing: Missing) -> Result<Rendered, RenderError> {
    let ctx = context();
    let scope = JsonScope::new(&ctx).with_secrets(&secrets);
    Template::parse(src)
        .expect("parses")
        .render(&scope, escape, missing)
}

fn text(src: &str) -> String {
    render(src, Escape::None, Missing::Error)
        .expect("renders")
        .text
}

fn names(t: &Template) -> Vec<String> {
    t.placeholders().map(Placeholder::dotted).collect()
}

#[test]
fn parses_literals_and_placeholders() {
    let t = Template::parse("/customers/{data.customer_id}/orders?n={case.number}").expect("ok");
    assert_eq!(names(&t), ["data.customer_id", "case.number"]);
    let first = t.placeholders().next().expect("one");
    assert_eq!(first.root(), "data");
    assert_eq!(first.path(), ["customer_id"]);
    assert_eq!(first.position(), 11);
    assert_eq!(first.to_string(), "{data.customer_id}");
    assert_eq!(
        t.as_str(),
        "/customers/{data.customer_id}/orders?n={case.number}"
    );
    assert!(t.single_placeholder().is_none());
    assert!(t.as_literal().is_none());
}

#[test]
fn paths_allow_dashes_underscores_digits_and_bare_roots() {
    let t = Template::parse("{data.items.0.sku}{data}{x-y_z.A-9}").expect("ok");
    assert_eq!(names(&t), ["data.items.0.sku", "data", "x-y_z.A-9"]);
}

#[test]
fn doubled_braces_are_literal() {
    let t = Template::parse("{{\"a\": {data.count}}}").expect("ok");
    assert_eq!(names(&t), ["data.count"]);
    assert_eq!(text("{{\"a\": {data.count}}}"), "{\"a\": 3}");
    let lit = Template::parse("{{}}").expect("ok");
    assert_eq!(lit.as_literal(), Some("{}"));
    assert_eq!(Template::parse("").expect("ok").as_literal(), Some(""));
}

#[test]
fn syntax_errors_carry_their_byte_position() {
    let cases = [
        ("abc {data.x", TemplateError::Unterminated { position: 4 }),
        ("ab{}", TemplateError::Empty { position: 2 }),
        ("a } b", TemplateError::UnmatchedClose { position: 2 }),
        ("{data.x}}", TemplateError::UnmatchedClose { position: 8 }),
    ];
    for (src, expected) in cases {
        assert_eq!(Template::parse(src), Err(expected), "{src}");
    }
    let err = Template::parse("é{data..x}").expect_err("empty segment");
    assert!(
        matches!(&err, TemplateError::Invalid { position: 2, text, .. } if text == "data..x"),
        "{err:?}"
    );
    for bad in [
        "{data.}", "{.data}", "{data x}", "{ data }", "{data/x}", "{dätá}",
    ] {
        assert!(
            matches!(Template::parse(bad), Err(TemplateError::Invalid { .. })),
            "{bad}"
        );
    }
}

#[test]
fn error_messages_help_the_user() {
    let err = Template::parse("{\"a\": 1}").expect_err("json in a header");
    let msg = err.to_string();
    assert!(msg.contains("byte 0") && msg.contains("{{"), "{msg}");
    let err = Template::parse("x {data.a").expect_err("open");
    assert!(err.to_string().contains("never closed"), "{err}");
    let long = format!("{{{}}}", "a b".repeat(100));
    let msg = Template::parse(&long).expect_err("long").to_string();
    assert!(msg.len() < 250, "{msg}");
}

#[test]
fn check_roots_names_the_unknown_root_and_the_allowed_ones() {
    let t = Template::parse("{data.a} {secret.k}").expect("ok");
    t.check_roots(&["data", "secret"]).expect("allowed");
    let err = t
        .check_roots(&["data", "case"])
        .expect_err("secret refused");
    assert_eq!(
        err.to_string(),
        "unknown placeholder `{secret.k}` at byte 9: `secret` is not one of `data`, `case`"
    );
    assert!(t.check_roots(&[]).is_err());
    Template::parse("plain")
        .expect("ok")
        .check_roots(&[])
        .expect("no placeholders");
}

#[test]
fn scalars_objects_and_arrays_render_as_text() {
    assert_eq!(text("{data.customer_id}"), "cus 42/x");
    assert_eq!(text("{data.amount}|{data.count}|{data.vip}"), "12.5|3|true");
    assert_eq!(text("{data.address}"), r#"{"city":"Zürich"}"#);
    assert_eq!(text("{data.items.1.sku}"), "B-2");
    assert_eq!(text("{data.items}"), r#"[{"sku":"A-1"},{"sku":"B-2"}]"#);
    assert_eq!(text("#{case.number} ({event.type})"), "#7 (case.updated)");
}

#[test]
fn missing_values_error_or_render_empty_as_asked() {
    for src in [
        "{data.nope}",
        "{data.note}",
        "{data.items.9.sku}",
        "{data.count.x}",
        "{nope}",
    ] {
        let err = render(src, Escape::None, Missing::Error).expect_err("missing");
        assert_eq!(
            err,
            RenderError::Missing {
                placeholder: src.to_owned()
            }
        );
        let out = render(&format!("a{src}b"), Escape::None, Missing::Empty).expect("empty");
        assert_eq!(out.text, "ab");
    }
}

#[test]
fn path_segments_are_percent_encoded() {
    let out = render("/c/{data.customer_id}", Escape::PathSegment, Missing::Error).expect("ok");
    assert_eq!(out.text, "/c/cus%2042%2Fx");
    let out = render("/{data.address.city}", Escape::PathSegment, Missing::Error).expect("ok");
    assert_eq!(out.text, "/Z%C3%BCrich");
    assert_eq!(percent_encode_path_segment("a-b.c_d~e"), "a-b.c_d~e");
    assert_eq!(
        percent_encode_path_segment("?#[]@!$&'()*+,;=%"),
        "%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25"
    );
}

#[test]
fn dot_segments_are_refused_in_paths() {
    let ctx = json!({"data": {"a": ".", "b": "..", "c": "..."}});
    let scope = JsonScope::new(&ctx);
    let t = |s: &str| Template::parse(s).expect("ok");
    for src in ["/x/{data.a}", "/x/{data.b}"] {
        let err = t(src)
            .render(&scope, Escape::PathSegment, Missing::Error)
            .expect_err("traversal");
        assert!(matches!(err, RenderError::DotSegment { .. }), "{err}");
    }
    let ok = t("/x/{data.c}").render(&scope, Escape::PathSegment, Missing::Error);
    assert_eq!(ok.expect("three dots are a name").text, "/x/...");
}

#[test]
fn query_values_are_form_encoded() {
    let out = render(
        "q={data.customer_id}&c={data.address.city}",
        Escape::Query,
        Missing::Error,
    )
    .expect("ok");
    assert_eq!(out.text, "q=cus+42%2Fx&c=Z%C3%BCrich");
    assert_eq!(form_urlencode("a*b-c.d_e~f+g"), "a*b-c.d_e%7Ef%2Bg");
}

#[test]
fn header_values_refuse_line_breaks_and_control_characters() {
    let ctx = json!({"data": {"cr": "a\rb", "lf": "a\nX-Evil: 1", "nul": "a\0", "bell": "\u{7}", "tab": "a\tb"}});
    let scope = JsonScope::new(&ctx);
    for key in ["cr", "lf", "nul", "bell"] {
        let t = Template::parse(&format!("v {{data.{key}}}")).expect("ok");
        let err = t
            .render(&scope, Escape::Header, Missing::Error)
            .expect_err("refused");
        assert!(
            matches!(err, RenderError::HeaderInjection { .. }),
            "{key}: {err}"
        );
        // The message names the placeholder, never the value.
        assert!(!err.to_string().contains("X-Evil"), "{err}");
    }
    let t = Template::parse("{data.tab}").expect("ok");
    assert_eq!(
        t.render(&scope, Escape::Header, Missing::Error)
            .expect("tab ok")
            .text,
        "a\tb"
    );
    let t = Template::parse("a\r\nb").expect("ok");
    assert!(matches!(
        t.render(&scope, Escape::Header, Missing::Error),
        Err(RenderError::HeaderLiteral { .. })
    ));
    // Other contexts do not care: JSON escaping handles line breaks.
    let t = Template::parse("{data.lf}").expect("ok");
    assert!(t.render(&scope, Escape::None, Missing::Error).is_ok());
}

#[test]
fn secrets_come_from_the_source_and_are_recorded() {
    let out = render("Bearer {secret.api_key}", Escape::Header, Missing::Error).expect("ok");
    assert_eq!(out.text, "Bearer sk_live_123");
    assert_eq!(out.secrets_used, ["sk_live_123"]);
    let shown = format!("{out:?}");
    assert!(
        !shown.contains("sk_live_123") && shown.contains(REDACTED),
        "{shown}"
    );

    // Used twice, recorded once; non-secret values are not recorded.
    let out = render(
        "{secret.api_key}{secret.api_key}{data.count}",
        Escape::None,
        Missing::Error,
    )
    .expect("ok");
    assert_eq!(out.secrets_used, ["sk_live_123"]);

    // An empty secret is not recorded (it cannot be redacted).
    let out = render("[{secret.empty}]", Escape::None, Missing::Error).expect("ok");
    assert_eq!(out.text, "[]");
    assert!(out.secrets_used.is_empty());
}

#[test]
fn a_secret_key_in_the_json_context_is_never_used() {
    let ctx = context();
    let t = Template::parse("{secret.api_key}").expect("ok");
    let err = t
        .render(&JsonScope::new(&ctx), Escape::None, Missing::Error)
        .expect_err("no secret source");
    assert!(matches!(err, RenderError::Missing { .. }));
    let err = render("{secret.api_key.x}", Escape::None, Missing::Error).expect_err("nested");
    assert!(matches!(err, RenderError::Missing { .. }));
    assert!(render("{secret.unknown}", Escape::None, Missing::Error).is_err());
    assert!(render("{secret}", Escape::None, Missing::Error).is_err());
}

#[test]
fn secrets_are_looked_up_lazily() {
    use std::cell::RefCell;
    let asked = RefCell::new(Vec::new());
    let source = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        Some("v".to_owned())
    };
    let ctx = json!({});
    let scope = JsonScope::new(&ctx).with_secrets(&source);
    Template::parse("{secret.one}")
        .expect("ok")
        .render(&scope, Escape::None, Missing::Error)
        .expect("ok");
    assert_eq!(*asked.borrow(), ["one"]);
}

#[test]
fn redaction_covers_every_encoding_of_a_secret() {
    let secret = secrets("tricky").expect("defined");
    let secrets_used = vec![secret.clone(), "sk_live_123".to_owned()];
    let json_body = json!({"k": secret}).to_string();
    let logged = format!(
        "{json_body} /p/{} ?q={} raw={secret} sk_live_123",
        percent_encode_path_segment(&secret),
        form_urlencode(&secret)
    );
    let clean = redact(&logged, &secrets_used);
    assert!(
        !clean.contains("sk_live") && !clean.contains("a\\\"b"),
        "{clean}"
    );
    assert!(
        !clean.contains("%2F%C3%A9") && !clean.contains("d/é"),
        "{clean}"
    );
    assert_eq!(clean.matches(REDACTED).count(), 5, "{clean}");
    assert_eq!(redact("nothing here", &[String::new()]), "nothing here");
}

#[test]
fn templates_serialize_as_text_and_refuse_bad_syntax() {
    let t: Template = serde_json::from_value(json!("x {data.a}")).expect("ok");
    assert_eq!(serde_json::to_value(&t).expect("ok"), json!("x {data.a}"));
    let err = serde_json::from_value::<Template>(json!("x {data.a")).expect_err("bad");
    assert!(err.to_string().contains("never closed"), "{err}");
    assert_eq!("{a}".parse::<Template>().expect("ok").to_string(), "{a}");
}

#[test]
fn placeholder_parse_is_the_shared_path_syntax() {
    let p = Placeholder::parse("data.items.0").expect("ok");
    assert_eq!(
        (p.root(), p.path()),
        ("data", &["items".to_owned(), "0".to_owned()][..])
    );
    assert_eq!(p.position(), 0);
    assert!(Placeholder::parse("").is_err());
    assert!(Placeholder::parse("a..b").is_err());
}

fn json_scope_render(template: Value, missing: Missing) -> Result<RenderedJson, RenderError> {
    let ctx = context();
    let scope = JsonScope::new(&ctx).with_secrets(&secrets);
    render_json(&template, &scope, missing)
}

#[test]
fn json_lone_placeholders_keep_their_type() {
    let out = json_scope_render(
        json!({
            "n": "{data.count}",
            "f": "{data.amount}",
            "b": "{data.vip}",
            "o": "{data.address}",
            "a": "{data.items}",
            "s": "{data.customer_id}",
            "mixed": "#{case.number}: {data.vip}",
            "static": 5,
            "lit": "{{not a placeholder}}",
            "{data.count}": ["{case.number}", null, false],
        }),
        Missing::Error,
    )
    .expect("renders");
    assert_eq!(
        out.value,
        json!({
            "n": 3,
            "f": 12.5,
            "b": true,
            "o": {"city": "Zürich"},
            "a": [{"sku": "A-1"}, {"sku": "B-2"}],
            "s": "cus 42/x",
            "mixed": "#7: true",
            "static": 5,
            "lit": "{not a placeholder}",
            "{data.count}": [7, null, false],
        })
    );
}

#[test]
fn json_missing_values_become_null_or_error() {
    let template = json!({"a": "{data.nope}", "b": "x{data.nope}y"});
    let out = json_scope_render(template.clone(), Missing::Empty).expect("renders");
    assert_eq!(out.value, json!({"a": null, "b": "xy"}));
    let err = json_scope_render(template, Missing::Error).expect_err("missing");
    assert_eq!(err.to_string(), "`{data.nope}` has no value");
}

#[test]
fn json_templates_record_secrets_and_redact_in_debug() {
    let out = json_scope_render(
        json!({"auth": "{secret.api_key}", "t": "k={secret.tricky}"}),
        Missing::Error,
    )
    .expect("renders");
    assert_eq!(out.secrets_used, ["sk_live_123", "a\"b&c d/é"]);
    let shown = format!("{out:?}");
    assert!(
        !shown.contains("sk_live") && !shown.contains("d/é"),
        "{shown}"
    );
}

#[test]
fn json_template_errors_name_the_path() {
    let err =
        JsonTemplate::parse(&json!({"items": [{"x": 1}, {"name": "{bad"}]})).expect_err("bad");
    assert_eq!(err.path, "items[1].name");
    assert!(err.to_string().starts_with("at `items[1].name`: "), "{err}");
    let err = JsonTemplate::parse(&json!("{}")).expect_err("empty");
    assert_eq!(err.path, "");
    assert!(err.to_string().starts_with("empty placeholder"), "{err}");
    let err = json_scope_render(json!(["{x"]), Missing::Empty).expect_err("bad");
    assert!(matches!(err, RenderError::Template(_)));
}

#[test]
fn json_placeholders_and_roots_are_checked_with_paths() {
    let t =
        JsonTemplate::parse(&json!({"a": "{data.x}", "b": ["{case.id} {secret.k}"]})).expect("ok");
    let found: Vec<(String, String)> = t
        .placeholders()
        .into_iter()
        .map(|(path, p)| (path, p.dotted()))
        .collect();
    assert_eq!(
        found,
        [
            ("a".to_owned(), "data.x".to_owned()),
            ("b[0]".to_owned(), "case.id".to_owned()),
            ("b[0]".to_owned(), "secret.k".to_owned()),
        ]
    );
    let err = t.check_roots(&["data", "case"]).expect_err("secret");
    assert_eq!(err.path, "b[0]");
    t.check_roots(&["data", "case", "secret"])
        .expect("all allowed");
}

proptest! {
    #[test]
    fn brace_free_text_renders_to_itself(s in "[^{}]*") {
        let ctx = json!({});
        let t = Template::parse(&s).expect("no braces, no errors");
        prop_assert_eq!(t.placeholders().count(), 0);
        let out = t.render(&JsonScope::new(&ctx), Escape::None, Missing::Error).expect("renders");
        prop_assert_eq!(out.text, s);
    }

    #[test]
    fn doubled_braces_round_trip_to_the_original_text(s in ".*") {
        let escaped = s.replace('{', "{{").replace('}', "}}");
        let t = Template::parse(&escaped).expect("escaped text parses");
        prop_assert_eq!(t.as_literal(), Some(s.as_str()));
    }

    #[test]
    fn parse_never_panics_and_positions_are_in_range(s in "[a-z{}. ]{0,30}") {
        match Template::parse(&s) {
            Ok(t) => {
                for p in t.placeholders() {
                    prop_assert!(p.position() < s.len());
                    prop_assert_eq!(&s[p.position()..=p.position()], "{");
                }
            }
            Err(TemplateError::Unterminated { position }
                | TemplateError::Empty { position }
                | TemplateError::Invalid { position, .. }
                | TemplateError::UnmatchedClose { position }) => {
                prop_assert!(position < s.len());
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn path_segment_escaping_keeps_values_inside_one_segment(s in ".*") {
        let encoded = percent_encode_path_segment(&s);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        let form = form_urlencode(&s);
        prop_assert!(form.bytes().all(|b| b.is_ascii_alphanumeric() || b"*-._%+".contains(&b)));
    }
}

fn render_url(src: &str, ctx: &Value, missing: Missing) -> Result<Rendered, RenderError> {
    let scope = JsonScope::new(ctx).with_secrets(&|name: &str| match name {
        "bureau_key" => Some("bk_live_9/x=1".to_owned()),
        _ => None,
    });
    Template::parse(src)
        .expect("parses")
        .render_url(&scope, missing)
}

fn url_text(src: &str, ctx: &Value) -> String {
    render_url(src, ctx, Missing::Error).expect("renders").text
}

#[test]
fn render_url_encodes_values_after_the_question_mark_as_query_values() {
    let ctx = json!({"data": {"vat_number": "DE 123&admin=1#x", "country": "Österreich"}});
    assert_eq!(
        url_text(
            "https://api.vatcheck.example/check?vat={data.vat_number}&c={data.country}",
            &ctx
        ),
        "https://api.vatcheck.example/check?vat=DE+123%26admin%3D1%23x&c=%C3%96sterreich"
    );
}

#[test]
fn render_url_encodes_values_before_the_question_mark_as_one_path_segment() {
    let ctx = json!({"data": {"customer_id": "42/../../admin", "q": "a b?c#d"}});
    assert_eq!(
        url_text(
            "https://api.bureau.example/v2/customers/{data.customer_id}/score",
            &ctx
        ),
        "https://api.bureau.example/v2/customers/42%2F..%2F..%2Fadmin/score"
    );
    // Space is `%20` in a path (`+` only means space in a query), and a `?` or `#` in a
    // value neither starts a query nor a fragment.
    assert_eq!(
        url_text("https://geo.example/search/{data.q}", &ctx),
        "https://geo.example/search/a%20b%3Fc%23d"
    );
}

#[test]
fn render_url_refuses_a_dot_segment_value_in_the_path_but_not_in_the_query() {
    for dots in [".", ".."] {
        let ctx = json!({"data": {"id": dots}});
        let err = render_url(
            "https://crm.example/customers/{data.id}",
            &ctx,
            Missing::Error,
        )
        .expect_err("a dot segment would change the path");
        assert_eq!(
            err,
            RenderError::DotSegment {
                placeholder: "{data.id}".into(),
                value: dots
            }
        );
        assert_eq!(
            url_text("https://crm.example/customers?id={data.id}", &ctx),
            format!("https://crm.example/customers?id={dots}")
        );
    }
}

#[test]
fn render_url_switches_to_query_encoding_at_the_templates_first_question_mark_only() {
    let ctx = json!({"data": {"kind": "a?b c", "term": "a?b c"}});
    assert_eq!(
        url_text(
            "https://crm.example/{data.kind}/find?term={data.term}",
            &ctx
        ),
        "https://crm.example/a%3Fb%20c/find?term=a%3Fb+c"
    );
    // An escaped brace is literal text; a `?` inside a value never switches.
    assert_eq!(
        url_text("https://crm.example/{{x}}/{data.kind}", &ctx),
        "https://crm.example/{x}/a%3Fb%20c"
    );
}

#[test]
fn render_url_renders_numbers_and_booleans_as_text() {
    let ctx = json!({"data": {"page": 2, "active": true}, "case": {"number": 1042}});
    assert_eq!(
        url_text(
            "https://crm.example/cases/{case.number}?page={data.page}&active={data.active}",
            &ctx
        ),
        "https://crm.example/cases/1042?page=2&active=true"
    );
}

#[test]
fn render_url_records_the_secrets_it_uses_in_path_and_query() {
    let ctx = json!({"data": {"customer_id": "c-7"}});
    let out = render_url(
        "https://api.bureau.example/v2/{secret.bureau_key}/score?key={secret.bureau_key}&c={data.customer_id}",
        &ctx,
        Missing::Error,
    )
    .expect("renders");
    assert_eq!(
        out.text,
        "https://api.bureau.example/v2/bk_live_9%2Fx%3D1/score?key=bk_live_9%2Fx%3D1&c=c-7"
    );
    assert_eq!(out.secrets_used, ["bk_live_9/x=1"]);
    let logged = redact(&out.text, &out.secrets_used);
    assert!(!logged.contains("bk_live"), "{logged}");
    assert!(!format!("{out:?}").contains("bk_live"), "Debug redacts");
}

#[test]
fn render_url_treats_missing_values_as_asked() {
    let ctx = json!({"data": {"vat_number": null}});
    let src = "https://api.vatcheck.example/check/{data.country}?vat={data.vat_number}";
    assert_eq!(
        render_url(src, &ctx, Missing::Error),
        Err(RenderError::Missing {
            placeholder: "{data.country}".into()
        })
    );
    assert_eq!(
        render_url(src, &ctx, Missing::Empty).expect("renders").text,
        "https://api.vatcheck.example/check/?vat="
    );
    let err = render_url(
        "https://api.bureau.example/{secret.unknown}",
        &ctx,
        Missing::Error,
    )
    .expect_err("an unknown secret is missing");
    assert!(matches!(err, RenderError::Missing { .. }), "{err}");
}
