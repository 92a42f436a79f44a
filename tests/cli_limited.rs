//! Limited mode: a process lifecycle-top may list but not ptrace (here a non-dumpable
//! child, watched without CAP_SYS_PTRACE) is named once with what is missing and the
//! remedy, and the rest of the snapshot is still there. As root the test drops to `nobody`
//! with setpriv; C targets built with gcc.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");
const NOBODY: &str = "65534";

const TARGET: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/prctl.h>
int main(void) {
    pid_t c = fork();
    if (c == 0) {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        printf("child %d\n", getpid()); fflush(stdout);
        for (;;) pause();
    }
    for (;;) pause();
}
"#;

struct Tree(Child, Option<i32>);
impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(c) = self.1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `prog args` as nobody when we are root (so CAP_SYS_PTRACE is gone), else as is.
fn as_unprivileged(prog: &str) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            prog,
        ]);
        c
    } else {
        Command::new(prog)
    }
}

/// The target (run unprivileged) and its non-dumpable child: (tree, parent pid, child pid).
fn non_dumpable_tree(dir: &std::path::Path) -> (Tree, u32, i32) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = dir.join("nd.c");
    let exe = dir.join("nd");
    std::fs::write(&src, TARGET).expect("write source");
    let cc = Command::new("gcc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc is needed for this test (apt install gcc)");
    assert!(cc.success());
    let exe = exe.to_str().expect("utf-8 path");
    let mut t = as_unprivileged(exe)
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) is needed for this test as root");
    let mut first = String::new();
    BufReader::new(t.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("target output");
    let child: i32 = first
        .trim()
        .strip_prefix("child ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("child pid line: {first:?}"));
    let tree = Tree(t, Some(child));
    // setpriv execs the target: its pid is the parent of `child`.
    let parent = tree.0.id();
    (tree, parent, child)
}

#[test]
fn a_non_dumpable_child_is_named_with_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_tree, parent, child) = non_dumpable_tree(dir.path());

    let out = as_unprivileged(BIN)
        .args(["snapshot", "--pid", &parent.to_string(), "--json"])
        .output()
        .expect("run lifecycle-top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // The rest keeps working: the tree and the threads are there.
    let pids: Vec<i64> = v["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["key"]["pid"].as_i64())
        .collect();
    assert!(pids.contains(&i64::from(child)), "the child is listed: {v}");
    let limits = v["limitations"]
        .as_array()
        .unwrap_or_else(|| panic!("limitations: {v}"));
    assert_eq!(limits.len(), 1, "only the child is limited: {limits:?}");
    let l = &limits[0];
    assert_eq!(l["pid"], child);
    assert_eq!(l["reason"], "not_dumpable", "{l}");
    assert_eq!(
        l["missing"],
        serde_json::json!(["native_frames", "wait_targets"])
    );
    assert!(
        l["remedy"].as_str().is_some_and(|r| r.contains("sudo")),
        "{l}"
    );

    // The text form shows the one banner line.
    let out = as_unprivileged(BIN)
        .args(["snapshot", "--pid", &parent.to_string()])
        .output()
        .expect("run lifecycle-top");
    let text = String::from_utf8_lossy(&out.stdout);
    let banner: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("limited: "))
        .collect();
    assert_eq!(banner.len(), 1, "{text}");
    assert!(
        banner[0].contains(&format!("pid {child} (nd) is not dumpable: no native frames, no wait targets; run lifecycle-top with sudo")),
        "{}",
        banner[0]
    );

    // Attaching to the non-dumpable process itself says what it is.
    let out = as_unprivileged(BIN)
        .args(["snapshot", "--pid", &child.to_string()])
        .output()
        .expect("run lifecycle-top");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {child} (nd) is not dumpable")),
        "{err}"
    );
}

/// Headless says limited mode too: the header's banner line, once, on stderr, with what is
/// missing and the remedy; the run goes on (an audit-only plan touches nothing).
#[test]
fn headless_prints_the_limited_mode_banner_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_tree, parent, child) = non_dumpable_tree(dir.path());
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[phase]]\nname = \"audit\"\naction = \"audit\"\ntimeout = \"5s\"\n",
    )
    .expect("write plan");
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = as_unprivileged(BIN)
        .args([
            "--pid",
            &parent.to_string(),
            "--headless",
            "--interval",
            "100ms",
        ])
        .arg("--plan")
        .arg(&plan)
        .output()
        .expect("run lifecycle-top");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let banner: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lifecycle-top: limited: "))
        .collect();
    assert_eq!(
        banner.len(),
        1,
        "one banner line on stderr:\n{stderr}\n{stdout}"
    );
    assert!(
        banner[0].contains(&format!(
            "pid {child} (nd) is not dumpable: no native frames, no wait targets; run lifecycle-top with sudo"
        )),
        "{}",
        banner[0]
    );
    assert!(
        stdout.contains("[1/1] audit"),
        "the plan still ran:\n{stdout}"
    );
}
