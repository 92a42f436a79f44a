//! The teardown state machine. Pure: it is fed inputs (snapshots, agent facts, exits, agent
//! replies, signal results, user commands) with the current time in milliseconds since the run
//! started, and answers with [`Effect`]s. It never sleeps, signals or does I/O, so every
//! decision (escalate now? phase done?) is unit-tested with a scripted clock. Starting and
//! judging phases lives in [`phases`].

mod phases;
pub mod reply;

use super::plan::Plan;
use super::signal_phase::SignalState;
use super::timeline::{
    Counts, ExitEvent, Outcome, PhaseRecord, RunningPhase, SignalEvent, Timeline,
};
use super::world::World;
use super::{AgentPortError, Command};
use crate::model::{AgentFacts, ExitStatus, ProcKey, Snapshot};
use serde_json::Value;
use std::time::Duration;

/// One thing that happened, fed to [`Engine::step`].
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passed (the runner calls this at [`Engine::next_deadline`]).
    Tick,
    /// A refresh, shared with every other consumer (never deep-copied per refresh).
    Snapshot(std::sync::Arc<Snapshot>),
    /// Latest agent facts; `None` when no agent is connected (or it was lost).
    Agent(Option<AgentFacts>),
    /// The agent pushed `{"type":"exiting"}`: the interpreter is exiting.
    AgentExiting,
    /// A stack capture asked by [`Effect::SnapshotStacks`] has ended.
    CaptureDone,
    Exited {
        key: ProcKey,
        status: ExitStatus,
    },
    /// The answer to [`Effect::AgentRequest`] `run`; a late one for an earlier run is ignored.
    AgentReply {
        run: u64,
        result: Result<Value, AgentPortError>,
    },
    SignalResult {
        key: ProcKey,
        sig: i32,
        result: Result<(), String>,
    },
    Command(Command),
}

/// What the engine asks the outside world to do (or tells it).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `sig` to `key` through its pidfd. `due_ms`: when it was due (escalations), for
    /// latency measurements.
    Signal {
        key: ProcKey,
        sig: i32,
        name: String,
        due_ms: Option<u64>,
    },
    AgentRequest {
        /// Tags this start of the phase: the reply must carry it back in [`Input::AgentReply`].
        run: u64,
        phase: usize,
        method: String,
        params: Value,
        timeout: Duration,
    },
    /// Capture stacks of these thread/process ids (stuck at a deadline, or an audit).
    SnapshotStacks {
        /// The process, by pid and start time, so a reused pid is never captured.
        key: ProcKey,
        tids: Vec<i32>,
        reason: String,
    },
    /// A fresh snapshot would help (phase boundaries).
    RefreshNow,
    PhaseStarted {
        index: usize,
        name: String,
    },
    Note {
        index: Option<usize>,
        text: String,
    },
    PhaseFinished(PhaseRecord),
    /// Every phase of the plan has run.
    AllDone,
}

pub(crate) struct Active {
    pub index: usize,
    /// Which start of a phase this is (each start gets a new number).
    pub run: u64,
    pub start_ms: u64,
    pub deadline_ms: u64,
    pub before: Counts,
    pub notes: Vec<String>,
    pub signals: Vec<SignalEvent>,
    pub exits: Vec<ExitEvent>,
    pub snapshots_at_start: u64,
    pub kind: Kind,
}

/// Exits kept in `Timeline::exits_outside` (the target's always; the oldest others go).
pub const MAX_EXITS_OUTSIDE: usize = 256;

/// How long a live target gets, after its agent's connection ended, to be seen exiting
/// before the phase fails (capped by the phase deadline).
pub const GONE_CONFIRM_MS: u64 = 1500;

/// The agent's connection ended before it answered: judged once the target is seen gone, or
/// alive at `confirm_ms` in a snapshot newer than `snapshots_at`.
#[derive(Debug, Clone)]
pub(crate) struct AgentGone {
    pub reason: String,
    pub at_ms: u64,
    pub confirm_ms: u64,
    pub snapshots_at: u64,
    /// `confirm_ms` passed before a fresh snapshot came: wake at the deadline, not again now.
    pub confirm_passed: bool,
}

