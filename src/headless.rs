//! Headless mode (`--headless`): a printer over a [`Session`]. It waits for the agent (and,
//! for a launched command, for the tree to settle), runs the whole plan, prints a readable
//! summary as phases finish, writes `--report` / `--trace`, and maps the verdict to an exit
//! code: 0 clean, 1 something lingered or needed SIGKILL, 2 usage/attach error.

use crate::cli::RunConfig;
use crate::collect::Collector;
use crate::launch::Started;
use crate::model::ProcKey;
use crate::report::{self, Report, summary};
use crate::session::{
    AgentState, CoreEvent, Model, Recorder, Session, SessionConfig, SessionHandle, Stamped,
    SystemClock,
};
use crate::teardown::plan::{self, Plan};
use crate::teardown::{Command, Timeline};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long a launched command with the agent injected gets to connect (the interpreter
/// must start first), and how long an attached process gets.
const AGENT_WAIT_LAUNCHED: Duration = Duration::from_secs(5);
const AGENT_WAIT_ATTACHED: Duration = Duration::from_millis(1500);
/// A launched command is still forking its children: at most this long for two snapshots in
/// a row to list the same processes.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

/// Entry point used by `main` for `--headless`.
pub fn run(cfg: &RunConfig) -> ExitCode {
    match prepare(cfg.plan.as_deref(), &cfg.target, cfg.inject_agent) {
        Ok((started, collector, plan)) => block_on(drive(cfg, started, collector, plan)),
        Err(msg) => usage(&msg),
    }
}

/// A usage or attach error: one line, exit code 2.
pub(crate) fn usage(msg: &str) -> ExitCode {
    eprintln!("lifecycle-top: {msg}");
    ExitCode::from(2)
}

/// Runs a headless-style driver on a one-thread runtime.
pub(crate) fn block_on(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r.block_on(fut),
        Err(e) => usage(&format!("cannot start the async runtime: {e}")),
    }
}

