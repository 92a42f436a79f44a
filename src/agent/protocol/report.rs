//! Wire types of a pushed report (docs/protocol.md §5): the `report` header, its lists
//! (threads, loops, executors, subprocesses, cost) and the `report_chunk` task rows, with
//! the client-side bounds on what a chunk may decode to.

use super::PhaseInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One pushed report; `tasks` is filled by the client from the report's chunks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    #[serde(deserialize_with = "null_as_default")]
    pub seq: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub at_unix_ms: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub pid: i32,
    pub threads: Vec<PyThread>,
    pub loops: Vec<LoopInfo>,
    pub executors: Vec<ExecutorInfo>,
    pub subprocesses: Vec<SubprocessInfo>,
    pub phases: Vec<PhaseInfo>,
    #[serde(deserialize_with = "null_as_default")]
    pub tasks_total: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub tasks_listed: u64,
    /// The app registered its task containers, so `TaskInfo::tracked` is meaningful.
    #[serde(deserialize_with = "null_as_default")]
    pub tracking: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub task_chunks: u32,
    pub cost: AgentCost,
    /// The last warnings the agent caught (oldest first), and how many since it started.
    pub warnings: Vec<AgentWarning>,
    #[serde(deserialize_with = "null_as_default")]
    pub warnings_total: u64,
    /// Reassembled from `report_chunk` messages (never on the wire in the report line).
    pub tasks: Vec<TaskInfo>,
    /// What blocked tasks await (docs/protocol.md §5.2): another task, a gather of tasks, a
    /// subprocess. Only tasks awaiting one of those are listed. Absent from older agents.
    pub task_awaits: Vec<TaskAwait>,
    /// Node.js agent (docs/protocol.md §8): the libuv handles and requests it sees, ref'ed
    /// (keeping the event loop alive) or not. Each ref'ed one is also a task row.
    pub handles: Vec<LoopHandle>,
    /// Set when no agent wrote this report but lifecycle-top made it from the runtime's own
    /// view: `jvm` for a HotSpot thread dump (`crate::jvm::report`). Never on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

impl Report {
    /// The ref'ed handles and requests: what keeps a Node.js event loop alive.
    pub fn ref_handles(&self) -> impl Iterator<Item = &LoopHandle> {
        self.handles.iter().filter(|h| h.ref_)
    }
}

/// One libuv handle or request of a Node.js target (`Timeout`, `TCPServerWrap`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopHandle {
    /// The task row's id (0: counted by the runtime, no object found).
    #[serde(deserialize_with = "null_as_default")]
    pub id: u64,
    /// The runtime's kind: `Timeout`, `TCPServerWrap`, `TCPSocketWrap`, `ProcessWrap`, ...
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    /// What `close_handles` calls it: `timer`, `server`, `socket`, `child`, `worker`, `other`.
    #[serde(deserialize_with = "null_as_default")]
    pub group: String,
    /// Keeps the event loop alive.
    #[serde(rename = "ref", deserialize_with = "null_as_default")]
    pub ref_: bool,
    /// The kind with the callback's name: `Timeout (poll)`.
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// `setInterval 1000 ms`, `listening on 127.0.0.1:43211`, `child pid 42 (sleep)`.
    #[serde(deserialize_with = "null_as_default")]
    pub detail: String,
    /// `file:line` of the code that created it.
    pub site: Option<String>,
    /// A libuv request (fs, dns...), not a handle.
    #[serde(deserialize_with = "null_as_default")]
    pub request: bool,
}

impl LoopHandle {
    /// `Timeout (poll) setInterval 1000 ms created at app.js:12`.
    pub fn describe(&self) -> String {
        let mut s = if self.name.is_empty() {
            self.kind.clone()
        } else {
            self.name.clone()
        };
        if !self.detail.is_empty() && self.detail != "not traced" {
            s.push(' ');
            s.push_str(&self.detail);
        }
        match &self.site {
            Some(at) => s.push_str(&format!(" created at {at}")),
            None => s.push_str(" (creation site not traced)"),
        }
        s
    }
}

