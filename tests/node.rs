//! Node.js targets: real node programs (tests/targets/node/) with the Node.js agent preloaded
//! (`NODE_OPTIONS=--require`, as launch mode does, or `require()` by hand). For each of an
//! interval, a listening server, a child process, a worker thread and a loop blocked in a busy
//! `while`: `snapshot --json`'s agent report (handles with creation sites, threads joined by
//! tid, the blocked loop), the `node` plan's verdict headless and under `check`, and the
//! JavaScript stack the evidence captures. Then the socket's guard against another uid.
//! Needs `node` (`.ci/run` installs `nodejs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

fn node() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "`node` not found: these tests need Node.js (apt-get install nodejs)"
    );
    PathBuf::from(path)
}

fn targets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/node")
}

fn agent_js() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/agent-node/lifecycle_top_agent.js")
}

/// A node process killed (with whatever it started) on drop.
struct Node {
    child: Child,
    first_line: String,
}

impl Node {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Its own process group: the child process of child.js goes too.
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// `node <target>` with the agent preloaded through NODE_OPTIONS, returned once it printed
/// its first line ("ready ...").
fn spawn_node(script: &str) -> Node {
    let mut cmd = Command::new(node());
    cmd.arg(targets().join(script))
        .current_dir(targets())
        .env(
            "NODE_OPTIONS",
            format!("--require \"{}\"", agent_js().display()),
        )
        .env_remove("LIFECYCLE_TOP_SOCKET");
    spawn(cmd)
}

fn spawn(mut cmd: Command) -> Node {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "first line: {line:?}");
    Node {
        child,
        first_line: line.trim().to_string(),
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(targets())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `snapshot --pid N --json`, retried until `ok` accepts it (the agent may not have listed a
/// worker's tid or a blocked stack in its first report yet); generous bound, no sleep-asserts.
fn snapshot_until(pid: u32, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, text) = run(&["snapshot", "--pid", &pid.to_string(), "--json"]);
        assert_eq!(code, 0, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "no snapshot with {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(v: &Value) -> &Value {
    &v["agent"]["report"]
}

fn ref_handles(v: &Value) -> Vec<&Value> {
    report(v)["handles"]
        .as_array()
        .map(|a| a.iter().filter(|h| h["ref"] == true).collect())
        .unwrap_or_default()
}

fn why(pid: u32) -> String {
    let (code, text) = run(&["why", "--pid", &pid.to_string()]);
    assert_eq!(code, 0, "{text}");
    text
}

/// `lifecycle-top --headless -- node <script>`: (exit code, output).
fn headless(script: &str) -> (i32, String) {
    run(&[
        "--headless",
        "--interval",
        "100",
        "--",
        node().to_str().unwrap(),
        script,
    ])
}

/// `lifecycle-top check --budget 1s --report <file> -- node <script>`: (code, output, report).
fn check(script: &str) -> (i32, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("check.json");
    let (code, text) = run(&[
        "check",
        "--budget",
        "1s",
        "--report",
        report.to_str().unwrap(),
        "--",
        node().to_str().unwrap(),
        script,
    ]);
    let json = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, text, serde_json::from_str(&json).unwrap())
}

fn causes(report: &Value) -> Vec<String> {
    report["evidence"]["causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no causes: {report:#}"))
        .iter()
        .map(|c| c["line"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn interval_snapshot_names_the_timer_and_where_it_was_set() {
    let n = spawn_node("interval.js");
    let v = snapshot_until(n.pid(), "a report", |v| !report(v).is_null());
    assert_eq!(v["agent"]["hello"]["agent"]["kind"], "node", "{v:#}");
    let h = ref_handles(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["kind"], "Timeout");
    assert_eq!(h[0]["name"], "Timeout (poll)");
    assert_eq!(h[0]["detail"], "setInterval 1000 ms");
    assert_eq!(h[0]["site"], "interval.js:4");
    // The same handle is a pending "task" of the loop, so today's panels show it.
    let l = &report(&v)["loops"][0];
    assert_eq!(
        (l["tasks_total"].as_u64(), l["blocked"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(report(&v)["tasks"][0]["where"], "interval.js:4", "{v:#}");
    // Threads: main (non-daemon) and the agent's own worker, joined by tid.
    let threads = report(&v)["threads"].as_array().unwrap();
    assert_eq!(threads[0]["native_id"].as_u64(), Some(u64::from(n.pid())));
    assert_eq!(threads[0]["daemon"], false);
    assert!(
        threads
            .iter()
            .any(|t| t["agent"] == true && t["daemon"] == true)
    );
    let tids: Vec<i64> = v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tid"].as_i64().unwrap())
        .collect();
    for t in threads {
        let tid = t["native_id"].as_i64().unwrap();
        assert!(tids.contains(&tid), "{t:#} not among {tids:?}");
    }
    let w = why(n.pid());
    assert!(
        w.contains(
            "runs an event loop that stays alive because of 1 ref'ed handle: Timeout (poll) setInterval 1000 ms created at interval.js:4"
        ),
        "{w}"
    );
}

#[test]
fn the_agent_loads_by_hand_with_require() {
    let code = format!(
        "require({:?}); setInterval(function tick() {{}}, 500); console.log('ready');",
        agent_js().display().to_string()
    );
    let mut cmd = Command::new(node());
    cmd.args(["-e", &code]).env_remove("LIFECYCLE_TOP_SOCKET");
    let n = spawn(cmd);
    let v = snapshot_until(n.pid(), "a report", |v| !report(v).is_null());
    let h = ref_handles(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["name"], "Timeout (tick)");
    assert_eq!(h[0]["detail"], "setInterval 500 ms");
}

#[test]
fn interval_headless_clears_it_and_check_names_it() {
    let (code, text) = headless("interval.js");
    assert!(text.contains("with plan node"), "{text}");
    assert!(
        text.contains("cleared Timeout (poll) setInterval 1000 ms created at interval.js:4"),
        "{text}"
    );
    assert!(
        text.contains("the target exited during the phase"),
        "{text}"
    );
    assert!(
        text.contains("clean: the target exited with status 0"),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    let (code, text, rep) = check("interval.js");
    assert_eq!(code, 1, "{text}");
    let c = causes(&rep);
    assert!(
        c.iter().any(|l| l.contains(
            "because of 1 ref'ed handle: Timeout (poll) setInterval 1000 ms created at interval.js:4"
        )),
        "{c:?}\n{text}"
    );
    assert!(text.contains("why it did not exit"), "{text}");
}

#[test]
fn server_snapshot_headless_and_check() {
    let n = spawn_node("server.js");
    let port = n.first_line.trim_start_matches("ready ").to_string();
    let v = snapshot_until(n.pid(), "a report", |v| !report(v).is_null());
    let h = ref_handles(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["kind"], "TCPServerWrap");
    assert_eq!(h[0]["group"], "server");
    assert_eq!(h[0]["detail"], format!("listening on 127.0.0.1:{port}"));
    assert_eq!(h[0]["site"], "server.js:5");
    let w = why(n.pid());
    assert!(
        w.contains(&format!(
            "1 ref'ed handle: TCPServerWrap listening on 127.0.0.1:{port} created at server.js:5"
        )),
        "{w}"
    );
    drop(n);

    let (code, text) = headless("server.js");
    assert!(
        text.contains("closed TCPServerWrap listening on 127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("created at server.js:5; nothing keeps the event loop alive now"),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    let (code, text, rep) = check("server.js");
    assert_eq!(code, 1, "{text}");
    let c = causes(&rep);
    assert!(
        c.iter().any(
            |l| l.contains("ref'ed handle: TCPServerWrap listening on 127.0.0.1:")
                && l.contains("created at server.js:5")
        ),
        "{c:?}"
    );
}

#[test]
fn child_process_snapshot_headless_and_check() {
    let n = spawn_node("child.js");
    let child_pid: u64 = n.first_line.trim_start_matches("ready ").parse().unwrap();
    let v = snapshot_until(n.pid(), "a report", |v| !report(v).is_null());
    let h = ref_handles(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["kind"], "ProcessWrap");
    assert_eq!(h[0]["detail"], format!("child pid {child_pid} (sleep)"));
    assert_eq!(h[0]["site"], "child.js:4");
    let sp = &report(&v)["subprocesses"][0];
    assert_eq!(sp["pid"].as_u64(), Some(child_pid), "{v:#}");
    assert_eq!(sp["site"], "child.js:4");
    assert_eq!(sp["alive"], true);
    assert!(
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"]["pid"].as_u64() == Some(child_pid)),
        "{v:#}"
    );
    drop(n);

    let (code, text) = headless("child.js");
    assert!(text.contains("SIGTERM -> pid"), "{text}");
    assert!(
        text.contains("clean: the target exited with status 0"),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    let (code, text, rep) = check("child.js");
    assert_eq!(code, 1, "{text}");
    let c = causes(&rep);
    assert!(
        c.iter()
            .any(|l| l.contains("1 ref'ed handle: ProcessWrap child pid")
                && l.contains("created at child.js:4")),
        "{c:?}"
    );
}

#[test]
fn worker_thread_is_joined_by_tid_and_terminated() {
    let n = spawn_node("worker.js");
    let v = snapshot_until(n.pid(), "the worker's tid", |v| {
        report(v)["threads"].as_array().is_some_and(|a| {
            a.iter()
                .any(|t| t["name"] == "ticker" && t["native_id"].is_u64())
        })
    });
    let threads = report(&v)["threads"].as_array().unwrap();
    let t = threads.iter().find(|t| t["name"] == "ticker").unwrap();
    assert_eq!(
        t["daemon"], false,
        "a ref'ed worker keeps the process: {t:#}"
    );
    assert_eq!(t["started_at"], "worker.js:4");
    let tid = t["native_id"].as_i64().unwrap();
    assert!(
        v["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["tid"].as_i64() == Some(tid)),
        "tid {tid} not a thread of the target: {v:#}"
    );
    let h = ref_handles(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["name"], "Worker (ticker)");
    assert_eq!(h[0]["site"], "worker.js:4");
    drop(n);

    let (code, text) = headless("worker.js");
    assert!(
        text.contains("terminated Worker (ticker) worker thread 2 created at worker.js:4"),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    let (code, text, rep) = check("worker.js");
    assert_eq!(code, 1, "{text}");
    let c = causes(&rep);
    assert!(
        c.iter()
            .any(|l| l.contains("1 ref'ed handle: Worker (ticker)")),
        "{c:?}"
    );
}

fn js_frames(rep: &Value, tid: i64) -> Vec<(String, String, u64)> {
    let threads = rep["evidence"]["stacks"]["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("no stacks: {:#}", rep["evidence"]));
    let t = threads
        .iter()
        .find(|t| t["tid"].as_i64() == Some(tid))
        .unwrap_or_else(|| panic!("no thread {tid}"));
    let js = t["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "agent_js")
        .unwrap_or_else(|| panic!("no JavaScript stack: {t:#}"));
    js["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["file"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn blocked_loop_is_reported_with_its_stack_and_killed() {
    let n = spawn_node("blocked.js");
    let v = snapshot_until(n.pid(), "a blocked loop", |v| {
        report(v)["loops"][0]["blocked"] == true
    });
    let l = &report(&v)["loops"][0];
    assert_eq!(l["blocked_at"], "blocked.js:4", "{v:#}");
    assert!(l["lag_ms"].as_f64().unwrap() >= 100.0, "{l:#}");
    let w = why(n.pid());
    assert!(
        w.contains("has had its event loop blocked for")
            && w.contains("by JavaScript at blocked.js:4 that does not return to it"),
        "{w}"
    );
    drop(n);

    let (code, text) = headless("blocked.js");
    assert!(
        text.contains(
            "blocked: the event loop is blocked at blocked.js:4: the request did not run"
        ),
        "{text}"
    );
    assert!(
        text.contains("handles SIGTERM but did not exit, killed after"),
        "{text}"
    );
    assert_eq!(code, 1, "{text}");

    let (code, text, rep) = check("blocked.js");
    assert_eq!(code, 1, "{text}");
    let c = causes(&rep);
    assert!(
        c.iter()
            .any(|l| l.contains("by JavaScript at blocked.js:4")),
        "{c:?}"
    );
    let pid = rep["evidence"]["threads"][0]["pid"].as_i64().unwrap();
    let frames = js_frames(&rep, pid);
    assert_eq!(frames[0].0, "spin", "{frames:?}");
    assert!(
        frames[0].1.ends_with("tests/targets/node/blocked.js"),
        "{frames:?}"
    );
    assert_eq!(frames[0].2, 4, "{frames:?}");
}

/// The agent refuses a socket directory others can enter, and a 0700 directory keeps
/// another uid out (Node cannot read SO_PEERCRED: the file modes are the agent's guard).
#[test]
fn another_uid_cannot_reach_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    const USER: &str = "ltagent-test";
    assert!(
        rustix::process::geteuid().is_root(),
        "the other-uid test needs root (it creates user {USER})"
    );
    for tool in ["useradd", "setpriv"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "the other-uid test needs `{tool}` on PATH");
    }
    let have = Command::new("id").args(["-u", USER]).output().unwrap();
    if !have.status.success() {
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", USER])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {USER}");
    }
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", USER])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    // A directory group/other can enter is not used: the agent falls back to its pid path.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let asked = open.path().join("a.sock");
    let mut cmd = Command::new(node());
    cmd.arg(targets().join("interval.js"))
        .current_dir(targets())
        .env(
            "NODE_OPTIONS",
            format!("--require \"{}\"", agent_js().display()),
        )
        .env("LIFECYCLE_TOP_SOCKET", &asked)
        .env_remove("XDG_RUNTIME_DIR");
    let n = spawn(cmd);
    let fallback = PathBuf::from(format!("/tmp/lifecycle-top-0/{}.sock", n.pid()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fallback.exists() {
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            fallback.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!asked.exists(), "the agent listened in a 0755 directory");
    let mode = std::fs::metadata(&fallback).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // Another uid: EACCES on connect (the directory is 0700, ours).
    let client = format!(
        "const s = require('net').connect({:?}); s.on('connect', () => {{ console.log('CONNECTED'); process.exit(0); }}); s.on('error', (e) => {{ console.log(e.code); process.exit(0); }});",
        fallback.display().to_string()
    );
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .arg(node())
        .args(["-e", &client])
        .current_dir("/")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(said, "EACCES", "{}", String::from_utf8_lossy(&out.stderr));
    // We (root, the agent's uid) are still served.
    let v = snapshot_until(n.pid(), "a report", |v| !report(v).is_null());
    assert_eq!(ref_handles(&v).len(), 1, "{v:#}");
}

/// `check --report` of `node [flags] <script>`, the script's own exit kept: (code, text,
/// report).
fn check_with(flags: &[&str], script: &str) -> (i32, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("check.json");
    let node_path = node();
    let mut args = vec![
        "check",
        "--report",
        report.to_str().unwrap(),
        "--",
        node_path.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    args.push(script);
    let (code, text) = run(&args);
    let json = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, text, serde_json::from_str(&json).unwrap())
}

fn warning_kinds(report: &Value) -> Vec<(String, String)> {
    report["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings: {report:#}"))
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().unwrap().to_string(),
                w["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_unhandled_rejection_that_crashes_node_is_named_and_node_still_crashes() {
    let (code, text, rep) = check_with(&[], "reject.js");
    assert_eq!(code, 1, "{text}");
    // Node's own behaviour is kept: the rejection ends the process with status 1.
    assert_eq!(
        rep["target_exit"]["status"]["Code"], 1,
        "{:#}",
        rep["target_exit"]
    );
    assert!(text.contains("Error: flush failed: db gone"), "{text}");
    assert!(
        text.contains(
            "unhandled exception: Error: flush failed: db gone (an unhandled promise rejection)"
        ),
        "{text}"
    );
    let w = warning_kinds(&rep);
    assert!(
        w.iter().any(|(k, m)| k == "unhandled_exception"
            && m == "Error: flush failed: db gone (an unhandled promise rejection)"),
        "{w:?}"
    );
}

#[test]
fn an_unhandled_rejection_in_warn_mode_is_a_warning_and_node_goes_on() {
    let (code, text, rep) = check_with(&["--unhandled-rejections=warn"], "reject_warn.js");
    // Node only warned (its stderr still has it) and exited 0; check names the warning.
    assert_eq!(
        rep["target_exit"]["status"]["Code"], 0,
        "{:#}",
        rep["target_exit"]
    );
    assert!(
        text.contains("UnhandledPromiseRejectionWarning: RangeError: late reply"),
        "{text}"
    );
    assert!(
        text.contains("warning (unhandled rejection): RangeError: late reply"),
        "{text}"
    );
    assert_eq!(code, 1, "{text}");
    let w = warning_kinds(&rep);
    assert_eq!(
        w.iter().filter(|(k, _)| k == "unhandled_rejection").count(),
        1,
        "{w:?}"
    );
}
