//! `stacks` against processes it may not fully read, and symbols of plain C names (issue 11,
//! item 8): another user's process and a non-dumpable one are refused with exit 2 and one
//! line saying why and what to do; as non-root, native frames of one's own process are
//! symbolized (files opened through /proc/PID/root, /proc/PID/map_files needs
//! CAP_SYS_ADMIN); a C function named `a` stays `a`. Real C targets built with gcc; the
//! non-root cases drop to uid 65534 with setpriv (util-linux), so they need root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stacks_common;

use lifecycle_top::stacks::{self, SourceKind, StackOptions};
use serde_json::Value;
use stacks_common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");
const NOBODY: &str = "65534";

/// Blocks in `pause` inside a function named `a`, called from `parked_in_b`.
const A_TARGET: &str = r#"
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) void a(void) { for (;;) pause(); }
__attribute__((noinline)) void parked_in_b(void) { a(); }
int main(void) { printf("ready\n"); fflush(stdout); parked_in_b(); return 0; }
"#;

/// Makes itself non-dumpable, then blocks.
const ND_TARGET: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/prctl.h>
int main(void) {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    printf("ready\n"); fflush(stdout);
    for (;;) pause();
}
"#;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs targets as another uid with setpriv: run it as root (CI does)"
    );
    require_tool("setpriv");
}

/// A directory anyone may enter, with `src` compiled into `name`.
fn build(src: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    require_tool("gcc");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = dir.path().join(format!("{name}.c"));
    let exe = dir.path().join(name);
    std::fs::write(&c, src).unwrap();
    let st = Command::new("gcc")
        .args(["-O0", "-g", "-o"])
        .arg(&exe)
        .arg(&c)
        .status()
        .expect("gcc runs");
    assert!(st.success(), "gcc failed on {name}.c");
    (dir, exe)
}

/// `prog` as uid/gid 65534 with no supplementary groups.
fn as_nobody(prog: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ])
    .arg(prog);
    c
}

/// Start `cmd`, wait for its "ready" line and for it to sit in `pause()`.
fn start(mut cmd: Command) -> Target {
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
    let mut child: Child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let t = Target::adopt(child);
    assert_eq!(line.trim(), "ready", "target did not start");
    // setpriv execs the target, so the pid is the target's. x86_64 pause is syscall 34.
    let pid = t.pid();
    eventually("target blocked in pause()", || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.split_whitespace().next() == Some("34"))
    });
    t
}

fn stacks_as_nobody(pid: i32, json: bool) -> std::process::Output {
    let mut c = as_nobody(Path::new(BIN));
    c.args(["stacks", "--pid", &pid.to_string()]);
    if json {
        c.arg("--json");
    }
    c.current_dir("/").output().expect("run lifecycle-top")
}

fn one_line_refusal(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "nothing is printed on stdout");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn another_users_process_is_refused_with_exit_2() {
    need_root();
    let (_dir, exe) = build(A_TARGET, "a");
    // Ours (root's); lifecycle-top runs as nobody.
    let t = start(Command::new(&exe));
    for json in [false, true] {
        let err = one_line_refusal(&stacks_as_nobody(t.pid(), json));
        assert!(err.contains("uid 0"), "{err}");
        assert!(err.contains("sudo"), "the remedy: {err}");
    }
}

#[test]
fn a_non_dumpable_process_of_the_same_user_is_named_so() {
    need_root();
    let (_dir, exe) = build(ND_TARGET, "nd");
    let t = start(as_nobody(&exe));
    for json in [false, true] {
        let err = one_line_refusal(&stacks_as_nobody(t.pid(), json));
        assert!(
            err.contains("not dumpable") && err.contains("PR_SET_DUMPABLE"),
            "{err}"
        );
        assert!(err.contains("root") || err.contains("sudo"), "{err}");
        assert!(!err.contains("user owning"), "{err}");
    }
}

/// The library's own message (what the TUI's stack pane shows for a non-dumpable child of a
/// tree it watches): run as nobody by the test below, against nobody's non-dumpable target.
#[test]
#[ignore = "helper of library_capture_of_a_non_dumpable_process_names_it (runs as another uid)"]
fn non_dumpable_capture_as_nobody() {
    let pid: i32 = std::env::var("LT_ND_PID")
        .expect("LT_ND_PID: run through library_capture_of_a_non_dumpable_process_names_it")
        .parse()
        .unwrap();
    let snap = stacks::capture(pid, &[], &StackOptions::default());
    let text = dump(&snap);
    assert!(
        snap.errors.iter().any(
            |e| e.message.contains("not dumpable (prctl PR_SET_DUMPABLE 0)")
                && e.message.contains("run as root")
        ),
        "{text}"
    );
    assert!(!text.contains("run as the target's user"), "{text}");
    println!("CHECKED");
}

#[test]
fn library_capture_of_a_non_dumpable_process_names_it() {
    need_root();
    let (_dir, exe) = build(ND_TARGET, "nd");
    let t = start(as_nobody(&exe));
    let me = std::env::current_exe().unwrap();
    let out = as_nobody(&me)
        .args([
            "--exact",
            "non_dumpable_capture_as_nobody",
            "--ignored",
            "--nocapture",
        ])
        .env("LT_ND_PID", t.pid().to_string())
        .current_dir("/")
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && so.contains("CHECKED"),
        "{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn native_functions(v: &Value) -> Vec<String> {
    v["threads"][0]["stacks"]
        .as_array()
        .unwrap_or_else(|| panic!("no stacks: {v:#}"))
        .iter()
        .find(|s| s["source"] == "native")
        .unwrap_or_else(|| panic!("no native stack: {v:#}"))["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn as_non_root_native_frames_of_an_own_process_are_symbolized() {
    need_root();
    let (_dir, exe) = build(A_TARGET, "a");
    let t = start(as_nobody(&exe));
    let out = stacks_as_nobody(t.pid(), true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let funcs = native_functions(&v);
    // Our own frames (the executable's symbols and DWARF), then libc's.
    for want in ["a", "parked_in_b", "main"] {
        assert!(
            funcs.iter().any(|f| f == want),
            "{want} in {funcs:?}: {v:#}"
        );
    }
    assert!(
        funcs.iter().any(|f| f.contains("pause")),
        "libc's pause: {funcs:?}"
    );
    assert!(
        !v.to_string().contains("map_files"),
        "no map_files error: {v:#}"
    );
}

#[test]
fn a_c_function_named_a_is_not_demangled_into_a_type() {
    let (_dir, exe) = build(A_TARGET, "a");
    let t = start(Command::new(&exe));
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    let th = &snap.threads[0];
    let native = th
        .stack(SourceKind::Native)
        .unwrap_or_else(|| panic!("no native stack:\n{}", dump(&snap)));
    let funcs: Vec<&str> = native.frames.iter().map(|f| f.function.as_str()).collect();
    let at = funcs
        .iter()
        .position(|f| *f == "parked_in_b")
        .unwrap_or_else(|| panic!("parked_in_b in {funcs:?}"));
    assert_eq!(funcs.get(at.wrapping_sub(1)), Some(&"a"), "{funcs:?}");
    assert!(!funcs.contains(&"signed char"), "{funcs:?}");
}
