//! `lifecycle-top check`: the shutdown gate, a consumer of one [`Session`]. Launch (or
//! attach), wait until ready, send ONE stop signal and give the program its budget, the way
//! Kubernetes and systemd stop a service. Then judge from facts: how and when the target
//! ended, what was left in the tree, what it warned about. On a budget overrun the evidence
//! (threads with daemon flags and stacks, pending tasks, children and their signal
//! dispositions) is captured first; only then do the plan's forced phases run, then SIGKILL.

use super::config::{CheckConfig, Ready};
use super::evidence::{self, Evidence};
use super::outcome::{self, Outcome, Stage};
use super::ready;
use crate::collect::Collector;
use crate::headless::{Interrupts, Readiness, block_on, prepare, usage};
use crate::launch::Started;
use crate::model::ProcKey;
use crate::report::summary;
use crate::session::{
    AgentState, CoreEvent, Model, Recorder, Session, SessionConfig, SessionHandle, Stamped,
    SystemClock,
};
use crate::teardown::plan::{Plan, signal_name};
use crate::teardown::{Command, Timeline};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After the target is gone: how long the rest of the tree gets to settle (a daemon forked
/// just before the exit appears, an intermediate process exits) before left-overs are listed.
const SETTLE_AFTER_EXIT: Duration = Duration::from_secs(2);
/// After the target is gone: how long the agent gets to deliver what it pushed at exit (the
/// connection's end proves every line was read).
const AGENT_DRAIN: Duration = Duration::from_secs(1);
/// After the forced phases: how long a SIGKILLed target gets to be seen gone.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Entry point used by `main` for `check`.
pub fn run(cfg: &CheckConfig) -> ExitCode {
    match prepare(cfg.plan.as_deref(), &cfg.target, cfg.inject_agent) {
        Ok((started, collector, plan)) => block_on(drive(cfg, started, collector, plan)),
        Err(msg) => usage(&msg),
    }
}

/// The session plus what the run folds from it; every wait below folds events as they come.
pub(super) struct Run {
    /// The session's clock: the stop signal is stamped on the same time line as its events.
    pub clock: Arc<SystemClock>,
    pub session: Session,
    pub handle: SessionHandle,
    pub model: Model,
    pub t0: Instant,
    pub target: ProcKey,
    pub plan: Option<Plan>,
    /// Live pids of the tree (for the port readiness check).
    pub tree: Arc<Mutex<Vec<i32>>>,
    /// Every event folded is recorded too (`--record`, or next to `--report`).
    pub recorder: Recorder,
}

impl Run {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fold(&mut self, ev: &Stamped) {
        self.model.apply(ev);
        if let Some(line) = self.recorder.record(ev) {
            eprintln!("lifecycle-top: {line}");
        }
        if let Some(line) = crate::headless::limited_line(ev) {
            eprintln!("lifecycle-top: {line}");
        }
        if let CoreEvent::Snapshot { snapshot } = &ev.event
            && let Ok(mut t) = self.tree.lock()
        {
            t.clear();
            t.extend(
                snapshot
                    .processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| p.key.pid),
            );
        }
        self.print(ev);
    }

    /// Progress lines as things happen.
    fn print(&self, ev: &Stamped) {
        let line = match &ev.event {
            CoreEvent::AgentHello { hello } => Some(format!(
                "agent connected: {} {}",
                hello.runtime.name, hello.runtime.version
            )),
            CoreEvent::AgentWarning { warning } => Some(format!(
                "      warning ({}): {}",
                warning.kind, warning.message
            )),
            CoreEvent::Phase { event } => self
                .plan
                .as_ref()
                .and_then(|p| summary::event(p, self.target, event)),
            CoreEvent::StacksRequested { key, reason, .. } => Some(format!(
                "      capturing stacks of pid {}: {reason}",
                key.pid
            )),
            CoreEvent::CollectorError { message } => Some(format!("      collector: {message}")),
            _ => None,
        };
        if let Some(l) = line {
            println!("{l}");
        }
    }

    /// Folds events until `done(model)` holds or `limit` passes; `false` on the limit.
    async fn until(&mut self, limit: Duration, done: impl Fn(&Model) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(&self.model) {
                return true;
            }
            tokio::select! {
                ev = self.session.events.recv() => match ev {
                    Some(ev) => self.fold(&ev),
                    None => return done(&self.model),
                },
                _ = tokio::time::sleep_until(deadline) => return done(&self.model),
            }
        }
    }

    /// Drives `fut` to its end while folding events.
    pub(super) async fn alongside<T>(&mut self, fut: Pin<Box<dyn Future<Output = T> + '_>>) -> T {
        let mut fut = fut;
        loop {
            tokio::select! {
                r = &mut fut => return r,
                ev = self.session.events.recv() => match ev {
                    Some(ev) => self.fold(&ev),
                    None => return fut.await,
                },
            }
        }
    }

    /// Waits until every stack capture started so far has been reported.
    pub(super) async fn flush(&mut self) {
        let handle = self.handle.clone();
        self.alongside(Box::pin(async move { handle.flush().await }))
            .await;
        while let Ok(ev) = self.session.events.try_recv() {
            self.fold(&ev);
        }
    }

    fn target_gone(&self) -> bool {
        self.model.target_exit().is_some()
    }
}

