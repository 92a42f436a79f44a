//! Pids that cannot be inspected say what they are: a kernel thread, or a process the
//! kernel will not let even root read. The real binary against the real /proc.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

/// A kernel thread: pid 2 (kthreadd) where the host's /proc is visible.
fn kernel_thread() -> i32 {
    let flags = |pid: i32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(6)?.parse().ok()
    };
    if flags(2).is_some_and(|f| f & 0x0020_0000 != 0) {
        return 2;
    }
    panic!(
        "no kernel thread at pid 2: this test needs a /proc that shows kernel threads (not a pid namespace)"
    );
}

#[test]
fn a_kernel_thread_has_nothing_to_inspect() {
    let pid = kernel_thread().to_string();
    for args in [
        vec!["--pid", &pid],
        vec!["--pid", &pid, "--headless"],
        vec!["snapshot", "--pid", &pid],
        vec!["snapshot", "--pid", &pid, "--watch", "1s"],
        vec!["stacks", "--pid", &pid],
        vec!["why", "--pid", &pid],
        vec!["check", "--pid", &pid],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .output()
            .expect("run lifecycle-top");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "lifecycle-top: pid {pid} is a kernel thread: nothing to inspect"
            )),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn pid_1_is_read_or_says_why_not() {
    let out = Command::new(BIN)
        .args(["snapshot", "--pid", "1", "--json"])
        .output()
        .expect("run lifecycle-top");
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["target"]["pid"], 1);
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    let root = nix::unistd::geteuid().is_root();
    let want = if root {
        "cannot be read here even as root: "
    } else {
        "only its user or root may read it"
    };
    assert!(err.contains("pid 1 (") && err.contains(want), "{err}");
    assert!(
        !err.contains("permission denied reading"),
        "the generic message: {err}"
    );
}
