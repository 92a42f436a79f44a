//! What the TUI does with commands and runner events: the teardown runner's life (plan
//! choice, feeding it, its events), stack captures and writing them out. Kept apart from the
//! event loop in `mod.rs` so that file stays a plain `select!`.

use crate::agent;
use crate::collect;
use crate::model::Snapshot;
use crate::session as wiring;
use crate::stacks::StackSnapshot;
use crate::state::{Action, AppState, Command, Event};
use crate::teardown::{self, PhaseEvent, Plan, plan};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The TUI's teardown runner. It starts at the first snapshot. Without `--plan` the default
/// plan follows what the target turns out to be until a phase has run: a launched command
/// may go through wrappers before it execs Python, and an agent hello proves Python.
pub struct TeardownSlot {
    explicit: Option<Plan>,
    runner: Option<teardown::Runner>,
    plan_name: Option<String>,
    started: bool,
}

impl TeardownSlot {
    pub fn new(explicit: Option<Plan>) -> Self {
        Self {
            explicit,
            runner: None,
            plan_name: None,
            started: false,
        }
    }

    pub fn runner(&self) -> Option<&teardown::Runner> {
        self.runner.as_ref()
    }

    /// Picks (or re-picks) the plan and feeds the snapshot to the runner.
    pub fn on_snapshot(
        &mut self,
        state: &mut AppState,
        snap: &Snapshot,
        agent: &agent::AgentHandle,
    ) {
        if !self.started {
            let wanted = match &self.explicit {
                Some(p) => Ok(p.clone()),
                None if agent_says_python(state) => {
                    plan::load("python-asyncio").map_err(|e| e.to_string())
                }
                None => crate::session::default_plan(snap),
            };
            match wanted {
                Ok(p) if self.plan_name.as_deref() != Some(p.name.as_str()) => {
                    self.plan_name = Some(p.name.clone());
                    state.apply(Event::Plan(Box::new(p.clone())));
                    let port: Arc<dyn teardown::AgentPort> =
                        Arc::new(wiring::AgentPortAdapter(agent.requester()));
                    self.runner = Some(teardown::runner::spawn(
                        p,
                        snap.target,
                        collect::exits::now_unix_ms(),
                        Some(port),
                    ));
                }
                Ok(_) => {}
                Err(e) => state.apply(Event::CollectError(e)),
            }
        }
        if let Some(r) = &self.runner {
            r.handle.snapshot(Box::new(snap.clone()));
        }
    }

    pub fn command(&mut self, c: teardown::Command) -> bool {
        match &self.runner {
            Some(r) => {
                self.started = true;
                r.handle.command(c);
                true
            }
            None => false,
        }
    }

    pub async fn next_event(&mut self) -> Option<PhaseEvent> {
        match &mut self.runner {
            Some(r) => r.events.recv().await,
            None => std::future::pending().await,
        }
    }
}

fn agent_says_python(state: &AppState) -> bool {
    state
        .agent_hello
        .as_ref()
        .is_some_and(|h| h.runtime.name.to_ascii_lowercase().contains("python"))
}

/// How much `+` extends the running phase's timeout (like systemd's EXTEND_TIMEOUT_USEC).
const EXTEND_BY: Duration = Duration::from_secs(5);

