//! `lifecycle-top why`: real programs, one per edge kind, each asserting the edges and the
//! root cause in the JSON, and the demo's whole verdict. Python targets run the agent from
//! `agent --path`.

mod pty_util;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

/// Kills the target's whole process group on drop.
struct Target(Child);
impl Drop for Target {
    fn drop(&mut self) {
        let pgid = self.0.id() as i32;
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn agent_dir() -> String {
    let out = Command::new(BIN)
        .args(["agent", "--path"])
        .output()
        .expect("agent --path");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `python3 -c code` in its own process group; returns once it printed "ready".
fn spawn(args: &[&str], agent: bool) -> Target {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .process_group(0);
    if agent {
        cmd.env("PYTHONPATH", agent_dir());
    }
    let mut t = Target(cmd.spawn().expect("python3 is needed for this test"));
    let mut line = String::new();
    let out = t.0.stdout.take().expect("stdout");
    let mut r = BufReader::new(out);
    r.read_line(&mut line).expect("read ready");
    assert!(line.contains("ready"), "target said {line:?}");
    // Keep the pipe open (a closed stdout would kill a writer with SIGPIPE).
    std::mem::forget(r);
    t
}

fn py(code: &str, agent: bool) -> Target {
    let code = if agent {
        format!("import lifecycle_top_agent; lifecycle_top_agent.install()\n{code}")
    } else {
        code.to_string()
    };
    spawn(&["python3", "-c", &code], agent)
}

/// Starts `python3 app.py` with the agent installed by the file's first line: a file, not
/// `-c`, where the agent must read a thread's source line (to call it a sleep, a poll...).
/// Lines of `code` are numbered from 2.
fn py_file(code: &str) -> (tempfile::TempDir, Target) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.py");
    std::fs::write(
        &app,
        format!("import lifecycle_top_agent; lifecycle_top_agent.install()\n{code}"),
    )
    .expect("write app.py");
    let t = spawn(&["python3", &app.to_string_lossy()], true);
    (dir, t)
}

fn why(pid: u32) -> Value {
    let out = Command::new(BIN)
        .args(["why", "--pid", &pid.to_string(), "--json"])
        .output()
        .expect("run why");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("why --json is JSON")
}

/// Runs `why` until `ok` holds for its first cause (the target settles), up to 10 s.
fn why_until(pid: u32, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = why(pid);
        if v["causes"].get(0).is_some_and(&ok) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kinds(cause: &Value) -> Vec<String> {
    cause["edges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["kind"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent pid in a `/proc/PID/stat` text.
fn ppid_of(stat: &str) -> i64 {
    stat.rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("ppid")
}

fn line(cause: &Value) -> &str {
    cause["line"].as_str().unwrap_or("")
}

fn pid_of(n: &Value) -> i64 {
    n["key"]["pid"].as_i64().unwrap_or(-1)
}

#[test]
fn join_chain_ends_in_an_event_nobody_sets() {
    let t = py(
        r#"
import threading
never = threading.Event()
def pack():
    never.wait()
def ship():
    packer = threading.Thread(target=pack, name="packer")
    packer.start()
    packer.join()
threading.Thread(target=ship, name="shipper").start()
print("ready", flush=True)
"#,
        true,
    );
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"event".to_string()));
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        ["main_thread", "shutdown", "join", "event"],
        "{v:#}"
    );
    assert_eq!(c["state"], "no_owner", "{c:#}");
    let l = line(c);
    assert!(
        l.contains("threading._shutdown for non-daemon thread \"shipper\"")
            && l.contains("which joins \"packer\"")
            && l.contains("waits on an Event at <string>:6 that no thread is known to set")
            && l.contains("\"packer\" was started at <string>:9"),
        "{l}"
    );
}

#[test]
fn shutdown_waits_for_a_non_daemon_thread() {
    let t = py(
        r#"
import threading, time
threading.Thread(target=lambda: time.sleep(300), name="lingerer").start()
threading.Thread(target=lambda: time.sleep(300), name="bg", daemon=True).start()
print("ready", flush=True)
"#,
        true,
    );
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"shutdown".to_string()));
    let c = &v["causes"][0];
    assert_eq!(kinds(c), ["main_thread", "shutdown"], "{v:#}");
    let root = &c["root"];
    assert_eq!(root["node"], "thread");
    let l = line(c);
    assert!(
        l.contains("non-daemon thread \"lingerer\"")
            && l.contains("is blocked in clock_nanosleep")
            && l.contains("\"lingerer\" was started at <string>:4"),
        "{l}"
    );
    // The daemon thread is no cause.
    assert!(!v.to_string().contains("\"bg\" (tid"), "{v:#}");
}

