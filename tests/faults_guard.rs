//! Issue 11, fault 2: lifecycle-top SIGKILLed during `check`, `--headless` or the TUI of a launched
//! tree must not leave the tree running. The tree's watchdog (a registered helper holding
//! lifecycle-top's pidfd) kills it. Checked by pid + start time of every tree member.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults_util;

use faults_util::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Live descendants of `pid` (pid, start), by walking /proc's ppid links.
fn descendants(pid: i32) -> Vec<(i32, u64)> {
    let procs: Vec<(i32, i32, u64, char)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|(s, pp, _, _, st)| (p, pp, st, s)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp, st, s) in &procs {
            if pp == parent && s != 'Z' {
                out.push((p, st));
                frontier.push(p);
            }
        }
    }
    out
}

/// Starts lifecycle-top with `args`, waits until the launched `sleep 300 & sleep 300` tree
/// (two sleeps) is up, SIGKILLs lifecycle-top and returns the tree's members left alive.
fn kill_during(args: &[&str]) -> (usize, Vec<(i32, u64)>) {
    let mut lt = Command::new(bin())
        .args(args)
        .args(["--", "sh", "-c", "sleep 300 & sleep 300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lifecycle-top");
    let ltpid = lt.id() as i32;
    kill_when_up(ltpid, move || {
        lt.kill().expect("SIGKILL lifecycle-top");
        lt.wait().unwrap();
    })
}

/// The same with the dashboard in a pty (its output drained so it never blocks).
fn kill_tui_during() -> (usize, Vec<(i32, u64)>) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut cmd = CommandBuilder::new(bin());
    cmd.args(["--no-agent", "--", "sh", "-c", "sleep 300 & sleep 300"]);
    cmd.env("TERM", "xterm-256color");
    let mut child = pty
        .slave
        .spawn_command(cmd)
        .expect("spawn lifecycle-top in a pty");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("pty reader");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while matches!(std::io::Read::read(&mut reader, &mut buf), Ok(n) if n > 0) {}
    });
    let ltpid = child.process_id().expect("pid") as i32;
    let master = pty.master;
    kill_when_up(ltpid, move || {
        // SAFETY: kill(2) on our own child, which we have not reaped.
        unsafe { libc::kill(ltpid, libc::SIGKILL) };
        let _ = child.wait();
        drop(master);
    })
}

fn kill_when_up(ltpid: i32, kill: impl FnOnce()) -> (usize, Vec<(i32, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let tree = loop {
        let sleeps: Vec<(i32, u64)> = descendants(ltpid)
            .into_iter()
            .filter(|(p, _)| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .collect();
        if sleeps.len() >= 2 {
            // Let the collector see them too (not needed by the watchdog's sweep).
            std::thread::sleep(Duration::from_millis(700));
            break descendants(ltpid);
        }
        assert!(Instant::now() < deadline, "the tree never came up");
        std::thread::sleep(Duration::from_millis(20));
    };
    kill();
    // The watchdog acts at once; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<_> = tree
            .iter()
            .copied()
            .filter(|(p, s)| alive(*p, *s))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            // Cleanup of whatever remains (the test's own duty).
            for (p, _) in &left {
                // SAFETY: kill(2), no pointers; verified alive by pid + start just above.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            return (tree.len(), left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runs(args: &[&str], n: usize) {
    runs_of(&format!("{args:?}"), n, || kill_during(args));
}

fn runs_of(what: &str, n: usize, mut once: impl FnMut() -> (usize, Vec<(i32, u64)>)) {
    let mut left_total = 0;
    let mut bad = 0;
    for i in 0..n {
        let (members, left) = once();
        if !left.is_empty() {
            bad += 1;
            left_total += left.len();
            eprintln!(
                "run {i}: {} of {members} processes left: {left:?}",
                left.len()
            );
        }
    }
    eprintln!("{what}: {n} runs, {bad} left the tree, {left_total} processes left");
    assert_eq!(bad, 0, "{bad} of {n} runs left the launched tree running");
}

#[test]
fn sigkill_of_the_dashboard_leaves_nothing() {
    runs_of("the TUI with -- CMD", 5, kill_tui_during);
}

#[test]
fn sigkill_during_check_leaves_nothing() {
    // Killed while it waits for readiness.
    runs(&["check", "--no-agent", "--ready-after", "60s"], 5);
}

#[test]
fn sigkill_during_headless_leaves_nothing() {
    // Killed while the plan's first phase waits for the tree to exit by itself.
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "wait.toml",
        "name = \"wait\"\n[[phase]]\nname = \"wait\"\naction = \"wait_exit\"\ntimeout = \"60s\"\n",
    );
    let plan = plan.to_str().unwrap();
    runs(&["--headless", "--no-agent", "--plan", plan], 5);
}