/// What one task awaits, from its `_fut_waiter` and await chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskAwait {
    #[serde(deserialize_with = "null_as_default")]
    pub task_id: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub loop_id: u64,
    /// `task`, `gather`, `subprocess`, `executor` or `future`.
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    /// The awaited tasks (`task`: one; `gather`: the pending children).
    pub task_ids: Vec<u64>,
    /// `subprocess`: the child's pid.
    pub pid: Option<i32>,
    /// `executor`: the native id of the worker thread running the awaited work item.
    pub native_id: Option<i32>,
    /// `file:line` of the await.
    #[serde(rename = "where")]
    pub where_: Option<String>,
}

/// What a thread blocks on, decoded from its innermost frames (docs/protocol.md §5.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitsOn {
    /// `shutdown`, `join`, `event`, `condition`, `queue`, `lock`, `rlock`, `semaphore`,
    /// `sleep`, `select`, `serve_forever` (a socketserver loop), `future`; other values are
    /// passed through.
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    /// `join`: the joined thread.
    pub target_native_id: Option<i32>,
    /// `rlock`: the thread holding it.
    pub owner_native_id: Option<i32>,
    /// `file:line` of the caller (the first frame outside threading.py/queue.py).
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// A short label of the object (`Event`, `RLock app.py:3`...).
    pub object: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PyThread {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// `None` for a thread still starting.
    pub ident: Option<u64>,
    pub native_id: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    pub daemon: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub alive: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub main: bool,
    /// One of the agent's own threads.
    #[serde(deserialize_with = "null_as_default")]
    pub agent: bool,
    /// What it blocks on, when its frames say (absent from older agents).
    pub waits_on: Option<WaitsOn>,
    /// `file:line` of the `Thread.start()` call that created it.
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub id: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub class: String,
    pub thread_ident: Option<u64>,
    pub native_id: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    pub running: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub closed: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub blocked: bool,
    pub lag_ms: Option<f64>,
    pub counts: BTreeMap<String, u64>,
    #[serde(deserialize_with = "null_as_default")]
    pub tasks_total: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub main: bool,
    pub blocked_at: Option<String>,
    /// The task `asyncio.run` / `run_until_complete` waits on (spared by cancel_tasks).
    pub main_task: Option<MainTask>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MainTask {
    #[serde(deserialize_with = "null_as_default")]
    pub id: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutorInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub id: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    pub max_workers: Option<u32>,
    #[serde(deserialize_with = "null_as_default")]
    pub shutdown: bool,
    pub pending: Option<u64>,
    pub workers: Vec<WorkerInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    pub native_id: Option<i32>,
    pub pid: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    pub alive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubprocessInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub pid: i32,
    #[serde(deserialize_with = "null_as_default")]
    pub args: String,
    /// `file:line (function)` of the code that created it.
    pub site: Option<String>,
    /// `subprocess` or `asyncio`.
    #[serde(deserialize_with = "null_as_default")]
    pub via: String,
    #[serde(deserialize_with = "null_as_default")]
    pub created_unix_ms: u64,
    pub returncode: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    pub alive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentCost {
    /// CPU time of the agent's threads since it started.
    #[serde(deserialize_with = "null_as_default")]
    pub cpu_ms: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub bytes_sent: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub reports_sent: u64,
    /// Time to build this report (before encoding and sending).
    #[serde(deserialize_with = "null_as_default")]
    pub build_ms: f64,
    /// Build + encode + send of the previous report.
    pub last_report_ms: Option<f64>,
    #[serde(deserialize_with = "null_as_default")]
    pub clients: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub refused: u64,
}

/// A warning the agent caught in the target (docs/protocol.md §5.1): one of the seed's
/// asyncio errors, a never-awaited coroutine, a ResourceWarning, an exception in a thread,
/// an unraisable or an unhandled exception.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentWarning {
    #[serde(deserialize_with = "null_as_default")]
    pub seq: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub at_unix_ms: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_as_default")]
    pub message: String,
    pub detail: Option<String>,
    pub exc_type: Option<String>,
    pub thread: Option<String>,
    pub native_id: Option<i32>,
    pub task: Option<String>,
}

/// One task, decoded from a chunk row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: u64,
    pub loop_id: u64,
    pub name: String,
    /// `pending`, `running` or `cancelling` (other values are passed through).
    pub state: String,
    /// Qualified name of the task's coroutine.
    pub coro: Option<String>,
    /// `file:line` where it awaits (innermost frame outside asyncio).
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// `None` when the app registered no task container.
    pub tracked: Option<bool>,
    /// `file:line` where the task was created (the first frame outside asyncio above
    /// `create_task`); `None` from older agents and for tasks made without `create_task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// `report_delta` (docs/protocol.md §5.3): the header of report `seq` with only the threads
/// that changed (`threads`, keyed by `ident`) and those gone (`threads_removed`); its chunks
/// carry the task rows added or changed and the ids removed since report `base`. Every other
/// header field is whole, as in a full report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportDelta {
    #[serde(deserialize_with = "null_as_default")]
    pub base: u64,
    pub threads_removed: Vec<u64>,
    #[serde(flatten)]
    pub report: Report,
}