fn describe_ready(r: &Ready) -> String {
    match r {
        Ready::Settled => "the tree has settled".into(),
        Ready::After(d) => format!("{} ms have passed", d.as_millis()),
        Ready::Port(p) => format!("TCP port {p} LISTENs"),
        Ready::Log(re) => format!("its output matches /{}/", re.as_str()),
    }
}

async fn drive(
    cfg: &CheckConfig,
    started: Started,
    collector: Collector,
    plan: Option<Plan>,
) -> ExitCode {
    let mut interrupts = Interrupts::install();
    let launched = started.launched.clone();
    let expect_agent = launched.is_some() && cfg.inject_agent;
    let target = collector.target();
    let clock = Arc::new(SystemClock::new());
    let session = Session::start(
        &started,
        collector,
        SessionConfig {
            interval: cfg.interval,
            plan,
            // A tree check launched never outlives it, however it ends.
            guard_armed: true,
            cmd: match &cfg.target {
                crate::cli::Target::Launch(c) => c.clone(),
                _ => Vec::new(),
            },
            agent_injected: expect_agent,
        },
        clock.clone(),
    );
    let handle = session.handle();
    let (recorder, why) = Recorder::create_or_say(cfg.record.as_deref());
    if let Some(why) = why {
        eprintln!("lifecycle-top: {why}");
    }
    let mut run = Run {
        clock,
        session,
        handle,
        model: Model::new(),
        t0: Instant::now(),
        target,
        plan: None,
        tree: Arc::new(Mutex::new(vec![target.pid])),
        recorder,
    };
    println!(
        "lifecycle-top check: pid {}{}; waiting until {} (at most {} s)",
        target.pid,
        if launched.is_some() {
            " (launched)"
        } else {
            ""
        },
        describe_ready(&cfg.ready),
        cfg.ready_timeout.as_secs_f64()
    );
    let log_path = launched.as_ref().map(|l| l.log_path.clone());
    let work = async {
        // 1. Ready.
        if let Err(why) = wait_ready(&mut run, cfg, expect_agent, log_path.as_deref()).await {
            return Stage::NeverReady(why);
        }
        // The plan is known once a snapshot arrived (Readiness waited for it).
        run.plan = run.model.plan.as_ref().and_then(|p| p.load().ok());
        // 2. One stop signal, then the budget.
        stop_and_wait(&mut run, cfg).await
    };
    let stage = tokio::select! {
        s = work => s,
        _ = interrupts.recv() => Stage::Interrupted,
    };
    let mut stage = stage;
    // 3. Over budget: evidence first, then the forced phases, then SIGKILL.
    if let Stage::Overrun { stop_ms } = stage {
        let ev = evidence::capture(&mut run, cfg.stop_signal, stop_ms).await;
        stage = force(&mut run, stop_ms, ev, &mut interrupts).await;
    }
    // 4. The target is gone (or we gave up): settle, drain the agent, list what is left.
    let leftovers = after_exit(&mut run, launched.is_some()).await;
    let out = outcome::judge(
        cfg,
        &run.model,
        &stage,
        leftovers,
        log_path.as_deref(),
        run.elapsed_ms(),
    );
    if launched.is_some() {
        // What the report lists as left over is killed now (the guard would on drop, too).
        let killed = run.session.kill_tree();
        if killed > 0 {
            println!("killed {killed} left-over process(es) of the launched tree");
        }
    }
    // The recording holds exactly what was judged (what is still queued is not folded), and
    // ends with the verdict and the lines CI was shown, for `replay --summary`.
    let (verdict_lines, last_line) = closing_lines(&out);
    let mut lines = verdict_lines.clone();
    lines.push(last_line.clone());
    let verdict = Stamped {
        seq: run.model.last_seq + 1,
        at: run.model.now,
        event: CoreEvent::Verdict {
            by: "check".into(),
            verdict: out.verdict.clone(),
            lines,
        },
    };
    run.fold(&verdict);
    let recorder = std::mem::replace(&mut run.recorder, Recorder::off());
    if let Some(summary) = recorder.finish() {
        println!("{}", summary.line());
    }
    finish(
        cfg,
        &run,
        out,
        log_path.as_deref(),
        (&verdict_lines, &last_line),
    )
}

