//! `ResponseMapping::check`: what is refused when an endpoint is saved.

use super::tests::{form, rule};
use super::*;

fn check_errors(rules: Vec<MappingRule>) -> Vec<FieldError> {
    ResponseMapping { rules }
        .check(&form())
        .expect_err("the mapping is refused")
}

#[test]
fn a_valid_mapping_passes_its_check() {
    let mapping = ResponseMapping {
        rules: vec![
            rule("$.id", "ticket_id", ArrayMode::First),
            rule("$.labels[*]", "tags", ArrayMode::All),
            rule(
                "$.items[?@.status == 'open']",
                "open_count",
                ArrayMode::Count,
            ),
            rule("$.items", "enrichment", ArrayMode::All),
            rule(
                "$.items[*]",
                "items",
                ArrayMode::Each {
                    fields: [("@.id".to_owned(), "id".to_owned())].into_iter().collect(),
                },
            ),
        ],
    };
    assert_eq!(mapping.check(&form()), Ok(()));
    assert_eq!(ResponseMapping::default().check(&form()), Ok(()));
}

#[test]
fn bad_paths_are_refused_naming_the_rule() {
    let errors = check_errors(vec![
        rule("$.id", "ticket_id", ArrayMode::First),
        rule("$.items[", "amount", ArrayMode::First),
        rule("data.id", "due", ArrayMode::First),
    ]);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["rules[1].path", "rules[2].path"]);
    assert!(
        errors
            .iter()
            .all(|e| e.code == FieldErrorCode::InvalidDefinition)
    );
    assert!(
        errors[0]
            .message
            .starts_with("`$.items[` is not a valid JSONPath (at character"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[1].message.contains("starts with `$`"),
        "{}",
        errors[1].message
    );
}

#[test]
fn expensive_paths_are_refused() {
    let nested = format!("${}", "[?@".repeat(MAX_PATH_NESTING + 1));
    let cases = [
        ("$.items[?@.total > $.limit]", "inside a filter, write `@`"),
        (nested.as_str(), "nests brackets"),
        ("$..a..b..c", "uses `..` more than"),
    ];
    for (path, expected) in cases {
        let errors = check_errors(vec![rule(path, "items", ArrayMode::All)]);
        assert_eq!(errors.len(), 1, "{path}: {errors:?}");
        assert!(
            errors[0].message.contains(expected),
            "{path}: {}",
            errors[0].message
        );
    }
    let long = format!("$.{}", "a".repeat(MAX_PATH_BYTES));
    let errors = check_errors(vec![rule(&long, "items", ArrayMode::All)]);
    assert!(errors[0].message.contains("bytes long"), "{errors:?}");
    // Quoted text is not syntax: `$` and `..` inside strings are fine.
    let quoted = "$.items[?@.name == '$..a..b..c[[[[[[[[[']";
    assert_eq!(
        ResponseMapping {
            rules: vec![rule(quoted, "items", ArrayMode::All)]
        }
        .check(&form()),
        Ok(())
    );
}

