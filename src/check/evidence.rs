//! The evidence `check` captures when the budget runs out, before anything is forced: every
//! live thread with its daemon flag (from the agent) and stack, the pending tasks with where
//! they wait (and their await chains when the agent answers `task_stacks`), and the tree's
//! processes with what they do with the stop signal.

use super::run::Run;
use crate::model::ProcKey;
use crate::stacks::StackSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Milliseconds after the stop signal.
    pub after_ms: u64,
    pub threads: Vec<EvThread>,
    pub tasks: Vec<EvTask>,
    /// The agent's `task_stacks` answer (await chains), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_stacks: Option<Value>,
    pub processes: Vec<EvProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<StackSnapshot>,
    /// What could not be known, in words.
    #[serde(default)]
    pub unknowns: Vec<String>,
    /// Why it did not exit: the wait-for graph folded to its root causes (one `line` each),
    /// computed from the run's last snapshot and agent report when the budget ran out.
    #[serde(default)]
    pub causes: Vec<crate::diagnose::Cause>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvThread {
    pub pid: i32,
    pub tid: i32,
    /// The Python thread name when the agent knows it, else the kernel's.
    pub name: String,
    pub state: char,
    /// The syscall and kernel wait channel it sits in.
    pub waits_in: String,
    /// `None`: unknown without the agent.
    pub daemon: Option<bool>,
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvTask {
    pub name: String,
    pub state: String,
    pub coro: Option<String>,
    #[serde(rename = "where")]
    pub where_: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvProcess {
    pub pid: i32,
    pub ppid: i32,
    pub name: String,
    pub state: char,
    /// What it does with the stop signal: "ignores", "handles", "default" (dies), "blocks".
    pub stop_signal: String,
}

/// The process the agent runs in (maybe a descendant of the target), else the target.
fn agent_process(run: &Run) -> ProcKey {
    let pid = run.model.facts.as_ref().and_then(|f| f.pid);
    let snap = run.model.snapshot.as_ref();
    match (pid, snap) {
        (Some(pid), Some(s)) => s
            .processes
            .iter()
            .find(|p| p.key.pid == pid)
            .map_or(run.target, |p| p.key),
        _ => run.target,
    }
}

/// Captures the evidence now (stacks of every thread of the agent's process, the agent's
/// await chains), folding events meanwhile.
pub(super) async fn capture(run: &mut Run, stop_signal: i32, stop_ms: u64) -> Evidence {
    let key = agent_process(run);
    run.handle
        .capture_stacks(key, Vec::new(), false, "budget overrun: evidence");
    let task_stacks = if run.model.report.is_some() {
        let handle = run.handle.clone();
        run.alongside(Box::pin(async move {
            handle
                .agent_request(
                    "task_stacks",
                    json!({"limit": 200, "frames": 20}),
                    EVIDENCE_WAIT,
                )
                .await
                .ok()
        }))
        .await
    } else {
        None
    };
    run.flush().await;
    build(run, key, stop_signal, stop_ms, task_stacks)
}

const EVIDENCE_WAIT: Duration = Duration::from_secs(2);

fn build(
    run: &Run,
    key: ProcKey,
    stop_signal: i32,
    stop_ms: u64,
    task_stacks: Option<Value>,
) -> Evidence {
    let m = &run.model;
    let facts = m.facts.as_ref();
    let mut unknowns = Vec::new();
    if facts.is_none() {
        unknowns.push(
            "daemon flags and tasks are unknown without the agent (launch with `check -- CMD` to inject it)"
                .to_string(),
        );
    }
    let snap = m.snapshot.as_deref();
    let threads = snap
        .map(|s| {
            s.threads
                .iter()
                .map(|t| {
                    let fact = facts.and_then(|f| f.thread(t.tid));
                    let waits_in = match (&t.wait.syscall, &t.wait.wchan) {
                        (Some(sc), Some(w)) => format!("{sc} ({w})"),
                        (Some(sc), None) => sc.clone(),
                        (None, Some(w)) => w.clone(),
                        (None, None) => "running".into(),
                    };
                    EvThread {
                        pid: s.target.pid,
                        tid: t.tid,
                        name: fact.map_or_else(|| t.name.to_string(), |f| f.name.clone()),
                        state: t.state.as_char(),
                        waits_in,
                        daemon: fact.map(|f| f.daemon),
                        main: fact.is_some_and(|f| f.main) || t.tid == s.target.pid,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let tasks = m
        .report
        .as_ref()
        .map(|r| {
            r.tasks
                .iter()
                .map(|t| EvTask {
                    name: t.name.clone(),
                    state: t.state.clone(),
                    coro: t.coro.clone(),
                    where_: t.where_.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let processes = snap
        .map(|s| {
            s.processes
                .iter()
                .filter(|p| p.exit.is_none())
                .map(|p| EvProcess {
                    pid: p.key.pid,
                    ppid: p.ppid,
                    name: p.name.to_string(),
                    state: p.state.as_char(),
                    stop_signal: if p.signals.ignores(stop_signal) {
                        "ignores"
                    } else if p.signals.catches(stop_signal) {
                        "handles"
                    } else {
                        "default"
                    }
                    .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let stacks = m
        .stacks
        .iter()
        .rev()
        .find(|s| s.pid == key.pid)
        .map(|s| s.as_ref().clone());
    // The tree's waits are read now, while it is still alive (before anything is forced).
    let causes = m.snapshot.as_ref().map_or_else(Vec::new, |s| {
        let facts = crate::diagnose::Facts::gather(
            std::sync::Arc::clone(s),
            m.report.as_deref().cloned(),
            stop_signal,
        );
        crate::diagnose::diagnose(&facts)
    });
    Evidence {
        causes,
        after_ms: m.now.at_ms.saturating_sub(stop_ms),
        threads,
        tasks,
        task_stacks,
        processes,
        stacks,
        unknowns,
    }
}
