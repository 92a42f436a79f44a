//! The application model (Elm style): one struct owns everything the dashboard shows,
//! [`AppState::apply`] folds events from the core into it and [`AppState::act`] turns user
//! actions into [`Command`]s for the core. No I/O and no ratatui here, so the whole
//! behaviour is unit-testable and the widgets only draw borrowed state.

mod actions;
#[cfg(test)]
pub(crate) mod fixture;
mod tables;

pub use tables::{SortKey, ThreadRow, page_offset, thread_order};

use crate::agent::protocol::{Hello, Report};
use crate::model::{AgentFacts, ExitInfo, ExitStatus, ProcKey, Snapshot};
use crate::stacks::StackSnapshot;
use crate::teardown::{Plan, Timeline};
use std::collections::HashMap;

/// Which panel has the keyboard focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Threads,
    Tree,
    Tasks,
    Timeline,
}

impl Panel {
    pub const ALL: [Panel; 4] = [Panel::Threads, Panel::Tree, Panel::Tasks, Panel::Timeline];

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
    fn prev(self) -> Self {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// How the target was obtained; decides what quitting means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--pid`: quitting never touches the target.
    Attach,
    /// `-- CMD` or `demo`: quitting asks what to do with the tree we started.
    Launch { demo: bool },
}

/// Connection to the in-process agent, as shown in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    Disabled,
    Searching,
    NotFound(String),
    Connected(String),
    Lost(String),
}

/// What the user chose when quitting a launched tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitChoice {
    /// Leave the tree running and print its pid.
    Detach,
    /// Kill the whole tree (SIGKILL through pidfds).
    KillTree,
    /// Run the remaining teardown phases, then quit.
    RunPlan,
}

/// Events from the core and the terminal, already decoded.
#[derive(Debug, Clone)]
pub enum Event {
    Snapshot(Box<Snapshot>),
    Exited {
        key: ProcKey,
        status: ExitStatus,
        at_unix_ms: u64,
    },
    CollectError(String),
    Agent(AgentStatus),
    /// A (new) agent said hello: when its identity changed, what we knew is dropped.
    AgentHello(Box<Hello>),
    AgentReport(Box<Report>),
    LogTail(Vec<String>),
    Status(String),
    /// The teardown plan in use (and a fresh, empty timeline).
    Plan(Box<Plan>),
    Timeline(Box<Timeline>),
    /// A stack snapshot; `asked` when the user asked for it (the pane opens), not when the
    /// teardown engine took it at a deadline (kept, announced in the status line).
    Stacks {
        snap: Box<StackSnapshot>,
        asked: bool,
    },
    /// Wall clock, for live elapsed times (set by the app on ticks, never read here).
    Now(u64),
}

/// What a key press means, independent of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    ForceQuit,
    NextPanel,
    PrevPanel,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    CycleSort,
    ReverseSort,
    ToggleHelp,
    Escape,
    Choose(QuitChoice),
    // Teardown and stacks: routed to the engine by the app.
    NextPhase,
    RunPhase(usize),
    /// A letter that is no global key: runs the plan phase with that key, if any.
    PhaseKey(char),
    RunAll,
    AbortPhase,
    ExtendTimeout,
    StackSelected,
    StackAll,
    WriteStacks,
    /// Open the stack pane on the previous / next kept snapshot.
    PrevStacks,
    NextStacks,
}

/// Commands for the core, produced by [`AppState::act`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit(Option<QuitChoice>),
    Teardown(Action),
    CaptureStacks(Vec<i32>),
    WriteStacks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    QuitPrompt,
    /// The stack pane, showing `stacks[stack_view]`.
    Stacks,
}

/// Snapshots kept so two can be compared.
pub const KEPT_STACK_SNAPSHOTS: usize = 8;

/// Everything the dashboard shows.
#[derive(Debug, Clone)]
pub struct AppState {
    pub mode: Mode,
    pub target_pid: i32,
    pub snapshot: Option<Snapshot>,
    /// Exit of the target itself, once noticed.
    pub target_exit: Option<ExitInfo>,
    /// Exits noticed through pidfds, by process, so they survive the next snapshot.
    pub exits: HashMap<ProcKey, ExitInfo>,
    pub agent: AgentStatus,
    pub agent_facts: Option<AgentFacts>,
    pub agent_hello: Option<Hello>,
    pub agent_report: Option<Box<Report>>,
    pub selected_task: usize,
    pub focus: Panel,
    pub sort: SortKey,
    pub sort_reverse: bool,
    pub selected_tid: Option<i32>,
    /// Display order of `snapshot.threads` (indices), kept in step with the sort.
    pub thread_order: Vec<usize>,
    pub selected_pid: Option<ProcKey>,
    pub overlay: Overlay,
    pub status: Option<String>,
    pub last_error: Option<String>,
    pub log_tail: Vec<String>,
    pub log_path: Option<String>,
    pub plan: Option<Plan>,
    pub timeline: Option<Timeline>,
    pub now_unix_ms: u64,
    /// Kept stack snapshots, oldest first; the pane shows `stack_view`.
    pub stacks: Vec<StackSnapshot>,
    pub stack_view: usize,
    pub stack_scroll: u16,
    /// After "run the plan, then quit": quit once the plan is done.
    pub quit_after_plan: bool,
}

