//! [`Screen`]: the Model and the View borrowed together, with what the widgets and the key
//! handling derive from them (merged exits, thread rows, counts, stuck threads, phases that
//! cannot act). Read-only; computed on demand for what is on screen.

use super::procs::{ProcRow, Slot};
use super::tables::{self, ThreadRow};
use super::{AgentStatus, Mode, QuitChoice, View};
use crate::agent::protocol::Report;
use crate::model::{ExitInfo, ProcInfo, ProcKey, Snapshot, ThreadInfo};
use crate::session::{AgentState, Model};
use crate::stacks::StackSnapshot;
use crate::teardown::{Plan, Timeline};
use std::sync::Arc;

/// What the widgets draw from.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub model: &'a Model,
    pub view: &'a View,
}

/// Why the agent data shown is not live, in words (the tasks panel's title says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleReport(pub String);

/// Counts shown in the header: threads, live children, orphans, exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub threads: usize,
    pub children: usize,
    pub orphans: usize,
    pub exited: usize,
}

impl<'a> Screen<'a> {
    pub fn mode(&self) -> Mode {
        match &self.model.attach {
            Some(a) if a.launched.is_some() => Mode::Launch { demo: a.demo },
            _ => Mode::Attach,
        }
    }

    pub fn target_pid(&self) -> i32 {
        self.model.target().map_or(0, |k| k.pid)
    }

