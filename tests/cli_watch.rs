//! `snapshot --watch`: one JSON object per line (the `--json` shape) until the target
//! exits, then a final line; a closed pipe and Ctrl-C end it cleanly. Real targets.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A shell with one child (`sleep`), running until killed.
fn target() -> Kill {
    Kill(
        Command::new("sh")
            .args(["-c", "sleep 600 & wait"])
            .spawn()
            .expect("sh is needed for this test"),
    )
}

fn watch(pid: u32, every: &str) -> (Kill, BufReader<ChildStdout>) {
    let mut w = Command::new(BIN)
        .args(["snapshot", "--pid", &pid.to_string(), "--watch", every])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run lifecycle-top");
    let out = BufReader::new(w.stdout.take().expect("stdout"));
    (Kill(w), out)
}

fn line(r: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut s = String::new();
    match r.read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s:?}"))),
    }
}

fn wait_exit(c: &mut Child) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = c.try_wait().expect("wait") {
            return st;
        }
        assert!(
            Instant::now() < until,
            "lifecycle-top did not exit within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_line_per_refresh_until_the_target_exits() {
    let mut t = target();
    let pid = t.0.id();
    let (mut w, mut out) = watch(pid, "100ms");
    for _ in 0..3 {
        let v = line(&mut out).expect("a snapshot line");
        assert_eq!(v["target"]["pid"], pid, "{v}");
        assert!(
            v["threads"].as_array().is_some_and(|t| !t.is_empty()),
            "{v}"
        );
        assert!(
            v["processes"].as_array().is_some_and(|p| p.len() >= 2),
            "sh and sleep: {v}"
        );
        assert!(v.get("agent").is_some(), "same shape as --json: {v}");
        assert!(v.get("end").is_none());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the target");
    let _ = t.0.wait();
    let mut last = None;
    while let Some(v) = line(&mut out) {
        last = Some(v);
    }
    let last = last.expect("a final line");
    assert_eq!(last["end"], "exited", "{last}");
    assert_eq!(last["target"]["pid"], pid, "{last}");
    // Attached, not the parent: the exit code belongs to the target's parent ("Unknown").
    assert!(last.get("status").is_some(), "{last}");
    assert!(wait_exit(&mut w.0).success());
}

#[test]
fn a_closed_pipe_ends_quietly_and_ctrl_c_says_so() {
    let t = target();
    let (mut w, mut out) = watch(t.0.id(), "50ms");
    line(&mut out).expect("a line");
    drop(out);
    let st = wait_exit(&mut w.0);
    assert_eq!(st.code(), Some(0), "`| head` is a normal end");

    let (mut w, mut out) = watch(t.0.id(), "50ms");
    line(&mut out).expect("a line");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("interrupt");
    let mut last = None;
    while let Some(v) = line(&mut out) {
        last = Some(v);
    }
    assert_eq!(last.expect("a final line")["end"], "interrupted");
    assert_eq!(wait_exit(&mut w.0).code(), Some(130));
}