#[test]
fn parent_in_wait4_on_a_stuck_child() {
    let t = py(
        r#"
import subprocess, sys
p = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300; :"])
print("ready", flush=True)
p.wait()
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| kinds(c).len() >= 5);
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        [
            "main_thread",
            "wait4",
            "main_thread",
            "wait4",
            "main_thread"
        ],
        "{v:#}"
    );
    // python3 -> sh (ignores SIGTERM) -> sleep
    let path = c["path"].as_array().expect("path");
    assert_eq!(pid_of(&path[0]), i64::from(t.0.id()));
    assert_eq!(c["edges"][1]["evidence"][0]["source"], "proc_syscall");
    assert_eq!(c["root"]["node"], "thread");
    let l = line(c);
    assert!(
        l.contains("waits (wait4) for child pid")
            && l.contains("\"sh\", which waits (wait4, any child) for child pid"),
        "{l}"
    );
    assert!(l.contains("is blocked in clock_nanosleep"), "{l}");
}

#[test]
fn reading_a_pipe_whose_writer_is_a_grandchild() {
    // The child execs into a sleep with stdout elsewhere; only the grandchild holds the pipe.
    let t = py(
        r#"
import subprocess
p = subprocess.Popen(["sh", "-c", "sleep 300 & exec sleep 301 >/dev/null"], stdout=subprocess.PIPE)
print("ready", flush=True)
p.stdout.read()
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"pipe_read".to_string()));
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        ["main_thread", "pipe_read", "main_thread"],
        "{v:#}"
    );
    let writer = pid_of(&c["edges"][1]["to"]);
    let stat = std::fs::read_to_string(format!("/proc/{writer}/stat")).expect("writer stat");
    assert_ne!(
        ppid_of(&stat),
        i64::from(t.0.id()),
        "the writer is the grandchild"
    );
    assert!(stat.contains("(sleep)"));
    assert_eq!(c["edges"][1]["evidence"][0]["source"], "proc_fd");
    assert!(line(c).contains("reads a pipe (fd"), "{}", line(c));
}

#[test]
fn blocked_flock_names_its_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("lock");
    let code = format!(
        r#"
import subprocess, time
lock = {lock:?}
holder = subprocess.Popen(["flock", lock, "sleep", "300"])
time.sleep(0.5)
waiter = subprocess.Popen(["flock", lock, "true"])
print("ready", flush=True)
waiter.wait()
"#,
        lock = lock.display().to_string()
    );
    let t = py(&code, false);
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"file_lock".to_string()));
    let c = &v["causes"][0];
    let k = kinds(c);
    assert_eq!(
        k,
        [
            "main_thread",
            "wait4",
            "main_thread",
            "file_lock",
            "main_thread",
            "wait4",
            "main_thread"
        ],
        "{v:#}"
    );
    assert_eq!(c["edges"][3]["evidence"][0]["source"], "proc_locks");
    assert!(line(c).contains("waits for a file lock (fd"), "{}", line(c));
}

