//! A fixed snapshot for unit and rendering tests: a demo-like Python service with a
//! non-daemon thread, daemon threads, a TERM-ignoring child with a grandchild, an orphan
//! and an exited child.

use crate::model::*;

fn thread(tid: i32, name: &str, state: char, wchan: &str, syscall: &str, cpu: f32) -> ThreadInfo {
    ThreadInfo {
        tid,
        name: name.into(),
        state: RunState::from_char(state),
        wait: WaitPoint {
            wchan: (!wchan.is_empty()).then(|| wchan.into()),
            syscall_nr: None,
            syscall: (!syscall.is_empty()).then(|| syscall.into()),
            syscall_args: Vec::new(),
        }
        .into(),
        cpu_ticks: (cpu * 10.0) as u64 + 7,
        cpu_percent: cpu,
        voluntary_ctxt_switches: Some(12),
        nonvoluntary_ctxt_switches: Some(1),
    }
}

pub fn process(pid: i32, ppid: i32, name: &str, depth: u32) -> ProcInfo {
    ProcInfo {
        key: ProcKey {
            pid,
            start_time: 1000 + pid as u64,
        },
        ppid,
        pgid: 100,
        sid: 1,
        name: name.into(),
        cmdline: vec![name.into()],
        state: RunState::Sleeping,
        cpu_ticks: 42,
        cpu_percent: 0.5,
        rss_bytes: 12 * 1024 * 1024,
        num_threads: 1,
        age_secs: 75.0,
        depth,
        orphan: false,
        signals: SignalMasks::default(),
        exit: None,
    }
}

pub fn snapshot() -> Snapshot {
    let mut target = process(100, 1, "python3", 0);
    target.cmdline = vec!["python3".into(), "-u".into(), "demo.py".into()];
    target.num_threads = 4;
    let mut stubborn = process(101, 100, "stubborn-worker", 1);
    stubborn.signals.ignored = 1 << (15 - 1);
    let grandchild = process(102, 101, "sleep", 2);
    let mut orphan = process(103, 1, "sleep", 1);
    orphan.orphan = true;
    let mut exited = process(104, 100, "sh", 1);
    exited.state = RunState::Zombie;
    exited.exit = Some(ExitInfo {
        status: ExitStatus::Code(3),
        at_unix_ms: 1_700_000_000_000,
    });
    Snapshot {
        taken_at_unix_ms: 1_700_000_000_000,
        target: target.key,
        processes: vec![target, stubborn, grandchild, orphan, exited],
        threads: vec![
            thread(100, "demo-main", 'S', "do_select", "select", 0.0),
            thread(105, "asyncio_1", 'S', "futex_wait_queue", "futex", 0.0),
            thread(
                106,
                "heartbeat",
                'S',
                "hrtimer_nanosleep",
                "clock_nanosleep",
                0.1,
            ),
            thread(107, "metrics", 'R', "", "", 12.5),
        ],
        system: SystemInfo {
            cpus: 2,
            mem_total_bytes: 24 << 30,
            mem_available_bytes: 20 << 30,
            load_avg: [0.25, 0.5, 0.75],
        },
    }
}

pub fn agent_facts() -> AgentFacts {
    let t = |native_id, name: &str, daemon| AgentThreadFact {
        native_id,
        name: name.into(),
        daemon,
        alive: true,
        main: native_id == 100,
        hook: false,
    };
    AgentFacts {
        threads: vec![
            t(100, "MainThread", false),
            t(105, "asyncio_1", false),
            t(106, "heartbeat", true),
            t(107, "metrics", true),
        ],
        pending_tasks: 3,
        loops: 1,
        pid: Some(100),
        exiting: false,
        jvm_shutdown: false,
    }
}

/// An agent report matching [`snapshot`]: one asyncio loop with pending tasks, the threads
/// of [`agent_facts`].
pub fn agent_report() -> crate::agent::protocol::Report {
    serde_json::from_value(serde_json::json!({
        "seq": 3, "at_unix_ms": 1_700_000_000_000u64, "pid": 100,
        "threads": [
            {"name": "MainThread", "ident": 1, "native_id": 100, "daemon": false, "alive": true, "main": true},
            {"name": "asyncio_1", "ident": 2, "native_id": 105, "daemon": false, "alive": true},
            {"name": "heartbeat", "ident": 3, "native_id": 106, "daemon": true, "alive": true},
            {"name": "metrics", "ident": 4, "native_id": 107, "daemon": true, "alive": true}
        ],
        "loops": [{"id": 1, "class": "_UnixSelectorEventLoop", "native_id": 100, "running": true,
                   "lag_ms": 0.4, "counts": {"pending": 3}, "tasks_total": 3, "main": true}],
        "tasks": [
            {"id": 1, "loop_id": 1, "name": "poll-backend", "state": "pending",
             "coro": "poll_backend", "where": "demo_async.py:31", "tracked": true},
            {"id": 2, "loop_id": 1, "name": "track_backend_progress", "state": "pending",
             "coro": "track_progress", "where": "demo_async.py:40", "tracked": false},
            {"id": 3, "loop_id": 1, "name": "stubborn-task", "state": "pending",
             "coro": "swallow_cancel", "where": "demo_async.py:52", "tracked": true}
        ],
        "tasks_total": 3, "tasks_listed": 3, "tracking": true,
        "cost": {"cpu_ms": 4.5, "bytes_sent": 9000}
    }))
    .expect("fixture report decodes")
}

/// A session event, stamped (tests need no real clock).
pub fn ev(event: crate::session::CoreEvent) -> crate::session::Stamped {
    crate::session::Stamped {
        seq: 0,
        at: crate::session::Stamp::default(),
        event,
    }
}

/// The session's first event for [`snapshot`]'s target: attached (`launch: None`), or
/// launched (`Some(demo)`). The log path is left empty (the log panel names none).
pub fn attached(launch: Option<bool>) -> crate::session::Stamped {
    ev(crate::session::CoreEvent::Attached(
        crate::session::AttachInfo {
            target: snapshot().target,
            launched: launch.map(|_| crate::session::LaunchInfo {
                cmd: vec!["python3".into(), "-u".into(), "demo.py".into()],
                log_path: std::path::PathBuf::new(),
            }),
            demo: launch == Some(true),
            agent_injected: launch.is_some(),
        },
    ))
}

/// A dashboard attached (or launched) that has seen [`snapshot`].
pub fn dashboard(launch: Option<bool>) -> crate::state::Dashboard {
    let mut d = crate::state::Dashboard::new();
    d.apply(&attached(launch));
    d.apply(&ev(crate::session::CoreEvent::Snapshot {
        snapshot: std::sync::Arc::new(snapshot()),
    }));
    d
}
