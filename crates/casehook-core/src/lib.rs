//! casehook's domain: workspaces, roles, forms and their fields, cases, events and the rules
//! that govern them (validation of case data, the event catalog, change sets).
//!
//! This crate is pure: no async runtime, no database, no network. Everything here can be unit-
//! and property-tested in isolation, and every other crate builds on it.

pub mod action;
pub mod apicall;
pub mod auth;
pub mod case;
pub mod condition;
pub mod connection;
pub mod content;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod form;
pub mod ids;
pub mod inbound;
pub mod mapping;
pub mod nul;
pub mod retry;
pub mod role;
pub mod schedule;
pub mod sealed;
pub mod signing;
pub mod template;
pub mod validate;

pub use error::{FieldError, FieldErrorCode};
pub use ids::*;
pub use role::Role;
