//! `lifecycle-top snapshot`: a thin consumer of a [`Session`] attached to `--pid`. One
//! snapshot (two refreshes, so CPU% has an interval; the agent's first report when one
//! answers within a few seconds), or with `--watch` one JSON object per refresh until the
//! target exits. It folds the session's events into a [`Model`] like every consumer and
//! prints from it; it never runs a teardown phase.

use super::{AgentState, CoreEvent, Model, Session, SessionConfig, SystemClock};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// What `lifecycle-top snapshot` prints: the collector's snapshot, plus what the agent
/// reports when the target runs one (`agent` is null otherwise, so scripts see one shape).
#[derive(Debug, serde::Serialize)]
pub struct FullSnapshot {
    #[serde(flatten)]
    pub snapshot: Arc<crate::model::Snapshot>,
    pub agent: Option<AgentSection>,
    /// Why `agent` is null (no socket, refused, timed out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<String>,
    /// For a JVM target: its Java threads (daemon flags, joined to tids by `nid`) and the
    /// JVM's own deadlock report, or the one-line reason there are none. Absent otherwise
    /// (and in `--watch` lines: a thread dump per refresh would cost the JVM too much).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jvm: Option<crate::jvm::JvmSection>,
    /// Processes watched in limited mode (missing rights): what is missing and the remedy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<crate::access::Limitation>,
    /// The window CPU% was measured over (ms): `snapshot --cpu-window`, a snapshot that
    /// read again while it waited for the agent's report (250 ms), and each `--watch` line
    /// after the first (the interval). Absent: CPU% since each process and thread started
    /// (the first read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_window_ms: Option<u64>,
}

