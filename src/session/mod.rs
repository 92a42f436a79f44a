//! The session core: one [`Session`] owns the collector, the agent client, the teardown
//! runner and stack captures for one target, and emits one serializable, clock-stamped
//! [`CoreEvent`] stream. The TUI, headless, `check` and the recorder are thin consumers: they
//! fold the stream into a [`Model`] and send commands through a [`SessionHandle`]
//! (`snapshot` folds it and sends none). A replay
//! has a stream and no handle, so it cannot signal or talk to an agent.
//!
//! A JVM runs no agent: its thread dump (`crate::jvm`) stands in for one. The session takes
//! one when the target's threads change (at most once a second) and every 5 s, and emits it
//! as an agent report (`jvm::report`), so the daemon flags, the audits' non-daemon threads
//! and the wait-for graph come through the same facts as an agent's.
//!
//! Plan choice lives here (once): `--plan`, else `python-asyncio` when the agent says
//! Python or the target looks like Python, `node` likewise for Node.js, `jvm` for a JVM, else
//! `native`; re-picked while no phase has run.

mod capture;
mod event;
mod model;
pub mod recorder;
mod snapshot;
mod tree;

pub use capture::{AgentPortAdapter, capture_stacks};
pub use event::{
    AgentState, AttachInfo, Clock, CoreEvent, LaunchInfo, PlanInfo, Stamp, Stamped, SystemClock,
};
pub use model::{MAX_EXIT_EVENTS, MAX_EXITS, Model};
pub use recorder::{Depth, Playback, RecordSummary, Recorder};
pub use snapshot::{AgentSection, FullSnapshot, WatchEnd, agent_text, snapshot_with_agent, watch};
pub use tree::TreePids;

use crate::agent::{self, AgentEvent, protocol::ExitingMsg};
use crate::collect::{self, Collector, live::CollectEvent};
use crate::launch::{Started, TreeGuard};
use crate::model::{AgentFacts, ExitStatus, ProcKey, Snapshot};
use crate::stacks::{self, StackSnapshot};
use crate::teardown::{self, Command, PhaseEvent, Plan, Timeline, plan};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// How long the agent gets to answer a `task_stacks` request of a capture.
const TASK_STACKS_TIMEOUT: Duration = Duration::from_secs(2);

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub interval: Duration,
    /// `--plan`, loaded and validated by the caller.
    pub plan: Option<Plan>,
    /// Kill the launched tree when the session is dropped (demo, headless, check).
    pub guard_armed: bool,
    /// The command that was launched (for the record), empty when attached.
    pub cmd: Vec<String>,
    /// The agent was injected into the launched command.
    pub agent_injected: bool,
}

/// Without `--plan` and before an agent said otherwise: `python-asyncio` for a target that
/// looks like Python (its comm or argv[0]), `node` for Node.js (comm or argv[0] `node` or
/// `nodejs`), `jvm` for a JVM (`jvm::is_jvm`), `native` otherwise.
pub fn default_plan(snap: &Snapshot) -> Result<Plan, String> {
    plan::load(builtin_plan_for(snap, || {
        crate::jvm::is_jvm(snap.target.pid)
    }))
    .map_err(|e| e.to_string())
}

/// The name of [`default_plan`]'s pick, with the JVM test given (it reads the target's memory maps, long for a
/// process with many threads: the session asks it once per target name, not per refresh).
fn builtin_plan_for(snap: &Snapshot, is_jvm: impl FnOnce() -> bool) -> &'static str {
    let python = snap.target_info().is_some_and(|t| {
        t.name.starts_with("python") || t.cmdline.first().is_some_and(|c| c.contains("python"))
    });
    let node = !python && snap.target_info().is_some_and(is_node);
    let jvm = !python && !node && is_jvm();
    match (python, node, jvm) {
        (true, _, _) => "python-asyncio",
        (_, true, _) => "node",
        (_, _, true) => "jvm",
        _ => "native",
    }
}

/// A Node.js process: comm `node`/`nodejs`, or argv[0] whose file name is one of those.
pub fn is_node(p: &crate::model::ProcInfo) -> bool {
    let node_name = |n: &str| n == "node" || n == "nodejs";
    node_name(&p.name)
        || p.cmdline
            .first()
            .and_then(|c| c.rsplit('/').next())
            .is_some_and(node_name)
}

