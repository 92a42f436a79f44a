//! Headless output built from a [`crate::teardown::Timeline`]: the readable summary printed as
//! phases run ([`summary`]), the typed JSON report ([`json`]) and the Chrome trace-event export
//! ([`trace`], loads in Perfetto and chrome://tracing). No I/O besides writing files.

pub mod files;
pub mod json;
pub mod summary;
pub mod trace;

pub use json::{Report, Verdict};
