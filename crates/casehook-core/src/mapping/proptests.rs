//! Properties over generated responses and paths: applying a mapping never panics, every
//! value it produces is valid for its field, and checking any path text never panics.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use super::*;
use crate::form::{FieldDef, FieldOption};
use crate::validate::check_value;

const TYPES: [FieldType; 11] = FieldType::ALL;

const KEYS: [&str; 5] = ["a", "b", "items", "status", "id"];

/// One field of every type, named after it.
fn form() -> FormSpec {
    let fields = TYPES
        .iter()
        .map(|t| {
            let options = if t.has_options() {
                ["open", "1", "true"]
                    .iter()
                    .map(|o| FieldOption::new(*o))
                    .collect()
            } else {
                Vec::new()
            };
            FieldDef {
                options,
                ..FieldDef::new(t.to_string(), *t)
            }
        })
        .collect();
    FormSpec {
        fields,
        ..FormSpec::new("properties")
    }
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("open".to_owned()),
            Just("1".to_owned()),
            Just("true".to_owned()),
            Just("2026-03-01".to_owned()),
            Just("2026-03-01T10:00:00+01:00".to_owned()),
            Just("https://example.com/x".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |pairs| Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

const PATHS: [&str; 9] = [
    "$",
    "$.a",
    "$.items[*]",
    "$.items[*].id",
    "$..id",
    "$.items[?@.status == 'open']",
    "$.a.b[0]",
    "$[*].*",
    "$..[?@.id]",
];

fn mode() -> impl Strategy<Value = ArrayMode> {
    prop_oneof![
        Just(ArrayMode::First),
        Just(ArrayMode::All),
        Just(ArrayMode::Count),
        Just(ArrayMode::Join {
            separator: ", ".into()
        }),
        Just(ArrayMode::Each {
            fields: [
                ("$.id".to_owned(), "id".to_owned()),
                ("@.status".to_owned(), "status".to_owned()),
            ]
            .into_iter()
            .collect()
        }),
    ]
}

fn rules() -> impl Strategy<Value = Vec<MappingRule>> {
    let rule = (
        prop::sample::select(PATHS.to_vec()),
        prop::sample::select(TYPES.to_vec()),
        mode(),
    )
        .prop_map(|(path, t, mode)| MappingRule {
            path: path.to_owned(),
            field: t.to_string(),
            mode,
        });
    prop::collection::vec(rule, 1..12)
}

proptest! {
    #[test]
    fn applied_values_are_always_valid_for_their_field(response in json(), rules in rules()) {
        let form = form();
        let result = ResponseMapping { rules }.apply(&response, &form);
        for (key, value) in &result.data {
            let field = form.field(key).expect("only form fields are filled");
            prop_assert_eq!(check_value(field, value), Ok(value.clone()), "{}", key);
            prop_assert!(!value.is_null(), "{}", key);
        }
        for p in &result.problems {
            prop_assert!(!p.message.is_empty());
        }
    }

    #[test]
    fn checking_any_path_text_never_panics(path in "\\$?[\\[\\]().?@*$'\"a-z0-9 =<>!&|,:-]{0,40}") {
        let mapping = ResponseMapping { rules: vec![MappingRule {
            path: path.clone(),
            field: "array".into(),
            mode: ArrayMode::All,
        }] };
        let checked = mapping.check(&form());
        let applied = mapping.apply(&Value::Null, &form());
        // A path the check accepts runs; one it refuses is reported by apply too.
        prop_assert_eq!(checked.is_ok(), applied.data.contains_key("array"));
    }
}
