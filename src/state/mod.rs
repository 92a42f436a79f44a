//! The dashboard's state, Elm style, in two parts: the session's [`Model`] (everything folded
//! from the session's events, the same fold headless and replay use) and the TUI's own
//! [`View`] (selection, scroll, sort, overlays, focus, status line). [`Dashboard::apply`]
//! folds one session event into both, [`Dashboard::act`] turns user actions into
//! [`Command`]s for the session, and [`Screen`] borrows both for drawing. No I/O and no
//! ratatui here, so the whole behaviour is unit-testable and the widgets only draw.

mod actions;
#[cfg(test)]
pub(crate) mod fixture;
mod geometry;
mod procs;
mod replay;
mod screen;
mod status;
mod tables;
mod why;

pub use actions::WHY_KEY;
pub use geometry::{Area, Geometry, MouseKind, PanelArea, Rows, WHEEL_ROWS};
pub use procs::{Gone, Listed, ProcRow, Slot};
pub use replay::{GoneBook, ReplayBar};
pub use screen::{Counts, Screen, StaleReport};
pub use status::{outcome_text, phase_outcome, stack_line_count};
pub use tables::{SortKey, ThreadRow, page_offset, thread_order};
pub use why::{WHY_EVERY_MS, WHY_MAX_EVERY_MS, WhyResult, WhyView};

use crate::session::{CoreEvent, Model, Stamped, TaskWant};
use crate::teardown::{PhaseEvent, Plan};

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

/// How the target was obtained (from the session's `Attached` event); decides what
/// quitting means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--pid`: quitting never touches the target.
    Attach,
    /// `-- CMD` or `demo`: quitting asks what to do with the tree we started.
    Launch { demo: bool },
}

/// Connection to the in-process agent, as shown in the header (derived from the Model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    Disabled,
    Searching,
    NotFound(String),
    Connected(String),
    Lost(String),
    /// The target exited (whatever the agent connection last said).
    TargetExited,
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
    // Teardown and stacks: routed to the session by the app.
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
    /// Open (and refresh) or close the Why overlay.
    ToggleWhy,
    /// Enter: the selected phase's notes (teardown panel focused).
    Open,
    /// Forget the processes listed as gone.
    ClearGone,
    /// A mouse click or wheel notch at a cell.
    Mouse {
        kind: MouseKind,
        x: u16,
        y: u16,
    },
}

/// Commands for the session (or the app), produced by [`Dashboard::act`] and
/// [`Dashboard::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit(Option<QuitChoice>),
    Teardown(Action),
    CaptureStacks(StackAsk),
    WriteStacks,
}

/// A stack capture the dashboard asks for: threads (all when empty; `None`: none) and the
/// await chains of pending asyncio tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackAsk {
    pub threads: Option<Vec<i32>>,
    pub tasks: TaskWant,
}

