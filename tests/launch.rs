//! Launch mode against real processes: own process group, output to the log file,
//! lifecycle-top (here: the test process) as child subreaper catching orphans.

use lifecycle_top::launch::{LaunchOptions, launch_with, tail_log};
use std::time::{Duration, Instant};

fn stat_field(pid: i32, field: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // Fields after comm start at field 3 (state).
    after.split_whitespace().nth(field - 3)?.parse().ok()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(20);
    while Instant::now() < guard {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}");
}

/// Kills (and reaps) a launched process group when the test ends, passed or failed.
struct Group(i32);
impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test launched; then reap its leader.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}

#[test]
fn output_goes_to_log_and_child_leads_its_own_group() {
    let cmd: Vec<String> = [
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exec sleep 100",
    ]
    .map(String::from)
    .to_vec();
    let l = launch_with(&cmd, &LaunchOptions::default()).expect("launch sh");
    let _group = Group(l.pid);
    wait_until("both lines in the log", || {
        let t = tail_log(&l.log_path, 10);
        t.contains(&"to-stdout".to_string()) && t.contains(&"to-stderr".to_string())
    });
    assert_eq!(stat_field(l.pid, 5), Some(i64::from(l.pid)), "pgid == pid");
    assert_ne!(
        stat_field(l.pid, 5),
        stat_field(std::process::id() as i32, 5),
        "not in our process group"
    );
}

#[test]
fn orphaned_grandchild_is_reparented_to_us() {
    let cmd: Vec<String> = ["sh", "-c", "sleep 100 & echo grandchild=$!; exit 0"]
        .map(String::from)
        .to_vec();
    let l = launch_with(&cmd, &LaunchOptions::default()).expect("launch sh");
    let _group = Group(l.pid);
    let mut grandchild = 0;
    wait_until("grandchild pid in the log", || {
        grandchild = tail_log(&l.log_path, 10)
            .iter()
            .find_map(|line| line.strip_prefix("grandchild=")?.parse().ok())
            .unwrap_or(0);
        grandchild > 0
    });
    // SAFETY: reaping our own child (the sh that exits at once).
    unsafe { libc::waitpid(l.pid, std::ptr::null_mut(), 0) };
    let me = i64::from(std::process::id());
    wait_until("grandchild reparented to the subreaper", || {
        stat_field(grandchild, 4) == Some(me)
    });
    // SAFETY: the orphan is now our child: kill and reap it.
    unsafe {
        libc::kill(grandchild, libc::SIGKILL);
        libc::waitpid(grandchild, std::ptr::null_mut(), 0);
    }
}

#[test]
fn missing_command_is_a_clear_error() {
    let err = launch_with(
        &["definitely-not-a-command-xyz".to_string()],
        &LaunchOptions::default(),
    )
    .expect_err("must fail");
    assert!(err.to_string().contains("command not found"), "{err}");
}
