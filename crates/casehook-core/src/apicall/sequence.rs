//! Multi-step sequences: an API-call field whose value comes from several requests run in
//! order ("look up the customer, then their invoices, then the payment status"). Each step
//! names its outputs (JSONPaths into its answer); later steps use them in their templates as
//! `{steps.<step>.<output>}` and in their conditions as `steps.<step>.<output>`. A step whose
//! `when` is false is skipped. The field's mapping then reads `$.steps.<step>.<output>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::connection::{RequestSpec, check_name};
use crate::error::{FieldError, FieldErrorCode};
use crate::form::FormSpec;

/// The most steps one sequence may have.
pub const MAX_STEPS: usize = 10;

/// One step: a connection's operation or an inline request, an optional condition, and the
/// values it keeps from its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// How later steps refer to this one: `{steps.<name>.<output>}`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_config: Option<RequestSpec>,
    /// A CEL condition over `case`, `event` and `steps`; the step runs only when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Output name → JSONPath into the answer: one match gives the value, several an array.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

pub(super) fn problem(field: String, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

/// Every problem of a sequence; `at` is the path of the `sequence` key.
pub fn check(steps: &[Step], form: &FormSpec, at: &str) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if steps.is_empty() || steps.len() > MAX_STEPS {
        problems.push(problem(
            at.to_owned(),
            format!("a sequence has 1 to {MAX_STEPS} steps"),
        ));
    }
    let mut earlier: Vec<&Step> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let here = format!("{at}[{i}]");
        problems.extend(check_name(&format!("{here}.name"), &step.name));
        if earlier.iter().any(|s| s.name == step.name) {
            problems.push(problem(
                format!("{here}.name"),
                format!("another step is named `{}`", step.name),
            ));
        }
        match (&step.connection, &step.operation, &step.api_config) {
            (Some(c), Some(o), None) => {
                problems.extend(check_name(&format!("{here}.connection"), c));
                problems.extend(check_name(&format!("{here}.operation"), o));
            }
            (None, None, Some(config)) => {
                let at = format!("{here}.api_config");
                config.check_inline(&at, &mut problems);
                super::check_data_refs(config, form, &at, &mut problems);
                check_step_refs(config, &earlier, &at, &mut problems);
            }
            _ => problems.push(problem(
                here.clone(),
                "a step has either a `connection` and an `operation`, or an `api_config`",
            )),
        }
        if let Some(when) = &step.when {
            match Condition::compile_step(when) {
                Ok(c) => {
                    if let Err(e) = c.check_fields(form) {
                        problems.push(problem(format!("{here}.when"), e.to_string()));
                    }
                }
                Err(e) => problems.push(problem(format!("{here}.when"), e.to_string())),
            }
        }
        for (name, path) in &step.outputs {
            problems.extend(check_name(&format!("{here}.outputs"), name));
            if let Err(m) = crate::mapping::compile_json_path(path) {
                problems.push(problem(format!("{here}.outputs.{name}"), m));
            }
        }
        earlier.push(step);
    }
    problems
}

/// `{steps.x.y}` must name an earlier step and one of its outputs.
pub(super) fn check_step_refs(
    config: &RequestSpec,
    earlier: &[&Step],
    at: &str,
    problems: &mut Vec<FieldError>,
) {
    let mut placeholders: Vec<&crate::template::Placeholder> = Vec::new();
    for t in config.url.iter().chain(config.path.iter()) {
        placeholders.extend(t.placeholders());
    }
    for t in config.headers.values().chain(config.query.values()) {
        placeholders.extend(t.placeholders());
    }
    let body = config
        .body
        .as_ref()
        .and_then(|b| crate::template::JsonTemplate::parse(b).ok());
    if let Some(body) = &body {
        placeholders.extend(body.placeholders().into_iter().map(|(_, p)| p));
    }
    for p in placeholders.into_iter().filter(|p| p.root() == "steps") {
        let known = match p.path() {
            [step, output, ..] => earlier
                .iter()
                .any(|s| s.name == *step && s.outputs.contains_key(output)),
            _ => false,
        };
        if !known {
            problems.push(problem(
                at.to_owned(),
                format!(
                    "`{p}` names no output of an earlier step (write `{{steps.<step>.<output>}}`)"
                ),
            ));
        }
    }
}
