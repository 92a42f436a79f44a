//! Issue 11, fault 4: killing the launched tree on quit must not hang on a child that does
//! not die at once. A child frozen by the cgroup-v1 freezer is in uninterruptible sleep ('D'):
//! SIGKILL stays pending until it is thawed, and a blocking `waitpid` on it never returns.
//! `TreeGuard::kill` (what quitting runs, after the terminal is restored) must come back
//! within its bounded sweep. One test in its own binary: the guard sweeps every child of the
//! test process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::launch::{KILL_SWEEP, TreeGuard};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Freezer(PathBuf);

impl Freezer {
    fn new() -> Freezer {
        let root = PathBuf::from("/sys/fs/cgroup/freezer");
        assert!(
            root.join("tasks").exists(),
            "this test needs the cgroup-v1 freezer at {} (as root); it is there on this \
             machine and in CI",
            root.display()
        );
        let dir = root.join(format!("lt-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Freezer(dir)
    }
    fn set(&self, state: &str) {
        std::fs::write(self.0.join("freezer.state"), state).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(self.0.join("freezer.state"))
            .unwrap()
            .trim()
            != state
        {
            assert!(Instant::now() < deadline, "freezer never reached {state}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn tree_kill_returns_with_a_frozen_child() {
    let freezer = Freezer::new();
    let mut child = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(freezer.0.join("tasks"), child.id().to_string()).unwrap();
    freezer.set("FROZEN");
    let guard = Arc::new(TreeGuard::new(false));
    let g = guard.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let n = g.kill();
        let _ = tx.send(n);
    });
    let got = rx.recv_timeout(KILL_SWEEP + Duration::from_secs(3));
    let took = t0.elapsed();
    // Thaw: the pending SIGKILL now lands (and a blocked waitpid, on a broken build, returns).
    drop(freezer);
    let _ = child.kill();
    let _ = child.wait();
    let n = got.unwrap_or_else(|_| panic!("TreeGuard::kill still blocked after {took:?}"));
    assert!(n >= 1, "the frozen child was signalled");
    assert!(took <= KILL_SWEEP + Duration::from_secs(1), "took {took:?}");
}
