//! JVM targets: real Java programs (tests/fixtures/jvm/LtJvm.java) compiled here with javac,
//! then `snapshot --json`'s `jvm` section, `stacks` text with Java frames and monitor lines,
//! the default `jvm` plan in headless mode, and the one-line errors of a JVM that refuses
//! attach or a missing jcmd; the thread dump as the session's facts: daemon flags in the
//! Model (the THREADS panel's DAEMON column), the audits' non-daemon threads, `check`'s causes
//! (a shutdown hook that does not finish), the JVM's deadlock as a deadlock cause, Java
//! frames in the session's captures. Needs a JDK (`.ci/run` installs default-jdk-headless).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pty_util;

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

/// The Java stack (source `java`) of the thread named `name` in a stack snapshot's JSON.
fn java_stack<'a>(stacks: &'a Value, name: &str) -> &'a Value {
    stacks["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["stacks"].as_array().unwrap())
        .find(|s| {
            s["source"] == "java"
                && s["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("\"{name}\"")))
        })
        .unwrap_or_else(|| panic!("no java stack for {name}: {stacks:#}"))
}

fn functions(stack: &Value) -> Vec<&str> {
    stack["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect()
}

#[test]
fn check_names_the_shutdown_hook_that_does_not_finish_and_the_non_daemon_thread() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = Command::new(BIN)
        .arg("check")
        .arg("--report")
        .arg(&report)
        .args(["--", tool("java").to_str().unwrap(), "-cp"])
        .arg(classes())
        .args(["LtJvm", "return,hook"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    // The cause: SIGTERM started the shutdown, which waits for the hook.
    let cause = text
        .lines()
        .find(|l| l.contains("is in the JVM's shutdown sequence (SIGTERM)"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        cause.contains("run by \"SIGTERM handler\"")
            && cause.contains("waits for the shutdown hook \"lt-hook\" (tid ")
            && cause.contains("sleeps at LtJvm.sleepForever(LtJvm.java:"),
        "{cause}"
    );
    // The only cause: a JVM in its shutdown sequence halts once its hooks return, so neither
    // the launcher's pthread_join of DestroyJavaVM nor the non-daemon worker is another one,
    // and nothing is said in CPython's terms.
    let causes: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- exit blocked"))
        .collect();
    assert_eq!(causes.len(), 1, "{text}");
    assert!(!text.contains("threading._shutdown"), "{text}");
    // The audit after SIGTERM names the hook that does not finish and the non-daemon thread,
    // by their Java names, each with what it means during the shutdown sequence.
    assert!(
        text.contains("(lt-hook): shutdown hook still running: the JVM's shutdown sequence halts only when every hook has returned"),
        "{text}"
    );
    assert!(
        text.contains("(lt-worker): non-daemon Java thread, not what holds the exit now"),
        "{text}"
    );
    assert!(!text.contains("daemon flags unknown"), "{text}");
    // The evidence captured at the budget has the Java frames of the hook.
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let stacks = &r["evidence"]["stacks"];
    let hook = java_stack(stacks, "lt-hook");
    assert!(functions(hook).contains(&"LtJvm.sleepForever"), "{hook:#}");
    let handler = functions(java_stack(stacks, "SIGTERM handler"));
    assert!(
        handler.contains(&"java.lang.ApplicationShutdownHooks.runHooks")
            && handler.iter().any(|f| f.starts_with("- waiting on <0x")),
        "{handler:?}"
    );
}

#[test]
fn why_names_the_java_join_and_the_thread_destroy_java_vm_will_wait_for() {
    // main() joins the non-daemon worker: the launcher's pthread_join of "main" leads to
    // main's Thread.join, and DestroyJavaVM will wait for the worker once main() returns.
    let j = spawn_java(&[], "hook");
    // "ready" comes just before main() calls join: ask again until main is in it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let (code, text) = run(&["why", "--pid", &j.0.id().to_string()], &[]);
        assert_eq!(code, 0, "{text}");
        if text.contains("Thread.join") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let main = text
        .lines()
        .find(|l| l.contains("joins (pthread_join) \"main\""))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        main.contains("which joins a Java thread (Thread.join")
            && main.contains("at LtJvm.main(LtJvm.java:"),
        "{main}"
    );
    let later = text
        .lines()
        .find(|l| l.contains("will wait in DestroyJavaVM, once main() returns, for non-daemon thread \"lt-worker\""))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(later.contains("sleeps at LtJvm.sleepForever("), "{later}");
    assert!(!text.contains("threading._shutdown"), "{text}");
}

#[test]
fn why_turns_the_jvms_deadlock_into_a_deadlock_cause() {
    let j = spawn_java(&[], "deadlock");
    let (code, text) = run(&["why", "--pid", &j.0.id().to_string()], &[]);
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("deadlock: \"lt-dead-"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("holds the monitor <0x")
            && line.contains("(a LtJvm$Alpha)")
            && line.contains("(a LtJvm$Beta)")
            && line.contains("held by \"lt-dead-"),
        "{line}"
    );
    let (code, json) = run(&["why", "--pid", &j.0.id().to_string(), "--json"], &[]);
    assert_eq!(code, 0, "{json}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let dl = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "deadlock")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(dl["edges"].as_array().unwrap().len(), 2, "{dl:#}");
    assert!(
        dl["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "r_lock"),
        "{dl:#}"
    );
}

#[test]
fn the_session_folds_daemon_flags_and_captures_java_frames() {
    let mut j = spawn_java(&[], "hook");
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("run.ltrec");
    let pid = j.0.id().to_string();
    let (code, text) = run(
        &[
            "--headless",
            "--interval",
            "100",
            "--record",
            rec.to_str().unwrap(),
            "--pid",
            &pid,
        ],
        &[],
    );
    assert_eq!(code, 1, "{text}");
    let _ = j.0.wait();
    let (code, model) = run(&["replay", rec.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{model}");
    let m: Value = serde_json::from_str(&model).unwrap_or_else(|e| panic!("{e}: {model}"));
    // The facts the THREADS panel's DAEMON column reads, by Java name.
    let facts = m["facts"]["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("{m:#}"));
    let daemon = |name: &str| {
        facts
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the facts: {facts:#?}"))["daemon"]
            .clone()
    };
    assert_eq!(daemon("lt-worker"), false);
    assert_eq!(daemon("lt-daemon"), true);
    assert_eq!(daemon("Signal Dispatcher"), true);
    // The audit's capture (non-daemon threads) has their Java frames.
    let captures = m["stacks"].as_array().unwrap();
    let worker = captures
        .iter()
        .flat_map(|s| s["threads"].as_array().unwrap())
        .flat_map(|t| t["stacks"].as_array().unwrap())
        .find(|s| s["source"] == "java" && s["note"].as_str().unwrap().starts_with("\"lt-worker\""))
        .unwrap_or_else(|| panic!("no Java frames of lt-worker in {captures:#?}"));
    assert!(
        functions(worker).contains(&"LtJvm.sleepForever"),
        "{worker:#}"
    );
    assert!(
        worker["note"]
            .as_str()
            .unwrap()
            .contains("TIMED_WAITING (sleeping)"),
        "{worker:#}"
    );
}

#[test]
fn the_dashboards_daemon_column_is_filled_from_the_thread_dump() {
    let j = spawn_java(&[], "plain");
    let pid = j.0.id().to_string();
    let mut s = pty_util::Session::start_with(&["--pid", &pid, "--interval", "100"], 160, 100, &[]);
    // The THREADS panel lists the JVM's threads by their kernel names (the Java name, cut
    // to 15 bytes); the dump gives each its flag.
    let row_of = |screen: &pty_util::Screen, name: &str| {
        screen
            .find(name)
            .map(|(r, _)| screen.row(r))
            .unwrap_or_default()
    };
    s.screen.wait_screen("DAEMON flags from the dump", |sc| {
        let has = |row: String, flag: &str| row.split_whitespace().any(|w| w == flag);
        has(row_of(sc, "lt-worker"), "NO")
            && has(row_of(sc, "lt-daemon"), "yes")
            && has(row_of(sc, "Signal Dispatch"), "yes")
    });
    s.press(b"q");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}