#[test]
fn asyncio_task_awaits_task_awaits_subprocess() {
    let t = py(
        r#"
import asyncio
async def run_child():
    p = await asyncio.create_subprocess_exec("sleep", "300")
    await p.wait()
async def main():
    runner = asyncio.ensure_future(run_child())
    runner.set_name("runner")
    print("ready", flush=True)
    await runner
asyncio.run(main())
"#,
        true,
    );
    let v = why_until(t.0.id(), |c| {
        kinds(c).contains(&"await_subprocess".to_string())
    });
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        [
            "main_thread",
            "loop_main",
            "await_task",
            "await_subprocess",
            "main_thread"
        ],
        "{v:#}"
    );
    assert_eq!(c["path"][2]["node"], "task");
    let l = line(c);
    assert!(
        l.contains("awaits task \"runner\"") && l.contains("awaits subprocess pid"),
        "{l}"
    );
}

/// Compiles a C program with `cc -pthread` into `dir`.
fn cc(dir: &std::path::Path, name: &str, src: &str) -> String {
    let c = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&c, src).expect("write C source");
    let out = Command::new("cc")
        .args(["-O0", "-pthread", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("cc (gcc) is needed for this test: apt-get install gcc libc6-dev");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe.display().to_string()
}

const DEADLOCK_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
pthread_mutex_t wal_lock = PTHREAD_MUTEX_INITIALIZER, index_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_barrier_t both;
static void *writer(void *a) {
    pthread_mutex_lock(&wal_lock);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&index_lock);
    return a;
}
static void *indexer(void *a) {
    pthread_mutex_lock(&index_lock);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&wal_lock);
    return a;
}
int main(void) {
    pthread_t w, i;
    pthread_barrier_init(&both, NULL, 2);
    pthread_create(&w, NULL, writer, NULL);
    pthread_create(&i, NULL, indexer, NULL);
    printf("ready\n");
    fflush(stdout);
    pthread_join(w, NULL);
    return 0;
}
"#;

#[test]
fn pthread_mutex_deadlock_is_a_cycle_with_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = cc(dir.path(), "deadlock", DEADLOCK_C);
    let t = spawn(&[&exe], false);
    let v = why_until(t.0.id(), |c| kinds(c).iter().any(|k| k == "mutex"));
    let causes = v["causes"].as_array().expect("causes");
    let dl = causes
        .iter()
        .find(|c| c["kind"] == "deadlock")
        .unwrap_or_else(|| panic!("a deadlock verdict: {v:#}"));
    assert_eq!(kinds(dl), ["mutex", "mutex"], "{v:#}");
    // The two mutex edges go between the two worker threads, each to the other, with the
    // owner read from the mutex itself.
    let (a, b) = (&dl["edges"][0], &dl["edges"][1]);
    assert_eq!(a["from"], b["to"], "{v:#}");
    assert_eq!(a["to"], b["from"], "{v:#}");
    assert_eq!(a["evidence"][0]["source"], "proc_mem", "{v:#}");
    assert!(line(dl).starts_with("deadlock"), "{}", line(dl));
    // Named by their data symbols, as the binary has them.
    for name in ["wal_lock", "index_lock"] {
        assert!(
            line(dl).contains(&format!("pthread mutex {name} (0x")),
            "{}",
            line(dl)
        );
    }
    // The graph also has main's pthread_join of a thread of the cycle.
    let edges = v["edges"].as_array().expect("edges");
    assert!(
        edges
            .iter()
            .any(|e| e["kind"] == "pthread_join" && (e["to"] == a["from"] || e["to"] == a["to"])),
        "{v:#}"
    );
}

#[test]
fn polling_a_pipe_names_the_writer() {
    let t = py(
        r#"
import select, subprocess
p = subprocess.Popen(["sh", "-c", "exec sleep 300"], stdout=subprocess.PIPE)
print("ready", flush=True)
poller = select.poll()
poller.register(p.stdout, select.POLLIN)
poller.poll()
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"pipe_poll".to_string()));
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        ["main_thread", "pipe_poll", "main_thread"],
        "{v:#}"
    );
    assert!(line(c).contains("polls a pipe (fd"), "{}", line(c));
    let writer = pid_of(&c["edges"][1]["to"]);
    assert!(
        std::fs::read_to_string(format!("/proc/{writer}/comm")).is_ok_and(|s| s.trim() == "sleep"),
        "{v:#}"
    );
}

