//! Actions: API calls run when events happen — the alternative to an outgoing webhook when
//! the receiving system has its own API (several requests, its own auth, a sequence whose
//! steps depend on each other) rather than a webhook URL.
//!
//! An action subscribes to events like an endpoint ("When": event types and forms; "If": a
//! CEL condition over the event and the case) and runs a request, a connection's operation
//! or a sequence, exactly as an API-call field does. Its answer may be mapped back into the
//! case; failures emit `api_call.failed`. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::apicall::ApiCallSpec;
use crate::condition::Condition;
use crate::endpoint::{Subscriptions, check_pattern};
use crate::error::{FieldError, FieldErrorCode};
use crate::form::FormSpec;
use crate::ids::FormId;

/// Keys of an action beside its call.
const OWN_KEYS: &[&str] = &["description", "enabled", "subscriptions", "condition"];
/// Keys of an API-call field's configuration that mean nothing for an action.
const FIELD_ONLY_KEYS: &[&str] = &["trigger", "trigger_fields", "schedule"];

/// An action's configuration (its name is kept beside it).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    pub subscriptions: Subscriptions,
    /// A CEL condition over `event` and `case`, as for endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The request(s) to make, with retry, timeout, cache and the mapping into the case.
    #[serde(flatten)]
    pub call: ApiCallSpec,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, FieldErrorCode::InvalidDefinition, message)
}

impl ActionConfig {
    /// Parse an action's body (without its name).
    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(map) = value else {
            return Err(vec![problem("", "an action is a JSON object")]);
        };
        let mut call: Map<String, Value> = map.clone();
        let own: BTreeMap<&str, Value> = OWN_KEYS
            .iter()
            .filter_map(|k| call.remove(*k).map(|v| (*k, v)))
            .collect();
        let mut problems: Vec<FieldError> = FIELD_ONLY_KEYS
            .iter()
            .filter(|k| call.contains_key(**k))
            .map(|k| {
                problem(
                    *k,
                    format!("`{k}` is for API-call fields; an action runs on its `subscriptions`"),
                )
            })
            .collect();
        call.insert("trigger".into(), Value::String("manual".into()));
        let call =
            ApiCallSpec::from_json(&Value::Object(call)).map_err(|e| vec![problem("", e)])?;
        let text = |k: &str| -> Result<Option<String>, FieldError> {
            match own.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(problem(k, format!("`{k}` is a string"))),
            }
        };
        let description = text("description").map_err(|e| vec![e])?;
        let condition = text("condition").map_err(|e| vec![e])?;
        let enabled = match own.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(vec![problem("enabled", "`enabled` is true or false")]),
        };
        let subscriptions = match own.get("subscriptions") {
            None => Subscriptions::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| vec![problem("subscriptions", e.to_string())])?,
        };
        if !problems.is_empty() {
            return Err(std::mem::take(&mut problems));
        }
        Ok(Self {
            description,
            enabled,
            subscriptions,
            condition,
            call,
        })
    }

    /// Every problem, given the workspace's forms: patterns, forms, condition, the call
    /// checked against each form the action can see (its subscribed forms, or all).
    pub fn check(&self, forms: &BTreeMap<FormId, FormSpec>) -> Vec<FieldError> {
        let mut problems = Vec::new();
        for (i, pattern) in self.subscriptions.event_types.iter().enumerate() {
            if let Err(message) = check_pattern(pattern) {
                problems.push(problem(format!("subscriptions.event_types[{i}]"), message));
            }
        }
        for (i, form) in self.subscriptions.forms.iter().enumerate() {
            if !forms.contains_key(form) {
                problems.push(FieldError::new(
                    format!("subscriptions.forms[{i}]"),
                    FieldErrorCode::UnknownField,
                    format!("no form {form} in this workspace"),
                ));
            }
        }
        let relevant: Vec<&FormSpec> = if self.subscriptions.forms.is_empty() {
            forms.values().collect()
        } else {
            (self.subscriptions.forms.iter())
                .filter_map(|id| forms.get(id))
                .collect()
        };
        if let Some(source) = self
            .condition
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Condition::compile(source) {
                Ok(c) => {
                    if self.subscriptions.forms.len() == 1
                        && let Some(form) = relevant.first()
                        && let Err(e) = c.check_fields(form)
                    {
                        problems.push(problem("condition", e.to_string()));
                    }
                }
                Err(e) => problems.push(problem("condition", e.to_string())),
            }
        }
        if self.call.settings.response_mapping.is_some() && self.subscriptions.forms.len() != 1 {
            problems.push(problem(
                "response_mapping",
                "an action maps into case fields of one form: list exactly that form in `subscriptions.forms`",
            ));
        }
        // The call's checks need a form (its `{data.x}` and mapping fields): each relevant
        // one; with none, an empty form still checks the rest.
        let empty = FormSpec {
            name: String::new(),
            description: None,
            sections: Vec::new(),
            fields: Vec::new(),
            statuses: Vec::new(),
            default_status: None,
        };
        let candidates: Vec<&FormSpec> = if self.subscriptions.forms.len() == 1 {
            relevant
        } else {
            vec![&empty]
        };
        for form in candidates {
            for p in self.call.check("", form, "") {
                let data_ref = p.message.contains("names no field of the form");
                if self.subscriptions.forms.len() != 1 && data_ref {
                    continue;
                }
                let mut p = p;
                p.field = p.field.trim_start_matches('.').to_owned();
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
        problems
    }
}