/// The plan's description for the event stream (replay parses `toml` again).
pub fn plan_info(p: &Plan) -> PlanInfo {
    let toml = match p.source.strip_prefix("builtin:") {
        Some(_) => String::new(),
        None => std::fs::read_to_string(&p.source).unwrap_or_default(),
    };
    PlanInfo {
        name: p.name.clone(),
        source: p.source.clone(),
        toml,
    }
}

/// Which pending asyncio tasks' await chains a capture includes (the agent's `task_stacks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskWant {
    None,
    /// Every pending task (up to [`stacks::tasks::TASK_LIMIT`]).
    All,
    Ids(Vec<u64>),
}

/// One stack capture asked of the session.
#[derive(Debug, Clone)]
pub struct CaptureAsk {
    pub key: ProcKey,
    /// Threads to capture (all when empty); `None`: no thread, only tasks.
    pub threads: Option<Vec<i32>>,
    pub tasks: TaskWant,
    pub seize: bool,
    pub reason: String,
}

enum Ctl {
    Teardown(Command),
    Capture(CaptureAsk),
    RefreshNow,
    SetInterval(Duration),
    ShowThreads(Vec<i32>),
    AgentRequest {
        method: String,
        params: Value,
        timeout: Duration,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    Flush(oneshot::Sender<()>),
}

/// Sends commands to a running session (cheap to clone). Only a live session has one: a
/// replay is a stream of events without it.
#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::UnboundedSender<Ctl>,
}

impl SessionHandle {
    /// A teardown command (run next / a phase / all, abort, extend the timeout).
    pub fn teardown(&self, c: Command) {
        let _ = self.tx.send(Ctl::Teardown(c));
    }
    /// Capture stacks of `tids` (all when empty) of the process `key`; the result arrives
    /// as [`CoreEvent::Stacks`] with `asked: true`.
    pub fn capture_stacks(&self, key: ProcKey, tids: Vec<i32>, seize: bool, reason: &str) {
        self.capture(CaptureAsk {
            key,
            threads: Some(tids),
            tasks: TaskWant::None,
            seize,
            reason: reason.to_string(),
        });
    }
    /// A capture of threads and/or pending tasks' await chains (asked of the agent); the
    /// result arrives as [`CoreEvent::Stacks`] with `asked: true`.
    pub fn capture(&self, ask: CaptureAsk) {
        let _ = self.tx.send(Ctl::Capture(ask));
    }
    pub fn refresh_now(&self) {
        let _ = self.tx.send(Ctl::RefreshNow);
    }
    pub fn set_interval(&self, d: Duration) {
        let _ = self.tx.send(Ctl::SetInterval(d));
    }
    /// The target's threads this consumer shows (the TUI: rows on screen): from now on the
    /// collector reads the costly wait points (`wchan`, `syscall`) of these only, plus the
    /// main thread's; the others' `ThreadInfo::wait` stay empty. Without this call (headless,
    /// `check`) every thread's is read. Cheap to call after every draw: repeats are dropped.
    pub fn show_threads(&self, tids: Vec<i32>) {
        let _ = self.tx.send(Ctl::ShowThreads(tids));
    }
    /// One agent request (e.g. `task_stacks`), answered or refused in words.
    pub async fn agent_request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Ctl::AgentRequest {
                method: method.to_string(),
                params,
                timeout,
                reply,
            })
            .map_err(|_| "the session has ended".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the session has ended".to_string()))
    }
    /// Resolves once every stack capture started so far has been reported.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Ctl::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// A running session. Dropping it stops it; an armed tree guard then kills the launched tree.
