//! Teardown safety and wiring against real processes: the PID-reuse guard, plan file errors,
//! agent phases through an [`AgentPort`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod teardown_support;

use lifecycle_top::model::{AgentFacts, ProcKey};
use lifecycle_top::teardown::timeline::Outcome;
use lifecycle_top::teardown::{AgentPort, exec, plan};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teardown_support::{Harness, Tree, alive, start_time};

#[test]
fn pid_reuse_guard_refuses_a_key_with_the_wrong_start_time() {
    let tree = Tree::spawn("exec sleep 1000");
    let pid = tree.pid();
    let real = start_time(pid);
    let stale = ProcKey {
        pid,
        start_time: real.wrapping_sub(1),
    };
    let err = exec::signal(stale, libc::SIGKILL).expect_err("must refuse a reused pid");
    assert!(matches!(err, exec::SignalError::Reused(_)), "{err}");
    assert!(alive(pid), "the live process holding the pid is untouched");
    exec::signal(
        ProcKey {
            pid,
            start_time: real,
        },
        0,
    )
    .expect("the right key reaches it");
}

#[test]
fn plan_file_errors_name_file_phase_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[phase]]\nname = \"flush\"\naction = \"signal_target\"\non_timeout = \"retry\"\n",
    )
    .unwrap();
    let err = plan::load(path.to_str().unwrap()).expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("flush") && msg.contains("on_timeout"),
        "{msg}"
    );
    assert!(
        msg.contains("escalate, snapshot, continue"),
        "the message lists the choices: {msg}"
    );
    let missing = plan::load("/nonexistent/plan.toml").expect_err("missing file");
    assert!(
        missing.to_string().contains("python-asyncio"),
        "remedy names built-ins: {missing}"
    );
}

/// A scripted agent: answers every request but `run_phase`, which it does not know.
#[derive(Default)]
struct ScriptedAgent {
    calls: Mutex<Vec<(String, Value)>>,
}

impl AgentPort for ScriptedAgent {
    fn request(
        &self,
        method: &str,
        params: Value,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        self.calls
            .lock()
            .unwrap()
            .push((method.to_string(), params));
        let known = method != "run_phase";
        Box::pin(async move {
            if known {
                Ok(json!({ "results": [] }))
            } else {
                Err("agent refused `run_phase`: not_found: no phase 'flush'".to_string())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phases_go_through_the_agent_port() {
    let plan = r#"
[[phase]]
name = "cancel"
action = "agent"
request = "cancel_tasks"
[[phase]]
name = "flush"
action = "agent"
request = "run_phase"
app_phase = "flush"
[[phase]]
name = "target"
action = "signal_target"
"#;
    let tree = Tree::spawn("exec sleep 1000");
    let agent = Arc::new(ScriptedAgent::default());
    let mut h = Harness::attach_with(tree.pid(), plan, 1, Some(agent.clone())).await;
    h.runner.handle.agent_facts(Some(AgentFacts {
        loops: 1,
        ..AgentFacts::default()
    }));
    let t = h.run_all().await;
    assert_eq!(t.phases[0].outcome, Outcome::Ok);
    assert!(
        matches!(&t.phases[1].outcome, Outcome::Failed { reason } if reason.contains("no phase 'flush'"))
    );
    assert_eq!(
        t.phases[2].outcome,
        Outcome::Ok,
        "an agent failure does not stop the plan"
    );
    let calls = agent.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "cancel_tasks");
    assert_eq!(
        (calls[1].0.as_str(), &calls[1].1["name"]),
        ("run_phase", &json!("flush"))
    );
}