pub(crate) enum Kind {
    Agent {
        replied: bool,
        /// A non-connection error (refused, timeout, other).
        error: Option<AgentPortError>,
        /// The connection ended before the answer.
        gone: Option<AgentGone>,
        /// What the reply's result says (set with `replied`).
        judgement: Option<reply::Judgement>,
        /// The raw result, kept in the record.
        result: Option<Box<Value>>,
    },
    Signal(SignalState),
    /// An agent phase started after the agent said its interpreter is exiting: no request
    /// is sent; the phase waits (until its deadline, cut to [`GONE_CONFIRM_MS`]) for the
    /// announced exit, then ends as "target exited", or is skipped if none came.
    AgentExiting,
    /// A signal phase for a target whose agent said it is exiting on its own: signalling now
    /// would cut its cleanup short (a SIGINT during `finally` blocks), so it gets until
    /// `until_ms` to exit before the escalation starts.
    ExitingOnItsOwn {
        signals: Vec<i32>,
        until_ms: u64,
    },
    Wait,
    Audit,
}

pub struct Engine {
    plan: Plan,
    world: World,
    timeline: Timeline,
    active: Option<Active>,
    next_index: usize,
    run_all: bool,
    all_done_sent: bool,
    /// Phase starts so far: the `run` of the next one.
    runs: u64,
    /// Stack captures asked and not ended yet: "run all" does not start the next phase
    /// (which may kill what is being captured) until they end or `captures_wait_until`.
    captures_pending: u32,
    captures_wait_until: u64,
}

/// How long "run all" waits for the captures a phase asked for before the next phase.
pub const CAPTURE_WAIT_MS: u64 = 5000;

impl Engine {
    /// The pid of lifecycle-top itself: its own unreaped children are never left-overs.
    pub fn set_own_pid(&mut self, pid: i32) {
        self.world.own_pid = Some(pid);
    }

    pub fn new(plan: Plan, target: ProcKey, started_unix_ms: u64) -> Self {
        let timeline = Timeline::new(&plan.name, target.pid, started_unix_ms);
        Self {
            plan,
            world: World::new(target),
            timeline,
            active: None,
            next_index: 0,
            run_all: false,
            all_done_sent: false,
            runs: 0,
            captures_pending: 0,
            captures_wait_until: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }
    pub fn world(&self) -> &World {
        &self.world
    }
    /// The index of the phase running now.
    pub fn running(&self) -> Option<usize> {
        self.active.as_ref().map(|a| a.index)
    }
    /// When the engine wants a [`Input::Tick`] next.
    pub fn next_deadline(&self) -> Option<u64> {
        let Some(a) = self.active.as_ref() else {
            return (self.run_all && self.captures_pending > 0).then_some(self.captures_wait_until);
        };
        Some(match &a.kind {
            Kind::Agent { gone: Some(g), .. } if !g.confirm_passed => {
                g.confirm_ms.min(a.deadline_ms)
            }
            _ => a.deadline_ms,
        })
    }
    /// No phase running and no "run all" pending.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && !self.run_all
    }

