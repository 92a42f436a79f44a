//! `lifecycle-top check`: the CI gate (stop like production, then diagnose). [`run`]
//! drives one session through ready -> stop signal -> budget -> (evidence, forced phases) ->
//! verdict; [`ready`] waits until the launched command is ready (a delay, a LISTEN port
//! in its tree, a log line); [`logscan`] finds the shutdown warnings and tracebacks in its
//! log; [`junit`] writes the verdict's checks as JUnit XML for CI dashboards.

pub mod config;
mod evidence;
pub mod junit;
pub mod logscan;
pub(crate) mod outcome;
pub mod ready;
mod run;

pub use evidence::Evidence;
pub use outcome::CheckReport;
pub use run::run;