impl FullSnapshot {
    /// The text form's line saying what CPU% means.
    pub fn cpu_line(&self) -> String {
        match self.cpu_window_ms {
            Some(ms) => format!("CPU% over the last {ms} ms\n"),
            None => "CPU% since each process and thread started (--cpu-window 250ms measures \
                     a window)\n"
                .into(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct AgentSection {
    pub hello: crate::agent::Hello,
    pub report: Option<crate::agent::Report>,
}

/// How long `snapshot` waits for an agent's hello and first report.
const SNAPSHOT_AGENT_WAIT: Duration = Duration::from_secs(3);
/// The one-shot snapshot's refreshes while it waits for the agent's report. Its CPU% is
/// that of the first read (since start) unless `--cpu-window` asks for a second read.
const ONE_SHOT_INTERVAL: Duration = Duration::from_millis(250);

/// Attaches a session to `pid` that only watches (no plan is ever commanded).
async fn attach(pid: i32, interval: Duration) -> anyhow::Result<Session> {
    let started = crate::launch::Started {
        pid,
        launched: None,
        demo: false,
    };
    let (started, collector) = tokio::task::spawn_blocking(move || {
        crate::launch::attach_collector(&started).map(|c| (started, c))
    })
    .await??;
    let cfg = SessionConfig {
        interval,
        plan: None,
        guard_armed: false,
        cmd: Vec::new(),
        agent_injected: false,
    };
    Ok(Session::start(
        &started,
        collector,
        cfg,
        Arc::new(SystemClock::new()),
    ))
}

/// The agent part of the model as `snapshot` prints it; `waited`: the agent wait is over.
fn agent_part(m: &Model, waited: bool) -> (Option<AgentSection>, Option<String>) {
    match (&m.hello, &m.agent) {
        (Some(h), Some(AgentState::Connected(_))) | (Some(h), None) => {
            let report = m.report.as_deref().cloned();
            let status = match (&report, waited) {
                (Some(_), _) => None,
                (None, true) => Some("agent connected but sent no report in time".to_string()),
                (None, false) => Some("agent connected, no report yet".to_string()),
            };
            (
                Some(AgentSection {
                    hello: (**h).clone(),
                    report,
                }),
                status,
            )
        }
        (_, Some(AgentState::NotFound(why))) | (_, Some(AgentState::Lost(why))) => {
            (None, Some(why.clone()))
        }
        _ if waited => (None, Some("no agent answered within 3 s".to_string())),
        _ => (None, Some("looking for the agent".to_string())),
    }
}

/// `m`'s snapshot as printed; `interval`: the session's refresh interval. The first read's
/// CPU% is since start, every later one's over the interval (a one-shot snapshot reads
/// again when `--cpu-window` asks, and while it waits for the agent's report).
fn full(m: &Model, waited: bool, interval: Duration) -> Option<FullSnapshot> {
    let (agent, agent_status) = agent_part(m, waited);
    let cpu_window = (m.snapshots > 1).then_some(interval);
    Some(FullSnapshot {
        snapshot: m.snapshot.clone()?,
        agent,
        agent_status,
        jvm: None,
        limitations: m.limitations.clone(),
        cpu_window_ms: cpu_window.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
    })
}

/// One snapshot of the tree and threads, joined with the agent's first report if an agent
/// answers within a few seconds. CPU% is since start (the first read: no wait), or over
/// `cpu_window` (a second read that far after the first).
///
/// It used to wait for a second read 250 ms later in every case, which made `snapshot`
/// (and `why`) 5x slower than `ps -T` on a 1,000-thread target (374 vs 71 ms): the
/// one-read snapshot of the collector (issue 14) was lost when `snapshot` moved onto the
/// Session.
pub async fn snapshot_with_agent(
    pid: i32,
    cpu_window: Option<Duration>,
) -> anyhow::Result<FullSnapshot> {
    let interval = cpu_window.unwrap_or(ONE_SHOT_INTERVAL);
    let mut session = attach(pid, interval).await?;
    let reads = if cpu_window.is_some() { 2 } else { 1 };
    let mut model = Model::new();
    let deadline = tokio::time::Instant::now() + SNAPSHOT_AGENT_WAIT;
    let mut jvm = None;
    let mut waited = false;
    loop {
        let agent_settled = model.report.is_some()
            || matches!(
                model.agent,
                Some(AgentState::NotFound(_)) | Some(AgentState::Lost(_))
            );
        if model.snapshots >= reads && (agent_settled || waited) {
            break;
        }
        tokio::select! {
            ev = session.events.recv() => match ev {
                Some(ev) => {
                    if jvm.is_none()
                        && let CoreEvent::Snapshot { snapshot } = &ev.event
                    {
                        let (jvm_pid, tids): (i32, Vec<i32>) = (
                            snapshot.target.pid,
                            snapshot.threads.iter().map(|t| t.tid).collect(),
                        );
                        jvm = Some(tokio::task::spawn_blocking(move || {
                            crate::jvm::section(jvm_pid, &tids)
                        }));
                    }
                    model.apply(&ev);
                }
                None => anyhow::bail!("the session stopped before a snapshot (see --log)"),
            },
            _ = tokio::time::sleep_until(deadline), if !waited => waited = true,
        }
    }
    let mut out = full(&model, waited, interval)
        .ok_or_else(|| anyhow::anyhow!("the session stopped before a snapshot"))?;
    if let Some(j) = jvm {
        out.jvm = j.await?;
    }
    Ok(out)
}

/// How `snapshot --watch` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The target exited (a final `{"end":"exited",...}` line was printed).
    Exited,
    /// SIGINT or SIGTERM (a final `{"end":"interrupted"}` line was printed).
    Interrupted,
    /// The reader went away (`| head`): stop quietly.
    Closed,
}

/// `snapshot --watch`: one compact JSON object per refresh (the `snapshot --json` shape),
/// then one final line `{"end":"exited","target":{pid,start_time},"status":..,"at_ms":N}`
/// when the target exits (`status` is "Unknown" unless we are its parent).
pub async fn watch(pid: i32, interval: Duration, out: &mut dyn Write) -> anyhow::Result<WatchEnd> {
    let mut session = attach(pid, interval).await?;
    let mut model = Model::new();
    let mut interrupts = crate::headless::Interrupts::install();
    let started = tokio::time::Instant::now();
    let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    loop {
        let ev = tokio::select! {
            ev = session.events.recv() => ev,
            _ = interrupts.recv() => {
                let line = serde_json::json!({"end": "interrupted", "at_ms": model.now.at_ms});
                return Ok(match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Err(e) if closed(&e) => WatchEnd::Closed,
                    _ => WatchEnd::Interrupted,
                });
            }
        };
        let Some(ev) = ev else {
            anyhow::bail!("the session stopped (see --log for why)");
        };
        model.apply(&ev);
        let line = match &ev.event {
            CoreEvent::Snapshot { .. } => {
                let waited = started.elapsed() >= SNAPSHOT_AGENT_WAIT;
                full(&model, waited, interval)
                    .map(|f| serde_json::to_string(&f))
                    .transpose()?
            }
            CoreEvent::Exited { key, status, .. } if Some(*key) == model.target() => {
                let line = serde_json::json!({
                    "end": "exited",
                    "target": key,
                    "status": status,
                    "at_ms": ev.at.at_ms,
                });
                return Ok(match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Err(e) if closed(&e) => WatchEnd::Closed,
                    Err(e) => return Err(e.into()),
                    Ok(()) => WatchEnd::Exited,
                });
            }
            _ => None,
        };
        if let Some(line) = line {
            match writeln!(out, "{line}").and_then(|()| out.flush()) {
                Err(e) if closed(&e) => return Ok(WatchEnd::Closed),
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
        }
    }
}

/// The text form of the agent part of a snapshot: threads with daemon flags, loops, tasks.
pub fn agent_text(full: &FullSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(line) = crate::access::banner(&full.limitations) {
        let _ = writeln!(out, "\n{line}");
    }
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
        let created = t
            .created_at
            .as_deref()
            .map_or_else(String::new, |c| format!("  (created at {c})"));
        let _ = writeln!(
            out,
            "  task {:<28} {:<10} {}{created}",
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