impl StackAsk {
    pub fn threads(tids: Vec<i32>) -> Self {
        Self {
            threads: Some(tids),
            tasks: TaskWant::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    QuitPrompt,
    /// The stack pane, showing `model.stacks[view.stack_view]`.
    Stacks,
    /// Why the target won't exit: the last diagnosis's causes.
    Why,
    /// One phase's record: outcome, counts, signals, exits and every note.
    Phase,
}

/// What only the dashboard knows: where the user is looking and what it last said. The
/// rest is in the [`Model`].
#[derive(Debug, Clone)]
pub struct View {
    pub focus: Panel,
    pub sort: SortKey,
    pub sort_reverse: bool,
    pub selected_tid: Option<i32>,
    /// Display order of the snapshot's threads (indices), kept in step with the sort
    /// (computed once per snapshot or sort change, not per frame).
    pub thread_order: Vec<usize>,
    pub selected_pid: Option<crate::model::ProcKey>,
    pub selected_task: usize,
    pub overlay: Overlay,
    pub status: Option<String>,
    /// The launched command's output, re-read by the app when the file grew.
    pub log_tail: Vec<String>,
    /// Wall clock, for live elapsed times (set by the app's redraw tick).
    pub now_unix_ms: u64,
    /// The kept stack snapshot the pane shows, and how far it is scrolled.
    pub stack_view: usize,
    pub stack_scroll: u16,
    /// After "run the plan, then quit": quit once the plan is done.
    pub quit_after_plan: bool,
    /// The Model's plan, parsed once when it arrives (phase keys and the phase list).
    pub plan: Option<Plan>,
    /// Set in a replay (read-only, time travel): where it is, for the header and scrub bar.
    pub replay: Option<ReplayBar>,
    /// The last diagnosis (the Why overlay and the header's verdict).
    pub why: WhyView,
    /// Processes seen exiting, kept until cleared, and those cleared (never listed again).
    /// Gone processes dropped from `gone` past `procs::MAX_GONE` (oldest exits first).
    pub gone_dropped: u64,
    pub gone: std::collections::BTreeMap<crate::model::ProcKey, Gone>,
    pub cleared: std::collections::BTreeSet<crate::model::ProcKey>,
    /// The parent each listed process had when first seen (orphans stay under it).
    pub first_ppid: std::collections::HashMap<crate::model::ProcKey, i32>,
    /// Display order of the tree panel (computed per snapshot or exit, not per frame).
    pub proc_order: Vec<Listed>,
    /// The plan phase selected in the teardown panel (its notes are shown; Enter opens them).
    pub selected_phase: usize,
    /// The phase started and not yet finished (from the phase events).
    pub started_phase: Option<usize>,
    /// First key shown by the help overlay when it does not fit (j/k scroll it).
    pub help_scroll: u16,
    /// What the last frame drew where (mouse, scroll limits).
    pub geometry: Geometry,
    /// `NO_COLOR`: no colours at all; the selection stays reverse video with a marker.
    pub no_color: bool,
}

impl Default for View {
    fn default() -> Self {
        Self {
            focus: Panel::Threads,
            sort: SortKey::Tid,
            sort_reverse: false,
            selected_tid: None,
            thread_order: Vec::new(),
            selected_pid: None,
            selected_task: 0,
            overlay: Overlay::None,
            status: None,
            log_tail: Vec::new(),
            now_unix_ms: 0,
            stack_view: 0,
            stack_scroll: 0,
            quit_after_plan: false,
            plan: None,
            replay: None,
            why: WhyView::default(),
            gone: Default::default(),
            gone_dropped: 0,
            cleared: Default::default(),
            first_ppid: Default::default(),
            proc_order: Vec::new(),
            selected_phase: 0,
            started_phase: None,
            help_scroll: 0,
            geometry: Geometry::default(),
            no_color: false,
        }
    }
}

/// The dashboard: the session's Model and the TUI's View, updated together.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub model: Model,
    pub view: View,
}

impl Dashboard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Both halves, borrowed for drawing and queries.
    pub fn screen(&self) -> Screen<'_> {
        Screen {
            model: &self.model,
            view: &self.view,
        }
    }

    /// Folds one session event into the Model, then keeps the View in step (selection,
    /// status line, the stack pane). Returns what the app must do (quit once a plan run
    /// from the quit prompt is done).
    pub fn apply(&mut self, ev: &Stamped) -> Vec<Command> {
        let restarted = match &ev.event {
            CoreEvent::AgentHello { hello } => self.model.hello.as_ref().is_some_and(|old| {
                old.identity() != hello.identity() || old.agent.instance != hello.agent.instance
            }),
            _ => false,
        };
        self.model.apply(ev);
        let view = &mut self.view;
        match &ev.event {
            CoreEvent::Snapshot { .. } | CoreEvent::Exited { .. } => self.fix_selection(),
            CoreEvent::AgentHello { .. } if restarted => view.selected_task = 0,
            CoreEvent::AgentReport { report } => {
                let n = report.tasks.len();
                view.selected_task = view.selected_task.min(n.saturating_sub(1));
                if view.sort == SortKey::Daemon {
                    self.resort();
                }
            }
            CoreEvent::AgentWarning { warning } => {
                view.status = Some(format!("target warning: {}", warning.message));
            }
            CoreEvent::AgentExiting { reason, .. } => {
                view.status = Some(format!("the target is exiting ({reason})"));
            }
            CoreEvent::Plan { plan } => match plan.load() {
                Ok(p) => view.plan = Some(p),
                Err(e) => {
                    view.plan = None;
                    view.status = Some(format!("cannot load the plan {}: {e}", plan.name));
                }
            },
            CoreEvent::Phase { event } => match event {
                PhaseEvent::Started { index, name } => {
                    view.status = Some(format!("phase {} {name} started", index + 1));
                    view.selected_phase = *index;
                    view.started_phase = Some(*index);
                }
                PhaseEvent::Finished(rec) => {
                    view.started_phase = None;
                    let timeout = view
                        .plan
                        .as_ref()
                        .and_then(|p| p.phases.get(rec.index))
                        .map(|p| p.timeout);
                    view.status = Some(status::finished_line(rec, timeout));
                }
                PhaseEvent::Progress { note, .. } => view.status = Some(note.clone()),
                _ => {}
            },
            CoreEvent::PlanDone { .. } => {
                view.status = Some("teardown plan finished".into());
                if view.quit_after_plan {
                    // The plan the user ran before quitting is done: the demo still does
                    // not outlive us, a launched command keeps what the plan left.
                    return vec![Command::Quit(self.screen().default_quit_choice())];
                }
            }
            CoreEvent::StacksRequested {
                reason,
                asked: false,
                ..
            } => view.status = Some(format!("capturing stacks: {reason}")),
            CoreEvent::Stacks { stacks, asked, .. } => {
                view.stack_view = self.model.stacks.len().saturating_sub(1);
                view.stack_scroll = 0;
                if *asked {
                    view.overlay = Overlay::Stacks;
                    // The capture is over: "capturing stacks…" must not stay.
                    view.status = Some(captured_line(stacks));
                } else {
                    view.status = Some(format!(
                        "stacks of {} thread(s) captured by the teardown: [ to view",
                        stacks.threads.len()
                    ));
                }
            }
            CoreEvent::Notice { message } => view.status = Some(message.clone()),
            _ => {}
        }
        Vec::new()
    }

    /// The redraw tick's wall clock. True when something on screen moves with it (the
    /// running phase's elapsed time, the verdict's age). Asks for the verdict's automatic
    /// refresh when it is due (the app takes the request).
    pub fn tick(&mut self, now_unix_ms: u64) -> bool {
        let before = self.view.now_unix_ms;
        self.view.now_unix_ms = now_unix_ms;
        if self.why_due(now_unix_ms) {
            self.view.why.requested = true;
        }
        // The verdict's age is shown in whole seconds: redraw when that changes, not on
        // every tick.
        let age_moved = self.view.why.result.as_ref().is_some_and(|r| {
            let secs = |now: u64| now.saturating_sub(r.computed_at_unix_ms) / 1000;
            secs(before) != secs(now_unix_ms)
        });
        age_moved
            || self
                .model
                .timeline
                .as_ref()
                .is_some_and(|t| t.running.is_some())
    }

    /// A teardown phase is running (its clock on screen moves every tick).
    pub fn phase_running(&self) -> bool {
        self.model
            .timeline
            .as_ref()
            .is_some_and(|t| t.running.is_some())
    }

    pub fn set_log_tail(&mut self, lines: Vec<String>) {
        self.view.log_tail = lines;
    }

    /// A status line message of the app itself (stacks written, nothing to capture).
    pub fn say(&mut self, msg: impl Into<String>) {
        self.view.status = Some(msg.into());
    }

    fn resort(&mut self) {
        self.view.thread_order = thread_order(
            self.screen().threads(),
            self.model.facts.as_ref(),
            self.view.sort,
            self.view.sort_reverse,
        );
    }

    fn fix_selection(&mut self) {
        self.resort();
        self.book_exits();
        // Without building the list of every tid (10,000 threads: once per refresh).
        let reselect = {
            let threads = self.screen().threads();
            let listed = |t: i32| threads.iter().any(|x| x.tid == t);
            let first = self.view.thread_order.first();
            self.view
                .selected_tid
                .is_none_or(|t| !listed(t))
                .then(|| first.and_then(|&i| threads.get(i)).map(|x| x.tid))
        };
        if let Some(tid) = reselect {
            self.view.selected_tid = tid;
        }
        let keys = self.screen().process_keys();
        if self.view.selected_pid.is_none_or(|k| !keys.contains(&k)) {
            self.view.selected_pid = keys.first().copied();
        }
    }
}

