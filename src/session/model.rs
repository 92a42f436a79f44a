//! The [`Model`]: what a session has shown so far, folded from its [`Stamped`] events and
//! nothing else. Live consumers and replays fold the same stream with the same code, so a
//! replay at time T shows what the live run showed at T. No I/O, no view state (selection,
//! scroll and overlays belong to the TUI's `View`).

use super::event::{AgentState, AttachInfo, CoreEvent, PlanInfo, Stamp, Stamped};
use crate::agent::protocol::{AgentWarning, Hello, Report};
use crate::model::{AgentFacts, ExitStatus, ProcKey, Snapshot};
use crate::stacks::StackSnapshot;
use crate::teardown::{PhaseEvent, Timeline};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Stack snapshots kept (the TUI pages through them with `[` / `]`).
const MAX_STACKS: usize = 8;
/// Session notices and collector errors kept.
const MAX_NOTICES: usize = 50;
/// Exits kept (the target's always): a tree forking 50 children a second must not grow the
/// model without bound. Exits of processes no longer listed are forgotten at each snapshot;
/// past this many the oldest go first; `exits_dropped` counts both.
pub const MAX_EXITS: usize = 4096;
/// Exit events kept among the phase events (the target's always; as the timeline keeps the
/// last 256 exits outside a phase).
pub const MAX_EXIT_EVENTS: usize = 256;

/// An exit seen, with when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeenExit {
    pub status: ExitStatus,
    pub at_unix_ms: u64,
    /// Session time of the event.
    pub at_ms: u64,
}

