//! Typed identifiers. Every id is a UUID (version 7, so ids sort by creation time), wrapped in
//! a newtype so that a `CaseId` can never be passed where a `FormId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A tenant.
    WorkspaceId
);
id_type!(
    /// An API key (the id, never the secret).
    ApiKeyId
);
id_type!(
    /// A form (case type).
    FormId
);
id_type!(
    /// A case.
    CaseId
);
id_type!(
    /// An event; also the basis of outgoing `webhook-id`s.
    EventId
);
id_type!(
    /// A job in the durable queue.
    JobId
);
id_type!(
    /// An outgoing webhook endpoint.
    EndpointId
);
id_type!(
    /// One delivery of an event to an endpoint; its `webhook-id` (`msg_…`) stays the same
    /// across retries.
    DeliveryId
);
id_type!(
    /// One HTTP try of a delivery.
    AttemptId
);
id_type!(
    /// An inbound hook (incoming webhook URL).
    InboundHookId
);
id_type!(
    /// One request received by an inbound hook, as kept in its request log.
    InboundRequestId
);
id_type!(
    /// A workspace secret (the id, never the value).
    SecretId
);
id_type!(
    /// An API connection.
    ConnectionId
);
id_type!(
    /// One logged call of an API-call field, operation or dry run.
    ApiCallLogId
);
id_type!(
    /// An action (API calls run on events).
    ActionId
);
