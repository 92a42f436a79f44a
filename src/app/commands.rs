//! What the TUI does with the dashboard's commands: teardown commands and stack captures go
//! to the session (captures come back as `CoreEvent::Stacks` with `asked: true`); writing
//! the viewed stack snapshot to files is the app's own I/O. Kept apart from the event loop
//! in `mod.rs` so that file stays a plain `select!`. The Why overlay's diagnosis reads
//! /proc, so [`diagnose`] runs it on the blocking pool and sends the result back to the loop.

use crate::session::{AgentState, CaptureAsk, SessionHandle, TaskWant};
use crate::stacks::StackSnapshot;
use crate::state::{Action, AgentStatus, Command, Dashboard, WhyResult};
use crate::teardown;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How much `+` extends the running phase's timeout (like systemd's EXTEND_TIMEOUT_USEC).
const EXTEND_BY: Duration = Duration::from_secs(5);

pub fn dispatch(dash: &mut Dashboard, cmd: Command, session: &SessionHandle) {
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
            if dash.model.plan.is_none() {
                // The session keeps it and runs it once the plan is loaded.
                dash.say("the teardown plan is not loaded yet: it runs once it is");
            }
            session.teardown(c);
        }
        Command::CaptureStacks(ask) => {
            let screen = dash.screen();
            if screen.target_exit().is_some() {
                dash.say("the target has exited: no stacks to take");
                return;
            }
            let Some(target) = screen.snapshot().map(|s| s.target) else {
                return;
            };
            let connected = matches!(screen.model.agent, Some(AgentState::Connected(_)));
            let chains = connected
                && screen
                    .model
                    .hello
                    .as_ref()
                    .is_some_and(|h| h.has("task_stacks"));
            if ask.threads.is_none() && !chains {
                dash.say(if connected {
                    "this agent gives no await chains (no task_stacks): its rows are handles, not tasks"
                } else {
                    "await chains come from the agent, which is not connected"
                });
                return;
            }
            let msg = match (&ask.threads, &ask.tasks) {
                (None, _) => "asking the agent for the task's await chain".to_string(),
                (Some(t), TaskWant::None) => format!("capturing stacks of {} thread(s)", t.len()),
                (Some(t), _) => format!(
                    "capturing stacks of {} thread(s) and the pending tasks' await chains",
                    t.len()
                ),
            };
            session.capture(CaptureAsk {
                key: target,
                threads: ask.threads,
                tasks: if chains { ask.tasks } else { TaskWant::None },
                seize: false,
                reason: "asked from the dashboard".into(),
            });
            dash.say(msg);
        }
        Command::WriteStacks => write_viewed_stacks(dash),
    }
}

/// `w`: the viewed stack snapshot to files (the app's own I/O; a replay can do it too).
pub fn write_viewed_stacks(dash: &mut Dashboard) {
    let msg = match dash.screen().viewed_stacks() {
        Some(snap) => match write_stacks(snap) {
            Ok(path) => format!(
                "stacks written to {} and {}",
                path.display(),
                path.with_extension("json").display()
            ),
            Err(e) => format!("cannot write stacks: {e:#}"),
        },
        None => "no stack snapshot yet: press s or S first".into(),
    };
    dash.say(msg);
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

/// Diagnoses the Model's latest snapshot and agent report on the blocking pool (it reads
/// /proc: every thread's syscall, fds, locks) and sends the result to `tx`. Always sends
/// one result, an error included, so the overlay never stays on "computing…".
pub fn diagnose(dash: &Dashboard, tx: mpsc::Sender<WhyResult>) {
    let screen = dash.screen();
    let snapshot = dash.model.snapshot.clone();
    let report = screen.report().cloned();
    let agent = match screen.agent_status() {
        AgentStatus::Connected(_) => None,
        AgentStatus::Disabled => Some("disabled".to_string()),
        AgentStatus::Searching => Some("searching".to_string()),
        AgentStatus::NotFound(why) => Some(format!("not found: {why}")),
        AgentStatus::Lost(why) => Some(format!("lost: {why}")),
        AgentStatus::TargetExited => Some("gone with the exited target".to_string()),
    };
    tokio::spawn(async move {
        let failed = |e: String| WhyResult {
            error: Some(e),
            computed_at_unix_ms: crate::collect::exits::now_unix_ms(),
            ..WhyResult::default()
        };
        let Some(snapshot) = snapshot else {
            let _ = tx.send(failed("no snapshot yet".into())).await;
            return;
        };
        let work = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let result = {
                let facts = crate::diagnose::Facts::gather(snapshot, report, libc::SIGTERM);
                let why = crate::diagnose::why_causes(&facts, agent.as_deref());
                WhyResult {
                    causes: why.causes.into_iter().map(|c| c.line).collect(),
                    unknowns: why.unknowns,
                    error: None,
                    computed_at_unix_ms: crate::collect::exits::now_unix_ms(),
                    took_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                }
            };
            // The facts (every thread's wait, the graph) are dropped: give their pages back.
            crate::memory::give_back_freed();
            result
        });
        let result = match work.await {
            Ok(r) => r,
            Err(e) => failed(format!("the diagnosis failed: {e}")),
        };
        // The loop is gone when this fails: nothing to tell.
        let _ = tx.send(result).await;
    });
}
