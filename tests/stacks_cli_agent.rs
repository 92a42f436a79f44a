//! `stacks --pid` with an agent in the target (issue 12): the command asks the agent for
//! its frames and shows them first, Python frames from the Python agent (assets/agent) and
//! JavaScript frames from the Node.js agent (assets/agent-node, preloaded with
//! NODE_OPTIONS=--require as launch mode does). Real interpreters; needs python3 and node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stacks_common;

use serde_json::Value;
use stacks_common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

fn stacks_json(pid: i32) -> Value {
    let out = Command::new(BIN)
        .args(["stacks", "--pid", &pid.to_string(), "--json"])
        .output()
        .expect("run lifecycle-top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn wait_for_socket(pid: i32) {
    eventually("the agent's socket", || {
        lifecycle_top::agent::path::candidates(pid)
            .iter()
            .any(|p| p.exists())
    });
}

/// `stacks --json` until `found` holds (the agent may not be listening yet, a loop may not
/// be blocked yet): 30 s bound, only to end a broken test.
fn stacks_until(pid: i32, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = stacks_json(pid);
        if found(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Functions of the first stack of each thread whose first stack has `source`.
fn first_stacks_of(v: &Value, source: &str) -> Vec<(i64, Vec<String>)> {
    v["threads"]
        .as_array()
        .map(|ts| ts.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|t| t["stacks"][0]["source"] == source)
        .map(|t| {
            let funcs = t["stacks"][0]["frames"]
                .as_array()
                .map(|fs| fs.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|f| f["function"].as_str().unwrap_or_default().to_string())
                .collect();
            (t["tid"].as_i64().unwrap_or_default(), funcs)
        })
        .collect()
}

#[test]
fn python_target_with_the_agent_gets_the_agents_python_frames() {
    let (t, _) = python_target_with(2, false, true);
    let pid = t.pid();
    wait_for_socket(pid);
    let v = stacks_until(pid, "python (agent) frames", |v| {
        first_stacks_of(v, "agent_python")
            .iter()
            .any(|(_, f)| f.iter().any(|f| f == "py_blocked_on_lock"))
    });
    // Joined to kernel threads: the lock waiter sits in futex, with its native frames too.
    let lock = v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["stacks"][0]["frames"]
                .as_array()
                .is_some_and(|fs| fs.iter().any(|f| f["function"] == "py_blocked_on_lock"))
        })
        .unwrap();
    assert_eq!(lock["kernel"]["wait"]["syscall"], "futex", "{lock:#}");
    assert!(
        lock["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == "native"),
        "{lock:#}"
    );
    // The agent answered, so py-spy was not needed.
    assert!(
        first_stacks_of(&v, "py_spy_python").is_empty(),
        "no py-spy stack when the agent answered: {v:#}"
    );
}

#[test]
fn node_target_with_the_agent_gets_javascript_frames() {
    let node = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .unwrap();
    let node = String::from_utf8_lossy(&node.stdout).trim().to_string();
    assert!(
        !node.is_empty(),
        "`node` not found: this test needs Node.js (apt-get install nodejs)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/targets/node");
    let agent = root.join("assets/agent-node/lifecycle_top_agent.js");
    let mut child = Command::new(node)
        .arg(dir.join("blocked.js"))
        .current_dir(&dir)
        .env("NODE_OPTIONS", format!("--require \"{}\"", agent.display()))
        .env_remove("LIFECYCLE_TOP_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let t = Target::adopt(child);
    assert_eq!(line.trim(), "ready");
    let pid = t.pid();
    wait_for_socket(pid);
    // blocked.js spins in `spin` (line 4) once a 50 ms timer fires.
    let v = stacks_until(pid, "javascript (agent) frames", |v| {
        first_stacks_of(v, "agent_js")
            .iter()
            .any(|(_, f)| f.first().is_some_and(|f| f == "spin"))
    });
    let js = first_stacks_of(&v, "agent_js");
    assert_eq!(js.len(), 1, "only the main thread runs JavaScript: {js:?}");
    assert_eq!(js[0].0, i64::from(pid), "joined to the main thread");
    let frame = &v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == pid)
        .unwrap()["stacks"][0]["frames"][0];
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("tests/targets/node/blocked.js")),
        "{frame}"
    );
    assert_eq!(frame["line"], 4, "{frame}");
}
