//! Inbound hooks (incoming webhooks): their stored configuration and sealed secrets, the URL
//! tokens that name them, the request log, idempotency keys, and the one write that applies
//! an accepted request.
//!
//! The configuration is stored whole as JSON, checked by the server before it gets here.
//! What only the database can answer is decided here, inside the transaction of the change:
//! which case a request matches, whether its idempotency key was seen (so 100 concurrent
//! retries create one case), and that the case change, its events, the key and the request's
//! log entry commit together or not at all.

mod apply;
mod apply_set;
mod hooks;
mod log;

pub use apply::{Applied, CaseMatch, IdempotencyClaim, InboundItem, InboundWrite};
pub use hooks::{HookToken, InboundHookChange, InboundHookRecord, NewHookToken, NewInboundHook};
pub use log::{InboundRequestFilter, InboundRequestRecord, NewInboundRequest};
