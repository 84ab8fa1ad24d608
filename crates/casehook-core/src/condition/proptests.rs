//! Properties over generated input: compiling any text and evaluating any JSON never panics,
//! and a compiled condition either decides or explains.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use super::*;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![Just("open".to_owned()), Just("status".to_owned()), ".{0,8}"]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("data".to_owned()),
                        Just("status".to_owned()),
                        Just("amount".to_owned()),
                        Just("changes".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const CONDITIONS: &[&str] = &[
    "case.data.amount > 1000 && case.status == 'open'",
    "'status' in event.changes",
    "event.type == 'case.updated' && event.changes.status.new == 'closed'",
    "has(case.data.amount) && case.data.amount >= 1000.0",
    "case.data.?amount.orValue(0) + 1 > 2",
    "event.data.exists(k, k == 'status') || size(case) > 2",
    "case.data.items.all(i, i.status.startsWith('o'))",
    "case != null && case.data.map(k, k).size() > 0",
    "case.status.matches('^o.*n$')",
    "int(case.data.amount) / case.data.amount == 1",
];

proptest! {
    #[test]
    fn compiling_any_text_never_panics(source in ".{0,80}") {
        let _ = Condition::compile(&source);
    }

    #[test]
    fn compiling_token_soup_never_panics(
        tokens in prop::collection::vec(
            prop_oneof![
                Just("case"), Just("event"), Just("."), Just("data"), Just("("), Just(")"),
                Just("["), Just("]"), Just("{"), Just("}"), Just(":"), Just(","), Just("1"),
                Just("-"), Just("+"), Just("/"), Just("&&"), Just("||"), Just("!"), Just("=="),
                Just("<"), Just("in"), Just("has"), Just("?"), Just(".?"), Just("'a'"),
                Just("\""), Just("exists"), Just("x"), Just("size"), Just("optional"),
            ],
            0..40,
        )
    ) {
        let _ = Condition::compile(&tokens.join(" "));
    }

    #[test]
    fn evaluating_any_json_decides_or_explains(
        event in json(),
        case in proptest::option::of(json()),
        which in 0..CONDITIONS.len(),
    ) {
        let condition = Condition::compile(CONDITIONS[which]).expect("fixture compiles");
        match condition.evaluate(&event, case.as_ref()) {
            Ok(_) => {}
            Err(ConditionError::Evaluation(m) | ConditionError::NotBoolean(m)) => {
                prop_assert!(!m.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
