//! `lifecycle-top check`: the CI gate's self-contained parts (stop like production, then
//! diagnose). [`ready`] waits until the launched command is ready (a delay, a LISTEN port
//! in its tree, a log line); [`logscan`] finds the shutdown warnings and tracebacks in its
//! log; [`junit`] writes the verdict's checks as JUnit XML for CI dashboards.

pub mod junit;
pub mod logscan;
pub mod ready;
