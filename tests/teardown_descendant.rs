//! The agent in a descendant of the target (`lifecycle-top -- sh -c "python3 app.py; :"`):
//! the real binary, headless, with the agent injected. The interpreter's main thread is never
//! a non-daemon left-over, and the stacks of the child's threads are taken from the child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::report::Report;
use std::process::Stdio;

const PLAN: &str = r#"
name = "descendant"
# The agent lives in the child, which headless accepts as a peer as soon as its collector
# lists it (while it waits for the agent, before the first phase).
[[phase]]
name = "audit threads"
action = "audit"
stacks = true
timeout = "3s"
[[phase]]
name = "kill children"
action = "signal_children"
signals = ["SIGKILL"]
timeout = "3s"
[[phase]]
name = "signal target"
action = "signal_target"
timeout = "3s"
"#;

const APP: &str = r#"
import threading, time
stop = threading.Event()
threading.Thread(target=stop.wait, name="lingering-worker").start()  # non-daemon
time.sleep(1000)
"#;

#[test]
fn agent_in_a_child_of_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, app, out) = (
        dir.path().join("plan.toml"),
        dir.path().join("app.py"),
        dir.path().join("report.json"),
    );
    std::fs::write(&plan, PLAN).unwrap();
    std::fs::write(&app, APP).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(["--headless", "--interval", "50", "--plan"])
        .arg(&plan)
        .arg("--report")
        .arg(&out)
        // `; :` keeps sh as the parent: the agent runs in its child.
        .args(["--", "sh", "-c"])
        .arg(format!("python3 {} ; :", app.display()))
        .stdin(Stdio::null())
        .status()
        .expect("run lifecycle-top --headless");
    let r: Report = serde_json::from_str(&std::fs::read_to_string(&out).expect("report written"))
        .expect("typed decode");
    // Test cleanup only, before any assert: the launched tree is its own process group.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(r.target.pid),
        nix::sys::signal::SIGKILL,
    );
    assert_eq!(status.code(), Some(1), "a non-daemon thread lingered");
    let audit = &r.timeline.phases[0];
    assert_eq!(audit.name, "audit threads");
    let note = audit
        .notes
        .iter()
        .find(|n| n.contains("(lingering-worker): non-daemon thread"))
        .unwrap_or_else(|| panic!("python3 reached with its agent: {audit:#?}"));
    let tid: i32 = note.split(' ').next().unwrap().parse().unwrap();
    assert!(
        !audit.notes.iter().any(|n| n.contains("(MainThread)")),
        "the main thread is no left-over: {audit:#?}"
    );
    // Its stacks come from the child, not from sh.
    let snap = r
        .stacks
        .iter()
        .find(|s| s.threads.iter().any(|t| t.tid == tid))
        .unwrap_or_else(|| panic!("stacks of thread {tid}: {:#?}", r.stacks));
    assert_ne!(snap.pid, r.target.pid, "captured in the agent's process");
}
