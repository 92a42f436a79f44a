//! The tokio driver shared by the TUI and headless mode: owns an [`Engine`], feeds it the
//! inputs it is given (snapshots, agent facts, exits, commands) plus its own deadlines, carries
//! out its effects (signals through [`exec`](super::exec), agent requests through an
//! [`AgentPort`]) and reports [`PhaseEvent`]s. It never reads /proc itself: the caller forwards
//! what its collector sees, and answers `RefreshNow` / `SnapshotStacks`.

use super::engine::{Effect, Engine, Input};
use super::timeline::{PhaseRecord, Timeline};
use super::{AgentPort, AgentPortError, Command, Plan, exec};
use crate::model::{AgentFacts, ExitStatus, ProcKey, Snapshot};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the runner reports, in order (serializable: sessions record it).
// `Finished` carries its record unboxed so consumers' patterns stay as they are; a run sends
// a handful of these, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PhaseEvent {
    Started {
        index: usize,
        name: String,
    },
    Progress {
        index: Option<usize>,
        note: String,
    },
    /// A signal was sent (or refused). `late`: how long after its due time (escalations).
    Signal {
        key: ProcKey,
        sig: i32,
        name: String,
        result: Result<(), String>,
        late: Option<Duration>,
    },
    /// An exit reached the runner; `since_signal`: time since our last signal to it.
    ExitNoticed {
        key: ProcKey,
        status: ExitStatus,
        since_signal: Option<Duration>,
    },
    Finished(PhaseRecord),
    /// Please capture stacks (the runner has no stack capture of its own).
    SnapshotStacks {
        key: ProcKey,
        tids: Vec<i32>,
        reason: String,
    },
    /// Please refresh the collector now.
    RefreshNow,
    /// The timeline after a change (for the TUI panel).
    Timeline(Box<Timeline>),
    AllDone(Box<Timeline>),
}

enum Control {
    Command(Command),
    Snapshot(Arc<Snapshot>),
    Agent(Option<AgentFacts>),
    AgentExiting,
    Exited { key: ProcKey, status: ExitStatus },
    CaptureDone,
}

/// Cheap, cloneable way to feed a running [`Runner`].
#[derive(Clone)]
pub struct RunnerHandle {
    tx: mpsc::UnboundedSender<Control>,
}

impl RunnerHandle {
    pub fn command(&self, c: Command) {
        let _ = self.tx.send(Control::Command(c));
    }
    pub fn snapshot(&self, s: Arc<Snapshot>) {
        let _ = self.tx.send(Control::Snapshot(s));
    }
    pub fn agent_facts(&self, f: Option<AgentFacts>) {
        let _ = self.tx.send(Control::Agent(f));
    }
    /// The agent pushed `{"type":"exiting"}` (its interpreter is exiting): a connection that
    /// ends after this is the target's exit, not a failed phase.
    pub fn agent_exiting(&self) {
        let _ = self.tx.send(Control::AgentExiting);
    }
    pub fn exited(&self, key: ProcKey, status: ExitStatus) {
        let _ = self.tx.send(Control::Exited { key, status });
    }
    /// A capture asked by [`PhaseEvent::SnapshotStacks`] has ended (taken or failed).
    pub fn capture_done(&self) {
        let _ = self.tx.send(Control::CaptureDone);
    }
}

pub struct Runner {
    pub events: mpsc::UnboundedReceiver<PhaseEvent>,
    pub handle: RunnerHandle,
    /// Ends when every [`RunnerHandle`] is dropped; yields the final timeline.
    pub task: tokio::task::JoinHandle<Timeline>,
}

/// Starts the runner task (needs a tokio runtime). Nothing runs until a [`Command`] arrives.
pub fn spawn(
    plan: Plan,
    target: ProcKey,
    started_unix_ms: u64,
    agent: Option<Arc<dyn AgentPort>>,
) -> Runner {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let mut engine = Engine::new(plan, target, started_unix_ms);
    // Our own unreaped children are ours to reap, never the target's left-overs.
    if let Ok(pid) = i32::try_from(std::process::id()) {
        engine.set_own_pid(pid);
    }
    let task = tokio::spawn(drive(engine, rx, ev_tx, agent));
    Runner {
        events,
        handle: RunnerHandle { tx },
        task,
    }
}

