//! Shared helpers of the collector tests: fail (never skip) on a missing tool, spawned
//! targets in their own process group killed on drop, and waiting on an observable state.
#![allow(dead_code, clippy::unwrap_used)]

use lifecycle_top::collect::{Collector, helpers, procfs, snapshot_text};
use lifecycle_top::model::{ProcInfo, ProcKey, Snapshot};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Fail (never skip) when a tool the test needs is missing.
pub fn need(tool: &str) {
    if let Err(e) = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        panic!("`{tool}` is needed by this test and could not be run ({e}): install {tool}");
    }
}

/// A spawned target in its own process group; dropping it SIGKILLs the whole group. It is
/// registered as a lifecycle-top helper while it lives: a launch-mode collector of another
/// test in the same process would otherwise adopt it (it is a child of ours, as orphans
/// reparented to a subreaper are) and reap it.
pub struct Target {
    pub child: Child,
}

impl Target {
    pub fn spawn(cmd: &mut Command) -> Target {
        let child = helpers::spawn(cmd.process_group(0))
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        Target { child }
    }
    pub fn sh(script: &str) -> Target {
        need("sh");
        Target::spawn(Command::new("sh").args(["-c", script]))
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn key(&self) -> ProcKey {
        ProcKey {
            pid: self.pid(),
            start_time: procfs::read_start_time(self.pid()).expect("start time"),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let pg = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait(); // may fail: the collector may have reaped it
        helpers::unregister(self.pid());
    }
}

/// Refresh until `pred` holds; panic with the last snapshot after the deadline.
pub fn wait_for(c: &mut Collector, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let end = Instant::now() + DEADLINE;
    loop {
        let snap = c.refresh();
        if pred(&snap) {
            return snap;
        }
        if Instant::now() > end {
            panic!(
                "timed out waiting for {what}; last snapshot:\n{}",
                snapshot_text(&snap)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn by_name<'a>(s: &'a Snapshot, name: &str) -> Vec<&'a ProcInfo> {
    s.processes.iter().filter(|p| p.name == name).collect()
}