/// The verdict lines printed before the output's tail, and the last line CI logs show (the
/// verdict and its first cause).
fn closing_lines(out: &Outcome) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    if !out.verdict.clean {
        lines.push(summary::verdict_text(&out.verdict, &out.facts.unknowns));
    }
    if let Some(ev) = &out.evidence
        && !ev.causes.is_empty()
    {
        lines.push("why it did not exit (when the budget ran out):".into());
        for c in &ev.causes {
            lines.push(format!("  - {}", c.line));
        }
    }
    let last = if out.verdict.clean {
        let s = &out.verdict.summary;
        match s.strip_prefix("clean") {
            Some(_) => s.clone(),
            None => format!("clean: {s}"),
        }
    } else {
        let cause = out
            .verdict
            .reasons
            .first()
            .cloned()
            .unwrap_or_else(|| out.verdict.summary.clone());
        format!("NOT clean: {cause}")
    };
    (lines, last)
}

/// Waits until the command is ready; `Err(reason)` when it never became ready.
async fn wait_ready(
    run: &mut Run,
    cfg: &CheckConfig,
    expect_agent: bool,
    log_path: Option<&std::path::Path>,
) -> Result<(), String> {
    let timeout = cfg.ready_timeout;
    let launched = log_path.is_some();
    // The agent (and the plan, picked from the first snapshot) come first in every mode:
    // warnings are pushed only to a client that is connected before the stop.
    let mut readiness = Readiness::new(expect_agent, launched);
    let mut lines = Vec::new();
    loop {
        lines.clear();
        let now = run.elapsed_ms();
        let settled_mode = matches!(cfg.ready, Ready::Settled);
        let base_ready = readiness.check(&run.model, now, &mut lines);
        for l in &lines {
            println!("{l}");
        }
        if run.target_gone() {
            return Err("the command exited before it was ready".into());
        }
        // Other modes need only the agent's answer and a first snapshot (the settle wait is
        // the default mode's own condition).
        if base_ready || (!settled_mode && readiness_agent_done(&readiness, &run.model)) {
            break;
        }
        if now >= timeout.as_millis() as u64 {
            return Err(format!(
                "not ready within {} s (the tree never settled)",
                timeout.as_secs_f64()
            ));
        }
        let wait = Duration::from_millis(readiness.next_check_ms().saturating_sub(now))
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        run.until(wait, |_| false).await;
    }
    let left = timeout.saturating_sub(run.t0.elapsed());
    let tree = run.tree.clone();
    let result = match &cfg.ready {
        Ready::Settled => return Ok(()),
        Ready::After(d) => {
            let d = *d;
            run.alongside(Box::pin(ready::after(d))).await
        }
        Ready::Port(p) => {
            let p = *p;
            let pids = move || tree.lock().map(|t| t.clone()).unwrap_or_default();
            run.alongside(Box::pin(async move { ready::port(p, &pids, left).await }))
                .await
        }
        Ready::Log(re) => {
            let Some(path) = log_path else {
                return Err("--ready-log needs a launched command".into());
            };
            let (path, re) = (path.to_path_buf(), re.clone());
            run.alongside(Box::pin(async move { ready::log(&path, &re, left).await }))
                .await
        }
    };
    match result {
        Ok(how) => {
            println!("ready: {how}");
            if run.target_gone() {
                return Err("the command exited before it was ready".into());
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn readiness_agent_done(r: &Readiness, m: &Model) -> bool {
    r.agent_decided() && m.plan.is_some() && m.snapshot.is_some()
}

/// Sends the stop signal and waits for the target's exit within the budget.
async fn stop_and_wait(run: &mut Run, cfg: &CheckConfig) -> Stage {
    use crate::session::Clock as _;
    let sent = crate::teardown::exec::signal(run.target, cfg.stop_signal);
    // Stamped right after the send: the exit is measured from here, on the session's clock
    // (the pidfd exit event carries the same clock's stamp).
    let stop_ms = run.clock.now().at_ms;
    match sent {
        Ok(()) => println!(
            "sent {} to pid {}; budget {:.1} s",
            signal_name(cfg.stop_signal),
            run.target.pid,
            cfg.budget.as_secs_f64()
        ),
        Err(e) => println!(
            "{} to pid {} not sent: {e}",
            signal_name(cfg.stop_signal),
            run.target.pid
        ),
    }
    let exited = run.until(cfg.budget, |m| m.target_exit().is_some()).await;
    if exited {
        Stage::Exited { stop_ms }
    } else {
        println!(
            "budget of {:.1} s ran out: capturing the evidence before anything is forced",
            cfg.budget.as_secs_f64()
        );
        Stage::Overrun { stop_ms }
    }
}

/// The plan's forced phases, then SIGKILL if the target still lives.
async fn force(
    run: &mut Run,
    stop_ms: u64,
    evidence: Evidence,
    interrupts: &mut Interrupts,
) -> Stage {
    let name = run
        .plan
        .as_ref()
        .map_or("?".to_string(), |p| p.name.clone());
    println!("forced phases (plan {name}), to show which layer holds the exit:");
    run.handle.teardown(Command::RunAll);
    let done = async {
        run.until(Duration::from_secs(600), |m| m.plan_done).await;
    };
    let interrupted = tokio::select! {
        _ = done => false,
        _ = interrupts.recv() => true,
    };
    if interrupted {
        run.handle.teardown(Command::Abort);
    }
    let timeline = run.model.timeline.as_deref().cloned();
    if !run.target_gone() {
        println!(
            "SIGKILL -> pid {} (still alive after the forced phases)",
            run.target.pid
        );
        let _ = crate::teardown::exec::signal(run.target, libc::SIGKILL);
        run.until(KILL_WAIT, |m| m.target_exit().is_some()).await;
    }
    Stage::Forced {
        stop_ms,
        evidence: Box::new(evidence),
        timeline: timeline.map(Box::new),
        interrupted,
    }
}

/// After the target is gone: drain the agent, let the tree settle, list what is left.
async fn after_exit(run: &mut Run, launched: bool) -> Vec<crate::teardown::timeline::Leftover> {
    // Every line the agent pushed at exit is read before its connection's end is reported.
    run.until(AGENT_DRAIN, |m| {
        !matches!(m.agent, Some(AgentState::Connected(_)))
    })
    .await;
    // Two fresh snapshots after the exit that list the same processes: a daemon forked
    // just before the exit has appeared, an intermediate process has gone.
    let from = run.model.snapshots;
    run.handle.refresh_now();
    run.until(SETTLE_AFTER_EXIT, |m| {
        m.snapshots >= from + 2 && m.tree_settled()
    })
    .await;
    let mut left = outcome::leftovers(&run.model, launched);
    left.extend(outcome::abandoned_threads(&run.model));
    left
}

fn finish(
    cfg: &CheckConfig,
    run: &Run,
    out: Outcome,
    log_path: Option<&std::path::Path>,
    (verdict_lines, last_line): (&[String], &str),
) -> ExitCode {
    let mut code = out.verdict.exit_code;
    println!("{}", crate::collect::procevents::summary_line());
    for l in verdict_lines {
        println!("{l}");
    }
    crate::report::files::output_tail(log_path, out.verdict.clean);
    let report = outcome::report(cfg, run, &out, log_path);
    use crate::report::files::written;
    if let Some(path) = &cfg.report
        && !written("report", path, report.write(path), "")
    {
        code = 2;
    }
    if let Some(path) = &cfg.junit {
        let xml = outcome::junit(&out, &report.base.target.cmdline).to_xml();
        if !written("JUnit", path, std::fs::write(path, xml), "") {
            code = 2;
        }
    }
    if let Some(path) = &cfg.trace {
        let t: &Timeline = &report.base.timeline;
        if !written(
            "trace",
            path,
            crate::report::trace::write(t, path),
            " (open it in ui.perfetto.dev)",
        ) {
            code = 2;
        }
    }
    // The last line CI logs show: the verdict and its first cause.
    println!("{last_line}");
    ExitCode::from(code)
}
