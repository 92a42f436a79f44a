//! Judging what the agent answered, and saying it in words. A reply only means the agent ran
//! the request: the result says whether it worked (docs/protocol.md §6 gives the shapes). A
//! loop that is still running, executor workers still busy or a task that swallowed its
//! cancellation must end the phase as not done, with the agent's own words, so headless never
//! reports it clean. What the agent spared on purpose (the loop's main task, the loop that
//! drives `asyncio.run`, its own tasks) is done: the target's SIGINT ends those later.

use serde_json::Value;

/// What an agent result means for its phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// The request did what it was for.
    Done,
    /// The agent waited its whole budget and something is still going (phase: timed out).
    Unfinished(String),
    /// The request cannot succeed (swallowed cancellation, blocked or running loop, error).
    Failed(String),
}

/// A reply read: the judgement and one plain sentence saying what the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub judgement: Judgement,
    pub note: String,
    /// `cancel_tasks` cancelled a task the spared main task awaited: the main task runs
    /// again and may finish on its own, so a signal should give it time first.
    pub main_resumes: bool,
    /// The answer says nothing keeps the target's event loop alive any more (Node.js
    /// `close_handles`: `loop_empty`): it is exiting now, as if its agent had said so.
    pub target_exits: bool,
}

fn arr<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "?".into(),
        Some(other) => other.to_string(),
    }
}

fn result_is(v: &Value, results: &[&str]) -> bool {
    v.get("result")
        .and_then(Value::as_str)
        .is_some_and(|r| results.contains(&r))
}

/// "1 task" / "5 tasks".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A text cut to `max` characters on a char boundary, with "…" when cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// A task's name in quotes (its id when it has none).
fn task_name(t: &Value) -> String {
    match t.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => format!("\"{}\"", short(n, 80)),
        _ => format!("task {}", text(t, "id")),
    }
}

fn names(list: &[&Value]) -> String {
    const SHOWN: usize = 5;
    let mut v: Vec<String> = list.iter().take(SHOWN).map(|t| task_name(t)).collect();
    if list.len() > SHOWN {
        v.push(format!("and {} more", list.len() - SHOWN));
    }
    v.join(", ")
}

