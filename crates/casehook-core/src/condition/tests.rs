use serde_json::{Value, json};

use super::*;
use crate::form::{FieldDef, FieldType, FormSpec};

fn event() -> Value {
    json!({
        "id": "evt_1",
        "type": "case.updated",
        "timestamp": "2026-01-01T00:00:00Z",
        "workspace_id": "ws_1",
        "actor": {"kind": "api_key", "name": "ci"},
        "resource_type": "case",
        "resource_id": "c_1",
        "data": {"status": "closed"},
        "changes": {"status": {"old": "open", "new": "closed"}}
    })
}

fn case() -> Value {
    json!({
        "id": "c_1",
        "number": 12,
        "status": "open",
        "data": {
            "amount": 1500,
            "price": 1000.0,
            "whole": 1000,
            "name": "Ada Lovelace",
            "tags": ["vip", "eu"],
            "items": [{"status": "open", "qty": 2}, {"status": "done", "qty": 5}],
            "nothing": null
        },
        "external_refs": {"stripe": "cus_1"},
        "version": 3
    })
}

fn eval(source: &str) -> Result<bool, ConditionError> {
    let condition = Condition::compile(source)?;
    condition.evaluate(&event(), Some(&case()))
}

fn holds(source: &str) -> bool {
    match eval(source) {
        Ok(b) => b,
        Err(e) => panic!("{source}: {e}"),
    }
}

fn eval_error(source: &str) -> String {
    match eval(source) {
        Ok(b) => panic!("{source}: expected an error, got {b}"),
        Err(e) => e.to_string(),
    }
}

fn compile_error(source: &str) -> ConditionError {
    match Condition::compile(source) {
        Ok(_) => panic!("{source}: expected a compile error"),
        Err(e) => e,
    }
}

#[test]
fn numbers_compare_across_ints_and_floats() {
    assert!(holds("case.data.amount > 1000"));
    assert!(holds("case.data.amount > 1000.5"));
    assert!(holds("case.data.price == 1000"));
    assert!(holds("case.data.whole == 1000.0"));
    assert!(holds("case.data.price >= case.data.whole"));
    assert!(!holds("case.data.whole < 999.99"));
    assert!(holds("case.number == 12 && case.version >= 3u"));
    assert!(holds("-case.data.amount < 0"));
}

#[test]
fn arithmetic_between_ints_and_floats_needs_a_conversion() {
    let message = eval_error("case.data.amount + 1.5 > 1000");
    assert!(message.contains("double("), "{message}");
    assert!(holds("double(case.data.amount) + 1.5 > 1000"));
    assert!(holds("case.data.amount * 2 == 3000"));
}