/// A poll on a pipe only the waiter's own process writes (an event loop's self-pipe, as
/// Node.js's signal pipe) is no blocker: no "write end no other process holds" cause; the
/// root is the thread's own poll.
#[test]
fn polling_its_own_self_pipe_gets_no_pipe_edge() {
    let t = py(
        r#"
import os, select
r, w = os.pipe()
print("ready", flush=True)
poller = select.poll()
poller.register(r, select.POLLIN)
poller.poll()
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| line(c).contains("is blocked in poll"));
    let c = &v["causes"][0];
    assert_eq!(kinds(c), ["main_thread"], "{v:#}");
    assert!(
        !serde_json::to_string(&v)
            .unwrap_or_default()
            .contains("pipe:["),
        "{v:#}"
    );
}

#[test]
fn a_task_awaits_executor_work_whose_worker_waits_on_an_event() {
    let t = py(
        r#"
import asyncio, concurrent.futures, threading
never = threading.Event()
async def main():
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="blocking")
    print("ready", flush=True)
    await loop.run_in_executor(pool, never.wait)
asyncio.run(main())
"#,
        true,
    );
    let v = why_until(t.0.id(), |c| {
        kinds(c).contains(&"await_executor".to_string())
    });
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        ["main_thread", "loop_main", "await_executor", "event"],
        "{v:#}"
    );
    assert!(
        line(c).contains("awaits executor work run by \"blocking_0\""),
        "{}",
        line(c)
    );
}

#[test]
fn a_thread_waits_for_a_future_run_by_a_worker() {
    let t = py(
        r#"
import concurrent.futures, threading
never = threading.Event()
pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="worker")
def caller():
    pool.submit(never.wait).result()
threading.Thread(target=caller, name="caller").start()
print("ready", flush=True)
"#,
        true,
    );
    // The interpreter's own atexit joins the worker first: that is the exit's path; the
    // caller's wait is in the graph, to the worker by name.
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"event".to_string()));
    let edges = v["edges"].as_array().expect("edges");
    let fr = edges
        .iter()
        .find(|e| e["kind"] == "future_result")
        .unwrap_or_else(|| panic!("a future_result edge: {v:#}"));
    assert_eq!(fr["to"]["node"], "thread", "{fr:#}");
    let worker = &v["causes"][0]["edges"];
    assert!(
        worker
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["to"] == fr["to"])),
        "the caller waits for the worker the exit waits on: {v:#}"
    );
}

#[test]
fn reading_a_socketpair_names_the_grandchild_holding_the_other_end() {
    // The parent keeps one end; only a grandchild (the child's background sleep) holds the
    // other: sock_diag gives the peer inode, /proc/*/fd who holds it.
    let t = py(
        r#"
import os, socket, subprocess
a, b = socket.socketpair()
fd = b.fileno()
# The background sleep keeps the end as fd 3; the exec'd one closes it.
script = "exec 3<&%d %d<&-; sleep 300 & exec sleep 301 3<&-" % (fd, fd)
p = subprocess.Popen(["sh", "-c", script], pass_fds=(fd,))
b.close()
print("ready", flush=True)
a.recv(1)
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| kinds(c).contains(&"socket_read".to_string()));
    let c = &v["causes"][0];
    assert_eq!(
        kinds(c),
        ["main_thread", "socket_read", "main_thread"],
        "{v:#}"
    );
    let holder = pid_of(&c["edges"][1]["to"]);
    let stat = std::fs::read_to_string(format!("/proc/{holder}/stat")).expect("holder stat");
    assert!(stat.contains("(sleep)"), "{stat}");
    assert_ne!(
        ppid_of(&stat),
        i64::from(t.0.id()),
        "the holder is the grandchild"
    );
    assert_eq!(c["edges"][1]["evidence"][0]["source"], "proc_fd");
    assert!(line(c).contains("reads a Unix socket (fd"), "{}", line(c));
}