async fn drive(
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Control>,
    ev: mpsc::UnboundedSender<PhaseEvent>,
    agent: Option<Arc<dyn AgentPort>>,
) -> Timeline {
    let t0 = Instant::now();
    let (reply_tx, mut replies) = mpsc::unbounded_channel::<(u64, Result<Value, AgentPortError>)>();
    let mut last_signal: HashMap<ProcKey, Instant> = HashMap::new();
    loop {
        let wake = engine
            .next_deadline()
            .map(|ms| t0 + Duration::from_millis(ms));
        let input = tokio::select! {
            biased;
            c = rx.recv() => match c {
                None => break,
                Some(Control::Command(c)) => Input::Command(c),
                Some(Control::Snapshot(s)) => Input::Snapshot(s),
                Some(Control::Agent(f)) => Input::Agent(f),
                Some(Control::AgentExiting) => Input::AgentExiting,
                Some(Control::CaptureDone) => Input::CaptureDone,
                Some(Control::Exited { key, status }) => {
                    let since_signal = last_signal.get(&key).map(|t| t.elapsed());
                    let _ = ev.send(PhaseEvent::ExitNoticed { key, status, since_signal });
                    Input::Exited { key, status }
                }
            },
            Some((run, result)) = replies.recv() => Input::AgentReply { run, result },
            _ = sleep_until(wake) => Input::Tick,
        };
        let tick = matches!(input, Input::Tick);
        let mut queue = VecDeque::from([input]);
        let mut changed = !tick;
        while let Some(input) = queue.pop_front() {
            let now = t0.elapsed().as_millis() as u64;
            for effect in engine.step(now, input) {
                changed = true;
                match effect {
                    Effect::Signal {
                        key,
                        sig,
                        name,
                        due_ms,
                    } => {
                        let result = exec::signal(key, sig).map_err(|e| e.to_string());
                        let sent = Instant::now();
                        last_signal.insert(key, sent);
                        let late = due_ms
                            .map(|d| sent.saturating_duration_since(t0 + Duration::from_millis(d)));
                        let _ = ev.send(PhaseEvent::Signal {
                            key,
                            sig,
                            name,
                            result: result.clone(),
                            late,
                        });
                        queue.push_back(Input::SignalResult { key, sig, result });
                    }
                    Effect::AgentRequest {
                        run,
                        method,
                        params,
                        timeout,
                        ..
                    } => match &agent {
                        Some(port) => {
                            let (port, tx) = (port.clone(), reply_tx.clone());
                            tokio::spawn(async move {
                                let r = port.request_typed(&method, params, timeout).await;
                                let _ = tx.send((run, r));
                            });
                        }
                        None => queue.push_back(Input::AgentReply {
                            run,
                            result: Err(AgentPortError::Gone("no agent client in this run".into())),
                        }),
                    },
                    Effect::SnapshotStacks { key, tids, reason } => {
                        let _ = ev.send(PhaseEvent::SnapshotStacks { key, tids, reason });
                    }
                    Effect::RefreshNow => {
                        let _ = ev.send(PhaseEvent::RefreshNow);
                    }
                    Effect::PhaseStarted { index, name } => {
                        let _ = ev.send(PhaseEvent::Started { index, name });
                    }
                    Effect::Note { index, text } => {
                        let _ = ev.send(PhaseEvent::Progress { index, note: text });
                    }
                    Effect::PhaseFinished(r) => {
                        let _ = ev.send(PhaseEvent::Finished(r));
                    }
                    Effect::AllDone => {
                        let _ = ev.send(PhaseEvent::AllDone(Box::new(engine.timeline().clone())));
                    }
                }
            }
        }
        if changed {
            let _ = ev.send(PhaseEvent::Timeline(Box::new(engine.timeline().clone())));
        }
    }
    engine.timeline().clone()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