impl AppState {
    pub fn new(mode: Mode, target_pid: i32) -> Self {
        Self {
            mode,
            target_pid,
            snapshot: None,
            target_exit: None,
            exits: HashMap::new(),
            agent: AgentStatus::Searching,
            agent_facts: None,
            agent_hello: None,
            agent_report: None,
            selected_task: 0,
            focus: Panel::Threads,
            sort: SortKey::Tid,
            sort_reverse: false,
            selected_tid: None,
            thread_order: Vec::new(),
            selected_pid: None,
            overlay: Overlay::None,
            status: None,
            last_error: None,
            log_tail: Vec::new(),
            log_path: None,
            plan: None,
            timeline: None,
            now_unix_ms: 0,
            stacks: Vec::new(),
            stack_view: 0,
            stack_scroll: 0,
            quit_after_plan: false,
        }
    }

    /// Folds one event from the core into the model.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Snapshot(snap) => {
                let mut snap = *snap;
                // Keep only exits of processes the collector still lists (it drops them
                // after a while), so this map does not grow without bound.
                self.exits
                    .retain(|k, _| snap.processes.iter().any(|p| p.key == *k));
                for p in &mut snap.processes {
                    if p.exit.is_none() {
                        p.exit = self.exits.get(&p.key).copied();
                    }
                }
                if self.target_exit.is_none()
                    && let Some(t) = snap.target_info().and_then(|t| t.exit)
                {
                    self.target_exit = Some(t);
                }
                self.snapshot = Some(snap);
                self.fix_selection();
            }
            Event::Exited {
                key,
                status,
                at_unix_ms,
            } => {
                let info = ExitInfo { status, at_unix_ms };
                self.exits.insert(key, info);
                if let Some(snap) = &mut self.snapshot {
                    if let Some(p) = snap.processes.iter_mut().find(|p| p.key == key) {
                        p.exit = Some(info);
                    }
                    if key == snap.target {
                        self.target_exit = Some(info);
                        snap.threads.clear();
                        self.thread_order.clear();
                    }
                }
            }
            Event::CollectError(e) => self.last_error = Some(e),
            Event::Agent(status) => {
                if !matches!(status, AgentStatus::Connected(_)) {
                    self.agent_facts = None;
                    self.agent_report = None;
                }
                self.agent = status;
            }
            Event::AgentHello(hello) => {
                let restarted = self.agent_hello.as_ref().is_some_and(|old| {
                    old.identity() != hello.identity() || old.agent.instance != hello.agent.instance
                });
                if restarted {
                    self.agent_facts = None;
                    self.agent_report = None;
                    self.selected_task = 0;
                }
                self.agent = AgentStatus::Connected(format!(
                    "{} {} agent {}",
                    hello.runtime.name, hello.runtime.version, hello.agent.version
                ));
                self.agent_hello = Some(*hello);
            }
            Event::AgentReport(report) => {
                self.agent_facts = Some(AgentFacts::from(report.as_ref()));
                let n = report.tasks.len();
                self.selected_task = self.selected_task.min(n.saturating_sub(1));
                self.agent_report = Some(report);
            }
            Event::LogTail(lines) => self.log_tail = lines,
            Event::Status(s) => self.status = Some(s),
            Event::Plan(plan) => {
                self.timeline = None;
                self.plan = Some(*plan);
            }
            Event::Timeline(t) => self.timeline = Some(*t),
            Event::Now(ms) => self.now_unix_ms = ms,
            Event::Stacks { snap, asked } => {
                let threads = snap.threads.len();
                self.stacks.push(*snap);
                if self.stacks.len() > KEPT_STACK_SNAPSHOTS {
                    self.stacks.remove(0);
                }
                self.stack_view = self.stacks.len() - 1;
                self.stack_scroll = 0;
                if asked {
                    self.overlay = Overlay::Stacks;
                } else {
                    self.status = Some(format!(
                        "stacks of {threads} thread(s) captured by the teardown: [ to view"
                    ));
                }
            }
        }
    }

    /// Thread rows `range` of the display order (sorted, agent facts joined).
    pub fn thread_rows(&self, range: std::ops::Range<usize>) -> Vec<ThreadRow<'_>> {
        match &self.snapshot {
            Some(s) => tables::thread_rows(s, self.agent_facts.as_ref(), &self.thread_order, range),
            None => Vec::new(),
        }
    }

    /// Tids in display order.
    fn ordered_tids(&self) -> Vec<i32> {
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        self.thread_order
            .iter()
            .filter_map(|&i| s.threads.get(i).map(|t| t.tid))
            .collect()
    }

    fn resort(&mut self) {
        self.thread_order = match &self.snapshot {
            Some(s) => thread_order(s, self.sort, self.sort_reverse),
            None => Vec::new(),
        };
    }

    pub fn selected_thread_index(&self) -> Option<usize> {
        let tid = self.selected_tid?;
        let s = self.snapshot.as_ref()?;
        self.thread_order
            .iter()
            .position(|&i| s.threads.get(i).is_some_and(|t| t.tid == tid))
    }

    pub fn selected_process_index(&self) -> Option<usize> {
        let key = self.selected_pid?;
        self.snapshot
            .as_ref()?
            .processes
            .iter()
            .position(|p| p.key == key)
    }

    fn fix_selection(&mut self) {
        self.resort();
        let tids = self.ordered_tids();
        if self.selected_tid.is_none_or(|t| !tids.contains(&t)) {
            self.selected_tid = tids.first().copied();
        }
        let keys: Vec<ProcKey> = self
            .snapshot
            .as_ref()
            .map(|s| s.processes.iter().map(|p| p.key).collect())
            .unwrap_or_default();
        if self.selected_pid.is_none_or(|k| !keys.contains(&k)) {
            self.selected_pid = keys.first().copied();
        }
    }

    /// Non-daemon threads when the agent says so, else every thread (/proc cannot tell).
    pub fn threads_to_snapshot(&self) -> Vec<i32> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        match &self.agent_facts {
            Some(f) => snap
                .threads
                .iter()
                .filter(|t| f.thread(t.tid).is_none_or(|a| !a.daemon))
                .map(|t| t.tid)
                .collect(),
            None => snap.threads.iter().map(|t| t.tid).collect(),
        }
    }

    /// Threads of the viewed stack snapshot that are stuck compared with the snapshot
    /// before it: no CPU progress, no wake-ups, the same wait point.
    pub fn stuck_since_previous(&self) -> Vec<i32> {
        use crate::stacks::stuck::{Observation, stuck_tids};
        let (Some(prev), Some(cur)) = (
            self.stack_view
                .checked_sub(1)
                .and_then(|i| self.stacks.get(i)),
            self.stacks.get(self.stack_view),
        ) else {
            return Vec::new();
        };
        if prev.pid != cur.pid {
            return Vec::new();
        }
        let obs = |s: &StackSnapshot| -> Vec<Observation> {
            s.threads
                .iter()
                .filter_map(Observation::from_stacks)
                .collect()
        };
        stuck_tids(&obs(prev), &obs(cur))
    }

    /// Agent phases of the plan that cannot do anything now, with why: no agent connected,
    /// an agent without that capability, or an app phase the app did not register. The
    /// teardown panel greys them; the engine skips or fails them when run.
    pub fn agent_phase_gaps(&self) -> Vec<(char, String)> {
        use crate::teardown::plan::{Action, AgentRequest};
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        plan.phases
            .iter()
            .filter_map(|p| {
                let Action::Agent(req) = &p.action else {
                    return None;
                };
                let why = match (&self.agent, &self.agent_hello) {
                    (AgentStatus::Connected(_), Some(h)) if !h.has(req.method()) => {
                        format!("the agent cannot {}", req.method())
                    }
                    (AgentStatus::Connected(_), Some(h)) => match req {
                        AgentRequest::RunPhase(name)
                            if !h.phases.iter().any(|ph| &ph.name == name) =>
                        {
                            format!("the app registered no phase {name:?}")
                        }
                        _ => return None,
                    },
                    _ => "no agent".to_string(),
                };
                Some((p.key, why))
            })
            .collect()
    }

    /// Counts shown in the header: threads, live children, orphans, exited.
    pub fn counts(&self) -> Counts {
        let Some(s) = &self.snapshot else {
            return Counts::default();
        };
        Counts {
            threads: s.threads.len(),
            children: s.live_descendants().filter(|p| !p.orphan).count(),
            orphans: s.live_descendants().filter(|p| p.orphan).count(),
            exited: s
                .processes
                .iter()
                .filter(|p| p.exit.is_some() && p.key != s.target)
                .count(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub threads: usize,
    pub children: usize,
    pub orphans: usize,
    pub exited: usize,
}

#[cfg(test)]
mod tests;
