//! Chrome trace-event export (`--trace FILE`): one track (tid) per phase named by metadata
//! events, a complete event per phase, instant events for signals and exits. Timestamps are
//! microseconds since the run started. Loads in Perfetto (ui.perfetto.dev) and chrome://tracing.

use crate::teardown::timeline::{ExitEvent, Timeline};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// One trace event, typed so tests (and tools) can decode the file back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub name: String,
    pub ph: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cat: String,
    #[serde(default)]
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<u64>,
    pub pid: i32,
    pub tid: u64,
    /// Instant event scope: "t" (thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceFile {
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    pub display_time_unit: String,
}

fn meta(name: &str, pid: i32, tid: u64, args: Value) -> TraceEvent {
    TraceEvent {
        name: name.into(),
        ph: "M".into(),
        cat: String::new(),
        ts: 0,
        dur: None,
        pid,
        tid,
        s: None,
        args,
    }
}

/// An exit as an instant event on the track `tid` (0: outside any phase).
fn exit_instant(x: &ExitEvent, pid: i32, tid: u64) -> TraceEvent {
    instant(
        format!("exit {} ({})", x.pid, x.name),
        "exit",
        x.at_ms,
        pid,
        tid,
        json!({ "status": x.status }),
    )
}

fn instant(name: String, cat: &str, at_ms: u64, pid: i32, tid: u64, args: Value) -> TraceEvent {
    TraceEvent {
        name,
        ph: "i".into(),
        cat: cat.into(),
        ts: at_ms * 1000,
        dur: None,
        pid,
        tid,
        s: Some("t".into()),
        args,
    }
}

/// Track 0 holds events outside any phase; phase `i` is on track `i + 1`.
pub fn build(t: &Timeline) -> TraceFile {
    let pid = t.target_pid;
    let mut ev = vec![
        meta(
            "process_name",
            pid,
            0,
            json!({ "name": format!("teardown of pid {pid} ({})", t.plan) }),
        ),
        meta("thread_name", pid, 0, json!({ "name": "outside phases" })),
    ];
    let mut named = std::collections::HashSet::new();
    for p in &t.phases {
        let tid = p.index as u64 + 1;
        if named.insert(tid) {
            ev.push(meta(
                "thread_name",
                pid,
                tid,
                json!({ "name": format!("{} {}", tid, p.name) }),
            ));
            ev.push(meta(
                "thread_sort_index",
                pid,
                tid,
                json!({ "sort_index": tid }),
            ));
        }
        ev.push(TraceEvent {
            name: p.name.clone(),
            ph: "X".into(),
            cat: "phase".into(),
            ts: p.start_ms * 1000,
            dur: Some(p.duration_ms().max(1) * 1000),
            pid,
            tid,
            s: None,
            args: json!({
                "outcome": p.outcome,
                "action": p.action,
                "before": p.before,
                "after": p.after,
                "notes": p.notes,
            }),
        });
        for s in &p.signals {
            let args = json!({ "pid": s.pid, "error": s.error });
            ev.push(instant(
                format!("{} → {} ({})", s.signal, s.pid, s.name),
                "signal",
                s.at_ms,
                pid,
                tid,
                args,
            ));
        }
        ev.extend(p.exits.iter().map(|x| exit_instant(x, pid, tid)));
    }
    ev.extend(t.exits_outside.iter().map(|x| exit_instant(x, pid, 0)));
    TraceFile {
        trace_events: ev,
        display_time_unit: "ms".into(),
    }
}

pub fn write(t: &Timeline, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string(&build(t)).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
