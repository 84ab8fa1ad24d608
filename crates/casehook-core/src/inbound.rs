//! Incoming webhooks (inbound hooks): the pure parts of turning an external system's HTTP
//! request into a case change. A hook's configuration and its save-time check (`hook`), the
//! sender checks (`verify`), reading the body (`payload`), and what a processed request
//! answered (`outcome`), which is also what a retried request gets back.

pub mod hook;
pub mod outcome;
pub mod payload;
pub mod verify;