/// What [`CoreEvent::Verdict`] said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedVerdict {
    pub by: String,
    pub verdict: crate::verdict::Verdict,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    /// Time of the last event folded.
    pub now: Stamp,
    pub events: u64,
    /// `seq` of the last event folded.
    pub last_seq: u64,
    /// The verdict given at the end of the run (check, headless), as recorded.
    pub verdict: Option<RecordedVerdict>,
    pub attach: Option<AttachInfo>,
    pub snapshot: Option<Arc<Snapshot>>,
    pub snapshots: u64,
    /// Snapshots in a row that listed the same live processes (the tree has settled at 2).
    pub same_tree_in_a_row: u32,
    #[serde(skip)]
    last_tree: Vec<i32>,
    /// Snapshots in a row in which the same tree used (nearly) no CPU since the one before:
    /// a program still starting up (imports, creating its tasks) is not quiet.
    pub quiet_in_a_row: u32,
    #[serde(skip)]
    last_tree_cpu: (u64, u64),
    /// Serialized as a list of `{key, exit}` (JSON maps need string keys).
    #[serde(serialize_with = "exits_as_list")]
    pub exits: BTreeMap<ProcKey, SeenExit>,
    /// `exits` in the order they came (oldest first), to drop the oldest past [`MAX_EXITS`].
    #[serde(skip)]
    exit_order: VecDeque<ProcKey>,
    /// Exits the Model no longer holds: of processes no longer listed, or past [`MAX_EXITS`].
    pub exits_dropped: u64,
    pub agent: Option<AgentState>,
    pub hello: Option<Box<Hello>>,
    pub report: Option<Arc<Report>>,
    /// When the last report arrived (session ms).
    pub report_at_ms: Option<u64>,
    /// Reports in a row with the same shape (threads, tasks, loops, executors, subprocesses):
    /// the program has settled at 2 (a launched app still creating its tasks has not).
    pub same_report_in_a_row: u32,
    #[serde(skip)]
    last_report_shape: (usize, u64, usize, usize, usize),
    pub facts: Option<AgentFacts>,
    pub agent_exiting: Option<String>,
    /// Non-daemon threads the agent said the exit abandons (its `atexit` message).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub abandoned_threads: Vec<crate::agent::protocol::AbandonedThread>,
    /// The exit that abandoned them: `atexit` (threading's join was cut short) or `os_exit`.
    pub abandoned_by: Option<String>,
    /// Every distinct warning the agent reported (pushed or in a report), by (instance, seq).
    pub warnings: Vec<AgentWarning>,
    #[serde(skip)]
    warning_ids: BTreeSet<(String, u64)>,
    pub plan: Option<PlanInfo>,
    pub timeline: Option<Arc<Timeline>>,
    /// The plan ran to its end (every phase asked for has run).
    pub plan_done: bool,
    /// Phase events, in order (the running phase's notes live in `timeline.running`); of
    /// the exits among them, the last [`MAX_EXIT_EVENTS`] (the target's always).
    pub phase_events: Vec<(u64, PhaseEvent)>,
    /// Exit events dropped from `phase_events` past [`MAX_EXIT_EVENTS`].
    pub phase_exits_dropped: u64,
    pub stacks: Vec<Arc<StackSnapshot>>,
    /// Captures started and not yet reported.
    pub captures_running: usize,
    pub notices: Vec<String>,
    pub collector_errors: Vec<String>,
    /// Processes watched in limited mode, with what is missing and the remedy (the
    /// header's banner is `access::banner` of these).
    pub limitations: Vec<crate::access::Limitation>,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event. Pure: the same events give the same model.
    pub fn apply(&mut self, ev: &Stamped) {
        self.now = ev.at;
        self.events += 1;
        self.last_seq = ev.seq;
        match &ev.event {
            CoreEvent::Attached(a) => self.attach = Some(a.clone()),
            CoreEvent::Snapshot { snapshot } => {
                let mut live: Vec<i32> = snapshot
                    .processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| p.key.pid)
                    .collect();
                live.sort_unstable();
                let ticks: u64 = snapshot
                    .processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| p.cpu_ticks)
                    .sum();
                let (last_ticks, last_ms) = self.last_tree_cpu;
                self.last_tree_cpu = (ticks, snapshot.taken_at_unix_ms);
                if self.snapshots > 0 && live == self.last_tree {
                    self.same_tree_in_a_row += 1;
                    // Quiet: at most 2 % of a core plus one tick (10 ms) since the last one,
                    // and no main thread runnable: on a loaded machine a program still
                    // importing waits for a CPU (state R) and uses none.
                    let used_ms = ticks.saturating_sub(last_ticks) * 10;
                    let wall_ms = snapshot.taken_at_unix_ms.saturating_sub(last_ms);
                    let runnable = snapshot
                        .processes
                        .iter()
                        .any(|p| p.exit.is_none() && p.state == crate::model::RunState::Running);
                    if used_ms <= wall_ms / 50 + 10 && !runnable {
                        self.quiet_in_a_row += 1;
                    } else {
                        self.quiet_in_a_row = 0;
                    }
                } else {
                    self.same_tree_in_a_row = 1;
                    self.quiet_in_a_row = 0;
                }
                self.last_tree = live;
                self.snapshots += 1;
                self.snapshot = Some(snapshot.clone());
                self.forget_unlisted_exits();
            }
            CoreEvent::Exited {
                key,
                status,
                at_unix_ms,
            } => {
                if !self.exits.contains_key(key) {
                    self.exits.insert(
                        *key,
                        SeenExit {
                            status: *status,
                            at_unix_ms: *at_unix_ms,
                            at_ms: ev.at.at_ms,
                        },
                    );
                    self.exit_order.push_back(*key);
                    self.drop_old_exits();
                }
            }
            CoreEvent::CollectorError { message } => {
                push_capped(&mut self.collector_errors, message.clone())
            }
            CoreEvent::AgentHello { hello } => {
                if self
                    .hello
                    .as_ref()
                    .is_some_and(|h| h.agent.instance != hello.agent.instance)
                {
                    // Another agent (the target or its agent restarted): forget the old one.
                    self.report = None;
                    self.facts = None;
                }
                self.agent_exiting = None;
                self.abandoned_threads.clear();
                self.abandoned_by = None;
                self.hello = Some(hello.clone());
            }
            CoreEvent::AgentReport { report } => {
                for w in &report.warnings {
                    self.add_warning(w);
                }
                let mut facts = AgentFacts::from(report.as_ref());
                facts.exiting = self.agent_exiting.is_some();
                self.facts = Some(facts);
                let shape = (
                    report.threads.len(),
                    report.tasks_total,
                    report.loops.len(),
                    report.executors.len(),
                    report.subprocesses.len(),
                );
                if self.report.is_some() && shape == self.last_report_shape {
                    self.same_report_in_a_row += 1;
                } else {
                    self.same_report_in_a_row = 1;
                }
                self.last_report_shape = shape;
                self.report = Some(report.clone());
                self.report_at_ms = Some(ev.at.at_ms);
            }
            CoreEvent::AgentState { state } => {
                if !matches!(state, AgentState::Connected(_)) {
                    // The last report stays visible (marked by the state); facts go.
                    self.facts = None;
                }
                self.agent = Some(state.clone());
            }
            CoreEvent::AgentWarning { warning } => self.add_warning(warning),
            CoreEvent::AgentExiting { reason, abandoned } => {
                self.agent_exiting = Some(reason.clone());
                if !abandoned.is_empty() {
                    self.abandoned_threads = abandoned.clone();
                    self.abandoned_by = Some(reason.clone());
                }
                if let Some(f) = &mut self.facts {
                    f.exiting = true;
                }
            }
            CoreEvent::Plan { plan } => {
                self.plan = Some(plan.clone());
                self.timeline = None;
                self.plan_done = false;
                self.phase_events.clear();
                self.phase_exits_dropped = 0;
            }
            CoreEvent::Phase { event } => {
                self.phase_events.push((ev.at.at_ms, event.clone()));
                if matches!(event, PhaseEvent::ExitNoticed { .. }) {
                    self.drop_old_exit_events();
                }
            }
            CoreEvent::Timeline { timeline } => self.timeline = Some(timeline.clone()),
            CoreEvent::PlanDone { timeline } => {
                self.timeline = Some(timeline.clone());
                self.plan_done = true;
            }
            CoreEvent::StacksRequested { .. } => self.captures_running += 1,
            CoreEvent::Stacks { stacks, .. } => {
                self.captures_running = self.captures_running.saturating_sub(1);
                self.stacks.push(stacks.clone());
                if self.stacks.len() > MAX_STACKS {
                    self.stacks.remove(0);
                }
            }
            CoreEvent::Notice { message } => push_capped(&mut self.notices, message.clone()),
            CoreEvent::Verdict { by, verdict, lines } => {
                self.verdict = Some(RecordedVerdict {
                    by: by.clone(),
                    verdict: verdict.clone(),
                    lines: lines.clone(),
                })
            }
            CoreEvent::Limitations { limitations } => self.limitations = limitations.clone(),
        }
    }

    fn add_warning(&mut self, w: &AgentWarning) {
        let instance = self
            .hello
            .as_ref()
            .map(|h| h.agent.instance.clone())
            .unwrap_or_default();
        if self.warning_ids.insert((instance, w.seq)) {
            self.warnings.push(w.clone());
        }
    }

    /// Exits of processes the snapshot no longer lists are forgotten (the target's never):
    /// every reader asks about a listed process, and the dashboard books a gone process
    /// when the exit comes, while the process is still listed. Without this, a tree forking
    /// 50 children a second kept 4,096 exits, and each replay checkpoint a copy of them
    /// (a 15-minute recording took 140 MB to open).
    fn forget_unlisted_exits(&mut self) {
        let Some(snap) = &self.snapshot else { return };
        if self.exits.is_empty() {
            return;
        }
        let target = self.target();
        let listed: std::collections::HashSet<ProcKey> =
            snap.processes.iter().map(|p| p.key).collect();
        let before = self.exits.len();
        self.exits
            .retain(|k, _| Some(*k) == target || listed.contains(k));
        if self.exits.len() != before {
            self.exits_dropped += (before - self.exits.len()) as u64;
            let exits = &self.exits;
            self.exit_order.retain(|k| exits.contains_key(k));
        }
    }

    /// Past [`MAX_EXIT_EVENTS`] exit events, forgets the oldest (never the target's): every
    /// exit of a churning tree is one, and each replay checkpoint holds a copy of the list
    /// (887 of them made a 15-minute recording's Model 110 KB).
    fn drop_old_exit_events(&mut self) {
        let target = self.target();
        let is_exit = |e: &PhaseEvent| matches!(e, PhaseEvent::ExitNoticed { key, .. } if Some(*key) != target);
        let n = self.phase_events.iter().filter(|(_, e)| is_exit(e)).count();
        if n > MAX_EXIT_EVENTS
            && let Some(i) = self.phase_events.iter().position(|(_, e)| is_exit(e))
        {
            self.phase_events.remove(i);
            self.phase_exits_dropped += 1;
        }
    }

    /// Past [`MAX_EXITS`], forgets the oldest exits (never the target's).
    fn drop_old_exits(&mut self) {
        let target = self.target();
        while self.exits.len() > MAX_EXITS {
            let Some(k) = self.exit_order.pop_front() else {
                break;
            };
            if Some(k) == target {
                self.exit_order.push_back(k);
                if self.exit_order.len() <= 1 {
                    break;
                }
                continue;
            }
            if self.exits.remove(&k).is_some() {
                self.exits_dropped += 1;
            }
        }
    }

    pub fn target(&self) -> Option<ProcKey> {
        self.attach.as_ref().map(|a| a.target)
    }

    /// The target was seen exiting.
    pub fn target_exit(&self) -> Option<&SeenExit> {
        self.exits.get(&self.target()?)
    }

    /// The agent question is settled: a report arrived, or the client says there is none.
    pub fn agent_known(&self) -> bool {
        self.report.is_some()
            || matches!(
                self.agent,
                Some(AgentState::NotFound(_)) | Some(AgentState::Lost(_))
            )
    }

    /// Two snapshots in a row listed the same live processes.
    pub fn tree_settled(&self) -> bool {
        self.same_tree_in_a_row >= 2
    }

    /// The settled tree used (nearly) no CPU over the last two refreshes.
    pub fn tree_quiet(&self) -> bool {
        self.quiet_in_a_row >= 2
    }
}

