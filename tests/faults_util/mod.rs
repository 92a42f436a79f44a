//! Shared by the `faults_*` tests (issue 11): real process trees, /proc lookups by pid and
//! start time, and cleanup that never leaves a test's tree behind.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

/// The binary under test; `FAULTS_BIN` runs the same tests against another build (how the
/// figures for main in the README were measured).
pub fn bin() -> String {
    std::env::var("FAULTS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lifecycle-top").to_string())
}

/// Against another build (`FAULTS_BIN`): lines that build does not print are not asserted.
pub fn other_build() -> bool {
    std::env::var_os("FAULTS_BIN").is_some()
}

/// (state, ppid, pgrp, session, start time) of a live pid.
pub fn stat(pid: i32) -> Option<(char, i32, i32, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some((
        f[0].chars().next()?,
        f[1].parse().ok()?,
        f[2].parse().ok()?,
        f[3].parse().ok()?,
        f[19].parse().ok()?,
    ))
}

/// Is the process (pid, start time) still alive (not a zombie)?
pub fn alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(s, _, _, _, st)| st == start && s != 'Z' && s != 'X')
}

pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live processes in process group `pgid` started at or after `since`: (pid, start).
pub fn group_members(pgid: i32, since: u64) -> Vec<(i32, u64)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let (s, _, pg, _, st) = stat(pid)?;
            (pg == pgid && st >= since && s != 'Z' && s != 'X').then_some((pid, st))
        })
        .collect()
}

/// SIGKILL a process group (test cleanup) and wait a little for it to be empty.
pub fn kill_group(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: kill(2) on a negative pid signals that group; no pointers.
    while unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs as root? (The connector needs it; tests say which method they exercised.)
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
