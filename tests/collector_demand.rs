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
calm = threading.Event()
burners = []
def burner():
    named("lt-burner")
    burners.append(threading.get_native_id())
    while not calm.is_set():
        pass
    never.wait()
for line in sys.stdin:
    if line.startswith("spawn"):
        threading.Thread(target=late).start()
    elif line.startswith("burn"):
        threading.Thread(target=burner, daemon=True).start()
    elif line.startswith("calm"):
        calm.set()
    elif line.startswith("rename"):
        with open(f"/proc/self/task/{burners[0]}/comm", "w") as f:
            f.write("lt-renamed")
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

/// How many of our own fds are open on `/proc/PID/task/TID/stat`.
fn own_fds_on(pid: i32, tid: i32, file: &str) -> usize {
    let want = format!("/proc/{pid}/task/{tid}/{file}");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str() == Some(want.as_str()))
        .count()
}

/// An off-screen thread that keeps running has its `stat` re-read in rotation through a
/// file kept open (a `pread`, not an open per read): a rename from outside still shows
/// within a rotation, and the file is closed once the thread is found idle.
#[test]
fn an_offscreen_busy_thread_keeps_its_stat_open_until_it_calms_down() {
    use lifecycle_top::collect::entry::ROTATE_EVERY;
    let t = spawn();
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    c.set_wait_demand(WaitDemand::Tids(Default::default()));
    wait_for(&mut c, "three threads", |s| s.threads.len() == 3);
    writeln!(t.child.stdin.as_ref().unwrap(), "burn").unwrap();
    let snap = wait_for(&mut c, "the burner named", |s| {
        s.threads.iter().any(|x| x.name == "lt-burner")
    });
    let tid = thread(&snap, "lt-burner").tid;
    // Renamed by another thread while it burns: only a re-read of its `stat` shows it.
    writeln!(t.child.stdin.as_ref().unwrap(), "rename").unwrap();
    let mut renamed = false;
    for _ in 0..(4 * ROTATE_EVERY) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let s = c.refresh();
        if s.threads
            .iter()
            .any(|x| x.tid == tid && x.name == "lt-renamed")
        {
            renamed = true;
            break;
        }
    }
    assert!(
        renamed,
        "the rename never showed in {} refreshes",
        4 * ROTATE_EVERY
    );
    assert_eq!(
        own_fds_on(t.pid(), tid, "stat"),
        1,
        "a busy off-screen thread's stat is kept open"
    );
    assert_eq!(
        own_fds_on(t.pid(), tid, "wchan"),
        0,
        "not wanted: no wait files"
    );
    writeln!(t.child.stdin.as_ref().unwrap(), "calm").unwrap();
    // Idle now (blocked on an event): the first read that sees it idle closes the file.
    let mut closed = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        c.refresh();
        if own_fds_on(t.pid(), tid, "stat") == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "the calm thread's stat stayed open");
}

/// utime + stime of the whole process, from `/proc/PID/stat` (fields 14 and 15).
fn full_stat_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// With the TUI's demand (rows on screen only) a multi-threaded target's line comes from its
/// main thread's `stat` (no walk of every thread) and its CPU time from its CPU clock: the
/// thread count still follows a thread born between refreshes (listed at the next refresh),
/// and name, state and CPU time agree with the full `/proc/PID/stat`.
#[test]
fn tui_demand_reads_the_target_line_without_walking_its_threads() {
    let t = spawn();
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    c.set_wait_demand(WaitDemand::Tids(Default::default()));
    let snap = wait_for(&mut c, "three threads", |s| s.threads.len() == 3);
    let target = snap.target_info().unwrap();
    assert_eq!(target.num_threads, 3);
    assert_eq!(target.name, "python3");
    // The target sleeps (its threads wait): the clock's sum and stat's agree within the
    // kernel's rounding of utime and stime to ticks.
    let full = full_stat_ticks(t.pid());
    assert!(
        target.cpu_ticks.abs_diff(full) <= 2,
        "CPU time {} ticks from the clock, {full} from /proc/PID/stat",
        target.cpu_ticks
    );
    writeln!(t.child.stdin.as_ref().unwrap(), "spawn").unwrap();
    // Born between refreshes: the next refresh after the count moved lists it.
    let snap = wait_for(&mut c, "the late thread", |s| {
        s.target_info().is_some_and(|p| p.num_threads == 4)
    });
    assert_eq!(
        snap.threads.len(),
        4,
        "the count moved, the table must follow"
    );
}
