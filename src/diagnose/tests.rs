//! Table tests of the graph folding: chains, cycles, unknown owners, the /proc layers.

use super::*;
use crate::agent::protocol::{
    LoopHandle, LoopInfo, MainTask, PyThread, TaskAwait, TaskInfo, WaitsOn,
};
use crate::collect::waits::{FdEntry, FdObject, FileLock, ThreadWait};
use crate::model::{ProcInfo, RunState, SignalMasks, SystemInfo};

fn key(pid: i32) -> ProcKey {
    ProcKey {
        pid,
        start_time: 1000 + pid as u64,
    }
}

fn proc(pid: i32, ppid: i32, name: &str) -> ProcInfo {
    ProcInfo {
        key: key(pid),
        ppid,
        pgid: pid,
        sid: pid,
        name: name.into(),
        cmdline: vec![name.into()],
        state: RunState::Sleeping,
        cpu_ticks: 0,
        cpu_percent: 0.0,
        rss_bytes: 0,
        num_threads: 1,
        age_secs: 1.0,
        depth: 0,
        orphan: false,
        signals: SignalMasks::default(),
        exit: None,
    }
}

fn snap(procs: Vec<ProcInfo>) -> Snapshot {
    Snapshot {
        taken_at_unix_ms: 0,
        target: procs[0].key,
        processes: procs,
        threads: Vec::new(),
        system: SystemInfo::default(),
    }
}

fn tw(pid: i32, tid: i32, syscall: Option<&str>, args: &[u64]) -> Arc<ThreadWait> {
    Arc::new(tw_owned(pid, tid, syscall, args))
}

fn tw_owned(pid: i32, tid: i32, syscall: Option<&str>, args: &[u64]) -> ThreadWait {
    ThreadWait {
        key: key(pid),
        tid,
        name: format!("t{tid}").into(),
        state: 'S',
        syscall: syscall.map(|s| s.to_string().into()),
        args: args.into(),
        wchan: None,
        futex_words: None,
        futex_symbol: None,
        polled: Box::default(),
    }
}

fn pyt(name: &str, tid: i32, main: bool, daemon: bool, w: Option<WaitsOn>) -> PyThread {
    PyThread {
        name: name.into(),
        ident: Some(tid as u64),
        native_id: Some(tid),
        daemon,
        alive: !main,
        main,
        agent: false,
        waits_on: w,
        started_at: (!main).then(|| format!("app.py:{tid}")),
    }
}

fn waits(kind: &str, target: Option<i32>, owner: Option<i32>, at: &str) -> Option<WaitsOn> {
    Some(WaitsOn {
        kind: kind.into(),
        target_native_id: target,
        owner_native_id: owner,
        where_: Some(at.into()),
        object: None,
    })
}

fn facts(procs: Vec<ProcInfo>, w: TreeWaits, r: Option<Report>) -> Facts {
    Facts::from_parts(snap(procs), w, r, 15)
}

fn threads_of(pid: i32, tids: &[i32]) -> Vec<Arc<ThreadWait>> {
    tids.iter()
        .map(|&t| tw(pid, t, Some("futex"), &[]))
        .collect()
}

#[test]
fn join_chain_folds_to_the_event_nobody_sets() {
    let r = Report {
        pid: 10,
        threads: vec![
            pyt(
                "MainThread",
                10,
                true,
                false,
                waits("shutdown", None, None, "threading.py:1"),
            ),
            pyt(
                "shipper",
                11,
                false,
                false,
                waits("join", Some(12), None, "app.py:12"),
            ),
            pyt(
                "packer",
                12,
                false,
                false,
                waits("event", None, None, "app.py:6"),
            ),
        ],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: threads_of(10, &[10, 11, 12]),
        ..TreeWaits::default()
    };
    let f = facts(vec![proc(10, 1, "python3")], w, Some(r));
    let causes = diagnose(&f);
    // shutdown -> shipper -> packer -> Event; and shutdown -> packer is already explained.
    assert_eq!(causes.len(), 1, "{causes:#?}");
    let c = &causes[0];
    assert_eq!(c.kind, CauseKind::Blocked);
    let kinds: Vec<_> = c.edges.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EdgeKind::MainThread,
            EdgeKind::Shutdown,
            EdgeKind::Join,
            EdgeKind::Event
        ]
    );
    assert!(matches!(c.root_state, Root::NoOwner { .. }));
    assert_eq!(
        c.line,
        "exit blocked: the interpreter (pid 10) waits in threading._shutdown for non-daemon thread \"shipper\" (tid 11), which joins \"packer\" (tid 12), which waits on an Event at app.py:6 that no thread is known to set; \"shipper\" was started at app.py:11, \"packer\" was started at app.py:12."
    );
}

