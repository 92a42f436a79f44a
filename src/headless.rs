//! Headless mode (`--headless`): attach to (or launch) the target, run the whole teardown plan
//! with the same [`Runner`](crate::teardown::Runner) the TUI uses, print a readable summary as
//! phases finish, write `--report` / `--trace`, and map the verdict to an exit code:
//! 0 clean without escalation, 1 something lingered or needed SIGKILL, 2 usage/attach error.

use crate::cli::{RunConfig, Target};
use crate::collect::{self, Collector, CollectorOptions, live::CollectEvent};
use crate::model::{ProcKey, Snapshot};
use crate::report::{self, Report, summary};
use crate::teardown::plan::{self, Plan, signal_name};
use crate::teardown::{Command, PhaseEvent, Timeline, runner};
use std::process::ExitCode;

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
    let (pid, launched) = match &cfg.target {
        Target::Pid(pid) => (*pid, false),
        Target::Launch(cmd) => {
            let l = crate::launch::launch(cmd, cfg.inject_agent).map_err(|e| format!("{e:#}"))?;
            (l.pid, true)
        }
        Target::Demo => {
            let cmd = crate::demo::command(&[]).map_err(|e| format!("{e:#}"))?;
            let l =
                crate::launch::launch_demo(&cmd, cfg.inject_agent).map_err(|e| format!("{e:#}"))?;
            (l.pid, true)
        }
    };
    let _ = collect::raise_nofile_limit(); // best effort: big trees need more fds
    let opts = CollectorOptions {
        launch_mode: launched,
        ..CollectorOptions::default()
    };
    let collector = Collector::attach(pid, opts).map_err(|e| e.to_string())?;
    Ok((collector, plan, launched))
}

/// Without `--plan`: python-asyncio for a Python target, native otherwise.
pub fn default_plan(snap: &Snapshot) -> Result<Plan, String> {
    let python = snap.target_info().is_some_and(|t| {
        t.name.starts_with("python") || t.cmdline.first().is_some_and(|c| c.contains("python"))
    });
    plan::load(if python { "python-asyncio" } else { "native" }).map_err(|e| e.to_string())
}

async fn drive(
    cfg: &RunConfig,
    collector: Collector,
    plan: Option<Plan>,
    launched: bool,
) -> ExitCode {
    let target = collector.target();
    let started = collect::exits::now_unix_ms();
    let mut live = collect::live::spawn(collector, cfg.interval);
    // The first snapshot names the target and picks the default plan.
    let mut pending = Vec::new();
    let first = loop {
        match live.events.recv().await {
            Some(CollectEvent::Snapshot(s)) => break s,
            Some(other) => pending.push(other),
            None => return usage("the collector stopped before its first snapshot"),
        }
    };
    let plan = match plan.map(Ok).unwrap_or_else(|| default_plan(&first)) {
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
    let mut r = runner::spawn(plan.clone(), target, started, None);
    r.handle.snapshot(first);
    for ev in pending {
        forward(&r.handle, ev);
    }
    r.handle.command(Command::RunAll);
    let timeline = loop {
        tokio::select! {
            ev = live.events.recv() => match ev {
                Some(ev) => forward(&r.handle, ev),
                None => break None,
            },
            pe = r.events.recv() => match pe {
                Some(PhaseEvent::AllDone(t)) => break Some(*t),
                Some(pe) => print_event(&plan, target, &pe, &live),
                None => break None,
            },
        }
    };
    let Some(timeline) = timeline else {
        return usage("the teardown runner stopped unexpectedly");
    };
    finish(cfg, &plan, &timeline, target_info)
}

fn forward(h: &runner::RunnerHandle, ev: CollectEvent) {
    match ev {
        CollectEvent::Snapshot(s) => h.snapshot(s),
        CollectEvent::Exited { key, status, .. } => h.exited(key, status),
        CollectEvent::Error(e) => println!("      collector: {e}"),
    }
}

fn print_event(plan: &Plan, target: ProcKey, ev: &PhaseEvent, live: &collect::live::LiveCollector) {
    match ev {
        PhaseEvent::Started { index, name } => {
            let action = plan
                .phases
                .get(*index)
                .map(|p| p.action.describe())
                .unwrap_or_default();
            println!(
                "{}",
                summary::started(*index, plan.phases.len(), name, &action)
            );
        }
        PhaseEvent::Finished(rec) => println!("{}", summary::finished(rec)),
        PhaseEvent::Signal {
            key,
            sig,
            name,
            result,
            ..
        } => match result {
            Ok(()) => println!("      {} -> pid {} ({name})", signal_name(*sig), key.pid),
            Err(e) => println!(
                "      {} -> pid {} ({name}): {e}",
                signal_name(*sig),
                key.pid
            ),
        },
        PhaseEvent::ExitNoticed { key, status, .. } => {
            let who = if *key == target { "target" } else { "child" };
            println!(
                "      {who} pid {} exited: {}",
                key.pid,
                summary::exit_status(*status)
            );
        }
        PhaseEvent::Progress { note, .. } => println!("      {note}"),
        PhaseEvent::SnapshotStacks { pid, reason, .. } => {
            println!(
                "      stacks wanted for pid {pid} ({reason}): run `lifecycle-top stacks --pid {pid}`"
            );
        }
        PhaseEvent::RefreshNow => live.refresh_now(),
        PhaseEvent::Timeline(_) | PhaseEvent::AllDone(_) => {}
    }
}

fn finish(
    cfg: &RunConfig,
    plan: &Plan,
    timeline: &Timeline,
    target: report::json::TargetInfo,
) -> ExitCode {
    let report = Report::new(timeline, &plan.source, target);
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
