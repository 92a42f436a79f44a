//! JVM targets: real Java programs (tests/fixtures/jvm/LtJvm.java) compiled here with javac,
//! then `snapshot --json`'s `jvm` section, `stacks` text with Java frames and monitor lines,
//! the default `jvm` plan in headless mode, and the one-line errors of a JVM that refuses
//! attach or a missing jcmd. Needs a JDK (`.ci/run` installs default-jdk-headless).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

fn tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "`{name}` not found: these tests need a JDK (apt-get install default-jdk-headless)"
    );
    PathBuf::from(path)
}

/// LtJvm.java compiled once per test binary into a temp dir (kept for the process).
fn classes() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jvm/LtJvm.java");
        let out = Command::new(tool("javac"))
            .args(["-d"])
            .arg(dir.path())
            .arg(src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "javac: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

struct Jvm(Child);
impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // A killed JVM leaves its attach socket behind.
        let _ = std::fs::remove_file(format!("/tmp/.java_pid{}", self.0.id()));
    }
}

/// `java [flags] LtJvm MODE`, returned once it printed "ready".
fn spawn_java(flags: &[&str], mode: &str) -> Jvm {
    let mut child = Command::new(tool("java"))
        .args(flags)
        .arg("-cp")
        .arg(classes())
        .args(["LtJvm", mode])
        .current_dir(classes())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Jvm(child)
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn snapshot_json(pid: u32, envs: &[(&str, &str)]) -> Value {
    let (code, text) = run(&["snapshot", "--pid", &pid.to_string(), "--json"], envs);
    assert_eq!(code, 0, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn jthread<'a>(jvm: &'a Value, name: &str) -> &'a Value {
    jvm["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no Java thread {name}: {jvm:#}"))
}

#[test]
fn snapshot_has_daemon_flags_joined_by_tid_and_the_deadlock() {
    let j = spawn_java(&[], "deadlock");
    let snap = snapshot_json(j.0.id(), &[]);
    let jvm = &snap["jvm"];
    assert!(jvm["error"].is_null(), "{jvm:#}");
    let tids: Vec<i64> = snap["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tid"].as_i64().unwrap())
        .collect();
    for (name, daemon) in [("lt-worker", false), ("lt-daemon", true), ("main", false)] {
        let t = jthread(jvm, name);
        assert_eq!(t["daemon"], daemon, "{name}: {t:#}");
        let tid = t["tid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} not joined: {t:#}"));
        assert!(tids.contains(&tid), "{name}: tid {tid} not among {tids:?}");
    }
    let dl = &jvm["deadlocks"][0]["edges"];
    assert_eq!(dl[0]["thread"], "lt-dead-1", "{jvm:#}");
    assert_eq!(dl[0]["held_by"], "lt-dead-2");
    assert_eq!(dl[0]["monitor"]["class"], "LtJvm$Beta");
    assert_eq!(dl[1]["monitor"]["class"], "LtJvm$Alpha");
    assert_eq!(
        jthread(jvm, "lt-dead-2")["waiting_to_lock"]["class"],
        "LtJvm$Alpha"
    );
}

#[test]
fn stacks_show_java_frames_and_monitor_lines() {
    let j = spawn_java(&[], "deadlock");
    let (code, text) = run(&["stacks", "--pid", &j.0.id().to_string()], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Java-level deadlock"), "{text}");
    let at = text
        .find("[java \"lt-dead-1\", daemon, BLOCKED")
        .unwrap_or_else(|| panic!("{text}"));
    let part = &text[at..];
    assert!(part.contains("LtJvm.lambda$main$"), "{part}");
    assert!(part.contains("- waiting to lock <0x"), "{part}");
    assert!(part.contains("(a LtJvm$Beta)"), "{part}");
    assert!(part.contains("- locked <0x"), "{part}");
    assert!(
        text.contains("[java \"lt-worker\", TIMED_WAITING (sleeping)]"),
        "{text}"
    );
    assert!(text.contains("LtJvm.sleepForever(LtJvm.java:"), "{text}");
}

#[test]
fn headless_picks_the_jvm_plan_and_kills_past_a_blocking_hook() {
    let mut j = spawn_java(&[], "hook");
    let pid = j.0.id().to_string();
    let (code, text) = run(&["--headless", "--interval", "100", "--pid", &pid], &[]);
    assert!(text.contains("with plan jvm"), "{text}");
    assert!(text.contains("shutdown hooks"), "{text}");
    assert!(text.contains("SIGKILL -> pid"), "{text}");
    // The hook blocked SIGTERM's shutdown: SIGKILL was needed, so the run is not clean.
    assert_eq!(code, 1, "{text}");
    let status = j.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

#[test]
fn a_jvm_refusing_attach_gives_one_line_and_the_rest_still_works() {
    let j = spawn_java(&["-XX:+DisableAttachMechanism"], "plain");
    let snap = snapshot_json(j.0.id(), &[]);
    let err = snap["jvm"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{snap:#}"));
    assert!(
        err.contains("DisableAttachMechanism") && err.contains("restart"),
        "{err}"
    );
    assert!(!snap["threads"].as_array().unwrap().is_empty());
    let (code, text) = run(&["stacks", "--pid", &j.0.id().to_string()], &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches("! [java]").count(), 1, "{text}");
    assert!(
        text.contains("[native") || text.contains("wchan="),
        "{text}"
    );
}

#[test]
fn a_missing_jcmd_gives_one_line_with_the_remedy() {
    let j = spawn_java(&[], "plain");
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let envs = [("LIFECYCLE_TOP_JVM_ATTACH", "jcmd"), ("PATH", path)];
    let snap = snapshot_json(j.0.id(), &envs);
    let err = snap["jvm"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{snap:#}"));
    assert!(
        err.contains("jcmd not runnable") && err.contains("install a JDK"),
        "{err}"
    );
    // Forced jcmd with a JDK on PATH: the same section, taken via jcmd.
    let snap = snapshot_json(j.0.id(), &[("LIFECYCLE_TOP_JVM_ATTACH", "jcmd")]);
    assert_eq!(snap["jvm"]["via"], "jcmd", "{:#}", snap["jvm"]);
    assert_eq!(jthread(&snap["jvm"], "lt-daemon")["daemon"], true);
}