#[test]
fn rlock_two_cycle_is_a_deadlock() {
    let r = Report {
        pid: 10,
        threads: vec![
            pyt(
                "MainThread",
                10,
                true,
                false,
                waits("join", Some(11), None, "app.py:30"),
            ),
            pyt(
                "writer",
                11,
                false,
                false,
                waits("rlock", None, Some(12), "app.py:8"),
            ),
            pyt(
                "compactor",
                12,
                false,
                false,
                waits("rlock", None, Some(11), "app.py:15"),
            ),
        ],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: threads_of(10, &[10, 11, 12]),
        ..TreeWaits::default()
    };
    let causes = diagnose(&facts(vec![proc(10, 1, "python3")], w, Some(r)));
    let d: Vec<_> = causes
        .iter()
        .filter(|c| c.kind == CauseKind::Deadlock)
        .collect();
    assert_eq!(d.len(), 1, "{causes:#?}");
    assert_eq!(d[0].path.len(), 2);
    assert_eq!(
        d[0].line,
        "deadlock: \"writer\" (tid 11) holds an RLock at app.py:15, wants an RLock at app.py:8 held by \"compactor\" (tid 12), which wants an RLock at app.py:15."
    );
}

#[test]
fn three_cycle_of_joins_is_reported_once() {
    let r = Report {
        pid: 10,
        threads: vec![
            pyt(
                "MainThread",
                10,
                true,
                false,
                waits("join", Some(11), None, "m.py:1"),
            ),
            pyt(
                "a",
                11,
                false,
                false,
                waits("join", Some(12), None, "a.py:1"),
            ),
            pyt(
                "b",
                12,
                false,
                false,
                waits("join", Some(13), None, "b.py:1"),
            ),
            pyt(
                "c",
                13,
                false,
                false,
                waits("join", Some(11), None, "c.py:1"),
            ),
        ],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: threads_of(10, &[10, 11, 12, 13]),
        ..TreeWaits::default()
    };
    let causes = diagnose(&facts(vec![proc(10, 1, "python3")], w, Some(r)));
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(causes[0].kind, CauseKind::Deadlock);
    assert_eq!(causes[0].path.len(), 3);
    assert!(
        causes[0]
            .line
            .starts_with("deadlock: \"a\" (tid 11) joins \"b\" (tid 12), which joins \"c\" (tid 13), which joins \"a\""),
        "{}",
        causes[0].line
    );
}