fn exits_as_list<S: serde::Serializer>(
    exits: &BTreeMap<ProcKey, SeenExit>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        key: &'a ProcKey,
        exit: &'a SeenExit,
    }
    s.collect_seq(exits.iter().map(|(key, exit)| Entry { key, exit }))
}

fn push_capped(v: &mut Vec<String>, s: String) {
    v.push(s);
    if v.len() > MAX_NOTICES {
        v.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::Stamp;

    fn stamped(seq: u64, event: CoreEvent) -> Stamped {
        Stamped {
            seq,
            at: Stamp {
                at_ms: seq * 10,
                unix_ms: 1_000 + seq * 10,
            },
            event,
        }
    }

    #[test]
    fn warnings_are_counted_once_whether_pushed_or_reported() {
        let w = AgentWarning {
            seq: 1,
            kind: "never_awaited".into(),
            message: "coroutine 'f' was never awaited".into(),
            ..AgentWarning::default()
        };
        let report = Report {
            warnings: vec![w.clone()],
            warnings_total: 1,
            ..Report::default()
        };
        let events = [
            stamped(1, CoreEvent::AgentWarning { warning: w.clone() }),
            stamped(
                2,
                CoreEvent::AgentReport {
                    report: Arc::new(report),
                },
            ),
        ];
        let mut m = Model::new();
        for e in &events {
            m.apply(e);
        }
        assert_eq!(m.warnings.len(), 1);
        // The same stream folded again gives the same model.
        let mut again = Model::new();
        for e in &events {
            again.apply(e);
        }
        assert_eq!(
            serde_json::to_value(&m).ok(),
            serde_json::to_value(&again).ok()
        );
    }

    #[test]
    fn a_tree_is_quiet_only_when_no_main_thread_waits_for_a_cpu() {
        // The same tree, no CPU used between snapshots: quiet, unless a main thread is
        // runnable (on a loaded machine a program still importing waits for a CPU).
        let fold = |state: crate::model::RunState| {
            let mut m = Model::new();
            for seq in 1..=4 {
                let mut snap = crate::state::fixture::snapshot();
                snap.taken_at_unix_ms = 1_000 + seq * 500;
                snap.processes[0].state = state;
                m.apply(&stamped(
                    seq,
                    CoreEvent::Snapshot {
                        snapshot: Arc::new(snap),
                    },
                ));
            }
            m.tree_quiet()
        };
        assert!(fold(crate::model::RunState::Sleeping));
        assert!(!fold(crate::model::RunState::Running));
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev = stamped(
            3,
            CoreEvent::AgentState {
                state: AgentState::Lost("agent connection closed".into()),
            },
        );
        let text = serde_json::to_string(&ev).expect("serialize");
        let back: Stamped = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, ev);
    }
}
