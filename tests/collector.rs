//! The collector against real processes: python3 threads with known names, sh trees that
//! trap signals, a parent that exits leaving an orphan, exited processes lingering. Every
//! test waits for an observable state (with a generous deadline) and never asserts on
//! timing. Spawned trees run in their own process group, killed by a guard when the test
//! ends (also on panic). Exits, pidfds and attach errors: tests/collector_exits.rs.
#![allow(clippy::unwrap_used)]

mod collector_util;

use collector_util::{Target, by_name, need, wait_for};
use lifecycle_top::collect::{Collector, CollectorOptions, snapshot_text};
use lifecycle_top::model::{ExitStatus, ProcKey, RunState, Snapshot};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const PY_THREADS: &str = r#"
import ctypes, sys, threading, time
libc = ctypes.CDLL(None)
def named(n):  # Python < 3.14 does not set the kernel thread name from Thread.name
    libc.prctl(15, n.encode(), 0, 0, 0)
ready = threading.Barrier(3)
never = threading.Event()
sleeper_tid = []
def sleeper():
    named("lt-sleeper"); sleeper_tid.append(threading.get_native_id()); ready.wait()
    time.sleep(1000)
def waiter():
    named("lt-waiter"); ready.wait(); never.wait()
for f in (sleeper, waiter):
    threading.Thread(target=f, daemon=True).start()
ready.wait()
print("ready", flush=True)
late_stop = threading.Event()
def late():
    named("lt-late"); late_stop.wait()
for line in sys.stdin:
    if line.startswith("rename"):  # from this thread: the sleeper does not run
        with open("/proc/self/task/%d/comm" % sleeper_tid[0], "w") as f:
            f.write("lt-renamed")
    elif line.startswith("spawn"):
        threading.Thread(target=late).start()
    elif line.startswith("stop"):
        late_stop.set()
"#;

#[test]
fn python_threads_names_count_states_and_wait_points() {
    python_threads(CollectorOptions::default());
}

/// Past the fd budget threads are read by opening their files each time: same results.
#[test]
fn python_threads_with_no_or_few_kept_fds() {
    for budget in [0, 6] {
        python_threads(CollectorOptions {
            max_thread_fds: Some(budget),
            ..CollectorOptions::default()
        });
    }
}

