//! lifecycle-top: "top for shutdowns". Attach to a live process tree, see what keeps it
//! alive, drive its teardown phase by phase, and capture the stacks of whatever is stuck.
//!
//! Module map (the core has no ratatui import; `ui` is the only drawing code):
//! - [`session`]: the core: one `Session` owns collector, agent client, teardown runner and
//!   stack captures and emits one clock-stamped `CoreEvent` stream; `Model` folds it.
//! - [`model`]: plain data shared by all parts (process identity, snapshots, agent facts).
//! - [`collect`]: /proc readers producing owned [`model::Snapshot`]s; pidfds; exit watching.
//! - [`agent`]: the agent protocol, framing and client state machine.
//! - [`teardown`]: plans, the pure phase engine and the executor that sends signals.
//! - [`stacks`]: stack snapshots (kernel wait point, native, Python).
//! - [`report`]: headless summary, JSON report, Chrome trace export.
//! - [`verdict`]: the pure clean / not clean verdict from facts (headless and check).
//! - [`state`]: the dashboard: the session `Model` plus the TUI's `View`, no I/O.
//! - [`diagnose`]: why it won't exit: the wait-for graph folded to root causes.
//! - [`record`]: the recording file format (append-only, checksummed, delta-compressed).
//! - [`ui`]: layout, theme, keys, one widget per panel.
//! - [`app`]: the TUI event loop; [`headless`]: a printer over the same session.
//! - [`cli`]: clap at the edge, turned into a validated [`cli::Config`].
//! - [`launch`]: starting `-- CMD` under a subreaper; [`demo`]: the bundled demo target.
//! - [`replay`]: a recording played back read-only in the same dashboard, with time travel.
//! - [`jvm`]: JVM targets: thread dump over the attach protocol, parsed and joined by tid.
//! - [`check`]: the CI shutdown gate (ready, one stop signal, budget, evidence, verdict, JUnit);
//!   [`duration`]: CLI durations; [`config`]: the config file (interval, plan, colours,
//!   keys), validated.
//! - [`access`]: what may be read of a process and why not (kernel threads, limited mode);
//!   [`sysfig`]: the header's system figures through sysinfo.

pub mod access;
pub mod agent;
pub mod app;
pub mod check;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod duration;
pub mod headless;
pub mod jvm;
pub mod launch;
pub mod memory;
pub mod model;
pub mod record;
pub mod replay;
pub mod report;
pub mod session;
pub mod stacks;
pub mod state;
pub mod sysfig;
pub mod teardown;
pub mod ui;
pub mod verdict;
