//! End to end: the real binary in a pseudo-terminal, attached to real targets. Waits on
//! what the screen shows (parsed with a VT100 emulator), never on sleeps.

mod pty_util;

use pty_util::{Session, Target, alive, demo_tree, python, wait_until};
use std::process::{Command, Stdio};

const TARGET: &str = r#"
import ctypes, threading, time, sys
def named():
    ctypes.CDLL(None).prctl(15, b"e2e-worker", 0, 0, 0)
    threading.Event().wait()
threading.Thread(target=named, daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"#;

fn spawn_target() -> Target {
    python(TARGET)
}

#[test]
fn attach_shows_thread_and_q_leaves_target_alive() {
    let target = spawn_target();
    let pid = target.0.id() as i32;
    let mut s = Session::start(&["--pid", &pid.to_string(), "--interval", "100"]);
    s.screen.wait_for("e2e-worker");
    s.screen.wait_for(&format!("pid {pid}"));
    s.press(b"?");
    s.screen.wait_for("Keys (Esc closes)");
    s.press(b"\x1b");
    s.screen.wait_gone("Keys (Esc closes)");
    s.press(b"q");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(alive(pid), "q must never touch the target");
}

/// Voluntary context switches of the dashboard's threads that are neither its main thread,
/// its own `lt-*` threads nor tokio's: what is left is the terminal-input reader.
fn input_reader_switches(pid: i32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the dashboard's threads") {
        let tid = e
            .expect("a thread entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue; // gone meanwhile
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let name = field("Name:");
        if tid == pid.to_string() || name.starts_with("lt-") || name.starts_with("tokio") {
            continue;
        }
        let n = field("voluntary_ctxt_switches:").parse().unwrap_or(0);
        out.push((format!("{tid} {name}"), n));
    }
    out.sort();
    out
}

/// The key reader sleeps until a key comes: no wake-ups while nobody types (it polled with a
/// 100 ms timeout before: ten wake-ups a second), and keys still arrive afterwards.
#[test]
fn the_key_reader_does_not_wake_while_nobody_types() {
    let target = spawn_target();
    let pid = target.0.id() as i32;
    let mut s = Session::start(&["--pid", &pid.to_string(), "--interval", "1000"]);
    s.screen.wait_for("e2e-worker");
    // A key read and answered: the reader is past its start-up.
    s.press(b"?");
    s.screen.wait_for("Keys (Esc closes)");
    let before = input_reader_switches(s.pid());
    assert!(!before.is_empty(), "no input reader thread found");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = input_reader_switches(s.pid());
    assert_eq!(before, after, "the input reader woke while nobody typed");
    s.press(b"\x1b");
    s.screen.wait_gone("Keys (Esc closes)");
    s.press(b"q");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn unknown_pid_is_one_line_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(["--pid", "999999999"])
        .output()
        .expect("run lifecycle-top");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("999999999"), "{err}");
    assert!(out.stdout.is_empty(), "terminal untouched");
}

#[test]
fn without_a_terminal_the_dashboard_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(["--", "sleep", "100"])
        .stdin(Stdio::null())
        .output()
        .expect("run lifecycle-top");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
}

#[test]
fn a_command_that_exits_at_once_is_explained() {
    // Either lifecycle-top attached before `sh` exited (the header says how it ended) or it
    // came too late and says so on the way out; never "is a zombie".
    let mut s = Session::start(&["--", "sh", "-c", "exit 7"]);
    // Bounded generously (a loaded CI machine runs ten of these dashboards at once); on
    // failure the screen and the end of the raw output say what was shown instead.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let raw = String::from_utf8_lossy(&s.screen.raw.lock().expect("raw")).into_owned();
        let screen = s.screen.contents();
        // "target exit 7" in the header; the command line `sh -c exit 7` is not the answer.
        if screen.contains("target exit 7") || raw.contains("exited with code 7") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let tail: String = raw
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("the exit was never explained; screen:\n{screen}\nraw tail:\n{tail:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if s.screen.contents().contains("target exit 7") {
        s.press(b"q");
    }
    let status = s.wait_exit();
    let raw = String::from_utf8_lossy(&s.screen.raw.lock().expect("raw")).into_owned();
    assert!(!raw.contains("zombie"), "{raw}");
    assert!(
        status.exit_code() == 0 || status.exit_code() == 2,
        "{status:?}"
    );
}

#[test]
fn sigterm_restores_the_terminal_and_leaves_target_alone() {
    let target = spawn_target();
    let pid = target.0.id() as i32;
    let mut s = Session::start(&["--pid", &pid.to_string(), "--interval", "100"]);
    s.screen.wait_for("e2e-worker");
    // SAFETY: kill(2) on the lifecycle-top process this test started.
    unsafe { libc::kill(s.pid(), libc::SIGTERM) };
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    let raw = s.screen.raw.lock().expect("raw").clone();
    let text = String::from_utf8_lossy(&raw);
    let entered = text
        .rfind("\x1b[?1049h")
        .expect("entered the alternate screen");
    let left = text
        .rfind("\x1b[?1049l")
        .expect("left the alternate screen");
    assert!(left > entered, "alternate screen left after entering it");
    assert!(
        alive(pid),
        "a signal to lifecycle-top never touches the target"
    );
}

#[test]
fn demo_shows_the_stuck_service_and_kill_on_quit_leaves_nothing() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.press(b"q");
    s.screen.wait_for("What now?");
    s.press(b"k");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

#[test]
fn demo_does_not_outlive_a_sigkilled_dashboard() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    // SAFETY: kill(2) on the lifecycle-top process this test started.
    unsafe { libc::kill(s.pid(), libc::SIGKILL) };
    let _ = s.child.wait();
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

#[test]
fn demo_phase_key_and_stack_captures_go_through_the_session() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.screen.wait_for("plan python-asyncio");
    // The task table is drawn from an agent report: the engine knows the agent by then.
    s.screen.wait_for("AWAITING AT");
    // The threads audit (phase 6): the engine captures the stacks of the non-daemon
    // threads it finds (kept, not shown).
    s.press(b"6");
    s.screen.wait_for("captured by the teardown");
    s.press(b"[");
    s.screen.wait_for("snapshot 1/1");
    s.press(b"\x1b");
    s.screen.wait_gone("snapshot 1/1");
    // A capture the user asks for opens the pane at once.
    s.press(b"s");
    s.screen.wait_for("snapshot 2/2");
    s.screen.wait_for(&format!("Stacks pid {demo}"));
    // Esc then a key at once would read as Alt-key: wait for the pane to close.
    s.press(b"\x1b");
    s.screen.wait_gone("snapshot 2/2");
    s.press(b"q");
    s.screen.wait_for("What now?");
    s.press(b"k");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

#[test]
fn demo_does_not_outlive_a_sigterm() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    // SAFETY: kill(2) on the lifecycle-top process this test started.
    unsafe { libc::kill(s.pid(), libc::SIGTERM) };
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

#[test]
fn demo_why_overlay_names_a_blocker_and_the_header_keeps_the_verdict() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.press(b"y");
    s.screen.wait_for("Why it won't exit");
    // A cause line (the diagnosis names processes `pid N "comm"`; the tree panel does not).
    s.screen
        .wait_for(&format!("pid {stubborn} \"stubborn-worker\""));
    s.screen.wait_for("computed ");
    s.press(b"\x1b");
    s.screen.wait_gone("Why it won't exit");
    s.screen.wait_for("why (");
    s.screen.wait_for("exit blocked by ");
    s.press(b"q");
    s.screen.wait_for("What now?");
    s.press(b"k");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}