    pub fn snapshot(&self) -> Option<&'a Snapshot> {
        self.model.snapshot.as_deref()
    }

    /// The launched command's log file (none when attached, or not recorded).
    pub fn log_path(&self) -> Option<String> {
        let l = self.model.attach.as_ref()?.launched.as_ref()?;
        (!l.log_path.as_os_str().is_empty()).then(|| l.log_path.display().to_string())
    }

    /// A process's exit: from the snapshot, or noticed (by its pidfd) since.
    pub fn exit_of(&self, p: &ProcInfo) -> Option<ExitInfo> {
        p.exit.or_else(|| {
            self.model.exits.get(&p.key).map(|e| ExitInfo {
                status: e.status,
                at_unix_ms: e.at_unix_ms,
            })
        })
    }

    /// The target's exit, once noticed.
    pub fn target_exit(&self) -> Option<ExitInfo> {
        match self.model.target_exit() {
            Some(e) => Some(ExitInfo {
                status: e.status,
                at_unix_ms: e.at_unix_ms,
            }),
            None => self.snapshot()?.target_info().and_then(|t| t.exit),
        }
    }

    /// Threads of the tree; none once the target has exited.
    pub fn threads(&self) -> &'a [ThreadInfo] {
        match self.snapshot() {
            Some(s) if self.target_exit().is_none() => &s.threads,
            _ => &[],
        }
    }

    /// Processes of the latest snapshot (exited ones the collector still lists included).
    pub fn processes(&self) -> &'a [ProcInfo] {
        self.snapshot().map_or(&[], |s| s.processes.as_slice())
    }

    /// How many processes the tree panel lists (live and gone).
    pub fn proc_count(&self) -> usize {
        self.view.proc_order.len()
    }

    /// Tree rows `range` of the display order: live processes and the gone ones kept.
    pub fn proc_rows(&self, range: std::ops::Range<usize>) -> Vec<ProcRow<'a>> {
        let order = &self.view.proc_order;
        let end = range.end.min(order.len());
        let start = range.start.min(end);
        order[start..end]
            .iter()
            .filter_map(|l| match l.slot {
                Slot::Live(i) => self.processes().get(i).map(|p| ProcRow {
                    info: p,
                    depth: l.depth,
                    exit: None,
                }),
                Slot::Gone(k) => self.view.gone.get(&k).map(|g| ProcRow {
                    info: &g.info,
                    depth: l.depth,
                    exit: Some(g.exit),
                }),
            })
            .collect()
    }

    /// Keys of the listed processes, in display order.
    pub(super) fn process_keys(&self) -> Vec<ProcKey> {
        self.view
            .proc_order
            .iter()
            .filter_map(|l| match l.slot {
                Slot::Live(i) => self.processes().get(i).map(|p| p.key),
                Slot::Gone(k) => Some(k),
            })
            .collect()
    }

    /// Gone processes listed (the target excepted).
    pub fn gone_count(&self) -> usize {
        let target = self.model.target();
        self.view
            .gone
            .keys()
            .filter(|k| Some(**k) != target)
            .count()
    }

    /// Live processes other than the target (orphans included).
    fn live_descendants(&self) -> impl Iterator<Item = &'a ProcInfo> + '_ {
        let target = self.model.target();
        self.processes()
            .iter()
            .filter(move |p| Some(p.key) != target && self.exit_of(p).is_none())
    }

    /// The launched tree still has something alive (quitting asks first).
    pub fn tree_alive(&self) -> bool {
        self.target_exit().is_none() || self.live_descendants().next().is_some()
    }

    /// The agent connection, as the header names it (once the target exited, that is what
    /// it says, not "not found").
    pub fn agent_status(&self) -> AgentStatus {
        if self.target_exit().is_some()
            && !matches!(self.model.agent, Some(AgentState::Connected(_)))
        {
            return AgentStatus::TargetExited;
        }
        match &self.model.agent {
            None | Some(AgentState::Searching) => AgentStatus::Searching,
            Some(AgentState::Connected(what)) => AgentStatus::Connected(match &self.model.hello {
                Some(h) => format!(
                    "{} {} agent {}",
                    h.runtime.name, h.runtime.version, h.agent.version
                ),
                None => what.clone(),
            }),
            Some(AgentState::NotFound(why)) => AgentStatus::NotFound(why.clone()),
            Some(AgentState::Lost(why)) => AgentStatus::Lost(why.clone()),
        }
    }

    /// The agent's latest report, while its agent is not lost. A JVM's report (its thread
    /// dump, taken by the session: no agent ever said hello) is live whatever the search for
    /// an agent found.
    pub fn report(&self) -> Option<&'a Report> {
        match &self.model.agent {
            Some(AgentState::NotFound(_) | AgentState::Lost(_)) if self.model.hello.is_some() => {
                None
            }
            Some(AgentState::NotFound(_) | AgentState::Lost(_)) if self.model.facts.is_none() => {
                None
            }
            _ => self.model.report.as_deref(),
        }
    }

    /// The agent's latest report for the tasks panel: live while the agent is connected,
    /// else the last one received, kept and marked with why it is not live.
    pub fn last_report(&self) -> Option<(&'a Report, Option<StaleReport>)> {
        let report = self.model.report.as_deref()?;
        let age = |at: u64| {
            let ms = at.saturating_sub(self.model.report_at_ms.unwrap_or(at));
            format!("{:.1} s", ms as f64 / 1000.0)
        };
        let stale = match (&self.model.agent, self.model.target_exit()) {
            (Some(AgentState::Connected(_)), None) => None,
            (_, Some(exit)) => Some(format!(
                "target exited · last report, {} before the exit",
                age(exit.at_ms)
            )),
            (Some(AgentState::Lost(why)), None) => Some(format!(
                "agent lost ({why}) · last report, {} old",
                age(self.model.now.at_ms)
            )),
            (_, None) => Some(format!("last report, {} old", age(self.model.now.at_ms))),
        };
        Some((report, stale.map(StaleReport)))
    }

    pub fn plan(&self) -> Option<&'a Plan> {
        self.view.plan.as_ref()
    }

    pub fn timeline(&self) -> Option<&'a Timeline> {
        self.model.timeline.as_deref()
    }

    pub fn stacks(&self) -> &'a [Arc<StackSnapshot>] {
        &self.model.stacks
    }

    /// The stack snapshot the pane shows.
    pub fn viewed_stacks(&self) -> Option<&'a StackSnapshot> {
        self.model.stacks.get(self.view.stack_view).map(|s| &**s)
    }

    /// The last collector error (it stays until the end: the collector may have stopped).
    pub fn last_error(&self) -> Option<&'a str> {
        self.model.collector_errors.last().map(String::as_str)
    }

    /// Thread rows `range` of the display order (sorted, agent facts joined).
    pub fn thread_rows(&self, range: std::ops::Range<usize>) -> Vec<ThreadRow<'a>> {
        tables::thread_rows(
            self.threads(),
            self.model.facts.as_ref(),
            &self.view.thread_order,
            range,
        )
    }

    /// Tids of the thread rows the last frame drew, with `margin` rows either side (a scroll
    /// by a few rows finds them read); `None` when the last frame had no Threads panel.
    /// What the live dashboard asks the collector to read wait points and `stat` for.
    pub fn thread_tids_drawn(&self, margin: usize) -> Option<Vec<i32>> {
        let rows = self
            .view
            .geometry
            .panels
            .iter()
            .find(|p| p.panel == super::Panel::Threads)?
            .rows?;
        let start = rows.offset.saturating_sub(margin);
        let end = rows.offset + usize::from(rows.area.height) + margin;
        let rows = self.thread_rows(start..end);
        Some(rows.iter().map(|r| r.thread.tid).collect())
    }

    /// Tids in display order.
    pub fn ordered_tids(&self) -> Vec<i32> {
        let threads = self.threads();
        self.view
            .thread_order
            .iter()
            .filter_map(|&i| threads.get(i).map(|t| t.tid))
            .collect()
    }

    pub fn selected_thread_index(&self) -> Option<usize> {
        let tid = self.view.selected_tid?;
        let threads = self.threads();
        self.view
            .thread_order
            .iter()
            .position(|&i| threads.get(i).is_some_and(|t| t.tid == tid))
    }

    pub fn selected_process_index(&self) -> Option<usize> {
        let key = self.view.selected_pid?;
        self.process_keys().iter().position(|k| *k == key)
    }

    /// Non-daemon threads when the agent says so, else every thread (/proc cannot tell).
    pub fn threads_to_snapshot(&self) -> Vec<i32> {
        let threads = self.threads();
        match &self.model.facts {
            Some(f) => threads
                .iter()
                .filter(|t| f.thread(t.tid).is_none_or(|a| !a.daemon))
                .map(|t| t.tid)
                .collect(),
            None => threads.iter().map(|t| t.tid).collect(),
        }
    }

    /// Threads of the viewed stack snapshot that are stuck compared with the snapshot
    /// before it: no CPU progress, no wake-ups, the same wait point.
    pub fn stuck_since_previous(&self) -> Vec<i32> {
        use crate::stacks::stuck::{Observation, stuck_tids};
        let stacks = self.stacks();
        let view = self.view.stack_view;
        let (Some(prev), Some(cur)) = (
            view.checked_sub(1).and_then(|i| stacks.get(i)),
            stacks.get(view),
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
    pub fn agent_phase_gaps(&self) -> Vec<(String, String)> {
        use crate::teardown::plan::{Action, AgentRequest};
        let Some(plan) = self.plan() else {
            return Vec::new();
        };
        let connected = matches!(self.model.agent, Some(AgentState::Connected(_)));
        plan.phases
            .iter()
            .filter_map(|p| {
                let Action::Agent(req) = &p.action else {
                    return None;
                };
                let why = match (connected, &self.model.hello) {
                    (true, Some(h)) if !h.has(req.method()) => {
                        format!("the agent cannot {}", req.method())
                    }
                    (true, Some(h)) => match req {
                        AgentRequest::RunPhase(name)
                            if !h.phases.iter().any(|ph| &ph.name == name) =>
                        {
                            format!("the app registered no phase {name:?}")
                        }
                        _ => return None,
                    },
                    _ => "no agent".to_string(),
                };
                Some((p.name.clone(), why))
            })
            .collect()
    }

    /// The teardown panel's line about agent phases that cannot act now, by name.
    pub fn agent_phase_gaps_line(&self) -> Option<String> {
        super::status::gaps_line(&self.agent_phase_gaps())
    }

    /// Counts shown in the header (`exited`: the gone processes listed).
    pub fn counts(&self) -> Counts {
        Counts {
            threads: self.threads().len(),
            children: self.live_descendants().filter(|p| !p.orphan).count(),
            orphans: self.live_descendants().filter(|p| p.orphan).count(),
            exited: self.gone_count(),
        }
    }

    /// Leaving without a choice (a signal, the terminal gone, the plan run from the quit
    /// prompt done): the demo never outlives us, anything else is left alone.
    pub fn default_quit_choice(&self) -> Option<QuitChoice> {
        match self.mode() {
            Mode::Launch { demo: true } => Some(QuitChoice::KillTree),
            _ => None,
        }
    }
}