#[test]
fn a_table_of_chains_and_their_roots() {
    struct Case {
        name: &'static str,
        procs: Vec<ProcInfo>,
        waits: TreeWaits,
        root: Node,
        kinds: Vec<EdgeKind>,
    }
    let mut ignoring = proc(11, 10, "sh");
    ignoring.signals.ignored = 1 << (15 - 1);
    let cases = vec![
        Case {
            name: "wait4 on a child that ignores SIGTERM",
            procs: vec![proc(10, 1, "python3"), ignoring],
            waits: TreeWaits {
                threads: vec![
                    tw(10, 10, Some("wait4"), &[11, 0, 0, 0]),
                    tw(11, 11, Some("clock_nanosleep"), &[]),
                ],
                ..TreeWaits::default()
            },
            root: Node::Thread {
                key: key(11),
                tid: 11,
            },
            kinds: vec![
                EdgeKind::MainThread,
                EdgeKind::Wait4 { pid_arg: 11 },
                EdgeKind::MainThread,
            ],
        },
        Case {
            name: "wait4(-1) with no child in the tree: unknown owner",
            procs: vec![proc(10, 1, "python3")],
            waits: TreeWaits {
                threads: vec![tw(10, 10, Some("wait4"), &[u32::MAX as u64, 0, 0, 0])],
                ..TreeWaits::default()
            },
            root: Node::Unowned {
                waiter: Box::new(Node::Thread {
                    key: key(10),
                    tid: 10,
                }),
                object: "a child that is not in the tree".into(),
            },
            kinds: vec![EdgeKind::MainThread, EdgeKind::Wait4 { pid_arg: -1 }],
        },
        Case {
            name: "a pipe read whose writer is a grandchild",
            procs: vec![
                proc(10, 1, "python3"),
                proc(11, 10, "sleep"),
                proc(12, 11, "sleep"),
            ],
            waits: TreeWaits {
                threads: vec![
                    tw(10, 10, Some("read"), &[3, 0, 0]),
                    tw(11, 11, Some("clock_nanosleep"), &[]),
                    tw(12, 12, Some("clock_nanosleep"), &[]),
                ],
                fds: vec![
                    FdEntry {
                        key: key(10),
                        fd: 3,
                        object: FdObject::Pipe { inode: 77 },
                        writes: Some(false),
                    },
                    FdEntry {
                        key: key(12),
                        fd: 1,
                        object: FdObject::Pipe { inode: 77 },
                        writes: Some(true),
                    },
                ],
                ..TreeWaits::default()
            },
            root: Node::Thread {
                key: key(12),
                tid: 12,
            },
            kinds: vec![
                EdgeKind::MainThread,
                EdgeKind::PipeRead { fd: 3, inode: 77 },
                EdgeKind::MainThread,
            ],
        },
        Case {
            name: "a polled Unix socket whose other end a child holds",
            procs: vec![proc(10, 1, "python3"), proc(11, 10, "worker")],
            waits: TreeWaits {
                threads: vec![
                    Arc::new(ThreadWait {
                        polled: vec![5].into(),
                        ..tw_owned(10, 10, Some("poll"), &[0, 1, u64::MAX])
                    }),
                    tw(11, 11, Some("clock_nanosleep"), &[]),
                ],
                fds: vec![
                    FdEntry {
                        key: key(10),
                        fd: 5,
                        object: FdObject::Socket { inode: 90 },
                        writes: None,
                    },
                    FdEntry {
                        key: key(11),
                        fd: 0,
                        object: FdObject::Socket { inode: 91 },
                        writes: None,
                    },
                ],
                socket_peers: [(90, 91)].into_iter().collect(),
                ..TreeWaits::default()
            },
            root: Node::Thread {
                key: key(11),
                tid: 11,
            },
            kinds: vec![
                EdgeKind::MainThread,
                EdgeKind::SocketRead {
                    fd: 5,
                    inode: 90,
                    peer: 91,
                    poll: true,
                },
                EdgeKind::MainThread,
            ],
        },
        Case {
            name: "a blocked flock held by a sibling",
            procs: vec![
                proc(10, 1, "python3"),
                proc(11, 10, "holder"),
                proc(12, 10, "waiter"),
            ],
            waits: TreeWaits {
                threads: vec![
                    tw(10, 10, Some("wait4"), &[12, 0, 0]),
                    tw(11, 11, Some("clock_nanosleep"), &[]),
                    tw(12, 12, Some("flock"), &[4, 2]),
                ],
                fds: vec![FdEntry {
                    key: key(12),
                    fd: 4,
                    object: FdObject::File {
                        major: 8,
                        minor: 1,
                        inode: 99,
                    },
                    writes: None,
                }],
                locks: vec![FileLock {
                    class: "FLOCK".into(),
                    write: true,
                    pid: 11,
                    major: 8,
                    minor: 1,
                    inode: 99,
                    blocked: false,
                }],
                ..TreeWaits::default()
            },
            root: Node::Thread {
                key: key(11),
                tid: 11,
            },
            kinds: vec![
                EdgeKind::MainThread,
                EdgeKind::Wait4 { pid_arg: 12 },
                EdgeKind::MainThread,
                EdgeKind::FileLock { fd: 4, inode: 99 },
                EdgeKind::MainThread,
            ],
        },
    ];
    for c in cases {
        let f = facts(c.procs, c.waits, None);
        let causes = diagnose(&f);
        assert_eq!(
            causes,
            why(&f, None).causes,
            "{}: the graph of what the causes walk found other causes than the whole graph",
            c.name
        );
        let first = causes
            .first()
            .unwrap_or_else(|| panic!("{}: no cause", c.name));
        assert_eq!(first.root, c.root, "{}: {first:#?}", c.name);
        let kinds: Vec<_> = first.edges.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, c.kinds, "{}", c.name);
        assert!(
            first.line.starts_with("exit blocked: pid 10"),
            "{}",
            first.line
        );
    }
}

#[test]
fn ignoring_child_is_named_in_the_line() {
    let mut ignoring = proc(11, 10, "sh");
    ignoring.signals.ignored = 1 << (15 - 1);
    let w = TreeWaits {
        threads: vec![
            tw(10, 10, Some("wait4"), &[11]),
            tw(11, 11, Some("clock_nanosleep"), &[]),
        ],
        ..TreeWaits::default()
    };
    let c = &diagnose(&facts(vec![proc(10, 1, "python3"), ignoring], w, None))[0];
    assert_eq!(
        c.line,
        "exit blocked: pid 10 \"python3\" waits (wait4) for child pid 11 \"sh\", which is blocked in clock_nanosleep and ignores SIGTERM."
    );
    assert_eq!(c.root_stop_signal.as_deref(), Some("ignores"));
}