    pub fn step(&mut self, now: u64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Snapshot(s) => {
                for (key, status) in self.world.absorb(s) {
                    self.on_exit(now, key, status);
                }
            }
            Input::Agent(f) => {
                if let Some(f) = &f
                    && self.world.agent_exiting
                    && f.pid != self.world.exiting_agent_pid
                {
                    // Another process's agent: it is not the one exiting.
                    self.world.agent_exiting = false;
                }
                self.world.agent = f;
            }
            Input::AgentExiting => {
                self.world.agent_exiting = true;
                self.world.exiting_agent_pid = self.world.agent.as_ref().and_then(|a| a.pid);
            }
            Input::Exited { key, status } => self.on_exit(now, key, status),
            Input::CaptureDone => self.captures_pending = self.captures_pending.saturating_sub(1),
            Input::AgentReply { run, result } => self.on_reply(now, run, result, &mut out),
            Input::SignalResult { key, sig, result } => {
                self.on_signal_result(now, key, sig, result)
            }
            Input::Command(c) => self.on_command(now, c, &mut out),
        }
        self.advance(now, &mut out);
        self.timeline.running = self.active.as_ref().map(|a| RunningPhase {
            index: a.index,
            name: self.plan.phases[a.index].name.clone(),
            start_ms: a.start_ms,
            deadline_ms: a.deadline_ms,
            notes: a.notes.clone(),
        });
        out
    }

    fn on_exit(&mut self, now: u64, key: ProcKey, status: ExitStatus) {
        if self.world.exited.insert(key, status).is_some() {
            return;
        }
        self.world.forget_old_exits();
        let ev = ExitEvent {
            at_ms: now,
            pid: key.pid,
            name: self.world.name(key),
            status,
        };
        match &mut self.active {
            Some(a) => a.exits.push(ev),
            None => {
                // Outside any phase a churning tree exits all the time: keep the last ones
                // (the target's always), count the rest. The whole timeline is sent on each
                // change, so an unbounded list cost CPU and memory that grew with time.
                let outside = &mut self.timeline.exits_outside;
                if outside.len() >= MAX_EXITS_OUTSIDE {
                    let target = self.timeline.target_pid;
                    if let Some(i) = outside.iter().position(|x| x.pid != target) {
                        outside.remove(i);
                        self.timeline.exits_outside_dropped += 1;
                    }
                }
                outside.push(ev);
            }
        }
    }

    fn on_reply(
        &mut self,
        now: u64,
        run: u64,
        reply: Result<Value, AgentPortError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(a) = &mut self.active else { return };
        if a.run != run {
            return; // a late answer to an earlier run (aborted or timed out): not ours
        }
        let method = match &self.plan.phases[a.index].action {
            super::plan::Action::Agent(req) => req.method(),
            _ => return,
        };
        let deadline = a.deadline_ms;
        let Kind::Agent {
            replied,
            error,
            gone,
            judgement,
            result,
        } = &mut a.kind
        else {
            return;
        };
        match reply {
            Ok(v) => {
                *replied = true;
                let reading = reply::read(method, &v);
                self.world.main_resumed |= reading.main_resumes;
                if reading.target_exits {
                    self.world.exit_announced = true;
                    if !self.world.agent_exiting {
                        self.world.agent_exiting = true;
                        self.world.exiting_agent_pid =
                            self.world.agent.as_ref().and_then(|a| a.pid);
                    }
                }
                a.notes.push(reading.note);
                *judgement = Some(reading.judgement);
                *result = Some(Box::new(v));
            }
            Err(AgentPortError::Gone(reason)) => {
                // Not a verdict yet: the agent usually goes with its exiting target.
                a.notes.push(format!(
                    "{reason}; waiting to see whether the target is exiting"
                ));
                *gone = Some(AgentGone {
                    reason,
                    at_ms: now,
                    confirm_ms: now.saturating_add(GONE_CONFIRM_MS).min(deadline),
                    snapshots_at: self.world.snapshots_seen,
                    confirm_passed: false,
                });
                out.push(Effect::RefreshNow);
            }
            Err(e) => *error = Some(e),
        }
    }

    fn on_signal_result(&mut self, now: u64, key: ProcKey, sig: i32, result: Result<(), String>) {
        let name = self.world.name(key);
        let signal = super::plan::signal_name(sig);
        if sig == libc::SIGKILL && result.is_ok() {
            self.world.killed.entry(key).or_insert(now);
        }
        let ev = SignalEvent {
            at_ms: now,
            pid: key.pid,
            name,
            signal,
            error: result.err(),
        };
        if let Some(a) = &mut self.active {
            if let Some(e) = &ev.error {
                a.notes.push(format!(
                    "pid {} ({}): {} not sent: {e}",
                    ev.pid, ev.name, ev.signal
                ));
            }
            a.signals.push(ev);
        }
    }

    fn on_command(&mut self, now: u64, c: Command, out: &mut Vec<Effect>) {
        let busy = self
            .active
            .as_ref()
            .map(|a| self.plan.phases[a.index].name.clone());
        let note = |text: String| Effect::Note { index: None, text };
        match (c, busy) {
            (Command::RunNext | Command::RunPhase(_), Some(name)) => {
                out.push(note(format!(
                    "\"{name}\" is still running: wait, abort it or extend its timeout"
                )));
            }
            (Command::RunNext, None) if self.next_index >= self.plan.phases.len() => {
                out.push(note("every phase has run".into()));
            }
            (Command::RunNext, None) => self.start(now, self.next_index, out),
            (Command::RunPhase(i), None) if i >= self.plan.phases.len() => {
                out.push(note(format!("no phase {} in this plan", i + 1)));
            }
            (Command::RunPhase(i), None) => self.start(now, i, out),
            (Command::RunAll, _) => {
                self.run_all = true;
                self.all_done_sent = false;
            }
            (Command::Abort, Some(_)) => {
                self.run_all = false;
                self.finish(now, Outcome::Aborted, out);
            }
            (Command::Abort, None) => out.push(note("nothing is running".into())),
            (Command::ExtendTimeout(d), Some(_)) => {
                if let Some(a) = &mut self.active {
                    a.deadline_ms = a.deadline_ms.saturating_add(d.as_millis() as u64);
                    a.notes
                        .push(format!("timeout extended by {:.1} s", d.as_secs_f64()));
                }
            }
            (Command::ExtendTimeout(_), None) => out.push(note("nothing is running".into())),
        }
    }

    /// Finish the running phase when it is done, then start the next one under "run all".
    /// Counts the captures asked in `fx`: "run all" waits for them before the next phase.
    fn count_captures(&mut self, now: u64, fx: &[Effect]) {
        let n = fx
            .iter()
            .filter(|f| matches!(f, Effect::SnapshotStacks { .. }))
            .count() as u32;
        if n > 0 {
            self.captures_pending += n;
            self.captures_wait_until = now.saturating_add(CAPTURE_WAIT_MS);
        }
    }

    fn advance(&mut self, now: u64, out: &mut Vec<Effect>) {
        let mut counted = 0;
        loop {
            self.count_captures(now, &out[counted..]);
            counted = out.len();
            if let Some(mut a) = self.active.take() {
                let phase = self.plan.phases[a.index].clone();
                let done = self.evaluate(now, &phase, &mut a, out);
                self.active = Some(a);
                match done {
                    Some(outcome) => self.finish(now, outcome, out),
                    None => return,
                }
            } else if self.run_all && self.next_index < self.plan.phases.len() {
                if self.captures_pending > 0 && now < self.captures_wait_until {
                    return; // the stacks first: the next phase may kill what they show
                }
                self.captures_pending = 0;
                self.start(now, self.next_index, out);
            } else {
                if self.next_index >= self.plan.phases.len() && !self.all_done_sent {
                    self.all_done_sent = true;
                    self.run_all = false;
                    out.push(Effect::AllDone);
                }
                return;
            }
        }
    }

    fn finish(&mut self, now: u64, outcome: Outcome, out: &mut Vec<Effect>) {
        let Some(mut a) = self.active.take() else {
            return;
        };
        let phase = &self.plan.phases[a.index];
        let agent_result = match &mut a.kind {
            Kind::Agent { result, .. } => result.take(),
            _ => None,
        };
        let record = PhaseRecord {
            index: a.index,
            name: phase.name.clone(),
            key: phase.key,
            action: phase.action.describe(),
            start_ms: a.start_ms,
            end_ms: now,
            outcome,
            before: a.before,
            after: self.world.counts(),
            notes: a.notes,
            signals: a.signals,
            exits: a.exits,
            agent_result,
        };
        self.timeline.phases.push(record.clone());
        out.push(Effect::PhaseFinished(record));
    }
}