/// Folds a runner event into the state and answers its requests. Returns true when the
/// app should quit (the plan the user asked to run before quitting is done).
pub fn on_phase_event(
    state: &mut AppState,
    pe: PhaseEvent,
    live: &collect::LiveCollector,
    agent: &agent::AgentHandle,
    stacks_tx: &mpsc::Sender<(StackSnapshot, bool)>,
) -> bool {
    match pe {
        PhaseEvent::Timeline(t) => state.apply(Event::Timeline(t)),
        PhaseEvent::AllDone(t) => {
            state.apply(Event::Timeline(t));
            state.apply(Event::Status("teardown plan finished".into()));
            return state.quit_after_plan;
        }
        PhaseEvent::Started { index, name } => {
            state.apply(Event::Status(format!("phase {} {name} started", index + 1)));
        }
        PhaseEvent::Finished(rec) => {
            state.apply(Event::Status(crate::report::summary::finished(&rec)));
        }
        PhaseEvent::Progress { note, .. } => state.apply(Event::Status(note)),
        PhaseEvent::Signal { .. } | PhaseEvent::ExitNoticed { .. } => {}
        PhaseEvent::SnapshotStacks { key, tids, reason } => {
            state.apply(Event::Status(format!("capturing stacks: {reason}")));
            spawn_capture(key, tids, false, agent, stacks_tx);
        }
        PhaseEvent::RefreshNow => live.refresh_now(),
    }
    false
}

pub fn spawn_capture(
    key: crate::model::ProcKey,
    tids: Vec<i32>,
    asked: bool,
    agent: &agent::AgentHandle,
    stacks_tx: &mpsc::Sender<(StackSnapshot, bool)>,
) {
    let requester = agent.requester();
    let tx = stacks_tx.clone();
    tokio::spawn(async move {
        let snap = wiring::capture_stacks(key, tids, Some(requester), false).await;
        let _ = tx.send((snap, asked)).await;
    });
}

pub fn dispatch(
    state: &mut AppState,
    cmd: Command,
    teardown: &mut TeardownSlot,
    agent: &agent::AgentHandle,
    stacks_tx: &mpsc::Sender<(StackSnapshot, bool)>,
) {
    match cmd {
        Command::Quit(_) => {}
        Command::Teardown(action) => {
            let c = match action {
                Action::NextPhase => teardown::Command::RunNext,
                Action::RunPhase(i) => teardown::Command::RunPhase(i),
                Action::RunAll => teardown::Command::RunAll,
                Action::AbortPhase => teardown::Command::Abort,
                Action::ExtendTimeout => teardown::Command::ExtendTimeout(EXTEND_BY),
                _ => return,
            };
            if !teardown.command(c) {
                state.apply(Event::Status("the teardown plan is not loaded yet".into()));
            }
        }
        Command::CaptureStacks(tids) => {
            if state.target_exit.is_some() {
                state.apply(Event::Status(
                    "the target has exited: no stacks to take".into(),
                ));
                return;
            }
            state.apply(Event::Status(format!(
                "capturing stacks of {} thread(s)",
                tids.len()
            )));
            let Some(target) = state.snapshot.as_ref().map(|s| s.target) else {
                return;
            };
            spawn_capture(target, tids, true, agent, stacks_tx);
        }
        Command::WriteStacks => {
            let msg = match state.stacks.get(state.stack_view) {
                Some(snap) => match write_stacks(snap) {
                    Ok(path) => format!("stacks written to {}", path.display()),
                    Err(e) => format!("cannot write stacks: {e:#}"),
                },
                None => "no stack snapshot yet: press s or S first".into(),
            };
            state.apply(Event::Status(msg));
        }
    }
}

/// Writes a stack snapshot as text and JSON next to each other, in the current directory
/// when writable, else in the private runtime directory.
fn write_stacks(snap: &StackSnapshot) -> Result<PathBuf> {
    let name = format!(
        "lifecycle-top-stacks-{}-{}",
        snap.pid, snap.taken_at_unix_ms
    );
    let mut text = Vec::new();
    crate::stacks::cli::write_text(snap, &mut text)?;
    let json = serde_json::to_vec_pretty(snap)?;
    let here = PathBuf::from(format!("{name}.txt"));
    let dir = match std::fs::write(&here, &text) {
        Ok(()) => PathBuf::from("."),
        Err(_) => {
            let dir = crate::launch::runtime_dir()?;
            std::fs::write(dir.join(format!("{name}.txt")), &text)?;
            dir
        }
    };
    std::fs::write(dir.join(format!("{name}.json")), json)?;
    Ok(dir.join(format!("{name}.txt")))
}
