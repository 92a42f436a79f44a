//! End to end: the real binary in a pseudo-terminal, attached to real targets. Waits on
//! what the screen shows (parsed with a VT100 emulator), never on sleeps.

use portable_pty::{CommandBuilder, PtyPair, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TARGET: &str = r#"
import ctypes, threading, time, sys
def named():
    ctypes.CDLL(None).prctl(15, b"e2e-worker", 0, 0, 0)
    threading.Event().wait()
threading.Thread(target=named, daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"#;

struct Target(Child);
impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_target() -> Target {
    let mut target = Target(
        Command::new("python3")
            .args(["-c", TARGET])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test (apt install python3)"),
    );
    let mut out = target.0.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("target said ready");
    target
}

/// Alive and not a zombie (a killed but unreaped child still has a /proc entry).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// Live processes called `comm` whose parent is `ppid`.
fn children_named(ppid: i32, comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((name, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            name.ends_with(&format!("({comm}"))
                && fields.first() != Some(&"Z")
                && fields.get(1) == Some(&ppid.to_string().as_str())
        })
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(30);
    while Instant::now() < guard {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never happened: {what}");
}

/// A screen fed by a reader thread; `wait_for` polls it until text shows or a hang guard
/// expires (the guard only turns a hang into a failure, it measures nothing).
struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn contents(&self) -> String {
        self.parser.lock().expect("parser").screen().contents()
    }
    fn wait_for(&self, text: &str) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if self.contents().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{text:?} never appeared on screen:\n{}", self.contents());
    }
    fn wait_gone(&self, text: &str) {
        wait_until(&format!("{text:?} leaves the screen"), || {
            !self.contents().contains(text)
        });
    }
}

/// lifecycle-top with `args` in a 140x40 pty; a thread feeds the screen.
struct Session {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Screen,
    // Taken once: dropping a pty writer sends EOF (Ctrl-D) to the program.
    writer: Box<dyn Write + Send>,
    _pty: PtyPair,
}

impl Session {
    fn start(args: &[&str]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 140,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_lifecycle-top"));
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(cmd).expect("spawn lifecycle-top");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(40).expect("rows"),
            std::num::NonZeroU16::new(140).expect("cols"),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let (p2, r2) = (parser.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p2.lock().expect("parser").process(&buf[..n]);
                r2.lock().expect("raw").extend_from_slice(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().expect("writer");
        Self {
            child,
            screen: Screen { parser, raw },
            writer,
            _pty: pty,
        }
    }

    fn press(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).expect("write keys");
        self.writer.flush().expect("flush keys");
    }

    fn pid(&self) -> i32 {
        self.child.process_id().expect("lifecycle-top pid") as i32
    }

    /// The target pid the header shows.
    fn header_pid(&self) -> i32 {
        self.screen
            .contents()
            .split("lifecycle-top pid ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("the header names the target pid")
    }
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
    let status = s.child.wait().expect("lifecycle-top exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(alive(pid), "q must never touch the target");
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
    wait_until("the exit is explained", || {
        let raw = String::from_utf8_lossy(&s.screen.raw.lock().expect("raw")).into_owned();
        s.screen.contents().contains("target exit 7") || raw.contains("exited with code 7")
    });
    if s.screen.contents().contains("target exit 7") {
        s.press(b"q");
    }
    let status = s.child.wait().expect("lifecycle-top exits");
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
    let status = s.child.wait().expect("lifecycle-top exits");
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

/// The demo's tree: (demo, stubborn-worker, stubborn-helper), once all three show.
fn demo_tree(s: &Session) -> (i32, i32, i32) {
    s.screen.wait_for("asyncio_1");
    s.screen.wait_for("└ stubborn");
    s.screen.wait_for("ignores TERM");
    let demo = s.header_pid();
    let mut stubborn = Vec::new();
    wait_until("the stubborn child", || {
        stubborn = children_named(demo, "stubborn-worker");
        stubborn.len() == 1
    });
    let mut helper = Vec::new();
    wait_until("the stubborn grandchild", || {
        helper = children_named(stubborn[0], "stubborn-helper");
        helper.len() == 1
    });
    (demo, stubborn[0], helper[0])
}

#[test]
fn demo_shows_the_stuck_service_and_kill_on_quit_leaves_nothing() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.press(b"q");
    s.screen.wait_for("What now?");
    s.press(b"k");
    let status = s.child.wait().expect("lifecycle-top exits");
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
    s.screen.wait_for("TRACKED LOOP");
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
    let status = s.child.wait().expect("lifecycle-top exits");
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
    let status = s.child.wait().expect("lifecycle-top exits");
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
    let status = s.child.wait().expect("lifecycle-top exits");
    assert!(status.success(), "exit status {status:?}");
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}