#[test]
fn an_asyncio_loop_polling_its_own_self_pipe_gets_no_socket_edge() {
    // asyncio's wake-up socketpair: both ends in the process itself, so no socket edge
    // (before sock_diag peers, nothing either: the verdict must not change).
    let t = py(
        r#"
import asyncio
async def main():
    print("ready", flush=True)
    await asyncio.sleep(300)
asyncio.run(main())
"#,
        false,
    );
    let v = why_until(t.0.id(), |c| !kinds(c).is_empty());
    let text = v.to_string();
    assert!(!text.contains("socket_read"), "{v:#}");
}

// The demo's verdict names each of its blockers, root cause first, the same way every run:
// the main task of asyncio.run, the non-daemon threads threading._shutdown will wait for,
// the children that ignore SIGTERM. Launched through the real dashboard in a pty (it carries
// the agent that way).
/// The cause lines with what varies between runs taken out: pids and tids (`pid N`), the
/// path of the unpacked demo, and the line numbers inside Python's own library (they differ
/// between CPython versions; the demo's own lines are kept).
fn normalised(v: &Value) -> Vec<String> {
    v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            let mut out = Vec::new();
            let mut number_next = false;
            for w in c["line"].as_str().unwrap_or("").split(' ') {
                if number_next {
                    let tail: String = w.chars().skip_while(char::is_ascii_digit).collect();
                    out.push(format!("N{tail}"));
                    number_next = false;
                    continue;
                }
                number_next = matches!(w, "pid" | "tid" | "(pid" | "(tid");
                let w = match w.rfind('/') {
                    Some(i) if w.contains(".py:") => &w[i + 1..],
                    _ => w,
                };
                match w.split_once(".py:") {
                    Some((file, rest)) if !file.starts_with("demo") => {
                        let tail: String = rest.chars().skip_while(char::is_ascii_digit).collect();
                        out.push(format!("{file}.py:N{tail}"));
                    }
                    _ => out.push(w.to_string()),
                }
            }
            let line = out.join(" ");
            // How a sleep sleeps (clock_nanosleep, or pselect6 in older CPythons) and the
            // line a multi-line `Thread(...).start()` is booked to vary by version too.
            let line = match line.find("is blocked in ") {
                Some(i) => {
                    let rest = &line[i + "is blocked in ".len()..];
                    // `SYSCALL` or `SYSCALL (WCHAN)`, then the rest of the sentence.
                    let word = rest.find([' ', ',', '.']).unwrap_or(rest.len());
                    let after = &rest[word..];
                    let after = match after.strip_prefix(" (").and_then(|a| a.find(')')) {
                        Some(j) => &after[j + 3..],
                        None => after,
                    };
                    format!("{}is blocked in SYSCALL{after}", &line[..i])
                }
                None => line,
            };
            match line.find("was started at demo.py:") {
                Some(i) => format!("{}was started at demo.py:N.", &line[..i]),
                None => line,
            }
        })
        .collect()
}

