//! `lifecycle-top snapshot`: one snapshot of the tree and threads, joined with the agent's
//! first report when an agent answers within a few seconds, as JSON or text.

use std::time::Duration;

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
    /// For a JVM target: its Java threads (daemon flags, joined to tids by `nid`) and the
    /// JVM's own deadlock report, or the one-line reason there are none. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jvm: Option<crate::jvm::JvmSection>,
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
    let (jvm_pid, tids): (i32, Vec<i32>) = (
        snapshot.target.pid,
        snapshot.threads.iter().map(|t| t.tid).collect(),
    );
    let jvm = tokio::task::spawn_blocking(move || crate::jvm::section(jvm_pid, &tids));
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
                crate::agent::AgentEvent::Warning(_) | crate::agent::AgentEvent::Exiting(_) => {}
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
        jvm: jvm.await?,
    })
}

/// The text form of the agent part of a snapshot: threads with daemon flags, loops, tasks.
pub fn agent_text(full: &FullSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(j) = &full.jvm {
        out.push_str(&jvm_text(j));
    }
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

/// The text form of the `jvm` section: Java threads with daemon flags, then deadlocks.
fn jvm_text(j: &crate::jvm::JvmSection) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(e) = &j.error {
        let _ = writeln!(out, "\n{e}");
        return out;
    }
    let _ = writeln!(
        out,
        "\njvm: {} threads (dump via {}, {:.1} ms)",
        j.threads.len(),
        j.via.unwrap_or("?"),
        j.dump_ms.unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "{:>8}  {:<28} {:<7} STATE",
        "TID", "JAVA THREAD", "DAEMON"
    );
    for t in j.threads.iter().filter(|t| t.java_tid.is_some()) {
        let tid = t.tid.map_or("-".to_string(), |n| n.to_string());
        let daemon = if t.daemon { "yes" } else { "NO" };
        let _ = writeln!(out, "{tid:>8}  {:<28} {daemon:<7} {}", t.name, t.state);
    }
    for d in &j.deadlocks {
        let _ = writeln!(out, "Java-level deadlock:");
        for e in &d.edges {
            let _ = writeln!(
                out,
                "  \"{}\" waits for <{}> (a {}), held by \"{}\"",
                e.thread, e.monitor.addr, e.monitor.class, e.held_by
            );
        }
    }
    out
}
