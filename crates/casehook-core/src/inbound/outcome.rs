//! What an accepted inbound request did, per item: which case it created or changed and the
//! events it wrote. The answer a sender gets is rendered from it, and it is what an
//! idempotency key keeps, so a retried request gets exactly the first answer back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ids::{CaseId, EventId, InboundRequestId};

/// What one item of a request did to its case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemAction {
    /// A new case.
    Created,
    /// Fields, status or references of a matched case changed.
    Updated,
    /// The matched case already held these values: nothing was written.
    Unchanged,
    /// A custom event was emitted on the matched case.
    Event,
}

impl ItemAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Event => "event",
        }
    }
}

/// One item's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemOutcome {
    pub action: ItemAction,
    pub case_id: CaseId,
    pub case_number: i64,
    /// The events written, in order (none when unchanged).
    #[serde(default)]
    pub event_ids: Vec<EventId>,
}

impl ItemOutcome {
    fn body(&self) -> Value {
        json!({
            "action": self.action,
            "case": {"id": self.case_id, "number": self.case_number},
            "event_ids": self.event_ids,
        })
    }
}

/// A processed request: the request that was first processed, and its items' outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub request_id: InboundRequestId,
    /// The body was a JSON array (the answer lists one result per item).
    pub batch: bool,
    pub items: Vec<ItemOutcome>,
}

impl Accepted {
    /// The JSON answer: `{"request_id", "action", "case": {"id", "number"}, "event_ids"}` for
    /// one item, `{"request_id", "items": [...]}` for a batch.
    pub fn body(&self) -> Value {
        match (self.batch, self.items.as_slice()) {
            (false, [one]) => {
                let mut body = one.body();
                if let Value::Object(map) = &mut body {
                    map.insert("request_id".into(), json!(self.request_id));
                }
                body
            }
            _ => json!({
                "request_id": self.request_id,
                "items": self.items.iter().map(ItemOutcome::body).collect::<Vec<_>>(),
            }),
        }
    }

    /// One word for the request log: the items' common action, or `mixed`.
    pub fn summary(&self) -> &'static str {
        match self.items.split_first() {
            Some((first, rest)) if rest.iter().all(|i| i.action == first.action) => {
                first.action.as_str()
            }
            Some(_) => "mixed",
            None => "empty",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(action: ItemAction, number: i64) -> ItemOutcome {
        ItemOutcome {
            action,
            case_id: CaseId::new(),
            case_number: number,
            event_ids: vec![EventId::new()],
        }
    }

    #[test]
    fn one_item_answers_flat_and_a_batch_lists_items() {
        let one = Accepted {
            request_id: InboundRequestId::new(),
            batch: false,
            items: vec![item(ItemAction::Created, 7)],
        };
        let body = one.body();
        assert_eq!(body["action"], "created");
        assert_eq!(body["case"]["number"], 7);
        assert_eq!(body["request_id"], json!(one.request_id));
        assert_eq!(one.summary(), "created");

        let batch = Accepted {
            request_id: InboundRequestId::new(),
            batch: true,
            items: vec![item(ItemAction::Created, 1), item(ItemAction::Updated, 2)],
        };
        let body = batch.body();
        assert_eq!(body["items"][1]["action"], "updated");
        assert_eq!(body["items"][0]["case"]["number"], 1);
        assert_eq!(batch.summary(), "mixed");
    }

    #[test]
    fn the_stored_form_round_trips() {
        let accepted = Accepted {
            request_id: InboundRequestId::new(),
            batch: false,
            items: vec![item(ItemAction::Event, 3)],
        };
        let stored = serde_json::to_value(&accepted).expect("serialize");
        let back: Accepted = serde_json::from_value(stored).expect("deserialize");
        assert_eq!(back.body(), accepted.body());
    }
}
