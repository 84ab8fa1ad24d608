//! The store's contract suite: every test runs against SQLite and PostgreSQL alike, each on a
//! fresh database, so both backends keep the same promises (`cargo test -p casehook-store
//! --test it`; add `-- sqlite` or `-- postgres` for one backend).
//!
//! PostgreSQL comes from `casehook-testkit`, which starts a throw-away server once per test
//! process and skips the PostgreSQL half with a loud warning when PostgreSQL is not installed.

mod fixtures;
mod harness;

mod api_call_runs;
mod claimers;
mod connections;
mod creation;
mod deletion;
mod deliveries;
mod events;
mod external_refs;
mod forms;
mod group_commit;
mod inbound;
mod jobs;
mod listing;
mod migrations;
mod processes;
mod tenancy;
mod updates;
