//! End-to-end tests of the HTTP API: the real server on 127.0.0.1, driven over HTTP, on
//! SQLite and on a throw-away PostgreSQL (`cargo test -p casehook-server --test it`; add
//! `-- sqlite` or `-- postgres` for one backend).
//!
//! Every test is an `async fn name(app: TestApp)` listed in its module's `api_tests!`, which
//! runs it once per backend; `support` holds the harness.

mod auth_servers;
mod receiver;
mod stub_api;
mod support;

mod api_auth;
mod api_calls;
mod api_sequences;
mod case_lists;
mod cases;
mod errors;
mod events;
mod forms;
mod inbound;
mod inbound_fuzz;
mod inbound_senders;
mod ops;
mod roles;
mod tenancy;
mod validation;
mod webhooks;
