//! Cost that follows activity, against a real python3 target: the collector reads wait points
//! (wchan, syscall, status) only for the threads it is asked for (plus the main thread), and
//! a thread newly asked for is read at the next refresh even though it did not run; a
//! thread nobody shows that starts burning CPU shows it in its CPU figures (from `schedstat`)
//! and gets its state letter re-read in rotation (`stat` skipped in between); the
//! tree's waits (`waits::read_tree`) give the same answers when a process or thread that did
//! not run is not read again, and see what changed in one that did.
#![allow(clippy::unwrap_used)]

mod collector_util;

use collector_util::{Target, need, wait_for};
use lifecycle_top::collect::{Collector, CollectorOptions, WaitDemand, waits};
use lifecycle_top::model::{Snapshot, ThreadInfo, WaitPoint};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const PY: &str = r#"
import ctypes, sys, threading, time
libc = ctypes.CDLL(None)
def named(n):
    libc.prctl(15, n.encode(), 0, 0, 0)
ready = threading.Barrier(3)
never = threading.Event()
def sleeper():
    named("lt-sleeper"); ready.wait(); time.sleep(1000)
def waiter():
    named("lt-waiter"); ready.wait(); never.wait()
for f in (sleeper, waiter):
    threading.Thread(target=f, daemon=True).start()
ready.wait()
print("ready", flush=True)
late_stop = threading.Event()
def late():
    named("lt-late"); late_stop.wait()
def burner():
    named("lt-burner")
    while True:
        pass
for line in sys.stdin:
    if line.startswith("spawn"):
        threading.Thread(target=late).start()
    elif line.startswith("burn"):
        threading.Thread(target=burner, daemon=True).start()
"#;

