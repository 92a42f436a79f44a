//! Headless mode (`--headless`): attach to (or launch) the target, run the whole teardown plan
//! with the same [`Runner`](crate::teardown::Runner) the TUI uses, print a readable summary as
//! phases finish, write `--report` / `--trace`, and map the verdict to an exit code:
//! 0 clean without escalation, 1 something lingered or needed SIGKILL, 2 usage/attach error.

use crate::agent::{self, AgentEvent};
use crate::cli::RunConfig;
use crate::collect::{self, Collector, live::CollectEvent};
use crate::model::{AgentFacts, Snapshot};
use crate::report::{self, Report, summary};
use crate::stacks::StackSnapshot;
use crate::teardown::plan::{self, Plan};
use crate::teardown::{AgentPort, Command, PhaseEvent, Timeline, runner};
use crate::wiring;
use crate::wiring::TreePids;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Entry point used by `main` for `--headless`.
pub fn run(cfg: &RunConfig) -> ExitCode {
    match prepare(cfg) {
        Ok((collector, plan, launched)) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return usage(&format!("cannot start the async runtime: {e}")),
            };
            runtime.block_on(drive(cfg, collector, plan, launched))
        }
        Err(msg) => usage(&msg),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("lifecycle-top: {msg}");
    ExitCode::from(2)
}

/// Everything that can fail with exit code 2, before anything is signalled.
fn prepare(cfg: &RunConfig) -> Result<(Collector, Option<Plan>, bool), String> {
    let plan = match &cfg.plan {
        Some(p) => Some(plan::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let started =
        crate::launch::start_target(&cfg.target, cfg.inject_agent).map_err(|e| format!("{e:#}"))?;
    let collector = crate::launch::attach_collector(&started).map_err(|e| format!("{e:#}"))?;
    let launched = started.launched.is_some();
    Ok((collector, plan, launched))
}

/// Without `--plan`: python-asyncio for a Python target, native otherwise.
pub fn default_plan(snap: &Snapshot) -> Result<Plan, String> {
    let python = snap.target_info().is_some_and(|t| {
        t.name.starts_with("python") || t.cmdline.first().is_some_and(|c| c.contains("python"))
    });
    plan::load(if python { "python-asyncio" } else { "native" }).map_err(|e| e.to_string())
}

/// What the agent told us before the plan starts.
struct AgentStart {
    facts: Option<AgentFacts>,
    python: bool,
}

/// Waits briefly for the agent: a launched command with the agent injected gets up to 5 s to
/// connect (the interpreter must start first); an attached process only until the client
/// says there is none. Collector events seen meanwhile are kept for the runner.
async fn wait_for_agent(
    agent: &mut agent::AgentHandle,
    live: &mut collect::LiveCollector,
    tree: &TreePids,
    buffered: &mut Vec<CollectEvent>,
    expect_agent: bool,
) -> AgentStart {
    let mut start = AgentStart {
        facts: None,
        python: false,
    };
    let limit = tokio::time::sleep(Duration::from_millis(if expect_agent {
        5000
    } else {
        1500
    }));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            ev = agent.events.recv() => match ev {
                Some(AgentEvent::Connected(hello)) => {
                    start.python = hello.runtime.name.to_ascii_lowercase().contains("python");
                    println!("agent connected: {} {}", hello.runtime.name, hello.runtime.version);
                }
                Some(AgentEvent::Report(r)) => {
                    start.facts = Some(AgentFacts::from(r.as_ref()));
                    return start;
                }
                Some(AgentEvent::NotFound(why)) | Some(AgentEvent::Lost(why)) if !expect_agent => {
                    println!("no agent: {why} (agent phases will be skipped)");
                    return start;
                }
                Some(_) => {}
                None => return start,
            },
            ev = live.events.recv() => match ev {
                Some(ev) => {
                    // The agent may live in a child of the target (`sh -c "python app.py"`):
                    // the peer check must know the tree while we wait for it.
                    if let CollectEvent::Snapshot(s) = &ev {
                        tree.update(s);
                    }
                    buffered.push(ev);
                }
                None => return start,
            },
            _ = &mut limit => {
                println!("no agent answered (agent phases will be skipped)");
                return start;
            }
        }
    }
}

