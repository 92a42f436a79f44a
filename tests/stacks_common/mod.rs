//! Shared helpers for the stacks tests: start targets (killed on drop), wait until their
//! threads are blocked (observed in /proc, never a fixed sleep), find frames.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::stacks::{self, SourceStack, StackOptions, StackSnapshot, ThreadStacks};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A started target, SIGKILLed and reaped on drop.
pub struct Target {
    pub child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo test` builds examples only when no target is selected; `cargo test --test stacks`
/// does not. So build the target example here (a no-op when fresh), once per test binary.
pub fn build_rust_target() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", "stacks_blocked_threads"]);
        if target_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(
            st.success(),
            "cargo build --example stacks_blocked_threads failed"
        );
    });
}

/// target/debug (or release) of the running test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
}

pub fn require_tool(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "required tool `{tool}` is missing: install it (apt-get install {tool})"
    );
}

impl Target {
    /// Adopt a child started elsewhere (it is killed and reaped on drop like the others).
    pub fn adopt(child: Child) -> Self {
        Self { child, _dir: None }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Start `cmd`, wait for its "ready" line, then until all `blocked` comm names sit in a
    /// syscall.
    pub fn start(mut cmd: Command, blocked: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let t = Self { child, _dir: dir };
        assert_eq!(line.trim(), "ready", "target did not start");
        t.wait_blocked(blocked);
        t
    }

    pub fn wait_blocked(&self, names: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let snap = stacks::capture(
                self.pid(),
                &[],
                &StackOptions {
                    native: false,
                    kernel_stack: false,
                    ..Default::default()
                },
            );
            let all = names.iter().all(|n| {
                snap.threads.iter().any(|t| {
                    t.name.starts_with(n)
                        && t.kernel
                            .as_ref()
                            .is_some_and(|k| k.wait.syscall_nr.is_some())
                })
            });
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "threads {names:?} never blocked:\n{}",
                dump(&snap)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rust() -> Self {
        Self::rust_with(&[])
    }

    /// The Rust target with extra args (`spin` adds a thread busy in user space).
    pub fn rust_with(args: &[&str]) -> Self {
        build_rust_target();
        let exe = target_dir().join("examples/stacks_blocked_threads");
        assert!(
            exe.exists(),
            "{} missing: run `cargo build --example stacks_blocked_threads` (cargo test builds it)",
            exe.display()
        );
        let mut cmd = Command::new(exe);
        cmd.args(args);
        Self::start(
            cmd,
            // The main thread too: it prints "ready" before it joins (a test once caught it
            // between the two, with no native stack to read yet).
            &[
                "mutex_waiter",
                "condvar_waiter",
                "sleeper",
                "pipe_reader",
                "stacks_blocked_",
            ],
            None,
        )
    }
}

pub fn thread_named<'a>(snap: &'a StackSnapshot, name: &str) -> &'a ThreadStacks {
    snap.threads
        .iter()
        .find(|t| t.name.starts_with(name))
        .unwrap_or_else(|| panic!("no thread {name}:\n{}", dump(snap)))
}

pub fn has_function(stack: &SourceStack, func: &str) -> bool {
    stack.frames.iter().any(|f| f.function.contains(func))
}

pub fn dump(snap: &StackSnapshot) -> String {
    let mut out = Vec::new();
    stacks::cli::write_text(snap, &mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Compile tests/targets/stacks_blocked.c with gcc (-O0: frame-pointer frames, the hard case
/// for the ptrace-free path) into a temp dir and start it with `extra` parked threads.
pub fn c_target(extra: usize) -> Target {
    c_target_with(extra, false)
}

/// Same, optionally with a thread stuck in D state (a vfork parent).
pub fn c_target_with(extra: usize, vfork: bool) -> Target {
    require_tool("gcc");
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stacks_blocked");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/targets/stacks_blocked.c"
    );
    let st = Command::new("gcc")
        .args(["-O0", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .unwrap();
    assert!(st.success(), "gcc failed to build {src}");
    let mut cmd = Command::new(&exe);
    cmd.arg(extra.to_string());
    if vfork {
        cmd.arg("vfork");
    }
    Target::start(cmd, &["c_mutex", "c_sleep", "c_pipe"], Some(dir))
}

/// Scheduler state letter of a thread ('t' = ptrace stop), None once gone.
pub fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

/// Poll until `cond` holds (10 s bound, only to end a broken test; never a timing assertion).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Tid of the thread named `name`; waits for it, since a thread names itself after it starts.
pub fn tid_named(pid: i32, name: &str) -> i32 {
    let opts = StackOptions {
        native: false,
        kernel_stack: false,
        ..Default::default()
    };
    let mut tid = None;
    eventually(&format!("a thread named {name}"), || {
        let snap = stacks::capture(pid, &[], &opts);
        tid = snap
            .threads
            .iter()
            .find(|t| t.name.starts_with(name))
            .map(|t| t.tid);
        tid.is_some()
    });
    tid.unwrap_or_default()
}

/// The Python target; with `dump`, it first writes its agent-format stacks to
/// `<tempdir>/stacks.json` (returned) once every named thread is blocked.
pub fn python_target(extra: usize, dump: bool) -> (Target, Option<serde_json::Value>) {
    python_target_with(extra, dump, false)
}

/// Same; with `agent`, the lifecycle-top agent (assets/agent) runs inside it, listening on
/// `<tempdir>/agent.sock`.
pub fn python_target_with(
    extra: usize,
    dump: bool,
    agent: bool,
) -> (Target, Option<serde_json::Value>) {
    require_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stacks.json");
    let mut cmd = Command::new("python3");
    if agent {
        cmd.env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/assets/agent"),
        );
        cmd.env("LIFECYCLE_TOP_SOCKET", dir.path().join("agent.sock"));
    }
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/targets/stacks_blocked.py"
    ))
    .arg(extra.to_string());
    if dump {
        cmd.arg(&path);
    }
    let t = Target::start(cmd, &[], Some(dir));
    let v = dump.then(|| serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
    (t, v)
}