/// A slice of a report's task list; rows are `[id, loop, name, state, coro, where, tracked,
/// created_at]` (the last one optional: older agents send seven elements).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportChunk {
    pub seq: u64,
    pub index: u32,
    pub count: u32,
    pub strings: Vec<String>,
    pub tasks: Vec<Vec<Value>>,
    /// Delta chunks only: ids of the task rows removed since the base report.
    pub removed: Vec<u64>,
}

/// Longest string a task row keeps (coroutine, `where`, name); longer ones are cut with `…`.
pub const MAX_ROW_STRING: usize = 4096;
/// Bytes of row strings one report may decode to in total. A chunk's string table is shared
/// by its rows, so without this one long string referenced by every row would multiply.
pub const MAX_REPORT_STRING_BYTES: usize = 32 << 20;

/// `s` cut to at most [`MAX_ROW_STRING`] bytes (on a char boundary), with `…` when cut.
pub fn cap_string(s: &str) -> String {
    if s.len() <= MAX_ROW_STRING {
        return s.to_string();
    }
    let mut end = MAX_ROW_STRING - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl ReportChunk {
    /// Decodes the rows; malformed rows are skipped and counted in the second value.
    /// `budget` is the number of string bytes the report may still decode to (see
    /// [`MAX_REPORT_STRING_BYTES`]); once spent, strings decode as `…`.
    pub fn decode(&self, budget: &mut usize) -> (Vec<TaskInfo>, usize) {
        let table: Vec<String> = self.strings.iter().map(|s| cap_string(s)).collect();
        let mut take = |s: &str| {
            if s.len() > *budget {
                *budget = 0;
                return "…".to_string();
            }
            *budget -= s.len();
            s.to_string()
        };
        let mut bad = 0;
        let mut out = Vec::with_capacity(self.tasks.len());
        for row in &self.tasks {
            let (Some(id), Some(loop_id)) = (
                row.first().and_then(Value::as_u64),
                row.get(1).and_then(Value::as_u64),
            ) else {
                bad += 1;
                continue;
            };
            let mut string = |v: Option<&Value>| {
                v.and_then(Value::as_i64)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| table.get(i))
                    .map(|s| take(s))
            };
            let coro = string(row.get(4));
            let where_ = string(row.get(5));
            let created_at = string(row.get(7));
            out.push(TaskInfo {
                id,
                loop_id,
                name: take(&cap_string(
                    row.get(2).and_then(Value::as_str).unwrap_or(""),
                )),
                state: cap_string(row.get(3).and_then(Value::as_str).unwrap_or("?")),
                coro,
                where_,
                tracked: row.get(6).and_then(Value::as_bool),
                created_at,
            });
        }
        (out, bad)
    }
}

