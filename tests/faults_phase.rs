//! Issue 11, the fault matrix's "targets dying at random points of every phase": a Python
//! target with the agent whose every phase of the python-asyncio plan takes a while
//! (`tests/targets/faults/slow_phases.py`, the plan's phases with short timeouts) is
//! SIGKILLed from outside at spread-out moments of a headless run, from before the teardown
//! to after lifecycle-top's own SIGKILL. In every run: headless ends with exit 1; the
//! target's exit is booked to the phase it happened in (or outside any phase), never to a
//! later one; no agent phase that started after the exit fails or times out; the verdict
//! says who sent the SIGKILL; nothing of the tree is left running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults_util;

use faults_util::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/targets/faults/slow_phases.py"
);
const PLAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/faults/short_asyncio.toml"
);

/// The launched target (a child of lifecycle-top whose comm is `python3`), once it exec'd.
fn target_of(lt: i32) -> Option<(i32, u64)> {
    all_pids().into_iter().find_map(|pid| {
        let (s, ppid, _, _, start) = stat(pid)?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (ppid == lt && comm.trim() == "python3" && s != 'Z').then_some((pid, start))
    })
}

/// Processes whose command line carries `token` (the target and its children do).
fn carrying(token: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(token))
                && stat(*pid).is_some_and(|(s, ..)| s != 'Z')
        })
        .collect()
}

struct Run {
    kill_after: Duration,
    /// Our SIGKILL reached the target (else it was gone already).
    killed: bool,
    code: Option<i32>,
    report: Value,
    stdout: String,
}

fn run_once(i: usize, kill_after: Duration) -> Run {
    let dir = std::env::temp_dir().join(format!("lt-faults-phase-{}-{i}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.json");
    let token = format!("lt-faults-phase-{}-{i}", std::process::id());
    let started = Instant::now();
    let mut lt = Command::new(bin())
        .args(["--headless", "--plan", PLAN, "--report"])
        .arg(&report)
        .args(["--", "python3", TARGET, &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lifecycle-top");
    let lt_pid = lt.id() as i32;
    let mut target = None;
    while started.elapsed() < kill_after {
        if target.is_none() {
            target = target_of(lt_pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let target = target.or_else(|| target_of(lt_pid));
    // Kill only the process we found (pid and start time), never a reused pid.
    let killed = target.is_some_and(|(pid, start)| {
        alive(pid, start)
            // SAFETY: kill(2) with a pid checked just above; no pointers.
            && unsafe { libc::kill(pid, libc::SIGKILL) } == 0
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = lt.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = lt.kill();
            panic!("run {i}: headless did not end within 60 s of the kill");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    if let Some(mut o) = lt.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut stdout);
    }
    let left = carrying(&token);
    assert!(
        left.is_empty(),
        "run {i} (kill after {kill_after:?}): tree members left running: {left:?}\n{stdout}"
    );
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!("run {i}: no report ({e}):\n{stdout}");
    });
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        kill_after,
        killed,
        code: status.code(),
        report: serde_json::from_str(&text).expect("report is JSON"),
        stdout,
    }
}

fn check(i: usize, r: &Run) {
    let ctx = format!(
        "run {i} (kill after {:?}, ours {}):\n{}",
        r.kill_after, r.killed, r.stdout
    );
    assert_eq!(r.code, Some(1), "{ctx}");
    let exit = &r.report["target_exit"];
    assert_eq!(exit["status"]["Signal"], 9, "{ctx}");
    let reasons: Vec<&str> = r.report["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ours_sent_kill = exit["our_signals"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == 9));
    if r.killed && !ours_sent_kill {
        assert_eq!(
            reasons.first().copied(),
            Some("the target died by SIGKILL, which lifecycle-top did not send"),
            "{ctx}"
        );
    } else {
        assert!(
            !reasons.iter().any(|l| l.contains("did not send")),
            "lifecycle-top sent the SIGKILL: {ctx}"
        );
    }
    let tl = &r.report["timeline"];
    let pid = tl["target_pid"].as_i64().unwrap();
    let phases = tl["phases"].as_array().unwrap();
    // The target's exit, booked once: in the phase running then, or outside any phase.
    let mut booked = Vec::new();
    for p in phases {
        for e in p["exits"].as_array().unwrap() {
            if e["pid"].as_i64() == Some(pid) {
                booked.push((p["index"].as_u64(), e["at_ms"].as_u64().unwrap()));
            }
        }
    }
    for e in tl["exits_outside"].as_array().unwrap() {
        if e["pid"].as_i64() == Some(pid) {
            booked.push((None, e["at_ms"].as_u64().unwrap()));
        }
    }
    assert_eq!(
        booked.len(),
        1,
        "the exit is booked once: {booked:?}\n{ctx}"
    );
    let (phase, at) = booked[0];
    for p in phases {
        let (start, end) = (
            p["start_ms"].as_u64().unwrap(),
            p["end_ms"].as_u64().unwrap(),
        );
        let name = p["name"].as_str().unwrap();
        let kind = p["outcome"]["kind"].as_str().unwrap();
        if Some(p["index"].as_u64().unwrap()) == phase {
            assert!(
                start <= at && at <= end,
                "exit at {at} ms booked to \"{name}\" ({start}..{end} ms)\n{ctx}"
            );
        } else if phase.is_none() || start > at {
            // No phase that was not running holds it; none after it fails for it.
            assert!(
                !(start <= at && at < end),
                "exit at {at} ms happened during \"{name}\" ({start}..{end} ms) but is booked elsewhere\n{ctx}"
            );
        }
        let agent = p["action"].as_str().is_some_and(|a| a.starts_with("agent"));
        if agent && start > at {
            assert!(
                !matches!(kind, "failed" | "timed_out"),
                "agent phase \"{name}\" started after the target died and {kind}\n{ctx}"
            );
        }
    }
}

/// Kill moments spread from before the teardown (readiness takes 1-3 s) to past the plan's
/// end (then lifecycle-top's own SIGKILL came first).
fn moments(slot: usize) -> Vec<Duration> {
    (0..4)
        .map(|k| Duration::from_millis(1_000 + 700 * (slot + 3 * k) as u64))
        .collect()
}

fn matrix(slot: usize) {
    for (k, at) in moments(slot).into_iter().enumerate() {
        let i = slot + 3 * k;
        let r = run_once(i, at);
        eprintln!(
            "run {i}: kill after {at:?} ours={} -> {:?}",
            r.killed,
            r.report["timeline"]["phases"].as_array().map(|ps| ps
                .iter()
                .map(|p| format!(
                    "{}:{}",
                    p["key"].as_str().unwrap_or("?"),
                    p["outcome"]["kind"].as_str().unwrap_or("?")
                ))
                .collect::<Vec<_>>())
        );
        check(i, &r);
    }
}

#[test]
fn target_killed_at_spread_moments_slot_0() {
    matrix(0);
}

#[test]
fn target_killed_at_spread_moments_slot_1() {
    matrix(1);
}

#[test]
fn target_killed_at_spread_moments_slot_2() {
    matrix(2);
}