/// A command just launched is still forking its children: tearing it down now would race
/// with them (a child forked after "terminate children" would be orphaned). Waits until two
/// consecutive snapshots list the same processes, at most 3 s.
async fn settle(live: &mut collect::LiveCollector, buffered: &mut Vec<CollectEvent>) {
    let pids = |s: &Snapshot| -> Vec<i32> {
        let mut v: Vec<i32> = s
            .processes
            .iter()
            .filter(|p| p.exit.is_none())
            .map(|p| p.key.pid)
            .collect();
        v.sort_unstable();
        v
    };
    let mut last: Option<Vec<i32>> = None;
    let limit = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            ev = live.events.recv() => match ev {
                Some(ev) => {
                    if let CollectEvent::Snapshot(s) = &ev {
                        let now = pids(s);
                        if last.as_ref() == Some(&now) {
                            buffered.push(ev);
                            return;
                        }
                        last = Some(now);
                    }
                    buffered.push(ev);
                }
                None => return,
            },
            _ = &mut limit => return,
        }
    }
}

async fn drive(
    cfg: &RunConfig,
    collector: Collector,
    plan: Option<Plan>,
    launched: bool,
) -> ExitCode {
    // Installed first: a Ctrl-C or a CI timeout's SIGTERM at any point still ends with a
    // report and an exit code, never with the default signal death.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // A tree headless launched (the demo, `-- CMD`) never outlives the run, however it
    // ends: what the plan left is in the report, then killed. An attached tree is never
    // touched beyond the plan.
    let guard = crate::launch::TreeGuard::new(launched);
    let target = collector.target();
    let started = collect::exits::now_unix_ms();
    let tree = TreePids::new(target);
    let mut live = collect::live::spawn(collector, cfg.interval);
    let mut agent = agent::spawn_client(target, tree.checker(), cfg.interval);
    let mut buffered = Vec::new();
    println!(
        "lifecycle-top: attached to pid {}; waiting for the agent{} before the plan starts",
        target.pid,
        if launched {
            " and the tree to settle"
        } else {
            ""
        }
    );
    let before_plan = async {
        let start = wait_for_agent(
            &mut agent,
            &mut live,
            &tree,
            &mut buffered,
            launched && cfg.inject_agent,
        )
        .await;
        if launched {
            settle(&mut live, &mut buffered).await;
        }
        // The first snapshot names the target and picks the default plan.
        loop {
            if let Some(i) = buffered
                .iter()
                .rposition(|e| matches!(e, CollectEvent::Snapshot(_)))
                && let CollectEvent::Snapshot(s) = buffered.remove(i)
            {
                return Some((start, s));
            }
            match live.events.recv().await {
                Some(ev) => buffered.push(ev),
                None => return None,
            }
        }
    };
    let ready = tokio::select! {
        r = before_plan => r,
        _ = recv_signal(&mut sigint, &mut sigterm) => {
            println!("interrupted before the plan started: nothing was torn down");
            return interrupted_early(cfg, target, started);
        }
    };
    let Some((start, first)) = ready else {
        return usage("the collector stopped before its first snapshot");
    };
    tree.update(&first);
    guard.update(&first);
    let plan = match plan {
        Some(p) => Ok(p),
        None if start.python => plan::load("python-asyncio").map_err(|e| e.to_string()),
        None => default_plan(&first),
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let info = first.target_info().cloned();
    let target_info = report::json::TargetInfo {
        pid: target.pid,
        name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
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
    let requester = agent.requester();
    let port: Arc<dyn AgentPort> = Arc::new(wiring::AgentPortAdapter(requester.clone()));
    let mut r = runner::spawn(plan.clone(), target, started, Some(port));
    r.handle.agent_facts(start.facts);
    for ev in buffered {
        forward(&r.handle, &tree, ev);
    }
    r.handle.snapshot(first);
    r.handle.command(Command::RunAll);
    let mut captures = tokio::task::JoinSet::new();
    // Ctrl-C / SIGTERM from here: abort the running phase, start nothing new, still write
    // the report.
    let (mut agent_open, mut interrupted) = (true, false);
    let timeline = loop {
        tokio::select! {
            ev = live.events.recv() => match ev {
                Some(ev) => {
                    if let CollectEvent::Snapshot(s) = &ev {
                        guard.update(s);
                    }
                    forward(&r.handle, &tree, ev)
                }
                None => break None,
            },
            ev = agent.events.recv(), if agent_open => match ev {
                Some(AgentEvent::Report(rep)) => r.handle.agent_facts(Some(AgentFacts::from(rep.as_ref()))),
                Some(AgentEvent::Lost(why)) | Some(AgentEvent::NotFound(why)) => {
                    println!("      agent: {why}");
                    r.handle.agent_facts(None);
                }
                Some(AgentEvent::Connected(_)) => {}
                None => agent_open = false,
            },
            _ = recv_signal(&mut sigint, &mut sigterm), if !interrupted => {
                println!("interrupted: aborting the running phase; no further phase runs");
                interrupted = true;
                r.handle.command(Command::Abort);
            }
            pe = r.events.recv() => match pe {
                Some(PhaseEvent::AllDone(t)) => break Some(*t),
                Some(PhaseEvent::Timeline(t)) if interrupted && t.running.is_none() => break Some(*t),
                Some(PhaseEvent::RefreshNow) => live.refresh_now(),
                Some(PhaseEvent::SnapshotStacks { key, tids, reason }) => {
                    println!("      capturing stacks of pid {}: {reason}", key.pid);
                    captures.spawn(wiring::capture_stacks(key, tids, Some(requester.clone()), false));
                }
                Some(pe) => {
                    if let Some(line) = summary::event(&plan, target, &pe) {
                        println!("{line}");
                    }
                }
                None => break None,
            },
        }
    };
    let Some(timeline) = timeline else {
        return usage("the teardown runner stopped unexpectedly");
    };
    let stacks: Vec<StackSnapshot> = captures.join_all().await;
    for s in &stacks {
        let mut out = Vec::new();
        if crate::stacks::cli::write_text(s, &mut out).is_ok() {
            print!("{}", String::from_utf8_lossy(&out));
        }
    }
    finish(cfg, &plan, &timeline, target_info, stacks)
}

/// Interrupted before any phase ran: the report (if asked for) says so and the exit code is
/// 2, since nothing was judged.
fn interrupted_early(cfg: &RunConfig, target: crate::model::ProcKey, started: u64) -> ExitCode {
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

async fn recv_signal(
    a: &mut Option<tokio::signal::unix::Signal>,
    b: &mut Option<tokio::signal::unix::Signal>,
) {
    match (a, b) {
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

fn forward(h: &runner::RunnerHandle, tree: &TreePids, ev: CollectEvent) {
    match ev {
        CollectEvent::Snapshot(s) => {
            tree.update(&s);
            h.snapshot(s)
        }
        CollectEvent::Exited { key, status, .. } => h.exited(key, status),
        CollectEvent::Error(e) => println!("      collector: {e}"),
    }
}

fn finish(
    cfg: &RunConfig,
    plan: &Plan,
    timeline: &Timeline,
    target: report::json::TargetInfo,
    stacks: Vec<StackSnapshot>,
) -> ExitCode {
    let mut report = Report::new(timeline, &plan.source, target);
    report.stacks = stacks;
    let mut code = report.verdict.exit_code;
    if let Some(path) = &cfg.report {
        match report.write(path) {
            Ok(()) => println!("report written to {}", path.display()),
            Err(e) => {
                eprintln!(
                    "lifecycle-top: cannot write the report to {}: {e} (check the directory)",
                    path.display()
                );
                code = 2;
            }
        }
    }
    if let Some(path) = &cfg.trace {
        match report::trace::write(timeline, path) {
            Ok(()) => println!(
                "trace written to {} (open it in ui.perfetto.dev)",
                path.display()
            ),
            Err(e) => {
                eprintln!(
                    "lifecycle-top: cannot write the trace to {}: {e} (check the directory)",
                    path.display()
                );
                code = 2;
            }
        }
    }
    println!("{}", summary::verdict(timeline));
    ExitCode::from(code)
}
