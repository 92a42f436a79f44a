//! Glue between core modules that must not know each other: the agent client serving as
//! the teardown engine's [`AgentPort`], and stack capture joined with the agent's Python
//! stacks. Used by the TUI and by headless mode alike.

use crate::agent::AgentRequester;
use crate::collect;
use crate::model::{ProcKey, Snapshot};
use crate::stacks::{self, StackOptions, StackSnapshot};
use crate::teardown::AgentPort;
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long the agent gets to answer a `stacks` request before we go on without Python
/// frames from it.
const AGENT_STACKS_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent client as the engine's port: errors become the one-line reason the timeline
/// shows.
pub struct AgentPortAdapter(pub AgentRequester);

impl AgentPort for AgentPortAdapter {
    fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        let method = method.to_string();
        Box::pin(async move {
            self.0
                .request(&method, params, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Captures stacks of `tids` (all when empty) of the process `target` (pid + start time, so a
/// reused pid is refused): Python frames from the agent when one is
/// connected, then native and kernel sources on a blocking thread.
pub async fn capture_stacks(
    target: crate::model::ProcKey,
    tids: Vec<i32>,
    agent: Option<AgentRequester>,
    seize: bool,
) -> StackSnapshot {
    let pid = target.pid;
    let opts = StackOptions {
        seize,
        // Refuses a reused pid: the snapshot's start time must still match.
        expect_start_time: Some(target.start_time),
        // Python frames come from the agent (asked concurrently) or from py-spy below.
        pyspy: false,
        ..StackOptions::default()
    };
    // Kernel and native stacks are taken at once, while the agent is asked for Python
    // frames: a teardown that moves on (and kills) right after asking loses nothing.
    let native = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || stacks::capture(pid, &tids, &opts))
    };
    let python = async {
        match agent {
            Some(a) => a
                .request("stacks", Value::Null, AGENT_STACKS_TIMEOUT)
                .await
                .map_err(|e| tracing::info!("no Python stacks from the agent: {e}"))
                .ok(),
            None => None,
        }
    };
    let (native, python) = tokio::join!(native, python);
    let mut snap = native.unwrap_or_else(|e| StackSnapshot {
        pid,
        taken_at_unix_ms: 0,
        capture_us: 0,
        threads: Vec::new(),
        errors: vec![stacks::SourceError {
            source: stacks::SourceKind::Kernel,
            message: format!("stack capture crashed: {e}"),
        }],
    });
    let joined =
        python.is_some_and(|v| stacks::python::join_agent(&v, &mut snap.threads, &mut snap.errors));
    if !joined && !snap.threads.is_empty() {
        // No agent: py-spy reads the interpreter's own structures (CPython only).
        let opts = StackOptions {
            pyspy: true,
            ..opts
        };
        let (mut threads, mut errors) = (std::mem::take(&mut snap.threads), Vec::new());
        let joined = tokio::task::spawn_blocking(move || {
            stacks::python::join_into(pid, None, &mut threads, &opts, &mut errors);
            (threads, errors)
        })
        .await;
        if let Ok((threads, errors)) = joined {
            snap.threads = threads;
            snap.errors.extend(errors);
        }
    }
    snap
}

/// What `lifecycle-top snapshot` prints: the collector's snapshot, plus what the agent
/// reports when the target runs one (`agent` is null otherwise, so scripts see one shape).
#[derive(Debug, serde::Serialize)]
pub struct FullSnapshot {
    #[serde(flatten)]
    pub snapshot: crate::model::Snapshot,
    pub agent: Option<AgentSection>,
    /// Why `agent` is null (no socket, refused, timed out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct AgentSection {
    pub hello: crate::agent::Hello,
    pub report: Option<crate::agent::Report>,
}

/// How long `snapshot` waits for an agent's hello and first report.
const SNAPSHOT_AGENT_WAIT: Duration = Duration::from_secs(3);

/// One snapshot of the tree and threads, joined with the agent's first report if an agent
/// answers within a few seconds.
pub async fn snapshot_with_agent(pid: i32) -> anyhow::Result<FullSnapshot> {
    let snapshot =
        tokio::task::spawn_blocking(move || crate::collect::snapshot_once(pid)).await??;
    let pids: std::collections::HashSet<i32> = snapshot
        .processes
        .iter()
        .filter(|p| p.exit.is_none())
        .map(|p| p.key.pid)
        .collect();
    let in_tree = std::sync::Arc::new(move |p: i32| pids.contains(&p));
    let mut client =
        crate::agent::spawn_client(snapshot.target, in_tree, Duration::from_millis(200));
    let mut hello = None;
    let wait = async {
        while let Some(ev) = client.events.recv().await {
            match ev {
                crate::agent::AgentEvent::Connected(h) => hello = Some(h),
                crate::agent::AgentEvent::Report(r) => return Ok(*r),
                crate::agent::AgentEvent::NotFound(why) | crate::agent::AgentEvent::Lost(why) => {
                    return Err(why);
                }
            }
        }
        Err("agent client stopped".to_string())
    };
    let outcome = tokio::time::timeout(SNAPSHOT_AGENT_WAIT, wait).await;
    let (agent, agent_status) = match (outcome, hello) {
        (Ok(Ok(report)), Some(hello)) => (
            Some(AgentSection {
                hello,
                report: Some(report),
            }),
            None,
        ),
        (_, Some(hello)) => (
            Some(AgentSection {
                hello,
                report: None,
            }),
            Some("agent connected but sent no report in time".to_string()),
        ),
        (Ok(Err(why)), None) => (None, Some(why)),
        (Ok(Ok(_)), None) => (
            None,
            Some("agent sent a report before its hello".to_string()),
        ),
        (Err(_), None) => (None, Some("no agent answered within 3 s".to_string())),
    };
    Ok(FullSnapshot {
        snapshot,
        agent,
        agent_status,
    })
}

/// The text form of the agent part of a snapshot: threads with daemon flags, loops, tasks.
pub fn agent_text(full: &FullSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let Some(agent) = &full.agent else {
        let why = full.agent_status.as_deref().unwrap_or("none");
        let _ = writeln!(out, "\nagent: not found ({why})");
        return out;
    };
    let _ = writeln!(
        out,
        "\nagent: {} {} (agent {})",
        agent.hello.runtime.name, agent.hello.runtime.version, agent.hello.agent.version
    );
    let Some(r) = &agent.report else {
        return out;
    };
    let _ = writeln!(
        out,
        "{:>8}  {:<24} {:<7} ALIVE",
        "TID", "PYTHON THREAD", "DAEMON"
    );
    for t in &r.threads {
        let tid = t.native_id.map_or("-".to_string(), |n| n.to_string());
        let daemon = if t.daemon { "yes" } else { "NO" };
        let _ = writeln!(out, "{tid:>8}  {:<24} {daemon:<7} {}", t.name, t.alive);
    }
    for l in &r.loops {
        let _ = writeln!(
            out,
            "loop {} running={} closed={} tasks={} lag={}",
            l.id,
            l.running,
            l.closed,
            l.tasks_total,
            l.lag_ms.map_or("-".to_string(), |ms| format!("{ms:.1} ms"))
        );
    }
    for t in &r.tasks {
        let _ = writeln!(
            out,
            "  task {:<28} {:<10} {}",
            t.name,
            t.state,
            t.where_.as_deref().unwrap_or("")
        );
    }
    out
}

/// The processes currently in the target tree, shared with the agent client so it only
/// accepts a socket peer from inside the tree. Kept as (pid, start time): a peer whose pid was
/// reused since the last refresh does not pass.
#[derive(Clone)]
pub struct TreePids(Arc<RwLock<HashSet<ProcKey>>>);

impl TreePids {
    pub fn new(target: ProcKey) -> Self {
        Self(Arc::new(RwLock::new(HashSet::from([target]))))
    }
    pub fn update(&self, snap: &Snapshot) {
        if let Ok(mut set) = self.0.write() {
            set.clear();
            set.extend(
                snap.processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| p.key),
            );
            set.insert(snap.target);
        }
    }
    pub fn checker(&self) -> Arc<dyn Fn(i32) -> bool + Send + Sync> {
        let set = self.0.clone();
        Arc::new(move |pid| {
            let Ok(start_time) = collect::procfs::read_start_time(pid) else {
                return false;
            };
            set.read()
                .is_ok_and(|s| s.contains(&ProcKey { pid, start_time }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_must_match_pid_and_start_time() {
        let pid = std::process::id() as i32;
        let start_time = collect::procfs::read_start_time(pid).expect("own start time");
        let ours = TreePids::new(ProcKey { pid, start_time });
        assert!(ours.checker()(pid));
        let reused = TreePids::new(ProcKey {
            pid,
            start_time: start_time + 1,
        });
        assert!(!reused.checker()(pid), "same pid, other process");
        assert!(!ours.checker()(i32::MAX), "not in the tree");
    }
}
