//! Await chains of pending asyncio tasks: the agent's `task_stacks` answer (coroutine frames,
//! innermost first) joined with what each task awaits from the agent's last report (another
//! task, a gather, a subprocess, an executor worker, a future). Tasks are not threads, so a
//! [`super::StackSnapshot`] carries them beside its threads.

use super::Frame;
use crate::agent::protocol::{Report, TaskAwait};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most tasks one capture asks the agent for (its own default is 200 too).
pub const TASK_LIMIT: usize = 200;
/// Coroutine frames per task.
pub const FRAME_LIMIT: usize = 30;

/// One task's await chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStack {
    pub id: u64,
    #[serde(default)]
    pub loop_id: u64,
    pub name: String,
    /// Coroutine frames, innermost first.
    pub frames: Vec<Frame>,
    /// What the innermost await waits for, in words (`task "packer"`, `subprocess pid 42`,
    /// `executor worker tid 4711`, `a future`), when the report said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<String>,
    /// Where the task was created (`app.py:35`), when the agent's report said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// The `task_stacks` request's parameters for `ids` (all tasks when empty).
pub fn request_params(ids: &[u64]) -> Value {
    let mut p = serde_json::json!({"limit": TASK_LIMIT, "frames": FRAME_LIMIT});
    if !ids.is_empty() {
        p["ids"] = serde_json::json!(ids);
    }
    p
}

/// Decodes a `task_stacks` answer; `report` (the agent's last) names what each task awaits.
/// Malformed entries are skipped; the error says when nothing could be read at all.
pub fn from_agent(v: &Value, report: Option<&Report>) -> Result<Vec<TaskStack>, String> {
    let Some(tasks) = v.get("tasks").and_then(Value::as_array) else {
        return Err("the agent's task_stacks answer has no task list".into());
    };
    let innermost_first = v.get("order").and_then(Value::as_str) != Some("outermost_first");
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let Some(id) = t.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let mut frames: Vec<Frame> = t
            .get("frames")
            .and_then(Value::as_array)
            .map(|fs| fs.iter().filter_map(frame).collect())
            .unwrap_or_default();
        if !innermost_first {
            frames.reverse();
        }
        out.push(TaskStack {
            id,
            loop_id: t.get("loop").and_then(Value::as_u64).unwrap_or(0),
            name: t
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            frames,
            awaiting: report.and_then(|r| awaiting(r, id)),
            created_at: report.and_then(|r| {
                r.tasks
                    .iter()
                    .find(|t| t.id == id)
                    .and_then(|t| t.created_at.clone())
            }),
        });
    }
    Ok(out)
}

fn frame(f: &Value) -> Option<Frame> {
    Some(Frame {
        function: f.get("function")?.as_str()?.to_string(),
        file: f.get("file").and_then(Value::as_str).map(str::to_string),
        line: f
            .get("line")
            .and_then(Value::as_u64)
            .and_then(|l| u32::try_from(l).ok()),
        ..Frame::default()
    })
}

/// What task `id` awaits, in words, from the report's `task_awaits`.
pub fn awaiting(report: &Report, id: u64) -> Option<String> {
    let a = report.task_awaits.iter().find(|a| a.task_id == id)?;
    Some(describe(a, report))
}

fn describe(a: &TaskAwait, report: &Report) -> String {
    let name = |tid: u64| {
        report.tasks.iter().find(|t| t.id == tid).map_or_else(
            || format!("task {tid:#x}"),
            |t| format!("task \"{}\"", t.name),
        )
    };
    let at = a
        .where_
        .as_deref()
        .map(|w| format!(" at {w}"))
        .unwrap_or_default();
    let what = match a.kind.as_str() {
        "task" => a
            .task_ids
            .first()
            .map_or_else(|| "a task".to_string(), |&t| name(t)),
        "gather" => {
            let names: Vec<String> = a.task_ids.iter().map(|&t| name(t)).collect();
            format!("a gather of {}", names.join(", "))
        }
        "subprocess" => match a.pid {
            Some(p) => format!("subprocess pid {p}"),
            None => "a subprocess".into(),
        },
        "executor" => match a.native_id {
            Some(t) => format!("an executor work item running on worker tid {t}"),
            None => "an executor work item not started yet".into(),
        },
        "future" => "a future nobody has set a result on yet".into(),
        other => other.to_string(),
    };
    format!("{what}{at}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::TaskInfo;

    #[test]
    fn decodes_frames_innermost_first_and_names_the_awaited_task() {
        let answer = serde_json::json!({"order": "innermost_first", "tasks": [
            {"id": 7, "loop": 1, "name": "shipper", "frames": [
                {"file": "app.py", "line": 12, "function": "ship"},
                {"file": "app.py", "line": 30, "function": "main"}]},
            {"name": "no id"},
            {"id": 8, "loop": 1, "name": "packer", "frames": [{"line": 3}]}]});
        let report = Report {
            tasks: vec![TaskInfo {
                id: 8,
                name: "packer".into(),
                created_at: Some("app.py:35".into()),
                ..TaskInfo::default()
            }],
            task_awaits: vec![TaskAwait {
                task_id: 7,
                kind: "task".into(),
                task_ids: vec![8],
                where_: Some("app.py:12".into()),
                ..TaskAwait::default()
            }],
            ..Report::default()
        };
        let got = from_agent(&answer, Some(&report)).expect("decodes");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "shipper");
        assert_eq!(got[0].frames[0].function, "ship");
        assert_eq!(got[0].frames[0].line, Some(12));
        assert_eq!(
            got[0].awaiting.as_deref(),
            Some("task \"packer\" at app.py:12")
        );
        // A frame without a function is skipped, the task kept.
        assert!(got[1].frames.is_empty());
        assert_eq!(got[1].awaiting, None);
        // Where each was created comes from the report's task rows.
        assert_eq!(got[0].created_at, None);
        assert_eq!(got[1].created_at.as_deref(), Some("app.py:35"));
    }

    #[test]
    fn subprocess_executor_and_future_awaits_are_said_in_words() {
        let mk = |kind: &str| TaskAwait {
            task_id: 1,
            kind: kind.into(),
            pid: Some(42),
            native_id: Some(4711),
            ..TaskAwait::default()
        };
        let r = Report::default();
        assert_eq!(describe(&mk("subprocess"), &r), "subprocess pid 42");
        assert_eq!(
            describe(&mk("executor"), &r),
            "an executor work item running on worker tid 4711"
        );
        assert_eq!(
            describe(&mk("future"), &r),
            "a future nobody has set a result on yet"
        );
    }

    #[test]
    fn an_answer_without_a_task_list_is_an_error() {
        assert!(from_agent(&serde_json::json!({"threads": []}), None).is_err());
        assert_eq!(request_params(&[]).get("ids"), None);
        assert_eq!(request_params(&[5])["ids"], serde_json::json!([5]));
    }
}