pub struct Session {
    pub events: mpsc::UnboundedReceiver<Stamped>,
    handle: SessionHandle,
    guard: Arc<TreeGuard>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts the session for a target the collector is attached to (needs a tokio
    /// runtime). The first events are `Attached`, then the first snapshot.
    pub fn start(
        started: &Started,
        collector: Collector,
        cfg: SessionConfig,
        clock: Arc<dyn Clock>,
    ) -> Session {
        let target = collector.target();
        let (out, events) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let guard = Arc::new(TreeGuard::new(
            cfg.guard_armed && started.launched.is_some(),
        ));
        let tree = TreePids::new(target);
        let live = collect::live::spawn(collector, cfg.interval);
        let agent = agent::spawn_client(target, tree.checker(), cfg.interval);
        let mut d = Driver {
            out,
            clock,
            seq: 0,
            target,
            tree,
            guard: guard.clone(),
            live,
            agent,
            explicit: cfg.plan.clone(),
            runner: None,
            plan_name: None,
            commanded: false,
            pending: Vec::new(),
            latest: None,
            facts: None,
            last_report: None,
            exiting: false,
            python: false,
            node: false,
            exits: Vec::new(),
            captures: JoinSet::new(),
            last_timeline: None,
            flush_waiters: Vec::new(),
            sys: crate::sysfig::SystemFigures::new(),
            probed: std::collections::HashMap::new(),
            limits: Vec::new(),
            shown: None,
            jvm_memo: None,
            jvm: JvmDumps::default(),
            jvm_dumps: JoinSet::new(),
        };
        d.emit(CoreEvent::Attached(AttachInfo {
            target,
            launched: started.launched.as_ref().map(|l| LaunchInfo {
                cmd: cfg.cmd.clone(),
                log_path: l.log_path.clone(),
            }),
            demo: started.demo,
            agent_injected: cfg.agent_injected,
        }));
        let task = tokio::spawn(d.run(rx));
        Session {
            events,
            handle: SessionHandle { tx },
            guard,
            task,
        }
    }

    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// SIGKILLs the launched tree (leaves first, then whatever was reparented to us);
    /// returns how many processes were killed. Blocks briefly (it reaps).
    pub fn kill_tree(&self) -> usize {
        self.guard.kill()
    }

    /// Leave the launched tree running when the session ends.
    pub fn disarm(&self) {
        self.guard.disarm();
    }

    /// The tree guard, for a consumer that must kill the tree from a signal handler path.
    pub fn guard(&self) -> Arc<TreeGuard> {
        self.guard.clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Driver {
    out: mpsc::UnboundedSender<Stamped>,
    clock: Arc<dyn Clock>,
    seq: u64,
    target: ProcKey,
    tree: TreePids,
    guard: Arc<TreeGuard>,
    live: collect::LiveCollector,
    agent: agent::AgentHandle,
    explicit: Option<Plan>,
    runner: Option<teardown::Runner>,
    plan_name: Option<String>,
    /// A teardown command was given: the plan is fixed from then on.
    commanded: bool,
    /// Commands given before the first snapshot (no runner yet).
    pending: Vec<Command>,
    latest: Option<Arc<Snapshot>>,
    facts: Option<AgentFacts>,
    /// The agent's last report (what each task awaits, for captured await chains).
    last_report: Option<Arc<crate::agent::protocol::Report>>,
    /// The agent said its interpreter is exiting.
    exiting: bool,
    /// The agent's hello says Python.
    python: bool,
    /// The agent said its runtime is Node.js.
    node: bool,
    exits: Vec<(ProcKey, ExitStatus)>,
    captures: JoinSet<(StackSnapshot, String, bool)>,
    last_timeline: Option<Arc<Timeline>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// The header's system figures (sysinfo, RAM and load only).
    sys: crate::sysfig::SystemFigures,
    /// Each live process probed once for missing rights (`access::limitation`).
    probed: std::collections::HashMap<ProcKey, Option<crate::access::Limitation>>,
    /// The limitations last emitted.
    limits: Vec<crate::access::Limitation>,
    /// The last [`SessionHandle::show_threads`] set, sorted.
    shown: Option<Vec<i32>>,
    /// Whether the target is a JVM, by the target's name when it was asked (an exec renames).
    jvm_memo: Option<(crate::model::SharedStr, bool)>,
    jvm: JvmDumps,
    /// The JVM thread dump under way (at most one), with the tids it was asked for.
    jvm_dumps: JoinSet<(Result<crate::jvm::Dump, String>, Vec<i32>)>,
}

/// When to take the next JVM thread dump.
#[derive(Default)]
struct JvmDumps {
    /// The target's tids at the last dump asked for, sorted.
    tids: Vec<i32>,
    last_at: Option<std::time::Instant>,
    seq: u64,
    /// The last report made from a dump (given again after the agent search resets facts).
    report: Option<Arc<agent::protocol::Report>>,
    /// The last failure said, so it is said once.
    said: Option<String>,
    failed_at: Option<std::time::Instant>,
}

/// At most one dump a second when threads come and go, one every 5 s otherwise; 5 s after a
/// failure (a JVM that refuses attach is not signalled again and again).
const JVM_DUMP_MIN: Duration = Duration::from_secs(1);
const JVM_DUMP_EVERY: Duration = Duration::from_secs(5);

impl Driver {
    fn emit(&mut self, event: CoreEvent) {
        self.seq += 1;
        let _ = self.out.send(Stamped {
            seq: self.seq,
            at: self.clock.now(),
            event,
        });
    }

    async fn run(mut self, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
        let mut collector_open = true;
        let mut agent_open = true;
        loop {
            tokio::select! {
                ev = self.live.events.recv(), if collector_open => match ev {
                    Some(ev) => self.on_collect(ev),
                    None => {
                        collector_open = false;
                        self.emit(CoreEvent::CollectorError {
                            message: "the collector stopped; see --log for why".into(),
                        });
                    }
                },
                ev = self.agent.events.recv(), if agent_open => match ev {
                    Some(ev) => self.on_agent(ev),
                    None => agent_open = false,
                },
                Some(pe) = next_phase_event(&mut self.runner) => self.on_phase(pe),
                Some(done) = self.jvm_dumps.join_next(), if !self.jvm_dumps.is_empty() => {
                    if let Ok((dump, tids)) = done {
                        self.on_jvm_dump(dump, &tids);
                    }
                }
                Some(done) = self.captures.join_next(), if !self.captures.is_empty() => {
                    if let Ok((snap, reason, asked)) = done {
                        if !asked && let Some(r) = &self.runner {
                            r.handle.capture_done();
                        }
                        self.emit(CoreEvent::Stacks { stacks: Arc::new(snap), reason, asked });
                    }
                    if self.captures.is_empty() {
                        for w in self.flush_waiters.drain(..) {
                            let _ = w.send(());
                        }
                    }
                }
                c = ctl.recv() => match c {
                    Some(c) => self.on_ctl(c),
                    None => return,
                },
            }
        }
    }

    fn on_collect(&mut self, ev: CollectEvent) {
        match ev {
            CollectEvent::Snapshot(mut s) => {
                s.system = self.sys.refresh(&s.system);
                self.probe_rights(&s);
                let snap: Arc<Snapshot> = Arc::from(s);
                self.tree.update(&snap);
                self.guard.update(&snap);
                self.latest = Some(snap.clone());
                self.repick_plan();
                self.maybe_dump_jvm(&snap);
                if let Some(r) = &self.runner {
                    // The engine keeps its own copy (its world outlives this refresh).
                    r.handle.snapshot(snap.clone());
                }
                self.emit(CoreEvent::Snapshot { snapshot: snap });
            }
            CollectEvent::Exited {
                key,
                status,
                at_unix_ms,
            } => {
                self.exits.push((key, status));
                // A new runner needs the target's exit and those of processes still listed;
                // under churn the rest would only grow (see `teardown::World::forget_old_exits`).
                if self.exits.len() > 2 * crate::teardown::world::MAX_EXITED {
                    let target = self.target;
                    let listed: std::collections::HashSet<ProcKey> = self
                        .latest
                        .iter()
                        .flat_map(|s| s.processes.iter().map(|p| p.key))
                        .collect();
                    self.exits
                        .retain(|(k, _)| *k == target || listed.contains(k));
                }
                if let Some(r) = &self.runner {
                    r.handle.exited(key, status);
                }
                self.emit(CoreEvent::Exited {
                    key,
                    status,
                    at_unix_ms,
                });
            }
            CollectEvent::Error(message) => self.emit(CoreEvent::CollectorError { message }),
        }
    }

    /// Probes new processes for missing rights (one open of /proc/PID/mem each, which
    /// never waits on the target) and emits the limitations when the set changed.
    fn probe_rights(&mut self, snap: &Snapshot) {
        let live: std::collections::HashSet<ProcKey> = snap
            .processes
            .iter()
            .filter(|p| p.exit.is_none())
            .map(|p| p.key)
            .collect();
        self.probed.retain(|k, _| live.contains(k));
        for key in live {
            self.probed
                .entry(key)
                .or_insert_with(|| crate::access::limitation(key.pid));
        }
        let mut limitations: Vec<_> = self.probed.values().flatten().cloned().collect();
        limitations.sort_by_key(|l| (l.pid != self.target.pid, l.pid));
        if limitations != self.limits {
            self.limits = limitations.clone();
            self.emit(CoreEvent::Limitations { limitations });
        }
    }

    fn on_agent(&mut self, ev: AgentEvent) {
        match ev {
            AgentEvent::Connected(hello) => {
                self.python = hello.runtime.name.to_ascii_lowercase().contains("python");
                self.node = hello.runtime.name == "node";
                self.exiting = false;
                let who = format!("{} {}", hello.runtime.name, hello.runtime.version);
                self.emit(CoreEvent::AgentHello {
                    hello: Box::new(hello),
                });
                self.emit(CoreEvent::AgentState {
                    state: AgentState::Connected(who),
                });
                self.repick_plan();
            }
            AgentEvent::Report(r) => {
                let mut facts = AgentFacts::from(r.as_ref());
                facts.exiting = self.exiting;
                self.set_facts(Some(facts));
                let report: Arc<crate::agent::protocol::Report> = Arc::from(r);
                self.last_report = Some(report.clone());
                self.emit(CoreEvent::AgentReport { report });
            }
            AgentEvent::Lost(why) => {
                self.set_facts(None);
                self.last_report = None;
                self.emit(CoreEvent::AgentState {
                    state: AgentState::Lost(why),
                });
                self.give_jvm_report_again();
            }
            AgentEvent::NotFound(why) => {
                self.set_facts(None);
                self.emit(CoreEvent::AgentState {
                    state: AgentState::NotFound(why),
                });
                self.give_jvm_report_again();
            }
            AgentEvent::Warning(warning) => self.emit(CoreEvent::AgentWarning { warning }),
            AgentEvent::Exiting(ExitingMsg {
                reason, abandoned, ..
            }) => {
                self.exiting = true;
                if let Some(mut f) = self.facts.clone() {
                    f.exiting = true;
                    self.set_facts(Some(f));
                }
                if let Some(r) = &self.runner {
                    r.handle.agent_exiting();
                }
                self.emit(CoreEvent::AgentExiting { reason, abandoned });
            }
        }
    }

    fn set_facts(&mut self, facts: Option<AgentFacts>) {
        if let Some(r) = &self.runner {
            r.handle.agent_facts(facts.clone());
        }
        self.facts = facts;
    }

    fn on_phase(&mut self, pe: PhaseEvent) {
        match pe {
            PhaseEvent::RefreshNow => self.live.refresh_now(),
            PhaseEvent::SnapshotStacks { key, tids, reason } => self.capture(
                CaptureAsk {
                    key,
                    threads: Some(tids),
                    tasks: TaskWant::None,
                    seize: false,
                    reason,
                },
                false,
            ),
            PhaseEvent::Timeline(t) => {
                if self.last_timeline.as_deref() != Some(&*t) {
                    let t: Arc<Timeline> = Arc::from(t);
                    self.last_timeline = Some(t.clone());
                    self.emit(CoreEvent::Timeline { timeline: t });
                }
            }
            PhaseEvent::AllDone(t) => {
                let t: Arc<Timeline> = Arc::from(t);
                self.last_timeline = Some(t.clone());
                self.emit(CoreEvent::PlanDone { timeline: t });
            }
            event => self.emit(CoreEvent::Phase { event }),
        }
    }

    fn on_ctl(&mut self, c: Ctl) {
        match c {
            Ctl::Teardown(c) => {
                self.commanded = true;
                match &self.runner {
                    Some(r) => r.handle.command(c),
                    None => self.pending.push(c),
                }
            }
            Ctl::Capture(ask) => self.capture(ask, true),
            Ctl::RefreshNow => self.live.refresh_now(),
            Ctl::SetInterval(d) => self.live.set_interval(d),
            Ctl::ShowThreads(mut tids) => {
                tids.sort_unstable();
                tids.dedup();
                if self.shown.as_ref() != Some(&tids) {
                    let set = tids.iter().copied().collect();
                    self.shown = Some(tids);
                    self.live.set_wait_demand(collect::WaitDemand::Tids(set));
                }
            }
            Ctl::AgentRequest {
                method,
                params,
                timeout,
                reply,
            } => {
                let requester = self.agent.requester();
                tokio::spawn(async move {
                    let r = requester
                        .request(&method, params, timeout)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = reply.send(r);
                });
            }
            Ctl::Flush(w) => {
                if self.captures.is_empty() {
                    let _ = w.send(());
                } else {
                    self.flush_waiters.push(w);
                }
            }
        }
    }

    fn capture(&mut self, ask: CaptureAsk, asked: bool) {
        let CaptureAsk {
            key,
            threads,
            tasks,
            seize,
            reason,
        } = ask;
        self.emit(CoreEvent::StacksRequested {
            key,
            tids: threads.clone().unwrap_or_default(),
            reason: reason.clone(),
            asked,
        });
        let requester = self.agent.requester();
        let jvm = if key == self.target {
            self.jvm_memo.as_ref().is_some_and(|(_, j)| *j)
        } else {
            crate::jvm::is_jvm(key.pid)
        };
        let report = self.last_report.clone();
        let now_ms = self.clock.now().unix_ms;
        self.captures.spawn(async move {
            let started = std::time::Instant::now();
            let threads = async {
                match threads {
                    Some(tids) => {
                        Some(capture_stacks(key, tids, Some(requester.clone()), seize, jvm).await)
                    }
                    None => None,
                }
            };
            let chains = task_chains(&requester, &tasks, report.as_deref());
            let (snap, chains) = tokio::join!(threads, chains);
            let mut snap = snap.unwrap_or_else(|| StackSnapshot {
                pid: key.pid,
                taken_at_unix_ms: now_ms,
                capture_us: started.elapsed().as_micros() as u64,
                threads: Vec::new(),
                errors: Vec::new(),
                tasks: Vec::new(),
            });
            match chains {
                Some(Ok(t)) => snap.tasks = t,
                Some(Err(message)) => snap.errors.push(stacks::SourceError {
                    source: stacks::SourceKind::AgentPython,
                    message,
                }),
                None => {}
            }
            (snap, reason, asked)
        });
    }

    /// Is the target a JVM (asked once per target name: an exec renames).
    fn target_is_jvm(&mut self, snap: &Snapshot) -> bool {
        let name = snap
            .target_info()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        match &self.jvm_memo {
            Some((n, jvm)) if *n == name => *jvm,
            _ => {
                let jvm = crate::jvm::is_jvm(snap.target.pid);
                self.jvm_memo = Some((name, jvm));
                jvm
            }
        }
    }

    /// Starts a JVM thread dump when the target is a live JVM with no agent of its own and
    /// its threads changed (or the last dump is old).
    fn maybe_dump_jvm(&mut self, snap: &Snapshot) {
        if self.python || self.node || !self.jvm_dumps.is_empty() {
            return;
        }
        let live = snap.target_info().is_some_and(|t| {
            t.exit.is_none()
                && !matches!(
                    t.state,
                    crate::model::RunState::Zombie | crate::model::RunState::Dead
                )
        });
        if !live || snap.threads.is_empty() || !self.target_is_jvm(snap) {
            return;
        }
        let mut tids: Vec<i32> = snap.threads.iter().map(|t| t.tid).collect();
        tids.sort_unstable();
        let since = |t: Option<std::time::Instant>| t.map(|t| t.elapsed());
        if since(self.jvm.failed_at).is_some_and(|d| d < JVM_DUMP_EVERY) {
            return;
        }
        let due = match since(self.jvm.last_at) {
            None => true,
            Some(d) => d >= JVM_DUMP_EVERY || (d >= JVM_DUMP_MIN && tids != self.jvm.tids),
        };
        if !due {
            return;
        }
        self.jvm.tids = tids.clone();
        self.jvm.last_at = Some(std::time::Instant::now());
        let pid = snap.target.pid;
        self.jvm_dumps.spawn(async move {
            let dump = tokio::task::spawn_blocking(move || crate::jvm::thread_dump(pid))
                .await
                .unwrap_or_else(|e| Err(format!("jvm: the thread dump crashed: {e}")));
            (dump, tids)
        });
    }

    fn on_jvm_dump(&mut self, dump: Result<crate::jvm::Dump, String>, tids: &[i32]) {
        match dump {
            Ok(d) => {
                self.jvm.failed_at = None;
                self.jvm.seq += 1;
                let report = crate::jvm::report::to_report(
                    &d.dump,
                    self.target.pid,
                    tids,
                    self.jvm.seq,
                    self.clock.now().unix_ms,
                );
                let report = Arc::new(report);
                self.jvm.report = Some(report.clone());
                self.give_jvm_report(report);
            }
            Err(message) => {
                self.jvm.failed_at = Some(std::time::Instant::now());
                if self.jvm.said.as_ref() != Some(&message) {
                    self.jvm.said = Some(message.clone());
                    self.emit(CoreEvent::Notice { message });
                }
            }
        }
    }

    /// The JVM's report as the agent's: facts for the engine, a report event for the Model.
    fn give_jvm_report(&mut self, report: Arc<agent::protocol::Report>) {
        if self.python || self.node {
            return;
        }
        self.set_facts(Some(AgentFacts::from(report.as_ref())));
        self.emit(CoreEvent::AgentReport { report });
    }

    fn give_jvm_report_again(&mut self) {
        if let Some(r) = self.jvm.report.clone() {
            self.give_jvm_report(r);
        }
    }

    /// (Re-)picks the plan while no teardown command was given, and starts its runner fed
    /// with everything known so far.
    fn repick_plan(&mut self) {
        if self.commanded && self.runner.is_some() {
            return;
        }
        let Some(snap) = self.latest.clone() else {
            return;
        };
        // Decided by name first: a built-in plan is parsed only when the pick changes (this
        // runs at every refresh).
        let builtin = match &self.explicit {
            Some(_) => None,
            None if self.python => Some("python-asyncio"),
            None if self.node => Some("node"),
            None => {
                let name = snap
                    .target_info()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                let memo = &mut self.jvm_memo;
                Some(builtin_plan_for(&snap, || match memo {
                    Some((n, jvm)) if *n == name => *jvm,
                    _ => {
                        let jvm = crate::jvm::is_jvm(snap.target.pid);
                        *memo = Some((name, jvm));
                        jvm
                    }
                }))
            }
        };
        let unchanged = match (builtin, &self.explicit) {
            (Some(name), _) => self.plan_name.as_deref() == Some(name),
            (None, Some(p)) => self.plan_name.as_deref() == Some(p.name.as_str()),
            (None, None) => true,
        };
        if unchanged {
            return;
        }
        let wanted = match (builtin, &self.explicit) {
            (Some(name), _) => plan::load(name).map_err(|e| e.to_string()),
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => return,
        };
        let p = match wanted {
            Ok(p) => p,
            Err(message) => {
                if self.plan_name.is_none() {
                    self.plan_name = Some(String::new());
                    self.emit(CoreEvent::Notice { message });
                }
                return;
            }
        };
        if self.plan_name.as_deref() == Some(p.name.as_str()) {
            return;
        }
        self.plan_name = Some(p.name.clone());
        let info = plan_info(&p);
        let port: Arc<dyn teardown::AgentPort> = Arc::new(AgentPortAdapter(self.agent.requester()));
        let r = teardown::runner::spawn(p, self.target, self.clock.now().unix_ms, Some(port));
        r.handle.snapshot(snap.clone());
        r.handle.agent_facts(self.facts.clone());
        if self.exiting {
            r.handle.agent_exiting();
        }
        for (key, status) in &self.exits {
            r.handle.exited(*key, *status);
        }
        for c in self.pending.drain(..) {
            r.handle.command(c);
        }
        self.runner = Some(r);
        self.last_timeline = None;
        self.emit(CoreEvent::Plan { plan: info });
    }
}

/// The await chains `want` asks for, from the agent (`None`: none asked).
async fn task_chains(
    agent: &crate::agent::AgentRequester,
    want: &TaskWant,
    report: Option<&crate::agent::protocol::Report>,
) -> Option<Result<Vec<stacks::tasks::TaskStack>, String>> {
    let ids = match want {
        TaskWant::None => return None,
        TaskWant::All => Vec::new(),
        TaskWant::Ids(ids) => ids.clone(),
    };
    let params = stacks::tasks::request_params(&ids);
    Some(
        match agent
            .request("task_stacks", params, TASK_STACKS_TIMEOUT)
            .await
        {
            Ok(v) => stacks::tasks::from_agent(&v, report),
            Err(e) => Err(format!("no await chains from the agent: {e}")),
        },
    )
}

async fn next_phase_event(runner: &mut Option<teardown::Runner>) -> Option<PhaseEvent> {
    match runner {
        Some(r) => r.events.recv().await,
        None => std::future::pending().await,
    }
}
