//! `lifecycle-top snapshot`: the scriptable face of the collector, joined with the agent's
//! report when the target runs one. Real python3 targets, the real binary.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

struct Target(Child);
impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent_dir() -> String {
    let out = Command::new(BIN)
        .args(["agent", "--path"])
        .output()
        .expect("run lifecycle-top agent --path");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A python3 target with a non-daemon thread "keeper" and a daemon thread "ticker"; with
/// `agent`, it installs the agent first. Returns once it printed "ready".
fn spawn_python(agent: bool) -> Target {
    let code = format!(
        r#"
import threading, time
{install}
stop = threading.Event()
threading.Thread(target=stop.wait, name="keeper").start()
threading.Thread(target=stop.wait, name="ticker", daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"#,
        install = if agent {
            "import lifecycle_top_agent; lifecycle_top_agent.install()"
        } else {
            ""
        }
    );
    python_ready(&code, agent)
}

/// `python3 -c code` (with the agent on its path when `agent`), once it printed "ready".
fn python_ready(code: &str, agent: bool) -> Target {
    if agent {
        python_ready_env(code, &[("PYTHONPATH", std::ffi::OsStr::new(&agent_dir()))])
    } else {
        python_ready_env(code, &[])
    }
}

/// Starts `python3 -c CODE` with `env` added and waits for its `ready` line.
fn python_ready_env(code: &str, env: &[(&str, &std::ffi::OsStr)]) -> Target {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]).stdout(Stdio::piped());
    cmd.envs(env.iter().copied());
    let mut target = Target(
        cmd.spawn()
            .expect("python3 is needed for this test (apt install python3)"),
    );
    let mut line = String::new();
    BufReader::new(target.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("target output");
    assert_eq!(line.trim(), "ready");
    target
}

fn snapshot_json(pid: u32) -> Value {
    snapshot_json_with(pid, &[])
}

/// `snapshot --pid PID --json` with `extra` arguments.
fn snapshot_json_with(pid: u32, extra: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["snapshot", "--pid", &pid.to_string(), "--json"])
        .args(extra)
        .output()
        .expect("run lifecycle-top snapshot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("snapshot --json is JSON")
}

#[test]
fn json_includes_agent_threads_with_daemon_flags() {
    let target = spawn_python(true);
    let pid = target.0.id();
    let v = snapshot_json(pid);
    assert_eq!(v["target"]["pid"], pid);
    assert!(v["threads"].as_array().expect("threads").len() >= 3);
    let threads = v["agent"]["report"]["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("agent report with threads: {v}"));
    let find = |name: &str| {
        threads
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("thread {name} in {threads:?}"))
            .clone()
    };
    assert_eq!(find("keeper")["daemon"], false);
    assert_eq!(find("ticker")["daemon"], true);
    let keeper_tid = find("keeper")["native_id"].as_i64().expect("native id");
    let tids: Vec<i64> = v["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter_map(|t| t["tid"].as_i64())
        .collect();
    assert!(tids.contains(&keeper_tid), "native_id joins a /proc tid");
}

#[test]
fn without_agent_the_shape_stays_and_says_why() {
    let target = spawn_python(false);
    let v = snapshot_json(target.0.id());
    assert!(v["agent"].is_null());
    assert!(
        v["agent_status"].as_str().is_some_and(|s| !s.is_empty()),
        "a reason: {v}"
    );
    let out = Command::new(BIN)
        .args(["snapshot", "--pid", &target.0.id().to_string()])
        .output()
        .expect("run lifecycle-top snapshot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("agent: not found"), "{text}");
}

#[test]
fn the_text_form_says_where_each_task_was_created() {
    let code = r#"
import asyncio
import lifecycle_top_agent; lifecycle_top_agent.install()
async def idle():
    await asyncio.Event().wait()
async def main():
    t = asyncio.create_task(idle(), name="lt-idle")
    await asyncio.sleep(0)
    print("ready", flush=True)
    await t
asyncio.run(main())
"#;
    let target = python_ready(code, true);
    let out = Command::new(BIN)
        .args(["snapshot", "--pid", &target.0.id().to_string()])
        .output()
        .expect("run lifecycle-top snapshot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let task = text
        .lines()
        .find(|l| l.trim_start().starts_with("task lt-idle"))
        .unwrap_or_else(|| panic!("{text}"));
    // The creating line is `t = asyncio.create_task(...)`, line 7 of the -c program.
    assert!(task.ends_with("(created at <string>:7)"), "{task}");
}

/// CPU% comes from one read (since each thread started: no wait, as `ps` does it) unless
/// `--cpu-window` asks for a second read that far after the first. A thread that burned
/// 0.3 s of CPU at start and now sleeps shows CPU% since start, and 0 over a window.
#[test]
fn cpu_percent_is_since_start_unless_a_window_is_asked_for() {
    let target = python_ready(
        r#"
import threading, time
done = threading.Event()
def burn():
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.3:
        pass
    done.set()
    threading.Event().wait()
threading.Thread(target=burn, daemon=True).start()
done.wait()
print("ready", flush=True)
time.sleep(600)
"#,
        false,
    );
    let pid = target.0.id();
    let burner = |v: &Value| {
        let threads = v["threads"].as_array().expect("threads");
        let t = threads
            .iter()
            .find(|t| t["tid"].as_u64() != Some(u64::from(pid)))
            .unwrap_or_else(|| panic!("no second thread in {v}"));
        t["cpu_percent"].as_f64().expect("cpu_percent")
    };
    let once = snapshot_json(pid);
    assert!(once.get("cpu_window_ms").is_none(), "{once}");
    assert!(burner(&once) > 0.0, "CPU% since start: {once}");
    let windowed = snapshot_json_with(pid, &["--cpu-window", "200ms"]);
    assert_eq!(windowed["cpu_window_ms"], 200, "{windowed}");
    assert_eq!(burner(&windowed), 0.0, "the thread sleeps: {windowed}");
    // The text form says which CPU% it shows.
    let text = Command::new(BIN)
        .args(["snapshot", "--pid", &pid.to_string()])
        .output()
        .expect("run lifecycle-top snapshot");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CPU% since each process and thread started"),
        "{text}"
    );
    let both = Command::new(BIN)
        .args([
            "snapshot",
            "--pid",
            &pid.to_string(),
            "--watch",
            "1s",
            "--cpu-window",
            "1s",
        ])
        .output()
        .expect("run lifecycle-top snapshot");
    assert_eq!(
        both.status.code(),
        Some(2),
        "--watch and --cpu-window conflict"
    );
}

/// A snapshot that read again while it waited for the agent's report says its CPU% is
/// over the refresh interval, not since start. The target is an "agent" that says hello
/// and never reports (a raw Unix socket in the target, standard library only), so the
/// snapshot reads every 250 ms until its 3 s wait for the report runs out.
#[test]
fn a_snapshot_that_waited_for_the_agent_labels_its_cpu_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("silent.sock");
    let code = r#"
import json, os, socket, threading, time
path = os.environ["LIFECYCLE_TOP_SOCKET"]
start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(4)
held = []
def serve():
    while True:
        c, _ = srv.accept()
        held.append(c)
        hello = {"type": "hello", "protocol": 1,
                 "agent": {"kind": "silent", "version": "0", "instance": "x"},
                 "target": {"pid": os.getpid(), "start_time": start},
                 "capabilities": ["ping"]}
        c.sendall((json.dumps(hello) + "\n").encode())
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"#;
    let target = python_ready_env(code, &[("LIFECYCLE_TOP_SOCKET", sock.as_os_str())]);
    let v = snapshot_json(target.0.id());
    assert_eq!(
        v["cpu_window_ms"], 250,
        "the snapshot read again while it waited: {v}"
    );
    assert!(v["agent"]["report"].is_null(), "no report came: {v}");
    assert_eq!(
        v["agent_status"], "agent connected but sent no report in time",
        "{v}"
    );
}