fn detail(v: &Value) -> Option<String> {
    v.get("detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(|d| short(d, 200))
}

/// Judges the result of `method` (the `result` object of a successful response).
pub fn judge(method: &str, v: &Value) -> Judgement {
    read(method, v).judgement
}

/// Judges the result of `method` and says what it was in one plain sentence.
pub fn read(method: &str, v: &Value) -> Reading {
    match method {
        "cancel_tasks" => cancel_tasks(v),
        "shutdown_executors" => shutdown_executors(v),
        "stop_loop" => loops(v, "stop", &["stopped"], &["still_running"], &[]),
        "close_loop" => loops(
            v,
            "close",
            &["closed", "already_closed"],
            &["timeout"],
            &["running", "error"],
        ),
        "run_phase" => run_phase(v),
        "close_handles" => close_handles(v),
        "exit" => Reading {
            judgement: Judgement::Done,
            note: format!(
                "the target calls process.exit({}) now",
                v.get("code").and_then(Value::as_i64).unwrap_or(0)
            ),
            main_resumes: false,
            target_exits: false,
        },
        other => Reading {
            judgement: Judgement::Done,
            note: format!("the agent answered `{other}`"),
            main_resumes: false,
            target_exits: false,
        },
    }
}

/// A handle of a `close_handles` answer: `Timeout (poll) created at app.js:12`.
fn handle_name(h: &Value) -> String {
    let mut s = match h.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => short(n, 80),
        _ => text(h, "kind"),
    };
    if let Some(d) = h
        .get("detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty() && *d != "not traced")
    {
        s.push(' ');
        s.push_str(&short(d, 80));
    }
    if let Some(at) = h.get("site").and_then(Value::as_str) {
        s.push_str(&format!(" created at {at}"));
    }
    s
}

fn handle_names(list: &[&Value]) -> String {
    const SHOWN: usize = 5;
    let mut v: Vec<String> = list.iter().take(SHOWN).map(|h| handle_name(h)).collect();
    if list.len() > SHOWN {
        v.push(format!("and {} more", list.len() - SHOWN));
    }
    v.join(", ")
}

/// `close_handles` (Node.js agent): what it closed, cleared or unref'ed, and what of the asked
/// kinds still keeps the event loop alive (`remaining`: not done).
fn close_handles(v: &Value) -> Reading {
    let handles = arr(v, "handles");
    let remaining: Vec<&Value> = arr(v, "remaining").iter().collect();
    let failed: Vec<&Value> = handles
        .iter()
        .filter(|h| result_is(h, &["failed"]))
        .collect();
    let mut parts = Vec::new();
    for verb in ["closed", "cleared", "destroyed", "terminated", "unrefed"] {
        let list: Vec<&Value> = handles.iter().filter(|h| result_is(h, &[verb])).collect();
        if !list.is_empty() {
            let verb = if verb == "unrefed" { "unref'ed" } else { verb };
            parts.push(format!("{verb} {}", handle_names(&list)));
        }
    }
    if handles.is_empty() {
        parts.push("nothing of those kinds kept the event loop alive".into());
    }
    if !failed.is_empty() {
        parts.push(format!("could not close {}", handle_names(&failed)));
    }
    let judgement = if remaining.is_empty() && failed.is_empty() {
        Judgement::Done
    } else if remaining.is_empty() {
        Judgement::Failed(format!("could not close {}", handle_names(&failed)))
    } else {
        let left = format!(
            "{} still {} the event loop alive: {}",
            count(remaining.len(), "handle", "handles"),
            if remaining.len() == 1 {
                "keeps"
            } else {
                "keep"
            },
            handle_names(&remaining)
        );
        parts.push(left.clone());
        Judgement::Unfinished(left)
    };
    let target_exits = v.get("loop_empty").and_then(Value::as_bool) == Some(true);
    if target_exits {
        parts.push("nothing keeps the event loop alive now: the target exits".into());
    }
    Reading {
        judgement,
        note: parts.join("; "),
        main_resumes: false,
        target_exits,
    }
}

fn run_phase(v: &Value) -> Reading {
    let name = text(v, "name");
    if name == "*" {
        let ran: Vec<String> = arr(v, "phases")
            .iter()
            .map(|p| format!("\"{}\"", short(&text(p, "name"), 60)))
            .collect();
        return Reading {
            judgement: Judgement::Done,
            note: if ran.is_empty() {
                "the app registered no phases".into()
            } else {
                format!("ran the app's phases {}", ran.join(", "))
            },
            main_resumes: false,
            target_exits: false,
        };
    }
    let ms = v.get("duration_ms").and_then(Value::as_f64);
    let mut note = match ms {
        Some(ms) => format!("phase \"{name}\" ran in {ms:.0} ms"),
        None => format!("phase \"{name}\" ran"),
    };
    match v.get("result").and_then(Value::as_str) {
        Some(r) if r != "None" && !r.is_empty() => {
            note.push_str(&format!(" and returned {}", short(r, 120)))
        }
        _ => {}
    }
    Reading {
        judgement: Judgement::Done,
        note,
        main_resumes: false,
        target_exits: false,
    }
}

fn cancel_tasks(v: &Value) -> Reading {
    let results = arr(v, "results");
    let with = |r: &[&str]| -> Vec<&Value> { results.iter().filter(|t| result_is(t, r)).collect() };
    let swallowed = with(&["swallowed"]);
    let pending = with(&["still_pending"]);
    let raised = with(&["raised"]);
    let blocked: Vec<String> = arr(v, "blocked")
        .iter()
        .map(|b| {
            format!(
                "loop {} is blocked: {}",
                text(b, "loop"),
                short(&text(b, "message"), 200)
            )
        })
        .collect();
    let spared = arr(v, "spared");
    let main: Vec<&Value> = spared
        .iter()
        .filter(|s| s.get("reason").and_then(Value::as_str) == Some("main_task"))
        .collect();
    let other_spared: Vec<&Value> = spared
        .iter()
        .filter(|s| s.get("reason").and_then(Value::as_str) != Some("main_task"))
        .collect();

    let mut parts = vec![if results.is_empty() {
        "no task to cancel".to_string()
    } else {
        format!("cancelled {}", count(results.len(), "task", "tasks"))
    }];
    let mut failed = Vec::new();
    if !swallowed.is_empty() {
        let s = format!(
            "{} the cancellation: {}",
            count(swallowed.len(), "swallowed", "swallowed"),
            names(&swallowed)
        );
        failed.push(s.clone());
        parts.push(s);
    }
    if !pending.is_empty() {
        parts.push(format!(
            "{} still pending after cancel(): {}",
            pending.len(),
            names(&pending)
        ));
    }
    if !raised.is_empty() {
        parts.push(format!(
            "{} ended with another exception: {}",
            raised.len(),
            names(&raised)
        ));
    }
    failed.extend(blocked.iter().cloned());
    parts.extend(blocked);
    let (woken, idle): (Vec<&Value>, Vec<&Value>) = main
        .iter()
        .copied()
        .partition(|s| s.get("resumes").and_then(Value::as_bool) == Some(true));
    match idle.len() {
        0 => {}
        1 => parts.push(format!(
            "spared the main task {} (it ends when the target gets SIGINT)",
            task_name(idle[0])
        )),
        _ => parts.push(format!(
            "spared the main tasks {} (they end when the target gets SIGINT)",
            names(&idle)
        )),
    }
    for m in &woken {
        let awaited: Vec<String> = arr(m, "awaited")
            .iter()
            .filter_map(Value::as_str)
            .map(|n| format!("\"{}\"", short(n, 60)))
            .collect();
        parts.push(format!(
            "spared the main task {}, which awaited {} and now resumes: it may finish on its own",
            task_name(m),
            if awaited.is_empty() {
                "a cancelled task".to_string()
            } else {
                awaited.join(", ")
            }
        ));
    }
    if !other_spared.is_empty() {
        parts.push(format!(
            "spared the agent's own {}: {}",
            if other_spared.len() == 1 {
                "task"
            } else {
                "tasks"
            },
            names(&other_spared)
        ));
    }
    let note = parts.join("; ");
    let judgement = if !failed.is_empty() {
        if !pending.is_empty() {
            failed.push(format!("still pending: {}", names(&pending)));
        }
        Judgement::Failed(failed.join("; "))
    } else if !pending.is_empty() {
        Judgement::Unfinished(format!(
            "{} still pending after cancel(): {}",
            count(pending.len(), "task", "tasks"),
            names(&pending)
        ))
    } else {
        Judgement::Done
    };
    Reading {
        judgement,
        note,
        main_resumes: !woken.is_empty(),
        target_exits: false,
    }
}

fn shutdown_executors(v: &Value) -> Reading {
    let exes = arr(v, "executors");
    if exes.is_empty() {
        return Reading {
            judgement: Judgement::Done,
            note: "no executor to shut down".into(),
            main_resumes: false,
            target_exits: false,
        };
    }
    let (busy, done): (Vec<&Value>, Vec<&Value>) = exes
        .iter()
        .partition(|e| result_is(e, &["workers_still_running"]));
    let workers = |e: &Value| {
        let n = e.get("workers_before").and_then(Value::as_u64).unwrap_or(0);
        format!(
            "{}, {}",
            short(&text(e, "kind"), 60),
            count(n as usize, "worker", "workers")
        )
    };
    let mut parts = Vec::new();
    if !done.is_empty() {
        let what: Vec<String> = done.iter().map(|e| workers(e)).collect();
        parts.push(format!(
            "shut down {} ({})",
            count(done.len(), "executor", "executors"),
            what.join("; ")
        ));
    }
    let busy: Vec<String> = busy
        .iter()
        .map(|e| {
            let alive = e.get("workers_alive").and_then(Value::as_u64).unwrap_or(0) as usize;
            let who: Vec<String> = arr(e, "busy")
                .iter()
                .take(5)
                .map(|b| short(&text(b, "name"), 60))
                .collect();
            format!(
                "{} did not finish shutting down: {} still running ({})",
                short(&text(e, "kind"), 60),
                count(alive, "worker", "workers"),
                who.join(", ")
            )
        })
        .collect();
    parts.extend(busy.iter().cloned());
    Reading {
        judgement: if busy.is_empty() {
            Judgement::Done
        } else {
            Judgement::Unfinished(busy.join("; "))
        },
        note: parts.join("; "),
        main_resumes: false,
        target_exits: false,
    }
}

/// `stop_loop` / `close_loop`: per-loop results; `spared` (a loop driving asyncio.run's main
/// task) is done on purpose.
fn loops(v: &Value, verb: &str, ok: &[&str], unfinished: &[&str], failed: &[&str]) -> Reading {
    let list = arr(v, "loops");
    if list.is_empty() {
        return Reading {
            judgement: Judgement::Done,
            note: format!("no event loop to {verb}"),
            main_resumes: false,
            target_exits: false,
        };
    }
    let past = if verb == "stop" { "stopped" } else { "closed" };
    let mut parts = Vec::new();
    let (mut not_done, mut bad) = (Vec::new(), Vec::new());
    for l in list {
        let id = text(l, "loop");
        let r = l.get("result").and_then(Value::as_str).unwrap_or("?");
        let d = detail(l).map(|d| format!(": {d}")).unwrap_or_default();
        let s = match r {
            "already_closed" => format!("loop {id} was already closed"),
            _ if ok.contains(&r) => format!("{past} loop {id}"),
            "spared" if verb == "stop" => format!("left loop {id} running on purpose{d}"),
            "spared" => format!("left loop {id} open on purpose{d}"),
            "still_running" => format!("loop {id} still running after stop()"),
            "running" => format!("loop {id} is still running, not closed{d}"),
            "timeout" => format!("loop {id}: close() did not return in time{d}"),
            "error" => format!("loop {id}: close() raised{d}"),
            other => format!("loop {id}: {}{d}", short(other, 40)),
        };
        if unfinished.contains(&r) {
            not_done.push(s.clone());
        } else if failed.contains(&r) {
            bad.push(s.clone());
        }
        parts.push(s);
    }
    let judgement = if !bad.is_empty() {
        Judgement::Failed(bad.join("; "))
    } else if !not_done.is_empty() {
        Judgement::Unfinished(not_done.join("; "))
    } else {
        Judgement::Done
    };
    Reading {
        judgement,
        note: parts.join("; "),
        main_resumes: false,
        target_exits: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_judged_per_method() {
        let cancel = json!({"results": [
            {"name": "poll", "result": "cancelled"},
            {"name": "stubborn-consumer", "result": "swallowed", "detail": "kept running"}],
            "counts": {}, "blocked": []});
        assert_eq!(
            judge("cancel_tasks", &cancel),
            Judgement::Failed("1 swallowed the cancellation: \"stubborn-consumer\"".into())
        );
        let pending = json!({"results": [{"name": "slow", "result": "still_pending"}]});
        assert!(
            matches!(judge("cancel_tasks", &pending), Judgement::Unfinished(r) if r.contains("\"slow\""))
        );
        let all_done = json!({"results": [{"name": "a", "result": "cancelled"},
                                          {"name": "b", "result": "raised"}], "blocked": []});
        assert_eq!(judge("cancel_tasks", &all_done), Judgement::Done);

        let exe = json!({"executors": [{"id": 7, "kind": "ThreadPoolExecutor", "workers_alive": 1,
            "result": "workers_still_running", "busy": [{"name": "pool_0"}]}]});
        assert!(
            matches!(judge("shutdown_executors", &exe), Judgement::Unfinished(r) if r.contains("pool_0"))
        );
        assert_eq!(
            judge("shutdown_executors", &json!({"executors": []})),
            Judgement::Done
        );

        let stop = json!({"loops": [{"loop": 1, "running": true, "result": "still_running"}]});
        assert!(matches!(
            judge("stop_loop", &stop),
            Judgement::Unfinished(_)
        ));
        let stopped = json!({"loops": [{"loop": 1, "running": false, "result": "stopped"}]});
        assert_eq!(judge("stop_loop", &stopped), Judgement::Done);

        let close = json!({"loops": [{"loop": 1, "result": "running", "detail": "stop the loop first (stop_loop)"}]});
        assert_eq!(
            judge("close_loop", &close),
            Judgement::Failed(
                "loop 1 is still running, not closed: stop the loop first (stop_loop)".into()
            )
        );
        let err = json!({"loops": [{"loop": 2, "result": "error", "detail": "RuntimeError()"}]});
        assert!(
            matches!(judge("close_loop", &err), Judgement::Failed(r) if r.contains("RuntimeError"))
        );
        let slow = json!({"loops": [{"loop": 2, "result": "timeout", "detail": "still running"}]});
        assert!(matches!(
            judge("close_loop", &slow),
            Judgement::Unfinished(_)
        ));
        let closed = json!({"loops": [{"loop": 1, "result": "closed"}, {"loop": 2, "result": "already_closed"}]});
        assert_eq!(judge("close_loop", &closed), Judgement::Done);
        assert_eq!(judge("run_phase", &json!({"name": "x"})), Judgement::Done);
        assert_eq!(
            read(
                "run_phase",
                &json!({"name": "*", "phases": [{"name": "flush"}]})
            )
            .note,
            "ran the app's phases \"flush\""
        );
    }

    #[test]
    fn a_main_task_woken_by_the_cancel_is_said_and_flagged() {
        let cancel = json!({"results": [
            {"id": 1, "loop": 1, "name": "worker", "result": "cancelled"}],
            "spared": [{"id": 3, "loop": 1, "name": "Task-1", "reason": "main_task",
                        "resumes": true, "awaited": ["worker"]}],
            "counts": {"cancelled": 1}, "blocked": []});
        let r = read("cancel_tasks", &cancel);
        assert_eq!(r.judgement, Judgement::Done);
        assert!(r.main_resumes);
        assert_eq!(
            r.note,
            "cancelled 1 task; spared the main task \"Task-1\", which awaited \"worker\" and \
             now resumes: it may finish on its own"
        );
        let idle = json!({"results": [], "spared": [{"id": 3, "loop": 1, "name": "m",
            "reason": "main_task"}]});
        assert!(!read("cancel_tasks", &idle).main_resumes);
    }

    #[test]
    fn spared_main_task_and_loops_are_done_and_said_in_words() {
        let cancel = json!({"results": [
            {"id": 1, "loop": 1, "name": "a", "result": "cancelled"},
            {"id": 2, "loop": 1, "name": "b", "result": "cancelled"}],
            "spared": [{"id": 3, "loop": 1, "name": "main", "reason": "main_task"},
                       {"id": 4, "loop": 1, "name": "lt-agent", "reason": "agent"}],
            "counts": {"cancelled": 2}, "blocked": []});
        let r = read("cancel_tasks", &cancel);
        assert_eq!(r.judgement, Judgement::Done);
        assert_eq!(
            r.note,
            "cancelled 2 tasks; spared the main task \"main\" (it ends when the target gets \
             SIGINT); spared the agent's own task: \"lt-agent\""
        );
        for (method, verb) in [("stop_loop", "running"), ("close_loop", "open")] {
            let v = json!({"loops": [{"loop": 1, "result": "spared",
                "detail": "it drives asyncio.run's main task"}]});
            let r = read(method, &v);
            assert_eq!(r.judgement, Judgement::Done, "{method}");
            assert_eq!(
                r.note,
                format!("left loop 1 {verb} on purpose: it drives asyncio.run's main task")
            );
        }
    }

    #[test]
    fn notes_are_plain_sentences() {
        let cancel = json!({"results": [
            {"name": "a", "result": "cancelled"}, {"name": "b", "result": "cancelled"},
            {"name": "c", "result": "cancelled"}, {"name": "d", "result": "cancelled"},
            {"name": "stubborn-consumer", "result": "swallowed"}],
            "spared": [{"id": 9, "loop": 1, "name": "main", "reason": "main_task"}]});
        let r = read("cancel_tasks", &cancel);
        assert_eq!(
            r.note,
            "cancelled 5 tasks; 1 swallowed the cancellation: \"stubborn-consumer\"; spared \
             the main task \"main\" (it ends when the target gets SIGINT)"
        );
        assert!(matches!(r.judgement, Judgement::Failed(_)));
        let exe = json!({"executors": [{"id": 7, "kind": "ThreadPoolExecutor",
            "workers_before": 4, "workers_alive": 0, "result": "stopped", "busy": []}]});
        assert_eq!(
            read("shutdown_executors", &exe).note,
            "shut down 1 executor (ThreadPoolExecutor, 4 workers)"
        );
        let stopped = json!({"loops": [{"loop": 1, "running": false, "result": "stopped"}]});
        assert_eq!(read("stop_loop", &stopped).note, "stopped loop 1");
        let closed = json!({"loops": [{"loop": 1, "result": "closed"}]});
        assert_eq!(read("close_loop", &closed).note, "closed loop 1");
        let phase = json!({"name": "flush-db", "result": "None", "duration_ms": 12.3});
        assert_eq!(
            read("run_phase", &phase).note,
            "phase \"flush-db\" ran in 12 ms"
        );
        assert_eq!(
            read("cancel_tasks", &json!({"results": []})).note,
            "no task to cancel"
        );
        // A long name is cut on a char boundary, never mid-field JSON.
        let long = "é".repeat(300);
        let r = read(
            "cancel_tasks",
            &json!({"results": [{"name": long, "result": "swallowed"}]}),
        );
        assert!(r.note.contains('…') && !r.note.contains('{'), "{}", r.note);
    }

    #[test]
    fn close_handles_is_done_only_when_nothing_of_those_kinds_remains() {
        let timer = json!({"kind": "Timeout", "name": "Timeout (poll)", "detail": "setInterval 1000 ms",
                           "site": "app.js:12", "result": "cleared"});
        let done = json!({"handles": [timer], "remaining": []});
        let r = read("close_handles", &done);
        assert_eq!(r.judgement, Judgement::Done);
        assert_eq!(
            r.note,
            "cleared Timeout (poll) setInterval 1000 ms created at app.js:12"
        );
        assert!(!r.target_exits);
        let last = json!({"handles": [timer], "remaining": [], "loop_empty": true});
        let r = read("close_handles", &last);
        assert!(
            r.target_exits && r.note.ends_with("the target exits"),
            "{}",
            r.note
        );
        let server = json!({"kind": "TCPServerWrap", "name": "TCPServerWrap",
                            "detail": "listening on 127.0.0.1:43211", "site": "app.js:20"});
        let left = json!({"handles": [], "remaining": [server]});
        assert!(matches!(
            judge("close_handles", &left),
            Judgement::Unfinished(r) if r == "1 handle still keeps the event loop alive: TCPServerWrap listening on 127.0.0.1:43211 created at app.js:20"
        ));
        let bad =
            json!({"handles": [{"kind": "FSEventWrap", "result": "failed"}], "remaining": []});
        assert!(
            matches!(judge("close_handles", &bad), Judgement::Failed(r) if r.contains("FSEventWrap"))
        );
        assert_eq!(
            read("close_handles", &json!({"handles": [], "remaining": []})).note,
            "nothing of those kinds kept the event loop alive"
        );
        assert_eq!(
            judge("exit", &json!({"mode": "exit", "code": 0})),
            Judgement::Done
        );
    }
}
