//! End to end: the real binary in a pseudo-terminal, attached to a real Python target.
//! Waits on what the screen shows (parsed with a VT100 emulator), never on sleeps.

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
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
    let mut child = Command::new("python3")
        .args(["-c", TARGET])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test (apt install python3)");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("target said ready");
    Target(child)
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
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if !self.contents().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{text:?} stayed on screen:\n{}", self.contents());
    }
}

type Pty = portable_pty::PtyPair;

/// Starts lifecycle-top attached to `pid` in a 140x40 pty; a thread feeds the screen.
fn start_in_pty(pid: u32) -> (Box<dyn portable_pty::Child + Send + Sync>, Screen, Pty) {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 140,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_lifecycle-top"));
    cmd.args(["--pid", &pid.to_string(), "--interval", "100"]);
    cmd.env("TERM", "xterm-256color");
    let child = pty.slave.spawn_command(cmd).expect("spawn lifecycle-top");
    let parser = Arc::new(Mutex::new(vt100::Parser::new(
        std::num::NonZeroU16::new(40).expect("rows"),
        std::num::NonZeroU16::new(140).expect("cols"),
        0,
    )));
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let p2 = parser.clone();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let r2 = raw.clone();
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
    let screen = Screen { parser, raw };
    (child, screen, pty)
}

#[test]
fn attach_shows_thread_and_q_leaves_target_alive() {
    let target = spawn_target();
    let pid = target.0.id();
    let (mut child, screen, pty) = start_in_pty(pid);
    screen.wait_for("e2e-worker");
    screen.wait_for(&format!("pid {pid}"));
    let mut writer = pty.master.take_writer().expect("writer");
    writer.write_all(b"?").expect("press ?");
    screen.wait_for("Keys (Esc closes)");
    writer.write_all(b"\x1b").expect("press Esc");
    screen.wait_gone("Keys (Esc closes)");
    writer.write_all(b"q").expect("press q");
    let status = child.wait().expect("lifecycle-top exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "q must never touch the target"
    );
    drop(target);
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
fn sigterm_restores_the_terminal_and_leaves_target_alone() {
    let target = spawn_target();
    let pid = target.0.id();
    let (mut child, screen, _pty) = start_in_pty(pid);
    screen.wait_for("e2e-worker");
    let me = child.process_id().expect("lifecycle-top pid");
    // SAFETY: kill(2) on the lifecycle-top process this test started.
    unsafe { libc::kill(me as i32, libc::SIGTERM) };
    let status = child.wait().expect("lifecycle-top exits");
    assert!(status.success(), "exit status {status:?}");
    let raw = screen.raw.lock().expect("raw").clone();
    let text = String::from_utf8_lossy(&raw);
    let entered = text
        .rfind("\x1b[?1049h")
        .expect("entered the alternate screen");
    let left = text
        .rfind("\x1b[?1049l")
        .expect("left the alternate screen");
    assert!(left > entered, "alternate screen left after entering it");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(target);
}

/// Live (not zombie) processes called `comm` whose parent is `ppid`.
fn children_named(ppid: i32, comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((name, rest)) = stat.split_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            name.ends_with(&format!("({comm}"))
                && fields.first() != Some(&"Z")
                && fields.get(1) == Some(&ppid.to_string().as_str())
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
}

#[test]
fn demo_shows_the_stuck_service_and_kill_on_quit_leaves_nothing() {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 140,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_lifecycle-top"));
    cmd.args(["demo", "--interval", "100"]);
    cmd.env("TERM", "xterm-256color");
    let mut child = pty
        .slave
        .spawn_command(cmd)
        .expect("spawn lifecycle-top demo");
    let parser = Arc::new(Mutex::new(vt100::Parser::new(
        std::num::NonZeroU16::new(40).expect("rows"),
        std::num::NonZeroU16::new(140).expect("cols"),
        0,
    )));
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let p2 = parser.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            p2.lock().expect("parser").process(&buf[..n]);
        }
    });
    let screen = Screen {
        parser,
        raw: Arc::new(Mutex::new(Vec::new())),
    };
    screen.wait_for("asyncio_1");
    screen.wait_for("└ stubborn");
    screen.wait_for("ignores TERM");
    let demo_pid: i32 = screen
        .contents()
        .split("lifecycle-top pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the header names the demo pid");
    let stubborn = children_named(demo_pid, "stubborn-worker");
    assert_eq!(stubborn.len(), 1, "one stubborn child of {demo_pid}");
    let mut writer = pty.master.take_writer().expect("writer");
    writer.write_all(b"q").expect("press q");
    screen.wait_for("What now?");
    writer.write_all(b"k").expect("press k");
    let status = child.wait().expect("lifecycle-top exits");
    assert!(status.success(), "exit status {status:?}");
    let guard = Instant::now() + Duration::from_secs(20);
    let gone = || !alive(demo_pid) && !alive(stubborn[0]);
    while !gone() && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(), "the demo tree must not outlive a kill-on-quit");
}