/// `null` where a plain value is expected decodes as the default (0, false, ""): an agent
/// that has no value for a field must not cost the whole report.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::super::Incoming;
    use super::*;

    #[test]
    fn nulls_in_reports_decode_as_defaults() {
        let m: Incoming = serde_json::from_str(
            r#"{"type":"report","seq":3,"pid":null,"threads":[{"name":null,"ident":null,"daemon":null}],
               "cost":{"cpu_ms":null}}"#,
        )
        .expect("decode");
        let Incoming::Report(r) = m else {
            panic!("not a report")
        };
        assert_eq!((r.seq, r.pid), (3, 0));
        assert_eq!(r.threads[0].ident, None);
        assert!(!r.threads[0].daemon);
    }

    #[test]
    fn chunk_rows_decode_and_skip_bad_ones() {
        let c: ReportChunk = serde_json::from_str(
            r#"{"seq":1,"index":0,"count":1,"strings":["co","a.py:3"],
               "tasks":[[5,9,"t","pending",0,1,true,1,"extra"],["bad"],[6,9,"u","running",-1,7,null]]}"#,
        )
        .expect("decode");
        let mut budget = MAX_REPORT_STRING_BYTES;
        let (tasks, bad) = c.decode(&mut budget);
        assert_eq!(bad, 1);
        assert_eq!(tasks[0].coro.as_deref(), Some("co"));
        assert_eq!(tasks[0].where_.as_deref(), Some("a.py:3"));
        assert_eq!(tasks[0].tracked, Some(true));
        assert_eq!(tasks[0].created_at.as_deref(), Some("a.py:3"));
        assert_eq!(
            tasks[1].created_at, None,
            "an older agent's seven-element row"
        );
        assert_eq!(tasks[1].coro, None);
        assert_eq!(tasks[1].where_, None);
        assert_eq!(tasks[1].tracked, None);
    }

    #[test]
    fn shared_strings_are_capped_and_budgeted() {
        let long = "x".repeat(100_000);
        let rows: Vec<Vec<Value>> = (0..50u64)
            .map(|i| {
                vec![
                    i.into(),
                    1.into(),
                    "t".into(),
                    "pending".into(),
                    0.into(),
                    0.into(),
                ]
            })
            .collect();
        let c = ReportChunk {
            strings: vec![long],
            tasks: rows,
            ..ReportChunk::default()
        };
        let mut budget = MAX_REPORT_STRING_BYTES;
        let (tasks, _) = c.decode(&mut budget);
        let coro = tasks[0].coro.as_deref().expect("coro");
        assert!(coro.len() <= MAX_ROW_STRING && coro.ends_with('…'));
        let mut small = 10_000;
        let (tasks, _) = c.decode(&mut small);
        assert_eq!(small, 0);
        assert_eq!(tasks[49].coro.as_deref(), Some("…"));
    }
}

#[cfg(test)]
mod delta_tests {
    use super::super::Incoming;

    #[test]
    fn a_delta_decodes_with_its_report_fields() {
        let m: Incoming = serde_json::from_str(
            r#"{"type":"report_delta","seq":5,"base":4,"task_chunks":1,"tasks_listed":2,
               "threads":[{"name":"new","ident":12,"native_id":1}],"threads_removed":[11],"x":1}"#,
        )
        .expect("decode");
        let Incoming::ReportDelta(d) = m else {
            panic!("not a delta: {m:?}")
        };
        assert_eq!((d.base, d.report.seq, d.report.task_chunks), (4, 5, 1));
        assert_eq!(d.threads_removed, [11]);
        assert_eq!(d.report.threads[0].ident, Some(12));
    }
}
