//! Cases: the record of one form, how a partial update merges into its data, and the change
//! set (`changes`) that `case.updated` events carry.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::event::Actor;
use crate::ids::{CaseId, FormId, WorkspaceId};

/// Case data: field key → value.
pub type Data = Map<String, Value>;

/// A stored case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Case {
    pub id: CaseId,
    pub workspace_id: WorkspaceId,
    pub form_id: FormId,
    /// Per-workspace sequential number, shown to people as `#N`.
    pub number: i64,
    pub status: String,
    #[schema(value_type = Object)]
    pub data: Data,
    /// Identifiers of this case in other systems (`{"stripe": "cus_123"}`), unique per
    /// workspace and source; incoming webhooks match on them.
    pub external_refs: BTreeMap<String, String>,
    /// Increases by one with every change; sent back as the `ETag` and checked by `If-Match`.
    pub version: i64,
    pub created_by: Actor,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
}

/// One field's change: the value before and after (`null` when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    #[schema(value_type = Object)]
    pub old: Value,
    #[schema(value_type = Object)]
    pub new: Value,
}

/// Field key (or `status`) → change.
pub type Changes = BTreeMap<String, Change>;

/// Apply a validated merge patch: keys with `null` are removed, others replace the old value.
pub fn merge(data: &Data, patch: &Data) -> Data {
    let mut merged = data.clone();
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

/// The fields whose value differs between `old` and `new`.
pub fn diff(old: &Data, new: &Data) -> Changes {
    let mut changes = Changes::new();
    for (key, new_value) in new {
        let old_value = old.get(key).cloned().unwrap_or(Value::Null);
        if &old_value != new_value {
            changes.insert(
                key.clone(),
                Change {
                    old: old_value,
                    new: new_value.clone(),
                },
            );
        }
    }
    for (key, old_value) in old {
        if !new.contains_key(key) {
            changes.insert(
                key.clone(),
                Change {
                    old: old_value.clone(),
                    new: Value::Null,
                },
            );
        }
    }
    changes
}

/// How a request names a case: by id, or by its workspace number (`#12` or `12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseRef {
    Id(CaseId),
    Number(i64),
}

impl FromStr for CaseRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('#').unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(CaseRef::Number)
                .ok_or_else(|| format!("case number `{s}` is out of range"));
        }
        s.parse::<CaseId>()
            .map(CaseRef::Id)
            .map_err(|_| format!("`{s}` is neither a case id (UUID) nor a case number (#N)"))
    }
}

impl fmt::Display for CaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseRef::Id(id) => id.fmt(f),
            CaseRef::Number(n) => write!(f, "#{n}"),
        }
    }
}

/// Checks one external reference pair: a short source name and a non-empty reference.
pub fn check_external_ref(source: &str, reference: &str) -> Result<(), String> {
    let source_ok = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !source_ok {
        return Err(format!(
            "external reference source `{source}` must be 1-64 letters, digits, `_`, `-` or `.`"
        ));
    }
    if reference.is_empty() || reference.len() > 512 {
        return Err(format!(
            "external reference for `{source}` must be 1-512 characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Data {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn merge_replaces_and_null_removes() {
        let old = obj(json!({"a": 1, "b": 2}));
        let merged = merge(&old, &obj(json!({"b": null, "c": 3, "a": 5})));
        assert_eq!(Value::Object(merged), json!({"a": 5, "c": 3}));
    }

    #[test]
    fn diff_lists_added_changed_and_removed_fields_only() {
        let old = obj(json!({"a": 1, "b": 2, "same": "x"}));
        let new = obj(json!({"a": 1, "c": 3, "same": "x", "b": 4}));
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 2);
        assert_eq!(
            changes["b"],
            Change {
                old: json!(2),
                new: json!(4)
            }
        );
        assert_eq!(
            changes["c"],
            Change {
                old: Value::Null,
                new: json!(3)
            }
        );
        let removed = diff(&new, &old);
        assert_eq!(
            removed["c"],
            Change {
                old: json!(3),
                new: Value::Null
            }
        );
    }

    #[test]
    fn case_refs_parse_numbers_and_ids() {
        assert_eq!("#12".parse::<CaseRef>(), Ok(CaseRef::Number(12)));
        assert_eq!("7".parse::<CaseRef>(), Ok(CaseRef::Number(7)));
        let id = CaseId::new();
        assert_eq!(id.to_string().parse::<CaseRef>(), Ok(CaseRef::Id(id)));
        assert!("#0".parse::<CaseRef>().is_err());
        assert!("#".parse::<CaseRef>().is_err());
        assert!("nope".parse::<CaseRef>().is_err());
        assert!("99999999999999999999".parse::<CaseRef>().is_err());
    }

    #[test]
    fn external_refs_are_checked() {
        assert!(check_external_ref("stripe", "cus_1").is_ok());
        assert!(check_external_ref("", "x").is_err());
        assert!(check_external_ref("a b", "x").is_err());
        assert!(check_external_ref("stripe", "").is_err());
    }
}