/// Whether an event changes what the dashboard shows (the app redraws after those only).
pub fn shows(ev: &CoreEvent) -> bool {
    !matches!(
        ev,
        CoreEvent::Phase {
            event: PhaseEvent::Signal { .. }
                | PhaseEvent::ExitNoticed { .. }
                | PhaseEvent::RefreshNow
                | PhaseEvent::SnapshotStacks { .. }
                | PhaseEvent::Timeline(_)
                | PhaseEvent::AllDone(_)
        } | CoreEvent::StacksRequested { asked: true, .. }
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_view;

/// The status line once an asked capture is in: what it holds and how long it took.
fn captured_line(s: &crate::stacks::StackSnapshot) -> String {
    let ms = s.capture_us as f64 / 1000.0;
    match (s.threads.len(), s.tasks.len()) {
        (0, 0) if !s.errors.is_empty() => format!("nothing captured: {}", s.errors[0].message),
        (n, 0) => format!("stacks of {n} thread(s) captured in {ms:.1} ms"),
        (0, 1) => format!("await chain of task \"{}\" captured", s.tasks[0].name),
        (0, t) => format!("await chains of {t} task(s) captured"),
        (n, t) => format!(
            "stacks of {n} thread(s) and await chains of {t} task(s) captured in {ms:.1} ms"
        ),
    }
}
