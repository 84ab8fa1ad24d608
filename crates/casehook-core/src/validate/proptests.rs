//! Properties of `validate_data` over generated input: it never panics, its output is a fixed
//! point, and it agrees with `check_value` value by value.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use super::*;
use crate::form::FieldOption;

const TYPES: [FieldType; 11] = FieldType::ALL;

const OPTIONS: [&str; 3] = ["gold", "silver", "bronze"];

/// One optional and one required field of every type.
fn test_form() -> FormSpec {
    let mut fields = Vec::new();
    for t in TYPES {
        for required in [false, true] {
            let key = if required {
                format!("req_{t}")
            } else {
                t.to_string()
            };
            let options = if t.has_options() {
                OPTIONS.iter().map(|o| FieldOption::new(*o)).collect()
            } else {
                Vec::new()
            };
            fields.push(FieldDef {
                required,
                options,
                ..FieldDef::new(key, t)
            });
        }
    }
    FormSpec {
        fields,
        ..FormSpec::new("properties")
    }
}

fn optional_only(form: &FormSpec) -> FormSpec {
    let fields = form
        .fields
        .iter()
        .map(|f| FieldDef {
            required: false,
            ..f.clone()
        })
        .collect();
    FormSpec {
        fields,
        ..form.clone()
    }
}

/// Strings that sit near the edges of the rules: numbers, dates, URLs, options, blanks.
fn edgy_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("NaN".to_owned()),
        Just("-inf".to_owned()),
        prop::sample::select(&OPTIONS[..]).prop_map(str::to_owned),
        " ?-?[0-9]{1,22}(\\.[0-9]{0,6})?([eE][+-]?[0-9]{1,3})? ?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
        "[0-9]{4}-(0[1-9]|1[0-2])-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,10})?([Zz]|[+-][0-2][0-9]:[0-5][0-9])",
        "(https?|HTTP|ftp)://([a-z0-9_-]{0,8}@)?[a-z0-9._\\-\\[\\]:%]{0,20}(/[a-z %\\\\]{0,6})?([?#][a-z=]{0,4})?",
        ".{0,80}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| Number::from_f64(f)
            .map(Value::Number)),
        edgy_string().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Lists that a multi-select might take, or nearly.
fn option_list() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(&OPTIONS[..]).prop_map(Value::from),
            1 => leaf(),
        ],
        0..6,
    )
    .prop_map(Value::Array)
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![4 => arb_json(), 1 => option_list()]
}

/// Keys of the test form, with now and then one it does not know.
fn arb_key() -> impl Strategy<Value = String> {
    let form = test_form();
    let known: Vec<String> = form.fields.iter().map(|f| f.key.clone()).collect();
    prop_oneof![
        12 => prop::sample::select(known),
        1 => ".{0,70}",
    ]
}

fn arb_input() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((arb_key(), arb_value()), 0..12).prop_map(|kv| kv.into_iter().collect())
}

/// Input built field by field from values each field is likely to take, so that a good share
/// validates and the fixed-point property has something to bite on.
fn likely_valid_input() -> impl Strategy<Value = Map<String, Value>> {
    let form = test_form();
    let picks: Vec<_> = form
        .fields
        .iter()
        .map(|f| (prop::bool::weighted(0.3), likely_value(f.field_type)))
        .collect();
    let keys: Vec<String> = form.fields.iter().map(|f| f.key.clone()).collect();
    picks.prop_map(move |picked| {
        keys.iter()
            .zip(picked)
            .filter(|(_, (keep, _))| *keep)
            .map(|(k, (_, v))| (k.clone(), v))
            .collect()
    })
}

fn likely_value(t: FieldType) -> BoxedStrategy<Value> {
    let string = |re: &'static str| {
        prop_oneof![4 => re.prop_map(Value::String), 1 => edgy_string().prop_map(Value::String)]
            .boxed()
    };
    let typed: BoxedStrategy<Value> = match t {
        FieldType::Text => string(".{0,20}"),
        FieldType::Number => prop_oneof![
            any::<i64>().prop_map(Value::from),
            string(" ?-?[0-9]{1,12}(\\.[0-9]{1,4})? ?"),
        ]
        .boxed(),
        FieldType::Date => string("(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"),
        FieldType::Datetime => string(
            "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])",
        ),
        FieldType::Url => {
            string("https?://[a-z]{1,8}(\\.[a-z]{2,3})?(:[1-9][0-9]{0,3})?(/[a-z]{0,5})?")
        }
        FieldType::Select => string("gold|silver|bronze"),
        FieldType::Boolean => prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            prop::sample::select(&["true", "false"][..]).prop_map(Value::from),
        ]
        .boxed(),
        FieldType::MultiSelect => option_list().boxed(),
        FieldType::Array => prop_oneof![
            4 => prop::collection::vec(leaf(), 0..4).prop_map(Value::Array),
            1 => arb_json(),
        ]
        .boxed(),
        FieldType::Object => prop_oneof![
            4 => prop::collection::vec(("[a-z]{1,4}", leaf()), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            1 => arb_json(),
        ]
        .boxed(),
        FieldType::ApiCall => arb_json().boxed(),
    };
    prop_oneof![8 => typed, 1 => Just(Value::Null)].boxed()
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Create), Just(Mode::Update)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validate_data_never_panics(input in arb_input(), mode in arb_mode(), skip in any::<bool>()) {
        let _ = validate_data(&test_form(), &input, mode, skip);
    }

    #[test]
    fn validate_data_never_panics_on_arbitrary_keys_and_values(
        input in prop::collection::vec((".{0,8}", arb_json()), 0..8),
        mode in arb_mode(),
    ) {
        let input: Map<String, Value> = input.into_iter().collect();
        let _ = validate_data(&test_form(), &input, mode, false);
    }

    #[test]
    fn normalized_output_validates_to_itself(
        input in prop_oneof![likely_valid_input(), arb_input()],
        mode in arb_mode(),
        skip in any::<bool>(),
    ) {
        let form = test_form();
        if let Ok(out) = validate_data(&form, &input, mode, skip) {
            prop_assert_eq!(validate_data(&form, &out, mode, skip), Ok(out.clone()));
        }
    }

    #[test]
    fn check_value_agrees_with_an_update_of_one_optional_field(
        index in 0..TYPES.len() * 2,
        value in prop_oneof![arb_value(), likely_value(FieldType::Text)],
    ) {
        let form = optional_only(&test_form());
        let field = &form.fields[index];
        let input: Map<String, Value> = [(field.key.clone(), value.clone())].into_iter().collect();
        let single = check_value(field, &value);
        let whole = validate_data(&form, &input, Mode::Update, false);
        prop_assert_eq!(single.is_ok(), whole.is_ok(), "{:?} vs {:?}", single, whole);
        if let (Ok(v), Ok(out)) = (single, whole) {
            prop_assert_eq!(Some(&v), out.get(&field.key));
        }
    }
}

/// Guards the fixed-point property against vacuity: the generator must produce valid data.
#[test]
fn likely_valid_input_is_often_valid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let form = test_form();
    let mut runner = TestRunner::deterministic();
    let strategy = likely_valid_input();
    let mut valid = 0;
    for _ in 0..200 {
        let input = strategy
            .new_tree(&mut runner)
            .expect("generate input")
            .current();
        valid += usize::from(validate_data(&form, &input, Mode::Update, true).is_ok());
    }
    assert!(
        valid >= 40,
        "only {valid} of 200 generated inputs were valid"
    );
}