fn spawn() -> Target {
    need("python3");
    let mut t = Target::spawn(
        Command::new("python3")
            .args(["-c", PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(t.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    t
}

fn thread<'a>(s: &'a Snapshot, n: &str) -> &'a ThreadInfo {
    s.threads
        .iter()
        .find(|x| x.name == n)
        .unwrap_or_else(|| panic!("no thread {n}"))
}

fn in_syscall(t: &ThreadInfo, calls: &[&str]) -> bool {
    t.wait
        .syscall
        .as_deref()
        .is_some_and(|c| calls.contains(&c))
}

const SLEEPS: &[&str] = &["clock_nanosleep", "nanosleep", "select", "pselect6"];

#[test]
fn wait_points_only_for_wanted_threads_and_read_when_wanted() {
    let t = spawn();
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    // Nobody wanted: only the main thread (always wanted) has its wait point.
    c.set_wait_demand(WaitDemand::Tids(Default::default()));
    let snap = wait_for(&mut c, "main thread in read, workers named", |s| {
        s.threads.len() == 3
            && s.threads
                .iter()
                .any(|m| m.tid == s.target.pid && in_syscall(m, &["read"]))
            && s.threads.iter().any(|x| x.name == "lt-waiter")
            && s.threads.iter().any(|x| x.name == "lt-sleeper")
    });
    let (waiter, sleeper) = (thread(&snap, "lt-waiter"), thread(&snap, "lt-sleeper"));
    assert_eq!(waiter.wait, WaitPoint::default(), "{waiter:?}");
    assert_eq!(sleeper.wait, WaitPoint::default(), "{sleeper:?}");
    assert_eq!(waiter.voluntary_ctxt_switches, None);
    // Wanted now: read at the next refresh although it does not run.
    c.set_wait_demand(WaitDemand::Tids([waiter.tid].into()));
    let snap = wait_for(&mut c, "the wanted waiter's futex", |s| {
        in_syscall(thread(s, "lt-waiter"), &["futex"])
    });
    let waiter = thread(&snap, "lt-waiter");
    assert!(waiter.voluntary_ctxt_switches.is_some());
    assert_eq!(thread(&snap, "lt-sleeper").wait, WaitPoint::default());
    // Still wanted, still idle: the wait point stays (no re-read needed to keep it).
    let snap = c.refresh();
    assert!(in_syscall(thread(&snap, "lt-waiter"), &["futex"]));
    // Everyone (the default): the sleeper too.
    c.set_wait_demand(WaitDemand::All);
    let snap = c.refresh();
    assert!(in_syscall(thread(&snap, "lt-sleeper"), SLEEPS));
    assert!(in_syscall(thread(&snap, "lt-waiter"), &["futex"]));
}

#[test]
fn tree_waits_reused_where_nothing_ran_and_fresh_where_something_did() {
    let t = spawn();
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    let snap = wait_for(&mut c, "three threads in their waits", |s| {
        s.threads.len() == 3
            && s.threads
                .iter()
                .any(|m| m.tid == s.target.pid && in_syscall(m, &["read"]))
            && s.threads
                .iter()
                .any(|x| x.name == "lt-waiter" && in_syscall(x, &["futex"]))
            && s.threads
                .iter()
                .any(|x| x.name == "lt-sleeper" && in_syscall(x, SLEEPS))
    });
    let first = waits::read_tree(&snap);
    let second = waits::read_tree(&snap);
    assert_eq!(first.threads, second.threads);
    assert_eq!(first.fds, second.fds);
    let waiter = second
        .threads
        .iter()
        .find(|w| w.name == "lt-waiter")
        .unwrap();
    assert_eq!(waiter.syscall.as_deref(), Some("futex"), "{waiter:?}");
    let sleeper = second
        .threads
        .iter()
        .find(|w| w.name == "lt-sleeper")
        .unwrap();
    assert!(
        sleeper
            .syscall
            .as_deref()
            .is_some_and(|s| SLEEPS.contains(&s)),
        "{sleeper:?}"
    );
    // The main thread runs (reads a line, starts a thread): the next read sees the new one.
    writeln!(t.child.stdin.as_ref().unwrap(), "spawn").unwrap();
    let snap = wait_for(&mut c, "late thread in its futex", |s| {
        s.threads
            .iter()
            .any(|x| x.name == "lt-late" && in_syscall(x, &["futex"]))
    });
    let third = waits::read_tree(&snap);
    let late = third.threads.iter().find(|w| w.name == "lt-late").unwrap();
    assert_eq!(late.syscall.as_deref(), Some("futex"), "{late:?}");
    assert_eq!(third.threads.len(), 4);
}

/// An off-screen thread (not wanted) that starts burning CPU: every refresh gives its CPU%
/// from `schedstat` and its CPU time moves (estimated between its `stat` reads); its
/// `stat` (state letter) is re-read at least once in `ROTATE_EVERY` refreshes, so it shows
/// running within that many refreshes of reading it there; its wait point stays unread.
#[test]
fn an_offscreen_thread_that_burns_cpu_shows_in_its_cpu_figures() {
    use lifecycle_top::collect::entry::ROTATE_EVERY;
    use lifecycle_top::model::RunState;
    let t = spawn();
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    c.set_wait_demand(WaitDemand::Tids(Default::default()));
    wait_for(&mut c, "three threads", |s| s.threads.len() == 3);
    writeln!(t.child.stdin.as_ref().unwrap(), "burn").unwrap();
    let snap = wait_for(&mut c, "the burner named", |s| {
        s.threads.iter().any(|x| x.name == "lt-burner")
    });
    let start_ticks = thread(&snap, "lt-burner").cpu_ticks;
    // Each refresh is 50 ms after the last (wait_for), so a burning thread has run in it
    // whatever the machine's load; CPU% comes from schedstat every refresh.
    let snap = wait_for(&mut c, "the burner's CPU% and CPU time", |s| {
        let b = thread(s, "lt-burner");
        b.cpu_percent > 0.0 && b.cpu_ticks > start_ticks
    });
    assert_eq!(thread(&snap, "lt-burner").wait, WaitPoint::default());
    // Within ROTATE_EVERY refreshes of each other its stat is read; a burning Python
    // thread is mostly running (or runnable), sometimes waiting for the GIL: over a few
    // rotations it shows R at least once.
    let mut seen_running = false;
    for _ in 0..(8 * ROTATE_EVERY) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let s = c.refresh();
        let b = thread(&s, "lt-burner");
        assert_eq!(b.wait, WaitPoint::default(), "not wanted, yet read: {b:?}");
        if b.state == RunState::Running {
            seen_running = true;
            break;
        }
    }
    assert!(
        seen_running,
        "the burner never showed R in {} refreshes",
        8 * ROTATE_EVERY
    );
}
