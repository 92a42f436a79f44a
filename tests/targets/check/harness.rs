//! Shared by tests/check.rs and tests/check_servers.rs: runs the real binary as
//! `lifecycle-top check ... -- CMD`, reads its stdout, JSON report and JUnit file.
//! A missing tool (python3, gcc, uvicorn, aiohttp) fails the test and names it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");
/// No single run may take longer (a hung `check` fails the test, it does not hang CI).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The five verdict checks of the contract.
pub const CHECKS: [&str; 5] = [
    "exited within budget",
    "exit status",
    "no left-over processes",
    "no lingering non-daemon threads",
    "no warnings",
];

pub fn targets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/check")
}

pub fn target(name: &str) -> String {
    targets().join(name).display().to_string()
}

/// Fails the test, naming the tool, when `tool --version` cannot run.
pub fn need(tool: &str, install: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is needed for this test and was not found: {install}"
    );
}

/// Fails the test, naming the module, when python3 cannot import it.
pub fn need_python_module(module: &str) {
    need("python3", "apt-get install python3");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python package `{module}` is needed for this test and is not importable: pip install {module} (.ci/run does)"
    );
}

/// Builds a C target with gcc into the test tmp dir; returns the binary's path.
pub fn compile_c(name: &str) -> String {
    need("gcc", "apt-get install gcc libc6-dev");
    let src = targets().join(name);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("check-{}", name.trim_end_matches(".c")));
    let st = Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc failed for {}", src.display());
    out.display().to_string()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` at most `limit`; kills it (and fails) past that.
fn wait_limited(child: &mut std::process::Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One finished `lifecycle-top check` run.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Value>,
    pub junit: Option<String>,
    pub dir: tempfile::TempDir,
}

impl Run {
    pub fn last_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    pub fn describe(&self) -> String {
        format!(
            "lifecycle-top {}\nexit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- report ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr,
            self.report
                .as_ref()
                .map(|r| serde_json::to_string_pretty(r).unwrap())
                .unwrap_or_else(|| "(none)".into())
        )
    }

    pub fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON report written\n{}", self.describe()))
    }

    /// `verdict.checks[]` by name: (passed, skipped, message).
    pub fn check(&self, name: &str) -> (bool, bool, String) {
        let checks = self.report()["verdict"]["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("verdict.checks is not an array\n{}", self.describe()));
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check named {name:?}\n{}", self.describe()));
        (
            c["passed"].as_bool().unwrap_or(false),
            c["skipped"].as_bool().unwrap_or(false),
            c["message"].as_str().unwrap_or("").to_string(),
        )
    }

    pub fn warning_kinds(&self) -> Vec<String> {
        self.report()["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("warnings is not an array\n{}", self.describe()))
            .iter()
            .filter_map(|w| w["kind"].as_str().map(str::to_string))
            .collect()
    }

    pub fn warnings_of(&self, kind: &str) -> Vec<Value> {
        self.report()["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["kind"] == kind)
            .cloned()
            .collect()
    }

    /// The target's log as the report names it.
    pub fn log_text(&self) -> String {
        let path = self.report()["log_file"]
            .as_str()
            .unwrap_or_else(|| panic!("log_file is not a string\n{}", self.describe()));
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read log {path}: {e}"))
    }

    /// (testcases, failures) of the JUnit file, parsed.
    pub fn junit_counts(&self) -> (usize, usize) {
        let text = self
            .junit
            .as_ref()
            .unwrap_or_else(|| panic!("no JUnit file written\n{}", self.describe()));
        let doc = roxmltree::Document::parse(text)
            .unwrap_or_else(|e| panic!("JUnit does not parse: {e}\n{text}"));
        assert_eq!(doc.root_element().tag_name().name(), "testsuites", "{text}");
        let cases = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count();
        let failures = doc
            .descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count();
        (cases, failures)
    }

    /// Clean: exit 0, `clean:` last line, the report agrees, every check passed or was
    /// skipped, no warnings, JUnit without failures.
    pub fn assert_clean(&self) {
        let d = self.describe();
        assert_eq!(self.code, 0, "expected exit 0 (clean)\n{d}");
        assert!(
            self.last_line().starts_with("clean:"),
            "last line should start `clean:`\n{d}"
        );
        let r = self.report();
        assert_eq!(r["verdict"]["clean"], true, "{d}");
        assert_eq!(r["verdict"]["exit_code"], 0, "{d}");
        for name in CHECKS {
            let (passed, skipped, msg) = self.check(name);
            assert!(passed || skipped, "check {name:?} failed: {msg}\n{d}");
        }
        assert!(!r["target_exit"].is_null(), "target_exit is null\n{d}");
        let (cases, failures) = self.junit_counts();
        assert_eq!(cases, CHECKS.len(), "{d}");
        assert_eq!(failures, 0, "{d}");
    }

    /// Not clean because of `failing` (among possibly others): exit 1, `NOT clean:` last
    /// line, that check failed in the report and in the JUnit file.
    pub fn assert_not_clean(&self, failing: &str) {
        let d = self.describe();
        assert_eq!(self.code, 1, "expected exit 1 (not clean)\n{d}");
        assert!(
            self.last_line().starts_with("NOT clean:"),
            "last line should start `NOT clean:`\n{d}"
        );
        let r = self.report();
        assert_eq!(r["verdict"]["clean"], false, "{d}");
        assert_eq!(r["verdict"]["exit_code"], 1, "{d}");
        assert!(
            r["verdict"]["reasons"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "verdict.reasons should say why\n{d}"
        );
        let (passed, _, _) = self.check(failing);
        assert!(!passed, "check {failing:?} should have failed\n{d}");
        let (cases, failures) = self.junit_counts();
        assert_eq!(cases, CHECKS.len(), "{d}");
        assert!(failures >= 1, "{d}");
    }

    pub fn assert_passed(&self, name: &str) {
        let (passed, _, msg) = self.check(name);
        assert!(
            passed,
            "check {name:?} should pass: {msg}\n{}",
            self.describe()
        );
    }
}

/// Runs `lifecycle-top check --report R --junit J <opts> -- <cmd>`.
pub fn check(opts: &[&str], cmd: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let junit = dir.path().join("junit.xml");
    let mut args: Vec<String> = vec!["check".into()];
    args.extend(["--report".into(), report.display().to_string()]);
    args.extend(["--junit".into(), junit.display().to_string()]);
    args.extend(opts.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(cmd.iter().map(|s| s.to_string()));
    run_bin(args, dir, Some((report, junit)))
}

/// Runs the binary with exactly `args` (no report/junit added).
pub fn run_raw(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    run_bin(args.iter().map(|s| s.to_string()).collect(), dir, None)
}

fn run_bin(args: Vec<String>, dir: tempfile::TempDir, files: Option<(PathBuf, PathBuf)>) -> Run {
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn lifecycle-top");
    let st = wait_limited(
        &mut child,
        RUN_LIMIT,
        &format!("lifecycle-top {}", args.join(" ")),
    );
    let code = st.code().unwrap_or(-1);
    let (report, junit) = match files {
        Some((r, j)) => (
            std::fs::read_to_string(&r).ok().map(|t| {
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("report JSON: {e}\n{t}"))
            }),
            std::fs::read_to_string(&j).ok(),
        ),
        None => (None, None),
    };
    Run {
        args,
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        report,
        junit,
        dir,
    }
}

/// Runs `cmd` directly (no lifecycle-top): waits for a stdout line `READY`, sends SIGTERM,
/// waits (at most `limit`, then SIGKILL of its group). Returns its exit status, whether it
/// needed the SIGKILL, and its combined output.
pub fn run_direct(cmd: &[&str], limit: Duration) -> (ExitStatus, bool, String) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let start = Instant::now();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        out.push_str(&line);
        if n == 0 || line.trim() == "READY" {
            break;
        }
        assert!(start.elapsed() < limit, "{cmd:?} never printed READY");
    }
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    // Drain stdout in a thread so the target never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        rest
    });
    let start = Instant::now();
    let mut killed = false;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit && !killed {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::SIGKILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if killed {
        // Its group may still hold the pipe (a stuck thread is in-process; fine).
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::SIGKILL);
    }
    out.push_str(&drain.join().unwrap());
    out.push_str(&std::fs::read_to_string(&err_path).unwrap_or_default());
    (st, killed, out)
}

/// Kills a left-over daemon by pid (test cleanup), only if it still is `sleep 300`.
pub fn kill_if_sleep(pid: i32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if cmdline == b"sleep\x00300\x00" {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// Waits for a file to appear and parses an i32 from it.
pub fn read_pid_file(path: &Path, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(t) = std::fs::read_to_string(path)
            && let Ok(p) = t.trim().parse()
        {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// True when `v` or anything inside it contains `needle` as (part of) a string.
pub fn json_mentions(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|x| json_mentions(x, needle)),
        Value::Object(o) => o
            .iter()
            .any(|(k, x)| k.contains(needle) || json_mentions(x, needle)),
        _ => false,
    }
}

/// True when `v` or anything inside it is the number `n`.
pub fn json_has_number(v: &Value, n: i64) -> bool {
    match v {
        Value::Number(x) => x.as_i64() == Some(n),
        Value::Array(a) => a.iter().any(|x| json_has_number(x, n)),
        Value::Object(o) => o.values().any(|x| json_has_number(x, n)),
        _ => false,
    }
}