#[test]
fn asyncio_task_awaits_task_awaits_subprocess() {
    let r = Report {
        pid: 10,
        threads: vec![pyt("MainThread", 10, true, false, None)],
        loops: vec![LoopInfo {
            id: 1,
            native_id: Some(10),
            running: true,
            main_task: Some(MainTask {
                id: 100,
                name: "main".into(),
            }),
            ..LoopInfo::default()
        }],
        tasks: vec![
            TaskInfo {
                id: 100,
                loop_id: 1,
                name: "main".into(),
                ..TaskInfo::default()
            },
            TaskInfo {
                id: 101,
                loop_id: 1,
                name: "runner".into(),
                created_at: Some("app.py:35".into()),
                ..TaskInfo::default()
            },
        ],
        task_awaits: vec![
            TaskAwait {
                task_id: 100,
                loop_id: 1,
                kind: "task".into(),
                task_ids: vec![101],
                pid: None,
                where_: Some("app.py:9".into()),
                ..TaskAwait::default()
            },
            TaskAwait {
                task_id: 101,
                loop_id: 1,
                kind: "subprocess".into(),
                task_ids: vec![],
                pid: Some(11),
                where_: Some("app.py:4".into()),
                ..TaskAwait::default()
            },
        ],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: vec![
            tw(10, 10, Some("epoll_wait"), &[]),
            tw(11, 11, Some("clock_nanosleep"), &[]),
        ],
        ..TreeWaits::default()
    };
    let causes = diagnose(&facts(
        vec![proc(10, 1, "python3"), proc(11, 10, "sleep")],
        w,
        Some(r),
    ));
    let c = &causes[0];
    let kinds: Vec<_> = c.edges.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EdgeKind::MainThread,
            EdgeKind::LoopMain,
            EdgeKind::AwaitTask,
            EdgeKind::AwaitSubprocess { pid: 11 },
            EdgeKind::MainThread
        ]
    );
    assert!(
        c.line.contains("awaits task \"runner\" at app.py:9"),
        "{}",
        c.line
    );
    assert!(
        c.line.contains("awaits subprocess pid 11 \"sleep\""),
        "{}",
        c.line
    );
    // Where the chain's tasks were created (the main task's site is unknown here: none).
    assert!(
        c.line
            .ends_with("; task \"runner\" was created at app.py:35."),
        "{}",
        c.line
    );
    assert!(!c.line.contains("task \"main\" was created"), "{}", c.line);
}

#[test]
fn two_sources_for_one_wait_merge_evidence() {
    let mut g = graph::build(&facts(
        vec![proc(10, 1, "python3"), proc(11, 10, "sleep")],
        TreeWaits {
            threads: vec![
                tw(10, 10, Some("wait4"), &[11]),
                tw(10, 10, Some("wait4"), &[11]),
            ],
            ..TreeWaits::default()
        },
        None,
    ));
    g.edges.retain(|e| matches!(e.kind, EdgeKind::Wait4 { .. }));
    assert_eq!(g.edges.len(), 1);
}

#[test]
fn threads_nothing_walks_to_give_no_edges_to_the_verdict_but_the_same_causes_and_notes() {
    // The target's main thread pauses; five other threads read a pipe whose write end ten
    // children hold (past MAX_WRITERS: a note). Nothing waits for those readers.
    let mut procs = vec![proc(10, 1, "server")];
    let mut threads = vec![tw(10, 10, Some("pause"), &[])];
    let mut fds = vec![FdEntry {
        key: key(10),
        fd: 3,
        object: FdObject::Pipe { inode: 77 },
        writes: Some(false),
    }];
    for tid in 100..105 {
        threads.push(tw(10, tid, Some("read"), &[3, 0, 1]));
    }
    for pid in 11..21 {
        procs.push(proc(pid, 10, "worker"));
        threads.push(tw(pid, pid, Some("pause"), &[]));
        fds.push(FdEntry {
            key: key(pid),
            fd: 4,
            object: FdObject::Pipe { inode: 77 },
            writes: Some(true),
        });
    }
    let w = TreeWaits {
        threads,
        fds,
        ..TreeWaits::default()
    };
    let f = facts(procs, w, None);
    let (all, verdict) = (why(&f, Some("none")), why_causes(&f, Some("none")));
    assert_eq!(verdict.causes, all.causes);
    assert_eq!(verdict.unknowns, all.unknowns);
    assert!(
        all.unknowns
            .iter()
            .any(|u| u == "pipe:[77] has 10 write ends in the tree: the first 8 are listed"),
        "{:#?}",
        all.unknowns
    );
    let pipe = |g: &Graph| {
        g.edges
            .iter()
            .filter(|e| matches!(e.kind, EdgeKind::PipeRead { .. }))
            .count()
    };
    assert_eq!(
        pipe(&graph::build(&f)),
        5 * 8,
        "the whole graph has every edge"
    );
    assert_eq!(
        pipe(&graph::build_for_causes(&f)),
        0,
        "nothing walks to the readers"
    );
    assert!(verdict.edges.is_empty());
}