#[test]
fn strings_compare_and_search() {
    assert!(holds(r#"case.status == "open""#));
    assert!(holds("case.status == 'open'"));
    assert!(holds(r#"case.status != "closed""#));
    assert!(holds(
        r#"case.data.name.startsWith("Ada") && case.data.name.endsWith("lace")"#
    ));
    assert!(holds(r#"case.data.name.contains("Love")"#));
    assert!(holds(r#"case.data.name.matches("^[A-Z][a-z]+ L")"#));
    assert!(holds(r#"size(case.data.name) == 12"#));
    assert!(holds(r#""2026-01-02T00:00:00Z" > event.timestamp"#));
}

#[test]
fn in_tests_keys_of_changes_and_members_of_lists() {
    assert!(holds(r#""status" in event.changes"#));
    assert!(!holds(r#""amount" in event.changes"#));
    assert!(holds(r#""vip" in case.data.tags"#));
    assert!(holds(r#"case.status in ["open", "new"]"#));
    assert!(holds(
        r#"event.type == "case.updated" && event.changes.status.new == "closed""#
    ));
}

#[test]
fn absent_or_null_changes_read_as_an_empty_object() {
    let condition = Condition::compile(r#""status" in event.changes"#).expect("compiles");
    let mut without = event();
    if let Value::Object(m) = &mut without {
        m.remove("changes");
    }
    assert_eq!(condition.evaluate(&without, Some(&case())), Ok(false));
    let mut null = event();
    null["changes"] = Value::Null;
    assert_eq!(condition.evaluate(&null, Some(&case())), Ok(false));
    let size = Condition::compile("size(event.changes) == 0").expect("compiles");
    assert_eq!(size.evaluate(&without, Some(&case())), Ok(true));
}

#[test]
fn logic_operators_combine() {
    assert!(holds(r#"case.status == "open" && case.data.amount > 1000"#));
    assert!(!holds(
        r#"case.status == "closed" && case.data.amount > 1000"#
    ));
    assert!(holds(
        r#"case.status == "closed" || case.data.amount > 1000"#
    ));
    assert!(holds(r#"!(case.status == "closed")"#));
    assert!(holds(r#"case.data.amount > 2000 ? false : true"#));
}

#[test]
fn missing_keys_are_errors_unless_tested_with_has_or_defaulted() {
    let message = eval_error("case.data.missing > 1000");
    assert!(message.contains("no such key `missing`"), "{message}");
    assert!(message.contains("has("), "{message}");
    assert!(!holds("has(case.data.missing)"));
    assert!(holds("has(case.data.amount)"));
    assert!(!holds("has(case.data.missing) && case.data.missing > 1000"));
    assert!(!holds("case.data.?missing.orValue(0) > 1000"));
    assert!(holds("case.data.?amount.orValue(0) > 1000"));
    // `&&`/`||` forgive an error on the side that does not decide the result.
    assert!(!holds("case.data.missing > 1 && false"));
    assert!(holds("case.data.missing > 1 || true"));
    // A null value is present: `has` is true and it compares equal to null.
    assert!(holds("has(case.data.nothing) && case.data.nothing == null"));
}

#[test]
fn a_gone_case_is_null() {
    let gone = |source: &str| {
        let condition = Condition::compile(source).expect("compiles");
        condition.evaluate(&event(), None)
    };
    assert_eq!(gone("case == null"), Ok(true));
    assert_eq!(gone(r#"case != null && case.status == "open""#), Ok(false));
    assert_eq!(gone(r#"event.type == "case.updated""#), Ok(true));
    let message = gone(r#"case.status == "open""#)
        .expect_err("reading a field of null fails")
        .to_string();
    assert!(message.contains("case != null"), "{message}");
}

#[test]
fn list_macros_bind_their_own_variables() {
    assert!(holds(r#"case.data.items.exists(i, i.status == "open")"#));
    assert!(holds("case.data.items.all(i, i.qty > 0)"));
    assert!(holds(
        r#"case.data.items.filter(i, i.status == "done").size() == 1"#
    ));
    assert!(holds("case.data.items.map(i, i.qty).exists_one(q, q == 5)"));
    assert!(holds(r#"event.changes.exists(k, k == "status")"#));
    assert!(holds(
        r#"case.data.items.exists(i, case.data.tags.exists(t, t == "vip" && i.qty > 1))"#
    ));
}

#[test]
fn every_listed_function_and_type_name_resolves() {
    // Each call uses one entry of the allow-list, so an upgrade that loses one fails here.
    let uses = [
        ("size", "size([1]) == 1"),
        ("contains", "'ab'.contains('a')"),
        ("startsWith", "'ab'.startsWith('a')"),
        ("endsWith", "'ab'.endsWith('b')"),
        ("matches", "matches('ab', 'b$')"),
        ("int", "int('7') == 7"),
        ("uint", "uint(7) == 7u"),
        ("double", "double('1.5') == 1.5"),
        ("string", "string(7) == '7'"),
        ("bool", "bool('true')"),
        ("bytes", "bytes('a') == b'a'"),
        ("dyn", "dyn(1) == 1"),
        ("type", "type(1) == int"),
        ("value", "optional.of(1).value() == 1"),
        ("hasValue", "!optional.none().hasValue()"),
        ("or", "optional.none().or(optional.of(2)).value() == 2"),
        ("orValue", "optional.ofNonZeroValue(0).orValue(3) == 3"),
    ];
    for (name, source) in uses {
        assert!(analyze::FUNCTIONS.contains(&name), "{name}");
        assert!(holds(source), "{source}");
    }
    assert_eq!(uses.len(), analyze::FUNCTIONS.len());
    let types = "type(true) == bool && type(b'') == bytes && type(1.0) == double \
                 && type([]) == list && type({}) == map && type(null) == null_type \
                 && type('') == string && type(int) == type && type(1u) == uint";
    assert!(holds(types));
}

#[test]
fn unknown_variables_are_refused_with_their_position() {
    assert_eq!(
        compile_error(r#"cas.status == "open""#),
        ConditionError::UnknownVariable {
            name: "cas".into(),
            line: 1,
            column: 1
        }
    );
    let e = compile_error("case.data.amount > 1 &&\n  limit < 5");
    assert_eq!(
        e,
        ConditionError::UnknownVariable {
            name: "limit".into(),
            line: 2,
            column: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown variable `limit` at line 2, column 3; use `event` or `case`"
    );
    // A macro's variable is only known inside the macro.
    assert!(matches!(
        compile_error("case.data.items.exists(i, i.qty > 1) && i.qty > 0"),
        ConditionError::UnknownVariable { name, .. } if name == "i"
    ));
    // Columns count characters, not bytes.
    let e = compile_error("'é' == x");
    assert!(
        matches!(e, ConditionError::UnknownVariable { column: 8, .. }),
        "{e:?}"
    );
    let e = compile_error("'éé' == case.status ||\n 'é' == y");
    assert!(
        matches!(
            e,
            ConditionError::UnknownVariable {
                line: 2,
                column: 9,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_functions_are_refused_at_save_time() {
    let e = compile_error("case.data.name.lowerAscii() == 'ada'");
    assert!(
        matches!(&e, ConditionError::UnknownFunction { name, line: 1, column: 16, .. } if name == "lowerAscii"),
        "{e:?}"
    );
    assert!(matches!(
        compile_error("now() > 1"),
        ConditionError::UnknownFunction { name, .. } if name == "now"
    ));
    let message = compile_error("case.data.items.exists(i)").to_string();
    assert!(message.contains("list.exists(x, x > 0)"), "{message}");
}

#[test]
fn syntax_errors_say_where_and_what() {
    assert_eq!(
        compile_error(r#"case.status == "open" &&"#),
        ConditionError::Syntax {
            line: 1,
            column: 25,
            message: "the condition ends too early; something is missing at the end".into()
        }
    );
    // Columns count characters, not bytes, here too.
    assert!(matches!(
        compile_error("'é' == 'é' &&"),
        ConditionError::Syntax {
            line: 1,
            column: 14,
            ..
        }
    ));
    let slips = [
        (r#"case.status = "open""#, "compare with `==`"),
        (r#"case.status == "open" and true"#, "write `&&`"),
        (r#"case.status == "open" or true"#, "write `||`"),
        (r#"case.status == "open"#, "not closed"),
        (r#"(case.status == "open""#, "missing `)`"),
        (r#"case.status == "open")"#, "unexpected `)`"),
        ("case..status", "unexpected"),
        ("case.data.amount > 1,000", "unexpected `,`"),
        ("case.status == #open", "unexpected character `#`"),
        ("case.data.amount > 1 &&& 2", "unexpected character `&`"),
        ("has(case)", "`has` takes one field"),
    ];
    for (source, expected) in slips {
        let e = compile_error(source);
        assert!(
            matches!(e, ConditionError::Syntax { .. }),
            "{source}: {e:?}"
        );
        let message = e.to_string();
        assert!(message.contains(expected), "{source}: {message}");
        assert!(!message.contains("expecting"), "{source}: {message}");
    }
}

#[test]
fn empty_long_and_deep_conditions_are_refused() {
    assert_eq!(compile_error("  \n"), ConditionError::Empty);
    let long = format!("case.status == \"{}\"", "x".repeat(MAX_SOURCE_BYTES));
    assert!(matches!(
        compile_error(&long),
        ConditionError::TooLong {
            max: MAX_SOURCE_BYTES,
            ..
        }
    ));
    let parens = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
    assert!(matches!(
        compile_error(&parens),
        ConditionError::TooDeep { .. }
    ));
    let chain = format!("1{} > 0", " + 1".repeat(200));
    assert_eq!(
        compile_error(&chain),
        ConditionError::TooDeep { max: MAX_DEPTH }
    );
    let selects = format!("case{} == 1", ".a".repeat(200));
    assert_eq!(
        compile_error(&selects),
        ConditionError::TooDeep { max: MAX_DEPTH }
    );
    let nested = "[1].all(a, [1].all(b, [1].all(c, a == c)))";
    assert_eq!(
        compile_error(nested),
        ConditionError::TooManyNestedMacros {
            max: MAX_NESTED_MACROS
        }
    );
    assert!(matches!(
        compile_error("Msg{a: 1}"),
        ConditionError::Unsupported { .. }
    ));
}

/// The deepest conditions accepted evaluate on a default-sized (2 MiB) thread stack, which
/// is what test threads get and what tokio gives its workers.
#[test]
fn the_deepest_accepted_conditions_evaluate_without_exhausting_the_stack() {
    let mut deepest = Vec::new();
    for n in (1..200).rev() {
        let chain = format!("1{} > 0", " + 1".repeat(n));
        if Condition::compile(&chain).is_ok() {
            deepest.push(chain);
            break;
        }
    }
    for n in (1..200).rev() {
        let source = format!("[[1]].all(a, a.all(b, {}b > 0))", "!!".repeat(n));
        if Condition::compile(&source).is_ok() {
            deepest.push(source);
            break;
        }
    }
    for n in (1..200).rev() {
        let source = format!("{{'a': 1}}{} == 1", "['a']".repeat(n));
        if Condition::compile(&source).is_ok() {
            deepest.push(source);
            break;
        }
    }
    assert_eq!(deepest.len(), 3);
    for source in deepest {
        let result = Condition::compile(&source)
            .expect("compiles")
            .evaluate(&event(), Some(&case()));
        assert!(
            matches!(result, Ok(_) | Err(ConditionError::Evaluation(_))),
            "{source}"
        );
    }
}

#[test]
fn results_that_are_not_booleans_are_errors() {
    assert_eq!(
        eval("case.data.amount"),
        Err(ConditionError::NotBoolean("the number 1500".into()))
    );
    assert_eq!(
        eval("case.status"),
        Err(ConditionError::NotBoolean(r#"the text "open""#.into()))
    );
    assert_eq!(
        eval("case.data.tags"),
        Err(ConditionError::NotBoolean("a list of 2 items".into()))
    );
    assert_eq!(
        eval("case.data.nothing"),
        Err(ConditionError::NotBoolean("null".into()))
    );
}

#[test]
fn runtime_errors_read_in_plain_words() {
    let cases = [
        (
            "case.status > 1",
            "`>` does not work on text and a whole number",
        ),
        ("case.data.amount / 0 > 1", "division by zero"),
        ("case.data.tags[5] == 'x'", "index 5 is outside the list"),
        ("case.data.name.x == 1", "cannot read a field of text"),
        ("int(case.data.name) > 1", "`int` failed"),
        ("case.data.name.matches('(') ", "`matches` failed"),
        ("9223372036854775807 + case.number > 0", "too large to add"),
        ("'a' in case.data.amount", "`in` needs a list or an object"),
        ("case.data.amount && true", "`&&` does not work on"),
    ];
    for (source, expected) in cases {
        let message = eval_error(source);
        assert!(message.contains(expected), "{source}: {message}");
    }
}

#[test]
fn check_fields_refuses_keys_the_form_lacks() {
    let mut form = FormSpec::new("Orders");
    form.fields = vec![
        FieldDef::new("amount", FieldType::Number),
        FieldDef::new("tags", FieldType::MultiSelect),
    ];
    let ok = Condition::compile(
        r#"case.data.amount > 1 && has(case.data.tags) && "tags" in case.data && case.data["amount"] > 0"#,
    )
    .expect("compiles");
    assert_eq!(ok.check_fields(&form), Ok(()));
    assert_eq!(ok.data_keys(), ["amount", "tags"]);

    let typo = Condition::compile(
        "case.data.amout > 1 || case.data.?colour.orValue('') == 'red' || case.data.amout < 0",
    )
    .expect("compiles");
    let e = typo.check_fields(&form).expect_err("two unknown fields");
    assert_eq!(
        e,
        ConditionError::UnknownFields {
            keys: vec!["amout".into(), "colour".into()]
        }
    );
    assert_eq!(
        e.to_string(),
        "the condition uses `case.data.amout`, `case.data.colour`, which are not fields of the form"
    );

    let one = Condition::compile("case.data.colour == 'red'").expect("compiles");
    assert_eq!(
        one.check_fields(&form).map_err(|e| e.to_string()),
        Err("the condition uses `case.data.colour`, but the form has no field `colour`".into())
    );

    // `case` bound by a macro is not the case; event data is not checked against the form.
    let shadowed = Condition::compile(
        "[{'data': {'x': 1}}].exists(case, case.data.x == 1) && event.data.y == 1",
    )
    .expect("compiles");
    assert_eq!(shadowed.check_fields(&form), Ok(()));
}

#[test]
fn conditions_are_shared_across_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Condition>();
    let condition = Condition::compile("case.data.amount > 1000").expect("compiles");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let c = condition.clone();
            std::thread::spawn(move || c.evaluate(&event(), Some(&case())))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("no panic"), Ok(true));
    }
    assert_eq!(condition.to_string(), "case.data.amount > 1000");
    assert_eq!(condition.source(), "case.data.amount > 1000");
}

#[test]
fn step_conditions_see_earlier_steps_and_endpoint_conditions_do_not() {
    let source = "steps.customer.tier == 'gold' && case.status == 'open'";
    assert!(
        Condition::compile(source).is_err(),
        "`steps` is not a variable of endpoint conditions"
    );
    let c = Condition::compile_step(source).expect("a step condition may read steps");
    let event = serde_json::json!({"type": "manual"});
    let case = serde_json::json!({"status": "open", "data": {}});
    let gold = serde_json::json!({"customer": {"tier": "gold"}});
    let silver = serde_json::json!({"customer": {"tier": "silver"}});
    assert_eq!(c.evaluate_step(&event, Some(&case), &gold), Ok(true));
    assert_eq!(c.evaluate_step(&event, Some(&case), &silver), Ok(false));
}
