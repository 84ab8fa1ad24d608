//! End-to-end tests of the `casehook` binary: each test runs the real executable as a child
//! process on a free port and talks to it over HTTP, the way an operator would.

mod api;
mod api_calls;
mod data_dir;
mod deliveries;
mod first_start;
mod full_disk;
mod harness;
mod inbound;
mod logs;
mod postgres;
mod shutdown;
mod startup_errors;
