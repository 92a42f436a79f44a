//! Judging what the agent answered. A reply only means the agent ran the request: the result
//! says whether it worked (docs/protocol.md §6 gives the shapes). A loop that is still
//! running, executor workers still busy or a task that swallowed its cancellation must end
//! the phase as not done, with the agent's own words, so headless never reports it clean.

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

/// Names of the entries of `list` whose `result` is one of `bad`, as "name (detail)".
fn with_result(list: &[Value], bad: &[&str], label: impl Fn(&Value) -> String) -> Vec<String> {
    list.iter()
        .filter(|e| {
            e.get("result")
                .and_then(Value::as_str)
                .is_some_and(|r| bad.contains(&r))
        })
        .map(label)
        .collect()
}

/// Judges the result of `method` (the `result` object of a successful response).
pub fn judge(method: &str, v: &Value) -> Judgement {
    match method {
        "cancel_tasks" => cancel_tasks(v),
        "shutdown_executors" => {
            let busy = with_result(arr(v, "executors"), &["workers_still_running"], |e| {
                let names: Vec<String> = arr(e, "busy").iter().map(|b| text(b, "name")).collect();
                format!(
                    "{} {}: {} worker(s) still running ({})",
                    text(e, "kind"),
                    text(e, "id"),
                    text(e, "workers_alive"),
                    names.join(", ")
                )
            });
            unfinished_if(busy)
        }
        "stop_loop" => unfinished_if(with_result(arr(v, "loops"), &["still_running"], |l| {
            format!("loop {} still running after stop()", text(l, "loop"))
        })),
        "close_loop" => {
            let bad = with_result(arr(v, "loops"), &["running", "error"], |l| {
                let detail = l.get("detail").and_then(Value::as_str).unwrap_or("");
                let sep = if detail.is_empty() { "" } else { ": " };
                format!(
                    "loop {}: {}{sep}{detail}",
                    text(l, "loop"),
                    text(l, "result")
                )
            });
            if bad.is_empty() {
                Judgement::Done
            } else {
                Judgement::Failed(bad.join("; "))
            }
        }
        _ => Judgement::Done,
    }
}

fn unfinished_if(what: Vec<String>) -> Judgement {
    if what.is_empty() {
        Judgement::Done
    } else {
        Judgement::Unfinished(what.join("; "))
    }
}

fn cancel_tasks(v: &Value) -> Judgement {
    let results = arr(v, "results");
    let named = |r: &Value| format!("\"{}\"", text(r, "name"));
    let swallowed = with_result(results, &["swallowed"], named);
    let pending = with_result(results, &["still_pending"], named);
    let blocked: Vec<String> = arr(v, "blocked")
        .iter()
        .map(|b| format!("loop {} blocked: {}", text(b, "loop"), text(b, "message")))
        .collect();
    let mut why = Vec::new();
    if !swallowed.is_empty() {
        why.push(format!(
            "{} task(s) swallowed the cancellation: {}",
            swallowed.len(),
            swallowed.join(", ")
        ));
    }
    why.extend(blocked);
    if !why.is_empty() {
        if !pending.is_empty() {
            why.push(format!("still pending: {}", pending.join(", ")));
        }
        return Judgement::Failed(why.join("; "));
    }
    if !pending.is_empty() {
        return Judgement::Unfinished(format!(
            "{} task(s) still pending after cancel(): {}",
            pending.len(),
            pending.join(", ")
        ));
    }
    Judgement::Done
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
            Judgement::Failed("1 task(s) swallowed the cancellation: \"stubborn-consumer\"".into())
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
            Judgement::Failed("loop 1: running: stop the loop first (stop_loop)".into())
        );
        let err = json!({"loops": [{"loop": 2, "result": "error", "detail": "RuntimeError()"}]});
        assert!(
            matches!(judge("close_loop", &err), Judgement::Failed(r) if r.contains("RuntimeError"))
        );
        let closed = json!({"loops": [{"loop": 1, "result": "closed"}, {"loop": 2, "result": "already_closed"}]});
        assert_eq!(judge("close_loop", &closed), Judgement::Done);
        assert_eq!(judge("run_phase", &json!({"name": "x"})), Judgement::Done);
    }
}