fn node_loop(blocked: bool, blocked_at: Option<&str>, lag_ms: f64) -> LoopInfo {
    LoopInfo {
        id: 1,
        class: "node:libuv".into(),
        native_id: Some(20),
        running: true,
        blocked,
        lag_ms: Some(lag_ms),
        blocked_at: blocked_at.map(str::to_string),
        ..LoopInfo::default()
    }
}

fn handle(kind: &str, name: &str, detail: &str, site: Option<&str>, r#ref: bool) -> LoopHandle {
    LoopHandle {
        id: 1,
        kind: kind.into(),
        group: String::new(),
        ref_: r#ref,
        name: name.into(),
        detail: detail.into(),
        site: site.map(str::to_string),
        request: false,
    }
}

#[test]
fn node_loop_kept_alive_by_its_ref_handles_is_one_cause() {
    let r = Report {
        pid: 20,
        loops: vec![node_loop(false, None, 0.2)],
        handles: vec![
            handle(
                "Timeout",
                "Timeout (poll)",
                "setInterval 1000 ms",
                Some("app.js:12"),
                true,
            ),
            handle(
                "TCPServerWrap",
                "TCPServerWrap",
                "listening on 127.0.0.1:43211",
                Some("app.js:20"),
                true,
            ),
            // Unref'ed handles do not keep the loop alive: not named.
            handle(
                "Timeout",
                "Timeout (gc)",
                "setInterval 5 ms",
                Some("app.js:30"),
                false,
            ),
            handle("FSEventWrap", "FSEventWrap", "not traced", None, true),
        ],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: vec![tw(20, 20, Some("epoll_pwait"), &[])],
        ..TreeWaits::default()
    };
    let f = facts(vec![proc(20, 1, "node")], w, Some(r));
    let causes = diagnose(&f);
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(
        causes[0].line,
        "exit blocked: pid 20 \"node\" runs an event loop that stays alive because of 3 ref'ed \
         handles: Timeout (poll) setInterval 1000 ms created at app.js:12, TCPServerWrap \
         listening on 127.0.0.1:43211 created at app.js:20, FSEventWrap (creation site not \
         traced)."
    );
    assert!(matches!(
        causes[0].edges.last().map(|e| &e.kind),
        Some(EdgeKind::LoopHandles { count: 3 })
    ));
}

#[test]
fn node_loop_blocked_in_js_names_the_line_not_the_handles() {
    let r = Report {
        pid: 20,
        loops: vec![node_loop(true, Some("app.js:5"), 3200.0)],
        handles: vec![handle("Timeout", "Timeout", "", Some("app.js:9"), true)],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: vec![Arc::new(ThreadWait {
            state: 'R',
            ..tw_owned(20, 20, None, &[])
        })],
        ..TreeWaits::default()
    };
    let f = facts(vec![proc(20, 1, "node")], w, Some(r));
    let causes = diagnose(&f);
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(
        causes[0].line,
        "exit blocked: pid 20 \"node\" has had its event loop blocked for 3.2 s by JavaScript at \
         app.js:5 that does not return to it."
    );
    // A Node loop with nothing ref'ed and not blocked: no cause from the agent.
    let idle = Report {
        pid: 20,
        loops: vec![node_loop(false, None, 0.1)],
        ..Report::default()
    };
    let w = TreeWaits {
        threads: vec![tw(20, 20, Some("epoll_pwait"), &[])],
        ..TreeWaits::default()
    };
    let f = facts(vec![proc(20, 1, "node")], w, Some(idle));
    assert!(
        diagnose(&f).iter().all(|c| !c.line.contains("event loop")),
        "{:#?}",
        diagnose(&f)
    );
}