#[test]
fn unknown_targets_and_misfit_modes_are_refused() {
    let errors = check_errors(vec![
        rule("$.id", "ticket", ArrayMode::First),
        rule("$.labels[*]", "ticket_id", ArrayMode::All),
        rule("$.items[*]", "due", ArrayMode::Count),
        rule(
            "$.items[*]",
            "amount",
            ArrayMode::Join {
                separator: ",".into(),
            },
        ),
        rule(
            "$.items[*]",
            "tags",
            ArrayMode::Each {
                fields: [("$.id".to_owned(), "id".to_owned())].into_iter().collect(),
            },
        ),
    ]);
    let got: Vec<(&str, FieldErrorCode)> =
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    assert_eq!(
        got,
        [
            ("rules[0].field", FieldErrorCode::UnknownField),
            ("rules[1].mode", FieldErrorCode::InvalidDefinition),
            ("rules[2].mode", FieldErrorCode::InvalidDefinition),
            ("rules[3].mode", FieldErrorCode::InvalidDefinition),
            ("rules[4].mode", FieldErrorCode::InvalidDefinition),
        ]
    );
    assert_eq!(
        errors[0].message,
        "a string \"ticket\" is not a field of this form"
    );
    assert_eq!(
        errors[1].message,
        "mode `all` needs an array, multi_select or api_call field; `ticket_id` is a text field"
    );
    assert_eq!(
        errors[2].message,
        "mode `count` needs a number or api_call field; `due` is a date field"
    );
    // An api_call field takes every mode.
    let modes = [
        ArrayMode::First,
        ArrayMode::All,
        ArrayMode::Count,
        ArrayMode::Join {
            separator: "-".into(),
        },
        ArrayMode::Each {
            fields: [("$".to_owned(), "v".to_owned())].into_iter().collect(),
        },
    ];
    for mode in modes {
        let mapping = ResponseMapping {
            rules: vec![rule("$.items[*]", "enrichment", mode)],
        };
        assert_eq!(mapping.check(&form()), Ok(()));
    }
}

#[test]
fn duplicate_targets_and_bad_each_definitions_are_refused() {
    let each = |pairs: &[(&str, &str)]| ArrayMode::Each {
        fields: pairs
            .iter()
            .map(|(p, k)| ((*p).to_owned(), (*k).to_owned()))
            .collect(),
    };
    let errors = check_errors(vec![
        rule("$.id", "ticket_id", ArrayMode::First),
        rule("$.number", "ticket_id", ArrayMode::First),
        rule("$.items[*]", "items", each(&[])),
        rule(
            "$.items[*]",
            "enrichment",
            each(&[("$.id", "id"), ("$.ref", "id"), ("$[", " ")]),
        ),
        rule(
            "$.labels[*]",
            "tags",
            ArrayMode::Join {
                separator: "x".repeat(MAX_SEPARATOR_CHARS + 1),
            },
        ),
    ]);
    let got: Vec<(&str, FieldErrorCode)> =
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    assert_eq!(
        got,
        [
            ("rules[1].field", FieldErrorCode::DuplicateKey),
            (
                "rules[2].mode.each.fields",
                FieldErrorCode::InvalidDefinition
            ),
            (
                r#"rules[3].mode.each.fields["$.ref"]"#,
                FieldErrorCode::DuplicateKey
            ),
            (
                r#"rules[3].mode.each.fields["$["]"#,
                FieldErrorCode::InvalidDefinition
            ),
            (
                r#"rules[3].mode.each.fields["$["]"#,
                FieldErrorCode::InvalidDefinition
            ),
            ("rules[4].mode", FieldErrorCode::InvalidDefinition),
            (
                "rules[4].mode.join.separator",
                FieldErrorCode::InvalidDefinition
            ),
        ]
    );
    assert_eq!(
        errors[0].message,
        "field `ticket_id` is already filled by rules[0]; map each field once"
    );
}

#[test]
fn too_many_rules_are_refused() {
    let rules = vec![rule("$.id", "ticket_id", ArrayMode::First); MAX_RULES + 1];
    let errors = check_errors(rules);
    assert_eq!(errors[0].field, "rules");
}

#[test]
fn a_path_is_parsed_once_and_a_refused_one_every_time() {
    let path = "$.memo_test.items[?@.state == 'open'].id";
    let first = compile_json_path(path).expect("parses");
    let again = compile_json_path(path).expect("parses");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second use reuses the parse"
    );
    let long = format!("$.{}", "a".repeat(MAX_PATH_BYTES));
    for _ in 0..2 {
        let refused = compile_json_path(&long).expect_err("too long");
        assert!(refused.contains("bytes long"), "{refused}");
    }
    assert!(compile_json_path("memo_test.no_root").is_err());
    assert!(compile_json_path("memo_test.no_root").is_err());
}
