//! Incoming webhooks: the admin API for inbound hooks (`/api/v1/inbound-hooks`, with their
//! request logs and replay) and the public receiving side (`POST /in/{token}`).
//!
//! Receiving runs, in order: find the hook by its URL token (cached), the rate limit and the
//! body limit (before the body is read), the API key and the sender verifications, parsing
//! the body, mapping and validating every item against the form, and one store write that
//! applies the items, takes the idempotency key and logs the request together. Every request
//! that names a hook is logged, whatever its outcome; follow-ups (outgoing deliveries, API
//! calls) are jobs fed by the events, so the sender's answer never waits on them.

mod hooks;
mod live;
mod process;
pub(crate) mod receive;
mod requests;
mod secrets;

pub use hooks::router as hooks_router;
pub use live::HookCache;
pub use receive::router as receive_router;