/// Everything that can fail with exit code 2, before anything is signalled: the plan, the
/// target (attached or launched) and the collector. Shared by headless and `check`.
pub(crate) fn prepare(
    plan: Option<&str>,
    target: &crate::cli::Target,
    inject_agent: bool,
) -> Result<(Started, Collector, Option<Plan>), String> {
    let plan = match plan {
        Some(p) => Some(plan::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let started =
        crate::launch::start_target(target, inject_agent).map_err(|e| format!("{e:#}"))?;
    let collector = crate::launch::attach_collector(&started).map_err(|e| format!("{e:#}"))?;
    Ok((started, collector, plan))
}

/// Signals that interrupt a run (Ctrl-C, a CI timeout's SIGTERM).
pub struct Interrupts {
    int: Option<Signal>,
    term: Option<Signal>,
}

impl Interrupts {
    pub fn install() -> Self {
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }
    pub async fn recv(&mut self) {
        match (&mut self.int, &mut self.term) {
            (Some(a), Some(b)) => {
                tokio::select! {
                    _ = a.recv() => {}
                    _ = b.recv() => {}
                }
            }
            (Some(a), None) | (None, Some(a)) => {
                a.recv().await;
            }
            (None, None) => std::future::pending().await,
        }
    }
}

/// When the plan may start: the agent question is settled (or its wait ran out) and a
/// launched tree has settled (or its wait ran out).
pub(crate) struct Readiness {
    expect_agent: bool,
    launched: bool,
    agent_deadline_ms: u64,
    agent_decided_ms: Option<u64>,
    /// Snapshots seen when the agent question was settled: the tree settles after it.
    snapshots_at_decision: u64,
}

impl Readiness {
    pub(crate) fn new(expect_agent: bool, launched: bool) -> Self {
        let wait = if expect_agent {
            AGENT_WAIT_LAUNCHED
        } else {
            AGENT_WAIT_ATTACHED
        };
        Self {
            expect_agent,
            launched,
            agent_deadline_ms: wait.as_millis() as u64,
            agent_decided_ms: None,
            snapshots_at_decision: 0,
        }
    }

    /// Lines to print, and whether the plan may start now (`now_ms` since the run started).
    pub(crate) fn check(&mut self, m: &Model, now_ms: u64, out: &mut Vec<String>) -> bool {
        if self.agent_decided_ms.is_none() {
            let lost = match &m.agent {
                Some(AgentState::NotFound(w)) | Some(AgentState::Lost(w)) => Some(w.clone()),
                _ => None,
            };
            if m.report.is_some() {
                self.agent_decided_ms = Some(now_ms);
            } else if let (Some(why), false) = (lost, self.expect_agent) {
                out.push(format!("no agent: {why} (agent phases will be skipped)"));
                self.agent_decided_ms = Some(now_ms);
            } else if now_ms >= self.agent_deadline_ms {
                out.push("no agent answered (agent phases will be skipped)".into());
                self.agent_decided_ms = Some(now_ms);
            }
        }
        let Some(decided) = self.agent_decided_ms else {
            return false;
        };
        if self.snapshots_at_decision == 0 {
            self.snapshots_at_decision = m.snapshots.max(1);
        }
        // Two snapshots after the agent answered list the same processes (a launched
        // command is still forking its children before that) and show it idle (still
        // importing or starting up, it burns CPU), and two reports in a row have the same
        // threads, tasks and loops (it is still creating its tasks before that). A program
        // that is never idle starts after SETTLE_WAIT.
        let agent_settled = m.report.is_none() || m.same_report_in_a_row >= 2;
        let settled = !self.launched
            || (m.tree_settled()
                && m.tree_quiet()
                && m.snapshots >= self.snapshots_at_decision + 2
                && agent_settled)
            || now_ms >= decided + SETTLE_WAIT.as_millis() as u64;
        settled && m.plan.is_some() && m.snapshot.is_some()
    }

    /// The agent answered, or its wait ran out.
    pub(crate) fn agent_decided(&self) -> bool {
        self.agent_decided_ms.is_some()
    }

    /// When to look again if no event comes.
    pub(crate) fn next_check_ms(&self) -> u64 {
        match self.agent_decided_ms {
            None => self.agent_deadline_ms,
            Some(d) => d + SETTLE_WAIT.as_millis() as u64,
        }
    }
}

async fn drive(
    cfg: &RunConfig,
    started: Started,
    collector: Collector,
    plan: Option<Plan>,
) -> ExitCode {
    // Installed first: a Ctrl-C or a CI timeout's SIGTERM at any point still ends with a
    // report and an exit code, never with the default signal death.
    let mut interrupts = Interrupts::install();
    let launched = started.launched.is_some();
    let target = collector.target();
    let started_ms = crate::collect::exits::now_unix_ms();
    let expect_agent = launched && cfg.inject_agent;
    // A tree headless launched (the demo, `-- CMD`) never outlives the run, however it ends:
    // what the plan left is in the report, then killed (the armed guard, when the session
    // is dropped). An attached tree is never touched beyond the plan.
    let mut session = Session::start(
        &started,
        collector,
        SessionConfig {
            interval: cfg.interval,
            plan,
            guard_armed: true,
            cmd: match &cfg.target {
                crate::cli::Target::Launch(c) => c.clone(),
                _ => Vec::new(),
            },
            agent_injected: expect_agent,
        },
        Arc::new(SystemClock::new()),
    );
    let handle = session.handle();
    // Recording never fails the run: a file that cannot be created is one line, no more.
    let (mut rec, why) = Recorder::create_or_say(cfg.record.as_deref());
    if let Some(why) = why {
        eprintln!("lifecycle-top: {why}");
    }
    println!(
        "lifecycle-top: attached to pid {}; waiting for the agent{} before the plan starts",
        target.pid,
        if launched {
            " and the tree to settle"
        } else {
            ""
        }
    );
    let mut model = Model::new();
    let mut ready = Readiness::new(expect_agent, launched);
    let mut lines = Vec::new();
    let t0 = std::time::Instant::now();
    let elapsed_ms = || u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Before the plan: wait for the agent and the tree.
    let plan = loop {
        let wait = Duration::from_millis(ready.next_check_ms().saturating_sub(elapsed_ms()));
        tokio::select! {
            ev = session.events.recv() => {
                let Some(ev) = ev else { return usage("the session stopped before the plan started") };
                fold(&mut model, &mut rec, &ev);
                print_waiting(&ev);
            }
            _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            _ = interrupts.recv() => {
                println!("interrupted before the plan started: nothing was torn down");
                close_recording(rec);
                return interrupted_early(cfg, target, started_ms);
            }
        }
        lines.clear();
        if ready.check(&model, elapsed_ms(), &mut lines) {
            for l in &lines {
                println!("{l}");
            }
            let info = model.plan.clone();
            match info.map(|i| i.load()) {
                Some(Ok(p)) => break p,
                Some(Err(e)) => return usage(&e),
                None => continue,
            }
        }
        for l in &lines {
            println!("{l}");
        }
    };
    let info = model
        .snapshot
        .as_ref()
        .and_then(|s| s.target_info().cloned());
    let target_info = report::json::TargetInfo {
        pid: target.pid,
        name: info
            .as_ref()
            .map(|i| i.name.to_string())
            .unwrap_or_default(),
        cmdline: info.map(|i| i.cmdline).unwrap_or_default(),
    };
    println!(
        "lifecycle-top: teardown of pid {} ({}) with plan {} [{} phases]{}",
        target.pid,
        target_info.name,
        plan.name,
        plan.phases.len(),
        if launched { " (launched)" } else { "" }
    );
    handle.teardown(Command::RunAll);
    let timeline = run_plan(
        &mut session,
        &handle,
        &mut model,
        &mut rec,
        &plan,
        &mut interrupts,
    )
    .await;
    let Some(timeline) = timeline else {
        close_recording(rec);
        return usage("the teardown runner stopped unexpectedly");
    };
    drain_after_flush(&mut session, &handle, &mut model, &mut rec).await;
    let timeline = with_late_target_exit(timeline, &mut session, &mut model, &mut rec).await;
    let stacks: Vec<_> = model.stacks.iter().map(|s| s.as_ref().clone()).collect();
    for s in &stacks {
        let mut out = Vec::new();
        if crate::stacks::cli::write_text(s, &mut out).is_ok() {
            print!("{}", String::from_utf8_lossy(&out));
        }
    }
    let log = model
        .attach
        .as_ref()
        .and_then(|a| a.launched.as_ref())
        .map(|l| l.log_path.clone());
    let mut facts = crate::verdict::Facts::from_timeline(&timeline);
    facts
        .leftovers
        .extend(crate::check::outcome::abandoned_threads(&model));
    facts.warnings = crate::check::outcome::warnings(
        &model,
        log.as_deref(),
        Some(timeline.started_unix_ms),
        Some(&timeline),
        model.now.unix_ms,
        crate::check::outcome::HEADLESS_LABELS,
    );
    facts.target_exit = facts.target_exit.map(|mut x| {
        x.python |= model
            .hello
            .as_ref()
            .is_some_and(|h| h.runtime.name.to_ascii_lowercase().contains("python"));
        x
    });
    let mut report = Report::from_facts(&timeline, &plan.source, target_info, facts);
    report.stacks = stacks;
    report.log_file = log.as_ref().map(|p| p.display().to_string());
    // The recording ends with the verdict printed below, for `replay --summary`.
    let verdict = Stamped {
        seq: model.last_seq + 1,
        at: model.now,
        event: CoreEvent::Verdict {
            by: "headless".into(),
            verdict: report.verdict.clone(),
            lines: vec![summary::verdict_text(&report.verdict, &timeline.unknowns)],
        },
    };
    fold(&mut model, &mut rec, &verdict);
    if let Some(r) = rec.finish() {
        println!("{}", r.line());
    }
    finish(cfg, &timeline, report, log.as_deref())
}

/// Folds one event and records it; a recording that stopped says so once, and limited mode
/// is said on stderr as the dashboard's header says it.
pub fn fold(model: &mut Model, rec: &mut Recorder, ev: &Stamped) {
    model.apply(ev);
    if let Some(line) = rec.record(ev) {
        eprintln!("lifecycle-top: {line}");
    }
    if let Some(line) = limited_line(ev) {
        eprintln!("lifecycle-top: {line}");
    }
}

/// The dashboard's limited-mode banner (what is missing, the remedy) for a `Limitations`
/// event that lists any: headless and check print it on stderr when the set changes.
pub fn limited_line(ev: &Stamped) -> Option<String> {
    match &ev.event {
        CoreEvent::Limitations { limitations } => crate::access::banner(limitations),
        _ => None,
    }
}

/// Waits for the recording to be written and names it (printed before the report lines).
pub fn close_recording(rec: Recorder) {
    if let Some(summary) = rec.finish() {
        println!("{}", summary.line());
    }
}

/// Lines shown while waiting for the plan to start.
fn print_waiting(ev: &Stamped) {
    if let CoreEvent::AgentHello { hello } = &ev.event {
        println!(
            "agent connected: {} {}",
            hello.runtime.name, hello.runtime.version
        );
    }
}

/// Runs the plan to its end (or to the end of the phase running when interrupted); prints
/// each phase as it goes. `None` if the session ended first.
async fn run_plan(
    session: &mut Session,
    handle: &SessionHandle,
    model: &mut Model,
    rec: &mut Recorder,
    plan: &Plan,
    interrupts: &mut Interrupts,
) -> Option<Timeline> {
    let target = model.target()?;
    let mut interrupted = false;
    loop {
        tokio::select! {
            ev = session.events.recv() => {
                let ev = ev?;
                fold(model, rec, &ev);
                match &ev.event {
                    CoreEvent::PlanDone { timeline } => return Some(timeline.as_ref().clone()),
                    CoreEvent::Timeline { timeline } if interrupted && timeline.running.is_none() => {
                        return Some(timeline.as_ref().clone());
                    }
                    CoreEvent::Phase { event } => {
                        if let Some(line) = summary::event(plan, target, event) {
                            println!("{line}");
                        }
                    }
                    CoreEvent::AgentState { state: AgentState::Lost(why) | AgentState::NotFound(why) } => {
                        println!("      agent: {why}");
                    }
                    CoreEvent::StacksRequested { key, reason, .. } => {
                        println!("      capturing stacks of pid {}: {reason}", key.pid);
                    }
                    CoreEvent::CollectorError { message } => println!("      collector: {message}"),
                    CoreEvent::Notice { message } => println!("      {message}"),
                    _ => {}
                }
            }
            _ = interrupts.recv(), if !interrupted => {
                println!("interrupted: aborting the running phase; no further phase runs");
                interrupted = true;
                handle.teardown(Command::Abort);
            }
        }
    }
}

/// Waits until every stack capture started has been reported, folding what arrives.
pub async fn drain_after_flush(
    session: &mut Session,
    handle: &SessionHandle,
    model: &mut Model,
    rec: &mut Recorder,
) {
    let flushed = handle.flush();
    tokio::pin!(flushed);
    loop {
        tokio::select! {
            _ = &mut flushed => break,
            ev = session.events.recv() => match ev {
                Some(ev) => fold(model, rec, &ev),
                None => break,
            },
        }
    }
    // Whatever was emitted before the flush answered is already queued.
    while let Ok(ev) = session.events.try_recv() {
        fold(model, rec, &ev);
    }
}

/// The plan can end on a snapshot that already shows the target as a zombie (or gone), a
/// moment before the collector's exit event: the verdict must not then say "still running"
/// in one run and "exited with status 0" in the next. Waits (at most 2 s) for that event and
/// adds it to the timeline.
async fn with_late_target_exit(
    mut timeline: crate::teardown::Timeline,
    session: &mut Session,
    model: &mut Model,
    rec: &mut Recorder,
) -> crate::teardown::Timeline {
    let recorded = crate::verdict::Facts::from_timeline(&timeline)
        .target_exit
        .is_some();
    let seen_gone = model.snapshot.as_ref().is_some_and(|s| {
        s.target_info()
            .is_none_or(|t| t.exit.is_some() || matches!(t.state, crate::model::RunState::Zombie))
    });
    if recorded || !seen_gone {
        return timeline;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while model.target_exit().is_none() {
        tokio::select! {
            ev = session.events.recv() => match ev {
                Some(ev) => fold(model, rec, &ev),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if let (Some(x), Some(key)) = (model.target_exit(), model.target()) {
        let name = model
            .snapshot
            .as_ref()
            .and_then(|s| s.target_info())
            .map(|t| t.name.to_string())
            .unwrap_or_default();
        timeline
            .exits_outside
            .push(crate::teardown::timeline::ExitEvent {
                at_ms: x.at_unix_ms.saturating_sub(timeline.started_unix_ms),
                pid: key.pid,
                name,
                status: x.status,
            });
    }
    timeline
}

/// Interrupted before any phase ran: the report (if asked for) says so and the exit code is
/// 2, since nothing was judged.
fn interrupted_early(cfg: &RunConfig, target: ProcKey, started: u64) -> ExitCode {
    let timeline = Timeline::new("none", target.pid, started);
    let mut report = Report::new(
        &timeline,
        "",
        report::json::TargetInfo {
            pid: target.pid,
            name: String::new(),
            cmdline: Vec::new(),
        },
    );
    report.verdict.clean = false;
    report.verdict.exit_code = 2;
    report.verdict.reasons = vec!["interrupted before the plan started".into()];
    if let Some(path) = &cfg.report
        && let Err(e) = report.write(path)
    {
        eprintln!(
            "lifecycle-top: cannot write the report to {}: {e} (check the directory)",
            path.display()
        );
    }
    ExitCode::from(2)
}

fn finish(
    cfg: &RunConfig,
    timeline: &Timeline,
    report: Report,
    log: Option<&std::path::Path>,
) -> ExitCode {
    let mut code = report.verdict.exit_code;
    for w in &report.warnings {
        println!(
            "warning ({}{}): {}",
            w.kind,
            w.phase
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default(),
            w.message
        );
    }
    use crate::report::files::written;
    if let Some(path) = &cfg.report
        && !written("report", path, report.write(path), "")
    {
        code = 2;
    }
    if let Some(path) = &cfg.trace
        && !written(
            "trace",
            path,
            report::trace::write(timeline, path),
            " (open it in ui.perfetto.dev)",
        )
    {
        code = 2;
    }
    println!("{}", crate::collect::procevents::summary_line());
    println!(
        "{}",
        summary::verdict_text(&report.verdict, &timeline.unknowns)
    );
    crate::report::files::output_tail(log, report.verdict.clean);
    ExitCode::from(code)
}
