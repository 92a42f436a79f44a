//! The record of a teardown run: one [`PhaseRecord`] per phase that ran, with outcome, counts
//! before/after, notes, and every signal and exit seen. Serialisable: the JSON report and the
//! trace export are built from it, and the TUI timeline widget draws it.

use super::plan::Action;
use crate::model::ExitStatus;
use serde::{Deserialize, Serialize};

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    TimedOut,
    /// Reached its goal only after a later signal of the escalation list (e.g. SIGKILL).
    Escalated,
    Failed {
        reason: String,
    },
    Skipped {
        reason: String,
    },
    /// An agent phase during which the target exited (or its agent went with the exiting
    /// interpreter): nothing left to ask, and no failure.
    TargetExited,
    /// Stopped before its end by an abort (`x` in the dashboard, an interrupt in headless or
    /// check): what it was doing is unfinished, so the run is not clean.
    Aborted,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::TimedOut => "timed out",
            Outcome::Escalated => "escalated",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
            Outcome::TargetExited => "target exited",
            Outcome::Aborted => "aborted",
        }
    }
    /// Ok, skipped (no agent, target gone) and "target exited" are fine; anything else makes
    /// a run unclean.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Skipped { .. } | Outcome::TargetExited
        )
    }
}

/// What keeps the tree alive, counted at a phase boundary. `None` = not knowable (no agent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Threads of the target (0 once it exited).
    pub threads: usize,
    /// Non-daemon Python threads other than the main thread (what `threading._shutdown` joins).
    pub non_daemon_threads: Option<usize>,
    /// Live descendants, orphans included, zombies excluded.
    pub children: usize,
    pub pending_tasks: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalEvent {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub pid: i32,
    pub name: String,
    pub signal: String,
    /// `None` when delivered; the error otherwise (gone, refused, permission).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEvent {
    pub at_ms: u64,
    pub pid: i32,
    pub name: String,
    pub status: ExitStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// Position in the plan (0-based).
    pub index: usize,
    pub name: String,
    pub key: char,
    pub action: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub outcome: Outcome,
    pub before: Counts,
    pub after: Counts,
    pub notes: Vec<String>,
    pub signals: Vec<SignalEvent>,
    pub exits: Vec<ExitEvent>,
    /// The agent's raw `result` for agent phases that got one (the notes say it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_result: Option<Box<serde_json::Value>>,
}

impl PhaseRecord {
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// Something still there at an audit, and why it stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// Process id, or thread id for threads.
    pub pid: i32,
    pub name: String,
    pub kind: LeftoverKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftoverKind {
    Alive,
    Zombie,
    /// D state after SIGKILL: "still around after SIGKILL".
    Unkillable,
    Orphan,
    NonDaemonThread,
    PendingTasks,
}

/// The phase running now (for the live elapsed time in the TUI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningPhase {
    pub index: usize,
    pub name: String,
    pub start_ms: u64,
    pub deadline_ms: u64,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub plan: String,
    pub target_pid: i32,
    /// Wall clock at `at_ms == 0`, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub phases: Vec<PhaseRecord>,
    pub running: Option<RunningPhase>,
    /// From the most recent audit phase.
    pub leftovers: Vec<Leftover>,
    /// What the most recent audit could not know (no agent: which threads block exit), one
    /// plain line each. Not a left-over and not unclean by itself.
    #[serde(default)]
    pub unknowns: Vec<String>,
    /// Signals and exits seen outside any phase (e.g. the target exiting on its own); the
    /// last `engine::MAX_EXITS_OUTSIDE`, the target's always kept.
    pub exits_outside: Vec<ExitEvent>,
    /// Exits outside any phase not kept in `exits_outside`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exits_outside_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Timeline {
    pub fn new(plan: &str, target_pid: i32, started_unix_ms: u64) -> Self {
        Self {
            plan: plan.to_string(),
            target_pid,
            started_unix_ms,
            phases: Vec::new(),
            running: None,
            leftovers: Vec::new(),
            unknowns: Vec::new(),
            exits_outside: Vec::new(),
            exits_outside_dropped: 0,
        }
    }

    /// The latest record of plan phase `index`, if it ran.
    pub fn record(&self, index: usize) -> Option<&PhaseRecord> {
        self.phases.iter().rev().find(|p| p.index == index)
    }

    /// True when a SIGKILL was sent in any phase.
    pub fn needed_sigkill(&self) -> bool {
        self.phases
            .iter()
            .flat_map(|p| &p.signals)
            .any(|s| s.signal == "SIGKILL" && s.error.is_none())
    }

    /// Why the run is not clean, one line each; empty = clean: no escalation, no SIGKILL, no
    /// phase timed out or failed, nothing left over. Only the last audit judges what lingered:
    /// an earlier one (e.g. "audit threads" before the target is signalled) reports findings
    /// that a clean shutdown may still resolve.
    pub fn unclean_reasons(&self) -> Vec<String> {
        let mut reasons = phase_reasons(&self.phases);
        for l in &self.leftovers {
            reasons.push(leftover_line(l));
        }
        reasons
    }

    pub fn is_clean(&self) -> bool {
        self.unclean_reasons().is_empty()
    }
}

/// One plain line for a left-over.
pub fn leftover_line(l: &Leftover) -> String {
    format!("left over: {} ({}): {}", l.pid, l.name, l.reason)
}

/// Why these phases make a run unclean, one line each: a phase that timed out, failed or
/// escalated, and every SIGKILL that was needed. Skipped and "target exited" phases are
/// fine; an audit other than the last one reports, it does not judge.
pub fn phase_reasons(phases: &[PhaseRecord]) -> Vec<String> {
    let audit = Action::Audit { stacks: false }.describe();
    let last_audit = phases.iter().rposition(|p| p.action == audit);
    let mut reasons = Vec::new();
    for (i, p) in phases.iter().enumerate() {
        match &p.outcome {
            Outcome::Ok | Outcome::Skipped { .. } | Outcome::TargetExited => {}
            Outcome::Failed { .. } if p.action == audit && Some(i) != last_audit => {}
            Outcome::Escalated => reasons.push(format!("\"{}\" needed escalation", p.name)),
            Outcome::TimedOut => reasons.push(format!("\"{}\" timed out", p.name)),
            Outcome::Failed { reason } => reasons.push(format!("\"{}\" failed: {reason}", p.name)),
            Outcome::Aborted => reasons.push(format!("\"{}\" was aborted", p.name)),
        }
        for s in p
            .signals
            .iter()
            .filter(|s| s.signal == "SIGKILL" && s.error.is_none())
        {
            reasons.push(format!("pid {} ({}) needed SIGKILL", s.pid, s.name));
        }
    }
    reasons
}
