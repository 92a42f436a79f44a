//! "Why it won't exit": a wait-for graph over typed facts, folded to root causes.
//!
//! Pure: [`diagnose`] reads [`Facts`] (the tree snapshot, every thread's decoded syscall,
//! fds and file locks from [`crate::collect::waits`], the agent's report, the exits) and
//! returns [`Cause`]s; no I/O. [`Facts::gather`] is the one impure helper that reads them.
//!
//! - [`graph`]: nodes (processes, threads, tasks, executors, unowned primitives), edges with
//!   their kind and evidence, built from each layer (Python agent, /proc syscalls, fds, locks);
//!   whole for `why --json`, or without the edges no walk reaches for the verdict alone
//!   ([`diagnose`], [`why_causes`]: same causes and notes, a fraction of the memory).
//! - [`fold`]: chains folded to their root (the thing nothing will wake), cycles as
//!   deadlocks, and the one plain line each cause renders as.

pub mod fold;
pub mod graph;
#[cfg(test)]
mod tests;

pub use fold::{Cause, CauseKind, Root};
pub use graph::{Edge, EdgeKind, Evidence, Graph, Node, Source};

use crate::agent::protocol::Report;
use crate::collect::waits::TreeWaits;
use crate::model::{ExitStatus, ProcKey, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The agent's report and the process it runs in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReport {
    pub key: ProcKey,
    pub report: Report,
}

/// Everything the diagnosis reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// Shared with the caller (the Model's latest snapshot): never copied for a diagnosis.
    pub snapshot: Arc<Snapshot>,
    pub waits: TreeWaits,
    pub agent: Option<AgentReport>,
    pub exits: BTreeMap<ProcKey, ExitStatus>,
    /// The signal a stop sends (SIGTERM unless `check --stop-signal` says otherwise): a root
    /// process that ignores it is named.
    pub stop_signal: i32,
}

impl Facts {
    /// Facts from a snapshot and an optional report: reads the tree's waits from /proc now.
    /// The agent's process is the one whose pid the report names (else the target).
    pub fn gather(
        snapshot: impl Into<Arc<Snapshot>>,
        report: Option<Report>,
        stop_signal: i32,
    ) -> Facts {
        let snapshot = snapshot.into();
        let waits = crate::collect::waits::read_tree(&snapshot);
        Self::from_parts(snapshot, waits, report, stop_signal)
    }

    /// Facts from parts already read (tests build them by hand).
    pub fn from_parts(
        snapshot: impl Into<Arc<Snapshot>>,
        waits: TreeWaits,
        report: Option<Report>,
        stop_signal: i32,
    ) -> Facts {
        let snapshot = snapshot.into();
        let agent = report.map(|report| {
            let key = snapshot
                .processes
                .iter()
                .find(|p| p.key.pid == report.pid && p.exit.is_none())
                .map_or(snapshot.target, |p| p.key);
            AgentReport { key, report }
        });
        let exits = snapshot
            .processes
            .iter()
            .filter_map(|p| Some((p.key, p.exit?.status)))
            .collect();
        Facts {
            snapshot,
            waits,
            agent,
            exits,
            stop_signal,
        }
    }
}

/// The causes, root cause first in each, target's first.
pub fn diagnose(facts: &Facts) -> Vec<Cause> {
    let g = graph::build_for_causes(facts);
    fold::fold(&g, facts)
}

/// What `lifecycle-top why --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct WhyReport {
    pub target: ProcKey,
    pub causes: Vec<Cause>,
    pub edges: Vec<Edge>,
    /// What was not known (no agent, unreadable /proc files).
    pub unknowns: Vec<String>,
}

/// The graph and its causes, with what could not be read.
pub fn why(facts: &Facts, agent_status: Option<&str>) -> WhyReport {
    report(graph::build(facts), facts, agent_status)
}

/// [`why`] without the graph's edges (`edges` is empty): the same causes and unknowns from a
/// graph of only what the causes walk (see [`graph::build_for_causes`]), for the header's
/// verdict and the Why view, which show no edges.
pub fn why_causes(facts: &Facts, agent_status: Option<&str>) -> WhyReport {
    let mut r = report(graph::build_for_causes(facts), facts, agent_status);
    r.edges = Vec::new();
    r
}

fn report(g: Graph, facts: &Facts, agent_status: Option<&str>) -> WhyReport {
    let causes = fold::fold(&g, facts);
    let mut unknowns = facts.waits.unreadable.clone();
    if facts.agent.is_none() {
        unknowns.push(format!(
            "no Python agent report ({}): threads, tasks and their waits come from /proc only",
            agent_status.unwrap_or("none")
        ));
    }
    for n in &g.notes {
        if !unknowns.contains(n) {
            unknowns.push(n.clone());
        }
    }
    WhyReport {
        target: facts.snapshot.target,
        causes,
        edges: g.edges,
        unknowns,
    }
}

/// The plain-text form: one line per cause.
pub fn why_text(r: &WhyReport) -> String {
    let mut out = String::new();
    if r.causes.is_empty() {
        out.push_str("nothing found that blocks the exit\n");
    }
    for c in &r.causes {
        out.push_str(&c.line);
        out.push('\n');
    }
    for u in &r.unknowns {
        out.push_str("unknown: ");
        out.push_str(u);
        out.push('\n');
    }
    out
}
