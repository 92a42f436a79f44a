//! Issue 11, fault 1: headless never says "clean" while a tree member is alive. The target's
//! children fork a grandchild and exit 50 times a second; a grandchild forked just before its
//! parent is killed is reparented to pid 1 before any /proc scan sees it. In attach mode,
//! after every run: each live process of the target's group (pid + start time) must be named
//! by the verdict (not clean, listed as a left-over). Once with kernel process events
//! (root), once with the forced fallback sweep (`LIFECYCLE_TOP_NO_PROC_EVENTS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults_util;

use faults_util::*;
use lifecycle_top::report::Report;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Two children, each forking a grandchild every 40 ms (50 forks/s in all) that would sleep
/// 300 s, and killing the previous one. A child killed by a phase leaves its newest
/// grandchild running (reparented to pid 1), usually forked after the last /proc scan.
const FORKER: &str = r#"
import os, time
def child():
    prev = 0
    while True:
        g = os.fork()
        if g == 0:
            time.sleep(300)
            os._exit(0)
        if prev:
            try:
                os.kill(prev, 9)
                os.waitpid(prev, 0)
            except OSError:
                pass
        prev = g
        time.sleep(0.04)
for _ in range(2):
    if os.fork() == 0:
        child()
while True:
    time.sleep(1)
"#;

const PLAN: &str = r#"
name = "ci"
[[phase]]
name = "terminate children"
action = "signal_children"
timeout = "1s"
[[phase]]
name = "signal target"
action = "signal_target"
timeout = "1s"
[[phase]]
name = "left-over audit"
action = "audit"
"#;

/// Live members of the group whose command is the interpreter (not a launcher's shell).
fn python_members(pgid: i32, since: u64) -> usize {
    group_members(pgid, since)
        .iter()
        .filter(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with("python"))
        })
        .count()
}

struct RunResult {
    survivors: usize,
    wrong: bool,
    clean: bool,
}

fn one_run(dir: &std::path::Path, i: usize, sweep: bool) -> RunResult {
    let script = write(dir, "forker.py", FORKER);
    let plan = write(dir, "plan.toml", PLAN);
    let report_path = dir.join(format!("report-{i}.json"));
    let mut target = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("python3");
    let tpid = target.id() as i32;
    let tstart = stat(tpid).expect("target stat").4;
    // Attach once the tree is up (its two children and their first grandchildren), as a user
    // attaching to a running service would: a slow start under load is not the fault tested.
    // Only Python processes count: `python3` may be a launcher script (pyenv's shim) whose
    // own helper processes share the group before it execs the interpreter; counting those,
    // a run attached before the forker had children, which then outlived the plan and forked
    // grandchildren after the verdict was written.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while python_members(tpid, tstart) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the forking tree never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = Command::new(bin());
    cmd.args([
        "--headless",
        "--no-agent",
        "--pid",
        &tpid.to_string(),
        "--plan",
    ])
    .arg(&plan)
    .arg("--report")
    .arg(&report_path)
    .stdin(Stdio::null());
    if sweep {
        cmd.env("LIFECYCLE_TOP_NO_PROC_EVENTS", "1");
    }
    let out = cmd.output().expect("run lifecycle-top");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = if sweep {
        "sweep by process group"
    } else {
        "kernel process events"
    };
    assert!(
        other_build() || stdout.contains(want),
        "run {i}: no discovery line {want:?}:\n{stdout}"
    );
    let _ = target.try_wait();
    std::thread::sleep(Duration::from_millis(200));
    let survivors = group_members(tpid, tstart);
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("report json");
    let named: Vec<i32> = report.timeline.leftovers.iter().map(|l| l.pid).collect();
    let unnamed: Vec<_> = survivors
        .iter()
        .filter(|(p, _)| !named.contains(p))
        .collect();
    let wrong = !survivors.is_empty() && (report.verdict.clean || !unnamed.is_empty());
    if wrong {
        eprintln!(
            "run {i}: {} live member(s) {survivors:?}, verdict clean={}, unnamed {unnamed:?}\n{stdout}",
            survivors.len(),
            report.verdict.clean
        );
    }
    kill_group(tpid);
    let _ = target.wait();
    RunResult {
        survivors: survivors.len(),
        wrong,
        clean: report.verdict.clean,
    }
}

fn runs(sweep: bool, n: usize) {
    assert!(
        is_root() || sweep,
        "process events need root: run this test as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let results: Vec<RunResult> = (0..n).map(|i| one_run(dir.path(), i, sweep)).collect();
    let wrong = results.iter().filter(|r| r.wrong).count();
    let left: usize = results.iter().map(|r| r.survivors).sum();
    let clean = results.iter().filter(|r| r.clean).count();
    eprintln!(
        "{}: {n} runs, {wrong} wrong verdicts, {left} members alive after the run, {clean} said clean",
        if sweep { "sweep" } else { "cn_proc" }
    );
    assert_eq!(
        wrong, 0,
        "{wrong} of {n} runs said clean or left an unnamed member alive"
    );
}

#[test]
fn forking_tree_attach_headless_process_events() {
    runs(false, 10);
}

#[test]
fn forking_tree_attach_headless_forced_sweep() {
    runs(true, 10);
}
