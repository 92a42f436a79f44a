//! Helpers shared by the agent integration tests: real python3 targets with the agent
//! injected (killed on drop and by PDEATHSIG), and waiting on client events with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::agent::{AgentEvent, AgentHandle};
use lifecycle_top::model::ProcKey;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect(")") + 2..];
    rest.split_whitespace()
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("number")
}

pub fn own_key() -> ProcKey {
    let pid = std::process::id() as i32;
    ProcKey {
        pid,
        start_time: start_time(pid),
    }
}

pub fn python() -> &'static str {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import sys; assert sys.version_info >= (3, 8)")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 (>= 3.8) is required on PATH for the agent tests"
    );
    "python3"
}

/// A python3 process running `script` with the agent installed, listening on `socket`.
pub struct Target {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Target {
    pub fn spawn(script: &str) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run").join("agent.sock");
        Self::spawn_at(script, dir, socket)
    }

    /// Like [`Target::spawn`], with the script's stdout piped to `child.stdout`.
    pub fn spawn_piped(script: &str) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run").join("agent.sock");
        Self::spawn_inner(script, dir, socket, true)
    }

    /// A host whose agent listens on its default path (`/tmp/lifecycle-top-<uid>/<pid>.sock`:
    /// no `LIFECYCLE_TOP_SOCKET`, no `XDG_RUNTIME_DIR`); `socket` is that path.
    pub fn spawn_default_path(script: &str) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/agent");
        let mut cmd = Command::new(python());
        cmd.arg("-c")
            .arg(script)
            .env("PYTHONPATH", &agent_dir)
            .env_remove("LIFECYCLE_TOP_SOCKET")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the child dies with the test thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn python3");
        let uid = rustix::process::geteuid().as_raw();
        let socket = PathBuf::from(format!("/tmp/lifecycle-top-{uid}/{}.sock", child.id()));
        Target { child, dir, socket }
    }

    /// Like [`Target::spawn`], listening on `socket` (its directory is created 0700).
    pub fn spawn_at(script: &str, dir: tempfile::TempDir, socket: PathBuf) -> Target {
        Self::spawn_inner(script, dir, socket, false)
    }

    fn spawn_inner(script: &str, dir: tempfile::TempDir, socket: PathBuf, piped: bool) -> Target {
        let agent_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/agent");
        let mut cmd = Command::new(python());
        cmd.arg("-c")
            .arg(script)
            .env("PYTHONPATH", &agent_dir)
            .env("LIFECYCLE_TOP_SOCKET", &socket)
            .env("LIFECYCLE_TOP_AGENT_DEBUG", "1")
            .stdin(Stdio::null());
        if piped {
            cmd.stdout(Stdio::piped());
        }
        // SAFETY: prctl is async-signal-safe; the child dies with the test thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn python3");
        Target { child, dir, socket }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn key(&self) -> ProcKey {
        ProcKey {
            pid: self.pid(),
            start_time: start_time(self.pid()),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Next event, or panic after `secs`.
pub async fn next_event(h: &mut AgentHandle, secs: u64) -> AgentEvent {
    tokio::time::timeout(Duration::from_secs(secs), h.events.recv())
        .await
        .expect("timed out waiting for an agent event")
        .expect("client stopped")
}

/// Skips events until `pred` matches one (reports are frequent), panics after `secs`.
pub async fn wait_for(
    h: &mut AgentHandle,
    secs: u64,
    mut pred: impl FnMut(&AgentEvent) -> bool,
) -> AgentEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, h.events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out; events seen: {seen:#?}"))
            .expect("client stopped");
        if pred(&ev) {
            return ev;
        }
        if seen.len() < 5 {
            seen.push(ev);
        }
    }
}
