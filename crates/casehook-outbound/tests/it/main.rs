//! casehook-outbound against real sockets on 127.0.0.1: small axum servers (and raw TCP
//! listeners for the silent and refusing cases) started inside each test.
//!
//! Every test builds its own client with an explicit policy, so nothing here depends on
//! the default policy allowing loopback (it does not).

mod support;

mod bodies;
mod errors;
mod guard;
mod pooling;
mod redaction;
mod redirects;