#[test]
fn the_demo_verdict_names_each_of_its_blockers() {
    let mut s = pty_util::Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = pty_util::demo_tree(&s);
    s.wait_for("TRACKED");
    // The demo starts its executor worker and asyncio subprocess a moment after its tasks:
    // wait until two diagnoses in a row agree (and name the async child), 30 s at most.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut v) = (Vec::new(), why(demo as u32));
    loop {
        let now = normalised(&v);
        if now == last && now.iter().any(|l| l.contains("\"async-child\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's verdict never settled: {now:#?}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(300));
        v = why(demo as u32);
    }
    let lines = normalised(&v);
    let raw: Vec<&str> = v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["line"].as_str().unwrap_or(""))
        .collect();
    // Root causes, the target's first: its main thread runs asyncio.run's main task.
    assert!(
        raw[0].starts_with(&format!(
            "exit blocked: pid {demo} \"python3\" runs an event loop whose main task is task \"Task-1\""
        )),
        "{raw:#?}"
    );
    let expected = [
        "exit blocked: pid N \"python3\" runs an event loop whose main task is task \"Task-1\", which is pending at demo_async.py:106; task \"Task-1\" was created at demo_async.py:112.",
        "exit blocked: pid N \"python3\" will wait in threading._shutdown, once its main thread returns, for non-daemon thread \"asyncio_1\" (tid N), which waits on an Event at demo.py:48 that no thread is known to set; \"asyncio_1\" was started at demo.py:N.",
        "exit blocked: pid N \"python3\" will wait in threading._shutdown, once its main thread returns, for non-daemon thread \"asyncio_0\" (tid N), which waits on an Event at demo_async.py:65 that no thread is known to set; \"asyncio_0\" was started at demo_async.py:91.",
        "exit blocked: pid N \"stubborn-worker\" is blocked in SYSCALL and ignores SIGTERM.",
        "exit blocked: pid N \"stubborn-helper\" is blocked in SYSCALL and ignores SIGTERM.",
        "exit blocked: pid N \"sh\" waits (wait4, any child) for child pid N \"sleep\", which is blocked in SYSCALL.",
        "exit blocked: pid N \"async-child\" is blocked in SYSCALL.",
    ];
    assert_eq!(lines, expected, "the demo's verdict changed:\n{raw:#?}");
    assert!(
        raw.iter()
            .any(|l| l.contains(&format!("pid {stubborn} \"stubborn-worker\""))),
        "{raw:#?}"
    );
    s.quit_killing();
    pty_util::wait_until("the whole demo tree is gone", || {
        !pty_util::alive(demo) && !pty_util::alive(stubborn) && !pty_util::alive(helper)
    });
}

/// The seed's "non-daemon asyncio_N threads" at exit: `asyncio.run` closing waits in
/// `loop.shutdown_default_executor()` for a blocked `run_in_executor` worker. One cause:
/// the main task -> the `_do_shutdown` thread -> joins the worker -> its sleep, and the
/// worker is named by the line that submitted its work (not concurrent/futures' own).
#[test]
fn asyncio_run_closing_waits_for_the_default_executor_worker() {
    let (_dir, t) = py_file(
        r#"import asyncio, time
def blocking():
    print("ready", flush=True)
    time.sleep(1000)
async def main():
    asyncio.get_running_loop().run_in_executor(None, blocking)
asyncio.run(main())
"#,
    );
    // (The worker's "sleeps at" comes from the agent's frames once it sleeps.)
    let v = why_until(t.0.id(), |c| {
        kinds(c).contains(&"await_executor_shutdown".to_string()) && line(c).contains("sleeps at")
    });
    let causes = v["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 1, "one cause, its root the worker: {v:#}");
    let c = &causes[0];
    assert_eq!(
        kinds(c),
        [
            "main_thread",
            "loop_main",
            "await_executor_shutdown",
            "join"
        ],
        "{v:#}"
    );
    let l = line(c);
    assert!(
        l.contains("awaits the default executor's shutdown (loop.shutdown_default_executor), run by \"Thread-1"),
        "{l}"
    );
    assert!(l.contains("joins \"asyncio_0\""), "{l}");
    assert!(
        l.contains("which sleeps at ") && l.contains("app.py:5"),
        "{l}"
    );
    assert!(
        l.contains("\"asyncio_0\" was started at ") && l.contains("app.py:7"),
        "{l}"
    );
}

/// A non-daemon thread serving an `http.server` forever: the root cause says what it runs and
/// what ends it, whether the agent sees it in its poll or between two polls.
#[test]
fn a_non_daemon_thread_serving_forever_names_the_server() {
    let (_dir, t) = py_file(
        r#"import http.server, threading, time
def serve():
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    print("ready", flush=True)
    srv.serve_forever(poll_interval=0.05)
threading.Thread(target=serve, name="http").start()
"#,
    );
    let v = why_until(t.0.id(), |c| line(c).contains("serve_forever"));
    let c = &v["causes"][0];
    assert_eq!(kinds(c), ["main_thread", "shutdown"], "{v:#}");
    for _ in 0..5 {
        let again = why(t.0.id());
        let l = line(&again["causes"][0]);
        assert!(
            l.contains("which serves requests in HTTPServer.serve_forever() at ")
                && l.contains(
                    "app.py:6, which returns only when the server's shutdown() is called"
                ),
            "{l}"
        );
    }
}
