//! Events: immutable facts about cases (and, later, endpoints and API calls), the actor that
//! caused them, and the workspace's event catalog (built-in types plus custom ones whose `data`
//! is described by a JSON Schema).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::case::Changes;
use crate::error::{FieldError, FieldErrorCode};
use crate::ids::{CaseId, EventId, FormId, WorkspaceId};

/// Who caused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    /// The id of the key, hook, endpoint… (absent for the system itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A name for people: the key's name, "inbound hook <name>", …
    pub name: String,
    /// How many automatic write-backs (response mappings) led to this change: 0 for a change
    /// made by a person or a system outside casehook. Endpoints stop reacting to changes
    /// past [`MAX_CHAIN`], which cuts loops between endpoints writing into the same case.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chain: u8,
}

/// The deepest chain of write-backs that still triggers endpoints.
pub const MAX_CHAIN: u8 = 3;

fn is_zero(n: &u8) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    ApiKey,
    InboundHook,
    Endpoint,
    ApiCall,
    System,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
            name: "system".into(),
            chain: 0,
        }
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    /// Per-workspace, gap-free and increasing: resume a feed with `after=<sequence>`.
    pub sequence: i64,
    pub workspace_id: WorkspaceId,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<CaseId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_id: Option<FormId>,
    pub actor: Actor,
    #[schema(value_type = Object)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// Set when the change asked not to fire triggers (AM System's `skiptriggers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_triggers: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
}

/// An event about to be written; the store assigns `id`, `sequence` and the time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub case_id: Option<CaseId>,
    pub form_id: Option<FormId>,
    pub actor: Actor,
    pub data: Value,
    pub changes: Option<Changes>,
    pub skip_triggers: bool,
}

/// Built-in event types and what each means.
pub const BUILTIN_EVENT_TYPES: &[(&str, &str)] = &[
    ("case.created", "A case was created. `data` is the case."),
    (
        "case.updated",
        "Case fields changed. `data` is the case after the change; `changes` lists old and new values.",
    ),
    (
        "case.status_changed",
        "A case's status changed. `changes.status` has the old and new status.",
    ),
    (
        "case.deleted",
        "A case was deleted (soft delete). `data` is the case as it was.",
    ),
    (
        "endpoint.disabled",
        "An outgoing-webhook endpoint was disabled (by hand, by 410 Gone, or after failing too long).",
    ),
    (
        "api_call.failed",
        "An API-call field's run failed; the field keeps its last good value.",
    ),
];

/// Prefixes reserved for built-in types; custom types may not use them.
const RESERVED_PREFIXES: &[&str] = &[
    "case.",
    "endpoint.",
    "api_call.",
    "delivery.",
    "inbound.",
    "casehook.",
];

pub fn is_builtin(event_type: &str) -> bool {
    BUILTIN_EVENT_TYPES
        .iter()
        .any(|(name, _)| *name == event_type)
}

/// A custom event type name: dot-separated lowercase segments, at least two
/// (`payment.succeeded`), not in a reserved namespace.
pub fn check_custom_event_name(name: &str) -> Result<(), FieldError> {
    let segment_ok = |s: &str| {
        let mut bytes = s.bytes();
        matches!(bytes.next(), Some(b'a'..=b'z'))
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let well_formed =
        name.len() <= 100 && name.split('.').count() >= 2 && name.split('.').all(segment_ok);
    if !well_formed {
        return Err(FieldError::new(
            "name",
            FieldErrorCode::InvalidDefinition,
            format!(
                "event type `{name}` must be dot-separated lowercase segments such as `payment.succeeded` (at most 100 characters)"
            ),
        ));
    }
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(FieldError::new(
            "name",
            FieldErrorCode::InvalidDefinition,
            format!("event types starting with `{prefix}` are reserved for built-in events"),
        ));
    }
    Ok(())
}

/// A compiled JSON Schema for a custom event type's `data`.
pub struct EventSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSchema")
    }
}

impl EventSchema {
    /// Compile a schema; an invalid schema is refused with the reason.
    pub fn compile(schema: &Value) -> Result<Self, FieldError> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|e| {
                FieldError::new(
                    "schema",
                    FieldErrorCode::InvalidDefinition,
                    format!("invalid JSON Schema: {e}"),
                )
            })
    }

    /// Every way `data` fails the schema, at once.
    pub fn check(&self, data: &Value) -> Result<(), Vec<FieldError>> {
        let errors: Vec<FieldError> = self
            .validator
            .iter_errors(data)
            .map(|e| {
                let path = e.instance_path().to_string();
                let field = if path.is_empty() {
                    "data".to_string()
                } else {
                    format!("data{path}")
                };
                FieldError::new(field, FieldErrorCode::SchemaMismatch, e.to_string())
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_names_need_a_namespace_and_avoid_reserved_ones() {
        assert!(check_custom_event_name("payment.succeeded").is_ok());
        assert!(check_custom_event_name("crm.contact.synced_2").is_ok());
        assert!(check_custom_event_name("payment").is_err());
        assert!(check_custom_event_name("Payment.Done").is_err());
        assert!(check_custom_event_name("payment..done").is_err());
        assert!(check_custom_event_name("case.archived").is_err());
        assert!(is_builtin("case.created"));
        assert!(!is_builtin("payment.succeeded"));
    }

    #[test]
    fn schemas_report_every_mismatch() {
        let schema = EventSchema::compile(&json!({
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}}
        }))
        .expect("valid schema");
        assert!(
            schema
                .check(&json!({"amount": 5, "currency": "EUR"}))
                .is_ok()
        );
        let errors = schema
            .check(&json!({"amount": "five"}))
            .expect_err("two problems");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.field == "data/amount"));
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(EventSchema::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