fn python_threads(opts: CollectorOptions) {
    need("python3");
    let mut t = Target::spawn(
        Command::new("python3")
            .args(["-c", PY_THREADS])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(t.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let mut c = Collector::attach(t.pid(), opts).unwrap();
    let thread = |s: &Snapshot, n: &str| s.threads.iter().find(|x| x.name == n).cloned();
    let snap = wait_for(&mut c, "threads blocked in their syscalls", |s| {
        let sleeping = |n: &str, calls: &[&str]| {
            thread(s, n).is_some_and(|x| {
                x.state == RunState::Sleeping
                    && x.wait
                        .syscall
                        .as_deref()
                        .is_some_and(|c| calls.contains(&c))
            })
        };
        sleeping(
            "lt-sleeper",
            &["clock_nanosleep", "nanosleep", "select", "pselect6"],
        ) && sleeping("lt-waiter", &["futex"])
            && s.threads
                .first()
                .is_some_and(|m| m.wait.syscall.as_deref() == Some("read"))
    });
    assert_eq!(snap.threads.len(), 3, "{}", snapshot_text(&snap));
    assert_eq!(
        snap.threads[0].tid,
        t.pid(),
        "main thread first (lowest tid)"
    );
    let w = thread(&snap, "lt-waiter").unwrap();
    assert!(w.voluntary_ctxt_switches.is_some());
    assert!(w.wait.syscall_nr.is_some());
    let target = snap.target_info().unwrap();
    assert_eq!(target.num_threads, 3);
    assert_eq!(target.depth, 0);
    assert_eq!(snap.processes[0].key, c.target());
    // Many refreshes later (past a full re-read), the gated reads still agree.
    for _ in 0..35 {
        c.refresh();
    }
    let again = c.refresh();
    assert_eq!(again.threads.len(), 3);
    assert_eq!(thread(&again, "lt-waiter").unwrap().wait, w.wait);
    // A rename done by another thread (the sleeper's schedstat does not move) is still
    // picked up by the periodic re-check.
    let sleeper_tid = thread(&again, "lt-sleeper").unwrap().tid;
    writeln!(t.child.stdin.as_ref().unwrap(), "rename").unwrap();
    let snap = wait_for(&mut c, "renamed sleeper", |s| {
        thread(s, "lt-renamed").is_some()
    });
    assert_eq!(thread(&snap, "lt-renamed").unwrap().tid, sleeper_tid);
    // A thread born, then gone (the task dir is listed only when the count changes).
    writeln!(t.child.stdin.as_ref().unwrap(), "spawn").unwrap();
    let snap = wait_for(&mut c, "late thread", |s| thread(s, "lt-late").is_some());
    assert_eq!(snap.threads.len(), 4);
    writeln!(t.child.stdin.as_ref().unwrap(), "stop").unwrap();
    let snap = wait_for(&mut c, "late thread gone", |s| {
        thread(s, "lt-late").is_none()
    });
    assert_eq!(snap.threads.len(), 3, "{}", snapshot_text(&snap));
}

#[test]
fn sh_tree_in_depth_first_order_with_signal_masks() {
    let t = Target::sh(
        "sh -c 'trap \"\" TERM; sleep 1000 & wait' & \
         sh -c 'trap \"exit 7\" TERM; sleep 1001 & wait' & wait",
    );
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    // Each sh sets its trap before starting its sleep. A refresh is not atomic: an sh read
    // while it was still starting (state R, no trap yet) can be listed with the sleep it
    // forked a moment later (seen in CI under load); it ran since, so the next refresh reads
    // it again and must show the trap.
    let traps_seen = |s: &lifecycle_top::model::Snapshot| {
        s.processes.iter().filter(|x| x.signals.ignores(15)).count() >= 2
            && s.processes
                .iter()
                .filter(|x| x.name == "sh" && x.signals.catches(15))
                .count()
                == 1
    };
    let snap = wait_for(
        &mut c,
        "two sh children with a sleep each, traps set",
        |s| by_name(s, "sleep").len() == 2 && s.processes.len() == 5 && traps_seen(s),
    );
    let p = &snap.processes;
    assert_eq!(p[0].key, t.key());
    // DFS: each sh child is directly followed by its sleep.
    for i in [1, 3] {
        assert_eq!(
            (p[i].name.as_str(), p[i].depth, p[i].ppid),
            ("sh", 1, t.pid())
        );
        assert_eq!((p[i + 1].name.as_str(), p[i + 1].depth), ("sleep", 2));
        assert_eq!(p[i + 1].ppid, p[i].key.pid);
        assert_eq!(p[i].pgid, t.pid());
    }
    let ignoring = p.iter().filter(|x| x.signals.ignores(15)).count();
    let catching = p
        .iter()
        .filter(|x| x.name == "sh" && x.signals.catches(15))
        .count();
    assert!(
        ignoring >= 2,
        "sh child and its sleep ignore TERM\n{}",
        snapshot_text(&snap)
    );
    assert_eq!(catching, 1, "{}", snapshot_text(&snap));
    assert!(p.iter().all(|x| !x.orphan && x.exit.is_none()));
    assert!(!p[1].cmdline.is_empty());
    // SIGTERM the catching child: it exits, its sleep is reparented out -> orphan.
    let catcher = p
        .iter()
        .find(|x| x.name == "sh" && x.signals.catches(15))
        .unwrap();
    lifecycle_top::teardown::exec::signal(catcher.key, 15).unwrap();
    let ck = catcher.key;
    let snap = wait_for(&mut c, "the TERM-catching child exited", |s| {
        s.processes.iter().any(|x| x.key == ck && x.exit.is_some())
    });
    assert!(
        snap.live_descendants()
            .any(|x| x.name == "sleep" && x.orphan)
    );
}

#[test]
fn grandchild_of_exited_parent_stays_tracked_as_orphan() {
    // The middle sh exits on USR1, leaving its sleep behind. The target execs its own sleep
    // so it stays alive (and never reaps the middle one).
    let t = Target::sh("sh -c 'sleep 1000 & trap \"exit 0\" USR1; wait' & exec sleep 1002");
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    let snap = wait_for(&mut c, "middle sh with its sleep", |s| {
        by_name(s, "sh").len() == 1 && s.processes.iter().any(|x| x.depth == 2)
    });
    let middle = by_name(&snap, "sh")[0].key;
    let grandchild = snap.processes.iter().find(|x| x.depth == 2).unwrap().key;
    // Wait until the middle sh has installed its trap before signalling it.
    wait_for(&mut c, "USR1 trap installed", |s| {
        s.processes
            .iter()
            .any(|x| x.key == middle && x.signals.catches(10))
    });
    lifecycle_top::teardown::exec::signal(middle, 10).unwrap();
    let snap = wait_for(&mut c, "grandchild marked orphan", |s| {
        s.processes
            .iter()
            .any(|x| x.key == grandchild && x.orphan && x.exit.is_none())
    });
    let g = snap.processes.iter().find(|x| x.key == grandchild).unwrap();
    assert_ne!(g.ppid, middle.pid);
    assert_eq!(g.depth, 2, "an orphan keeps its depth");
    let m = snap.processes.iter().find(|x| x.key == middle).unwrap();
    let status = m.exit.unwrap().status;
    assert!(
        matches!(status, ExitStatus::Code(0) | ExitStatus::Unknown),
        "{status:?}"
    );
    // Order: live tree first, then orphans, then exited.
    let pos = |k: ProcKey| snap.processes.iter().position(|x| x.key == k).unwrap();
    assert!(pos(grandchild) < pos(middle));
    assert_eq!(snap.processes[0].key, t.key());
}

#[test]
fn exited_processes_linger_then_drop() {
    let t = Target::sh("sleep 0.3 & exec sleep 1003");
    let opts = CollectorOptions {
        exited_linger: Duration::from_millis(500),
        ..CollectorOptions::default()
    };
    let mut c = Collector::attach(t.pid(), opts).unwrap();
    let snap = wait_for(&mut c, "short child exits", |s| {
        s.processes
            .iter()
            .any(|x| x.key != s.target && x.exit.is_some())
    });
    let gone = snap
        .processes
        .iter()
        .find(|x| x.exit.is_some())
        .unwrap()
        .key;
    wait_for(&mut c, "exited child dropped", |s| {
        s.processes.iter().all(|x| x.key != gone)
    });
}

#[test]
fn busy_process_shows_cpu_use() {
    let t = Target::sh("while :; do :; done");
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    let snap = wait_for(&mut c, "CPU% of a busy loop", |s| {
        s.target_info()
            .is_some_and(|p| p.cpu_percent > 5.0 && p.state == RunState::Running)
            && s.threads.first().is_some_and(|th| th.cpu_percent > 5.0)
    });
    let p = snap.target_info().unwrap();
    assert!(
        p.cpu_percent <= 100.5 * snap.system.cpus as f32,
        "{}",
        p.cpu_percent
    );
    assert!(snap.system.cpus >= 1 && snap.system.mem_total_bytes > 0);
    assert!(snap.system.mem_available_bytes <= snap.system.mem_total_bytes);
}

/// /proc is listed only when something in the tree ran: a child forked by a worker thread
/// of a multi-threaded target (its main thread idle) must still be found.
#[test]
fn children_forked_by_a_worker_thread_are_found() {
    need("python3");
    let script = r#"
import subprocess, sys, threading, time
def spawn():
    time.sleep(0.5)
    subprocess.Popen(["sleep", "1004"])
    time.sleep(1000)
threading.Thread(target=spawn, daemon=True).start()
sys.stdin.read()
"#;
    let t = Target::spawn(
        Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped()),
    );
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    let snap = wait_for(&mut c, "the worker's child", |s| {
        s.live_descendants()
            .any(|p| p.name == "sleep" && p.ppid == t.pid())
    });
    // (Exited helpers may be listed too: a pyenv shim runs a few before python starts.)
    assert_eq!(
        snap.live_descendants().count(),
        1,
        "{}",
        snapshot_text(&snap)
    );
}

const PY_IDLE_WAKES: &str = r#"
import ctypes, sys, threading, time
libc = ctypes.CDLL(None)
go = threading.Event()
tid = []
def switch():
    libc.prctl(15, b"lt-switch", 0, 0, 0); tid.append(threading.get_native_id())
    go.wait()
    time.sleep(1000)
def idle():
    threading.Event().wait()
threading.Thread(target=switch, daemon=True).start()
for _ in range(20):
    threading.Thread(target=idle, daemon=True).start()
while not tid:
    time.sleep(0.01)
def nr():
    with open("/proc/self/task/%d/syscall" % tid[0]) as f:
        return f.read().split()[0]
time.sleep(0.2)
print("ready", flush=True)
sys.stdin.readline()
before = nr()
go.set()
while nr() in (before, "running"):
    time.sleep(0.01)
print("switched", flush=True)
sys.stdin.readline()
"#;

/// Threads that did not run are left unread when the ones that ran account for all of the
/// process's CPU time; a long-idle thread that wakes and blocks elsewhere breaks that sum,
/// so the very next refresh reads everyone and shows its new wait point.
#[test]
fn idle_thread_that_wakes_is_read_at_the_next_refresh() {
    need("python3");
    let mut t = Target::spawn(
        Command::new("python3")
            .args(["-c", PY_IDLE_WAKES])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut out = BufReader::new(t.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    let switch = |s: &Snapshot| s.threads.iter().find(|x| x.name == "lt-switch").cloned();
    wait_for(&mut c, "lt-switch waiting on its event", |s| {
        switch(s).is_some_and(|x| x.wait.syscall.as_deref() == Some("futex"))
    });
    for _ in 0..3 {
        c.refresh(); // everyone idle now: later refreshes read (almost) no thread
    }
    writeln!(t.child.stdin.as_ref().unwrap(), "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "switched");
    let snap = c.refresh();
    let x = switch(&snap).unwrap();
    assert!(
        matches!(
            x.wait.syscall.as_deref(),
            Some("clock_nanosleep" | "nanosleep" | "select" | "pselect6")
        ),
        "{}",
        snapshot_text(&snap)
    );
    assert_eq!(snap.threads.len(), 22);
}

#[test]
fn a_process_forked_and_reparented_between_refreshes_is_found_by_process_events() {
    // Only the kernel's process events see this one: its parent exits at once and it leaves
    // the tree's process group and session, so by the next refresh nothing in /proc ties it
    // to the tree. The event reader reads its events in batches; the fork must still count.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (process events need CAP_NET_ADMIN): run it with sudo"
    );
    let go = std::env::temp_dir().join(format!("lt-collector-events-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; sh -c 'setsid sleep 61 & exit 0'; exec sleep 1008",
        go.display()
    );
    let t = Target::sh(&script);
    let mut c = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    assert_eq!(
        c.discovery(),
        &lifecycle_top::collect::procevents::Discovery::ProcEvents,
        "process events are unavailable here (LIFECYCLE_TOP_NO_PROC_EVENTS set?)"
    );
    c.refresh();
    std::fs::write(&go, b"").unwrap();
    let found = |s: &Snapshot| {
        s.processes
            .iter()
            .find(|p| p.exit.is_none() && p.cmdline.iter().any(|a| a == "61"))
            .map(|p| (p.key, p.orphan))
    };
    let snap = wait_for(&mut c, "the setsid sleep, tracked as an orphan", |s| {
        found(s).is_some_and(|(_, orphan)| orphan)
    });
    let _ = std::fs::remove_file(&go);
    // Outside the target's process group: the guard would not kill it.
    if let Some((key, _)) = found(&snap) {
        let _ = lifecycle_top::teardown::exec::signal(key, 9);
    }
}
