//! The wait-for graph: who waits for whom, with the kind of wait and which source said so.
//! Built from the Python agent (threads' `waits_on`, `threading._shutdown`, loops' main
//! tasks, `task_awaits`), the Node.js agent (ref'ed handles, a blocked loop) and from /proc (`wait4`/`waitid` arguments, reads of pipes against
//! the fds of the tree, blocked `flock`/`fcntl` against `/proc/locks`).

use super::Facts;
use crate::collect::waits::{FdObject, ThreadWait};
use crate::model::{ProcKey, SharedStr};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Something that can wait or be waited for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum Node {
    Process {
        key: ProcKey,
    },
    Thread {
        key: ProcKey,
        tid: i32,
    },
    Task {
        key: ProcKey,
        loop_id: u64,
        task_id: u64,
    },
    Executor {
        key: ProcKey,
        id: u64,
    },
    /// A primitive nobody is known to release (an Event nobody is known to set, a Lock
    /// whose owner is not recorded, a pipe whose writer is outside the tree), as seen by
    /// the one node waiting on it.
    Unowned {
        waiter: Box<Node>,
        object: String,
    },
}

/// The kind of a wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EdgeKind {
    /// A process exits when its main thread does.
    MainThread,
    /// The interpreter's `threading._shutdown` joins every non-daemon thread.
    Shutdown,
    /// The main thread has not returned yet; once it does, `threading._shutdown` joins this
    /// non-daemon thread (an edge of the process).
    ShutdownLater,
    Join,
    Event,
    Condition,
    Queue,
    Semaphore,
    /// A `threading.Lock` (no owner is recorded by CPython).
    Lock,
    /// An `RLock` held by the edge's target.
    RLock,
    /// `wait4`/`waitid` for a child (`pid_arg`: the raw pid argument, -1 = any child).
    Wait4 {
        pid_arg: i64,
    },
    /// A read of a pipe whose write end the target holds.
    PipeRead {
        fd: i32,
        inode: u64,
    },
    /// A pthread mutex (its owner field, or the PI futex word) held by the target thread.
    Mutex {
        addr: u64,
        pi: bool,
        /// The data symbol at `addr` (`wal_lock`), when the binary has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symbol: Option<String>,
    },
    /// `pthread_join` of the target thread (the futex on its tid word).
    PthreadJoin {
        addr: u64,
    },
    /// `poll`/`select`/`epoll_wait` for input on a pipe whose write end the target holds.
    PipePoll {
        fd: i32,
        inode: u64,
    },
    /// A read (or `poll`, `poll: true`) of a connected Unix socket whose peer end (`peer`,
    /// from `sock_diag`) the target holds.
    SocketRead {
        fd: i32,
        inode: u64,
        peer: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        poll: bool,
    },
    /// A blocked `flock`/`fcntl` lock held by the target.
    FileLock {
        fd: i32,
        inode: u64,
    },
    /// The thread runs `asyncio.run`, which waits for its main task.
    LoopMain,
    AwaitTask,
    Gather,
    AwaitSubprocess {
        pid: i32,
    },
    /// A task awaits `run_in_executor` work that the target worker thread runs.
    AwaitExecutor,
    /// A task in `loop.shutdown_default_executor()` (asyncio.run's close) awaits the thread
    /// that joins the default executor's workers (the target).
    AwaitExecutorShutdown,
    /// A thread in `Future.result()` of executor work (the target runs it).
    FutureResult,
    /// A Node.js event loop kept alive by ref'ed handles/requests (the Node.js agent's
    /// `handles`); the edge's target names them.
    LoopHandles {
        count: usize,
    },
    /// A Node.js event loop blocked in JavaScript (the agent's probe did not run).
    LoopBlocked {
        blocked_ms: u64,
    },
}

/// Which source said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Python agent's report.
    Agent,
    /// `/proc/PID/task/TID/syscall`.
    ProcSyscall,
    /// `/proc/PID/fd` links and `fdinfo`.
    ProcFd,
    /// `/proc/locks`.
    ProcLocks,
    /// The target's memory at a syscall's argument (`process_vm_readv`).
    ProcMem,
    /// The process tree (parent/child).
    Tree,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    pub source: Source,
    /// What exactly was read, e.g. `wait4(-1, ...)` or `Thread.join frame`. Shared: the
    /// edges of one wait (a pipe read's write ends) carry the same text.
    pub detail: SharedStr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub from: Node,
    pub to: Node,
    #[serde(flatten)]
    pub kind: EdgeKind,
    /// `file:line` of the wait when known (the agent's frames).
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    /// Shared by the edges of one wait (a pipe read's edges to each write end): 496 pipe
    /// readers with 8 writers each are 3,968 edges but 496 evidences.
    pub evidence: Arc<[Evidence]>,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub edges: Vec<Edge>,
    /// Outgoing edge indexes by node.
    pub out: BTreeMap<Node, Vec<usize>>,
    /// Nodes with an incoming edge.
    pub has_in: BTreeSet<Node>,
    /// What the build could not decode, in words.
    pub notes: Vec<String>,
}

impl Graph {
    fn add(&mut self, edge: Edge) {
        // The same wait seen by two sources: one edge, both evidences.
        if let Some(&i) = self.out.get(&edge.from).and_then(|v| {
            v.iter()
                .find(|&&i| self.edges[i].to == edge.to && self.edges[i].kind == edge.kind)
        }) {
            let have = &mut self.edges[i].evidence;
            let new: Vec<&Evidence> = edge.evidence.iter().filter(|e| !have.contains(e)).collect();
            if !new.is_empty() {
                *have = have.iter().chain(new).cloned().collect();
            }
            return;
        }
        self.out
            .entry(edge.from.clone())
            .or_default()
            .push(self.edges.len());
        self.has_in.insert(edge.to.clone());
        self.edges.push(edge);
    }

    pub fn outgoing(&self, n: &Node) -> impl Iterator<Item = &Edge> {
        self.out
            .get(n)
            .into_iter()
            .flatten()
            .map(|&i| &self.edges[i])
    }
}

fn edge(from: Node, to: Node, kind: EdgeKind, source: Source, detail: String) -> Edge {
    shared_edge(from, to, kind, evidence(source, detail))
}

/// One evidence, to be shared by every edge of one wait.
fn evidence(source: Source, detail: impl Into<SharedStr>) -> Arc<[Evidence]> {
    Arc::new([Evidence {
        source,
        detail: detail.into(),
    }])
}

fn shared_edge(from: Node, to: Node, kind: EdgeKind, evidence: Arc<[Evidence]>) -> Edge {
    Edge {
        from,
        to,
        kind,
        where_: None,
        evidence,
    }
}

/// Write ends listed per pipe read (a pipe inherited by 200 children is one wait, not 200).
const MAX_WRITERS: usize = 8;

/// Builds the graph from every layer the facts reach: every edge (`why --json` lists them).
pub fn build(f: &Facts) -> Graph {
    build_with(f, true)
}

/// The graph as far as the causes need it (the header's verdict, `check`): the same causes
/// and notes as [`build`], without the `/proc` edges of threads no walk can reach (no edge
/// leads to them and none starts a walk). 5,000 threads reading a pipe that 1,000 children
/// hold are 40,000 edges nothing walks; their notes are still taken.
pub fn build_for_causes(f: &Facts) -> Graph {
    build_with(f, false)
}

fn build_with(f: &Facts, all: bool) -> Graph {
    let mut g = Graph::default();
    let live: Vec<ProcKey> = f
        .snapshot
        .processes
        .iter()
        .filter(|p| p.exit.is_none())
        .map(|p| p.key)
        .collect();
    let by_pid: BTreeMap<i32, ProcKey> = live.iter().map(|k| (k.pid, *k)).collect();
    // Every process waits for its main thread.
    for t in f.waits.threads.iter().filter(|t| t.tid == t.key.pid) {
        if by_pid.get(&t.key.pid) == Some(&t.key) {
            g.add(edge(
                Node::Process { key: t.key },
                Node::Thread {
                    key: t.key,
                    tid: t.tid,
                },
                EdgeKind::MainThread,
                Source::Tree,
                "a process exits when its main thread does".into(),
            ));
        }
    }
    agent_edges(f, &mut g, &by_pid);
    // Each process's thread ids, once: a futex wait names an owner only if it is one of them
    // (a list rebuilt per waiter was quadratic at 10,000 threads).
    let mut tids: HashMap<ProcKey, HashSet<i32>> = HashMap::new();
    for t in &f.waits.threads {
        tids.entry(t.key).or_default().insert(t.tid);
    }
    let fds = FdIndex::new(f);
    if all {
        for t in &f.waits.threads {
            proc_edges(f, t, &mut g, &by_pid, &tids, &fds);
        }
    } else {
        // Futex waits first: they are the /proc edges that lead to threads. Each thread's
        // edges start from it alone, so each node's edges come in the same order as above.
        let futex = |t: &ThreadWait| t.syscall.as_deref() == Some("futex");
        for t in f.waits.threads.iter().filter(|t| futex(t)) {
            proc_edges(f, t, &mut g, &by_pid, &tids, &fds);
        }
        let agent = f.agent.as_ref().map(|a| a.key);
        let mut scratch = Graph::default();
        for t in f.waits.threads.iter().filter(|t| !futex(t)) {
            let node = Node::Thread {
                key: t.key,
                tid: t.tid,
            };
            let walked = t.tid == t.key.pid || Some(t.key) == agent || g.has_in.contains(&node);
            if walked {
                proc_edges(f, t, &mut g, &by_pid, &tids, &fds);
                continue;
            }
            // Unreachable: only its notes count, in the order `build` takes them.
            proc_edges(f, t, &mut scratch, &by_pid, &tids, &fds);
            for n in scratch.notes.drain(..) {
                if !g.notes.contains(&n) {
                    g.notes.push(n);
                }
            }
            scratch.edges.clear();
            scratch.out.clear();
            scratch.has_in.clear();
        }
    }
    // A thread in futex that nothing above explains: its owner is not known.
    let unexplained = f.waits.threads.iter().any(|t| {
        let node = Node::Thread {
            key: t.key,
            tid: t.tid,
        };
        t.syscall.as_deref() == Some("futex")
            && g.outgoing(&node).next().is_none()
            && f.agent.as_ref().is_none_or(|a| a.key != t.key)
    });
    if unexplained {
        g.notes.push(
            "a thread in futex waits on something with no owner to name (a condition variable, a semaphore, or a lock whose memory could not be read)"
                .into(),
        );
    }
    g
}

fn agent_edges(f: &Facts, g: &mut Graph, by_pid: &BTreeMap<i32, ProcKey>) {
    let Some(a) = &f.agent else { return };
    let key = a.key;
    let r = &a.report;
    let th = |tid: i32| Node::Thread { key, tid };
    for t in &r.threads {
        let (Some(tid), Some(w)) = (t.native_id, &t.waits_on) else {
            continue;
        };
        let from = th(tid);
        let detail = |what: &str| match &w.where_ {
            Some(at) => format!("{what} frame, called at {at}"),
            None => format!("{what} frame"),
        };
        let unowned = |object: &str| Node::Unowned {
            waiter: Box::new(th(tid)),
            object: object.to_string(),
        };
        let mut one = |to: Node, kind: EdgeKind, det: String| {
            let mut e = edge(from.clone(), to, kind, Source::Agent, det);
            e.where_ = w.where_.clone();
            g.add(e);
        };
        match w.kind.as_str() {
            "shutdown" => {
                for o in &r.threads {
                    let Some(otid) = o.native_id else { continue };
                    if o.alive && !o.daemon && !o.main && !o.agent && otid != tid {
                        one(
                            th(otid),
                            EdgeKind::Shutdown,
                            "main thread in threading._shutdown; thread is non-daemon and alive"
                                .into(),
                        );
                    }
                }
            }
            "join" => match w.target_native_id {
                Some(to) => one(th(to), EdgeKind::Join, detail("Thread.join")),
                None => one(
                    unowned(match w.object.as_deref() {
                        Some(o @ crate::jvm::report::JAVA_JOIN) => o,
                        _ => "a thread that has not started",
                    }),
                    EdgeKind::Join,
                    detail("Thread.join"),
                ),
            },
            "event" => one(unowned("Event"), EdgeKind::Event, detail("Event.wait")),
            "condition" => one(
                unowned("Condition"),
                EdgeKind::Condition,
                detail("Condition.wait"),
            ),
            "queue" => one(unowned("Queue"), EdgeKind::Queue, detail("Queue.get/put")),
            "semaphore" => one(
                unowned("Semaphore"),
                EdgeKind::Semaphore,
                detail("Semaphore.acquire"),
            ),
            "lock" => one(unowned("Lock"), EdgeKind::Lock, detail("Lock.acquire")),
            "future" => match w.target_native_id {
                Some(to) if to != tid => one(
                    th(to),
                    EdgeKind::FutureResult,
                    detail("concurrent.futures Future.result"),
                ),
                _ => one(
                    unowned("a Future that no executor worker runs (queued, or not an executor's)"),
                    EdgeKind::FutureResult,
                    detail("concurrent.futures Future.result"),
                ),
            },
            "rlock" => match w.owner_native_id {
                Some(o) if o != tid => one(th(o), EdgeKind::RLock, detail("RLock.acquire")),
                _ => one(unowned("RLock"), EdgeKind::RLock, detail("RLock.acquire")),
            },
            _ => {} // sleep, select, unknown kinds: the thread is a leaf
        }
    }
    // A Python process whose main thread has not reached threading._shutdown yet: once it
    // returns, the interpreter waits there for every non-daemon thread still alive. Those
    // block exit too (the demo's "asyncio_1"); said as a wait of the process, after the
    // main thread's own chain. Not for Node.js (its workers are the loop's handles).
    let node = r.loops.iter().any(|l| l.class == "node:libuv");
    let main = r.threads.iter().find(|t| t.main && t.alive);
    let in_shutdown = main
        .and_then(|m| m.waits_on.as_ref())
        .is_some_and(|w| w.kind == "shutdown");
    // A JVM in its shutdown sequence halts once its hooks return: its other non-daemon
    // threads no longer hold the exit (the hooks' edges say what does).
    let jvm_halting = crate::jvm::report::in_shutdown_sequence(r);
    if !node && main.is_some() && !in_shutdown && !jvm_halting {
        for o in &r.threads {
            let Some(otid) = o.native_id else { continue };
            if o.alive && !o.daemon && !o.main && !o.agent {
                g.add(edge(
                    Node::Process { key },
                    th(otid),
                    EdgeKind::ShutdownLater,
                    Source::Agent,
                    "non-daemon and alive: threading._shutdown joins it once the main thread returns"
                        .into(),
                ));
            }
        }
    }
    // asyncio.run waits for its main task.
    for l in r.loops.iter().filter(|l| l.running && !l.closed) {
        let (Some(tid), Some(mt)) = (l.native_id, &l.main_task) else {
            continue;
        };
        g.add(edge(
            th(tid),
            Node::Task {
                key,
                loop_id: l.id,
                task_id: mt.id,
            },
            EdgeKind::LoopMain,
            Source::Agent,
            "loop's main_task (asyncio.run / run_until_complete)".into(),
        ));
    }
    node_loop_edges(f, g);
    for aw in &r.task_awaits {
        let from = Node::Task {
            key,
            loop_id: aw.loop_id,
            task_id: aw.task_id,
        };
        let mut one = |to: Node, kind: EdgeKind, det: &str| {
            let mut e = edge(from.clone(), to, kind, Source::Agent, det.into());
            e.where_ = aw.where_.clone();
            g.add(e);
        };
        match aw.kind.as_str() {
            "task" | "gather" => {
                let kind = if aw.kind == "task" {
                    EdgeKind::AwaitTask
                } else {
                    EdgeKind::Gather
                };
                for &id in &aw.task_ids {
                    one(
                        Node::Task {
                            key,
                            loop_id: aw.loop_id,
                            task_id: id,
                        },
                        kind.clone(),
                        "task._fut_waiter",
                    );
                }
            }
            "executor" => {
                let Some(tid) = aw.native_id else { continue };
                one(
                    th(tid),
                    EdgeKind::AwaitExecutor,
                    "task._fut_waiter chained to the work item this executor worker runs",
                );
            }
            "executor_shutdown" => {
                let Some(tid) = aw.native_id else { continue };
                one(
                    th(tid),
                    EdgeKind::AwaitExecutorShutdown,
                    "task._fut_waiter is the future this loop._do_shutdown thread sets",
                );
            }
            "subprocess" => {
                let Some(pid) = aw.pid else { continue };
                let to = match by_pid.get(&pid) {
                    Some(k) => Node::Process { key: *k },
                    None => Node::Unowned {
                        waiter: Box::new(from.clone()),
                        object: format!("subprocess pid {pid} (not in the tree)"),
                    },
                };
                one(
                    to,
                    EdgeKind::AwaitSubprocess { pid },
                    "await chain in asyncio.subprocess.Process",
                );
            }
            _ => {}
        }
    }
}

/// The `/proc` layer: decode one thread's syscall arguments.
/// Handles shown in a Node.js cause before "and N more".
const HANDLES_SHOWN: usize = 8;

/// A Node.js loop (`class` `node:libuv`): blocked in JS, or kept alive by its ref'ed handles.
/// Both are leaves: nothing in the graph releases them but the app's own code.
fn node_loop_edges(f: &Facts, g: &mut Graph) {
    let Some(a) = &f.agent else { return };
    let key = a.key;
    let r = &a.report;
    for l in r
        .loops
        .iter()
        .filter(|l| l.class == "node:libuv" && !l.closed)
    {
        let tid = l.native_id.unwrap_or(key.pid);
        let from = Node::Thread { key, tid };
        let unowned = |object: String| Node::Unowned {
            waiter: Box::new(from.clone()),
            object,
        };
        if l.blocked {
            let ms = l.lag_ms.unwrap_or(0.0).max(0.0) as u64;
            let object = match &l.blocked_at {
                Some(at) => format!("JavaScript at {at} that does not return to it"),
                None => "JavaScript that does not return to it".into(),
            };
            let mut e = edge(
                from.clone(),
                unowned(object),
                EdgeKind::LoopBlocked { blocked_ms: ms },
                Source::Agent,
                "the agent's event-loop probe has not run".into(),
            );
            e.where_ = l.blocked_at.clone();
            g.add(e);
            continue;
        }
        let live: Vec<&crate::agent::protocol::LoopHandle> = r.ref_handles().collect();
        if live.is_empty() {
            continue;
        }
        let mut shown: Vec<String> = live
            .iter()
            .take(HANDLES_SHOWN)
            .map(|h| h.describe())
            .collect();
        if live.len() > HANDLES_SHOWN {
            shown.push(format!("and {} more", live.len() - HANDLES_SHOWN));
        }
        g.add(edge(
            from.clone(),
            unowned(shown.join(", ")),
            EdgeKind::LoopHandles { count: live.len() },
            Source::Agent,
            "process.getActiveResourcesInfo() and the handles the agent traced".into(),
        ));
    }
}

fn proc_edges(
    f: &Facts,
    t: &ThreadWait,
    g: &mut Graph,
    by_pid: &BTreeMap<i32, ProcKey>,
    tids: &HashMap<ProcKey, HashSet<i32>>,
    fds: &FdIndex,
) {
    let Some(sc) = t.syscall.as_deref() else {
        return;
    };
    let from = Node::Thread {
        key: t.key,
        tid: t.tid,
    };
    let arg = |i: usize| t.args.get(i).copied();
    let unowned = |object: String| Node::Unowned {
        waiter: Box::new(from.clone()),
        object,
    };
    let children = || {
        f.snapshot
            .processes
            .iter()
            .filter(|p| p.exit.is_none() && p.ppid == t.key.pid && p.key != t.key)
            .map(|p| p.key)
            .collect::<Vec<_>>()
    };
    match sc {
        "wait4" | "waitid" => {
            // wait4(pid, ...): >0 that child, -1 any, 0 / < -1 a process group.
            // waitid(idtype, id, ...): P_ALL = 0, P_PID = 1, P_PGID = 2, P_PIDFD = 3.
            let (pid_arg, detail) = if sc == "wait4" {
                let p = arg(0).map_or(-1, |a| a as u32 as i32 as i64);
                (p, format!("wait4({p}, ...)"))
            } else {
                let idtype = arg(0).unwrap_or(0);
                let id = arg(1).map_or(0, |a| a as u32 as i32 as i64);
                let p = match idtype {
                    1 => id,
                    0 => -1,
                    _ => -1,
                };
                (p, format!("waitid({idtype}, {id}, ...)"))
            };
            let ev = evidence(Source::ProcSyscall, detail);
            let targets: Vec<ProcKey> = if pid_arg > 0 {
                children()
                    .into_iter()
                    .filter(|k| i64::from(k.pid) == pid_arg)
                    .collect()
            } else {
                children()
            };
            let kind = EdgeKind::Wait4 { pid_arg };
            if targets.is_empty() {
                g.add(shared_edge(
                    from.clone(),
                    unowned("a child that is not in the tree".into()),
                    kind.clone(),
                    ev.clone(),
                ));
            }
            for k in targets {
                g.add(shared_edge(
                    from.clone(),
                    Node::Process { key: k },
                    kind.clone(),
                    ev.clone(),
                ));
            }
        }
        "futex" => futex_edge(t, tids, from, g),
        _ if !t.polled.is_empty() => {
            for &fd in &t.polled {
                if let Some(FdObject::Socket { inode }) = fds.object(t.key, fd) {
                    socket_edges(f, t, &from, g, fds, fd, inode, true);
                }
                if let Some(FdObject::Pipe { inode }) = fds.object(t.key, fd) {
                    let detail = format!(
                        "{sc} on fd {fd} = pipe:[{inode}] (fds read from its arguments); write ends from /proc/*/fd"
                    );
                    pipe_edges(
                        t,
                        &from,
                        g,
                        fds,
                        EdgeKind::PipePoll { fd, inode },
                        inode,
                        detail,
                    );
                }
            }
        }
        _ if crate::collect::waits::READ_SYSCALLS.contains(&sc) => {
            let Some(fd) = arg(0).map(|a| a as u32 as i32) else {
                return;
            };
            if let Some(FdObject::Socket { inode }) = fds.object(t.key, fd) {
                socket_edges(f, t, &from, g, fds, fd, inode, false);
                return;
            }
            let Some(FdObject::Pipe { inode }) = fds.object(t.key, fd) else {
                return;
            };
            let kind = EdgeKind::PipeRead { fd, inode };
            let detail = format!("{sc}({fd}) on pipe:[{inode}]; write ends from /proc/*/fd");
            pipe_edges(t, &from, g, fds, kind, inode, detail);
        }
        "flock" | "fcntl" => {
            let Some(fd) = arg(0).map(|a| a as u32 as i32) else {
                return;
            };
            if sc == "flock" && arg(1).is_some_and(|op| op & 4 != 0) {
                return; // LOCK_NB never blocks
            }
            // F_SETLKW = 7, F_OFD_SETLKW = 38.
            if sc == "fcntl" && !matches!(arg(1), Some(7) | Some(38)) {
                return;
            }
            let Some(FdObject::File {
                major,
                minor,
                inode,
            }) = fds.object(t.key, fd)
            else {
                return;
            };
            let holders: BTreeSet<i32> = f
                .waits
                .locks
                .iter()
                .filter(|l| {
                    !l.blocked
                        && l.inode == inode
                        && l.major == major
                        && l.minor == minor
                        && l.pid != t.key.pid
                })
                .map(|l| l.pid)
                .collect();
            let kind = EdgeKind::FileLock { fd, inode };
            let ev = evidence(
                Source::ProcLocks,
                format!("{sc}({fd}) on {major:02x}:{minor:02x}:{inode}; /proc/locks"),
            );
            if holders.is_empty() {
                g.add(shared_edge(
                    from.clone(),
                    unowned(format!(
                        "a file lock on inode {inode} with no holder listed"
                    )),
                    kind.clone(),
                    ev.clone(),
                ));
            }
            for pid in holders {
                let to = match by_pid.get(&pid) {
                    Some(k) => Node::Process { key: *k },
                    None => unowned(format!(
                        "a file lock on inode {inode} held by pid {pid} outside the tree"
                    )),
                };
                g.add(shared_edge(from.clone(), to, kind.clone(), ev.clone()));
            }
        }
        _ => {}
    }
}

/// A wait for input on socket `inode`: when `sock_diag` names its connected peer, edges to
/// the other processes holding the peer end. A peer held only by the waiter's own process
/// (asyncio's self-pipe socketpair, a wake-up channel) or an unconnected socket (a
/// listener, TCP) gives no edge: nothing outside it will write, or nothing is known.
#[allow(clippy::too_many_arguments)]
fn socket_edges(
    f: &Facts,
    t: &ThreadWait,
    from: &Node,
    g: &mut Graph,
    fds: &FdIndex,
    fd: i32,
    inode: u64,
    poll: bool,
) {
    let Some(&peer) = f.waits.socket_peers.get(&inode) else {
        return;
    };
    let object = FdObject::Socket { inode: peer };
    if fds.holds(object, t.key) {
        return;
    }
    let holders = fds.holders(object);
    let kind = EdgeKind::SocketRead {
        fd,
        inode,
        peer,
        poll,
    };
    let detail = format!(
        "{} fd {fd} = socket:[{inode}], peer socket:[{peer}] (sock_diag); holders from /proc/*/fd",
        t.syscall.as_deref().unwrap_or("?")
    );
    let nobody = format!(
        "Unix socket socket:[{inode}] whose peer socket:[{peer}] no process of the tree holds"
    );
    let many = format!(
        "socket:[{peer}] is held by {} processes of the tree",
        holders.total
    );
    holder_edges(g, from, holders, kind, detail.into(), nobody, many);
}

/// Edges from `from` to each of `holders` (the first [`MAX_WRITERS`], with a note saying
/// `many` past that), or to an unowned `nobody` when there is none.
fn holder_edges(
    g: &mut Graph,
    from: &Node,
    holders: Holders,
    kind: EdgeKind,
    detail: SharedStr,
    nobody: String,
    many: String,
) {
    if holders.total == 0 {
        g.add(shared_edge(
            from.clone(),
            Node::Unowned {
                waiter: Box::new(from.clone()),
                object: nobody,
            },
            kind,
            evidence(Source::ProcFd, detail),
        ));
        return;
    }
    if holders.total > MAX_WRITERS {
        // Every reader of one pipe says the same: one note (`why` lists each once anyway).
        let note = format!("{many}: the first {MAX_WRITERS} are listed");
        if !g.notes.contains(&note) {
            g.notes.push(note);
        }
    }
    let ev = evidence(Source::ProcFd, detail);
    for k in holders.first {
        g.add(shared_edge(
            from.clone(),
            Node::Process { key: k },
            kind.clone(),
            ev.clone(),
        ));
    }
}

/// A wait for input on pipe `inode`: edges to the other processes holding its write end.
fn pipe_edges(
    t: &ThreadWait,
    from: &Node,
    g: &mut Graph,
    fds: &FdIndex,
    kind: EdgeKind,
    inode: u64,
    detail: String,
) {
    let writers = fds.writers(FdObject::Pipe { inode }, t.key);
    // A poll on a pipe only its own process writes is a wake-up channel (an event loop's
    // self-pipe: libuv's signal pipe, asyncio's on older Pythons): nothing outside the
    // process will write it, nothing is known to block on it. No edge, as for a socketpair.
    let own = || fds.writes(FdObject::Pipe { inode }, t.key);
    if writers.total == 0 && matches!(kind, EdgeKind::PipePoll { .. }) && own() {
        return;
    }
    let nobody = format!("pipe:[{inode}] whose write end no other process of the tree holds");
    let many = format!(
        "pipe:[{inode}] has {} write ends in the tree",
        writers.total
    );
    holder_edges(g, from, writers, kind, detail.into(), nobody, many);
}

/// A `futex` wait: a pthread mutex's owner, a joined thread, or (no owner known) nothing.
fn futex_edge(t: &ThreadWait, tids: &HashMap<ProcKey, HashSet<i32>>, from: Node, g: &mut Graph) {
    use crate::collect::memwait::{FutexWait, classify_futex};
    let others = tids.get(&t.key);
    let other = |tid: i32| tid != t.tid && others.is_some_and(|s| s.contains(&tid));
    let thread = |tid: i32| Node::Thread { key: t.key, tid };
    // The runtime (agent, thread dump) already said what this thread waits for: the futex is
    // how it waits (a JVM launcher's pthread_join of the thread that runs main()), not a
    // second blocker.
    if g.outgoing(&from)
        .any(|e| e.evidence.iter().any(|ev| ev.source == Source::Agent))
    {
        return;
    }
    let (to, kind, detail) = match classify_futex(&t.args, t.futex_words, other) {
        Some(FutexWait::Mutex { addr, owner }) => (
            thread(owner),
            EdgeKind::Mutex {
                addr,
                pi: false,
                symbol: t.futex_symbol.as_deref().map(str::to_owned),
            },
            format!("futex({addr:#x}, FUTEX_WAIT); the mutex's __owner field reads {owner}"),
        ),
        Some(FutexWait::PiMutex { addr, owner }) => (
            thread(owner),
            EdgeKind::Mutex {
                addr,
                pi: true,
                symbol: t.futex_symbol.as_deref().map(str::to_owned),
            },
            format!("futex({addr:#x}, FUTEX_LOCK_PI); the futex word names owner {owner}"),
        ),
        Some(FutexWait::Join { addr, tid }) => (
            thread(tid),
            EdgeKind::PthreadJoin { addr },
            format!("futex({addr:#x}, FUTEX_WAIT) on thread {tid}'s tid word: pthread_join"),
        ),
        // Condition variables, semaphores, CPython's locks: nothing names an owner.
        Some(FutexWait::Other { .. }) | None => return,
    };
    g.add(edge(from, to, kind, Source::ProcMem, detail));
}

/// The tree's fds indexed once per graph: each waiter looked its fd up, and each pipe or
/// socket wait scanned every fd of the tree for the holders (at 10,000 threads, 5,000
/// readers times 5,000 fds).
struct FdIndex {
    /// What each (process, fd) refers to (the first entry listed, as a scan would find).
    objects: HashMap<(ProcKey, i32), FdObject>,
    /// For each pipe and socket, sorted and without repeats: the processes holding it, and
    /// those holding an end that may write (a pipe's read-only ends are no writers;
    /// `fdinfo` unreadable: counted as one). Built once: each of 10,000 readers of one pipe
    /// built a set of its 1,000 writers (40 % of a verdict's CPU at 10,000 threads).
    holding: HashMap<FdObject, Vec<ProcKey>>,
    writing: HashMap<FdObject, Vec<ProcKey>>,
}

/// The first [`MAX_WRITERS`] of a sorted list of processes, and how many it holds in all.
struct Holders {
    first: Vec<ProcKey>,
    total: usize,
}

impl Holders {
    /// `all` (sorted, no repeats) less `but`.
    fn of(all: Option<&Vec<ProcKey>>, but: Option<ProcKey>) -> Holders {
        let all = all.map_or(&[][..], Vec::as_slice);
        let without = but.is_some_and(|b| all.binary_search(&b).is_ok());
        let first = all
            .iter()
            .filter(|k| Some(**k) != but)
            .take(MAX_WRITERS)
            .copied()
            .collect();
        Holders {
            first,
            total: all.len() - usize::from(without),
        }
    }
}

impl FdIndex {
    fn new(f: &Facts) -> Self {
        let mut objects = HashMap::with_capacity(f.waits.fds.len());
        let mut holders: HashMap<FdObject, Vec<(ProcKey, bool)>> = HashMap::new();
        for e in &f.waits.fds {
            objects.entry((e.key, e.fd)).or_insert(e.object);
            if matches!(e.object, FdObject::Pipe { .. } | FdObject::Socket { .. }) {
                holders
                    .entry(e.object)
                    .or_default()
                    .push((e.key, e.writes != Some(false)));
            }
        }
        let sorted = |keys: &mut dyn Iterator<Item = ProcKey>| {
            let mut v: Vec<ProcKey> = keys.collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let holding = holders
            .iter()
            .map(|(o, hs)| (*o, sorted(&mut hs.iter().map(|(k, _)| *k))))
            .collect();
        let writing = holders
            .iter()
            .map(|(o, hs)| {
                (
                    *o,
                    sorted(&mut hs.iter().filter(|(_, w)| *w).map(|(k, _)| *k)),
                )
            })
            .collect();
        Self {
            objects,
            holding,
            writing,
        }
    }

    fn object(&self, key: ProcKey, fd: i32) -> Option<FdObject> {
        self.objects.get(&(key, fd)).copied()
    }

    /// Whether `key` holds an end of `object` that may write.
    fn writes(&self, object: FdObject, key: ProcKey) -> bool {
        self.writing
            .get(&object)
            .is_some_and(|v| v.binary_search(&key).is_ok())
    }

    /// Whether `key` holds `object`.
    fn holds(&self, object: FdObject, key: ProcKey) -> bool {
        self.holding
            .get(&object)
            .is_some_and(|v| v.binary_search(&key).is_ok())
    }

    /// The processes holding `object`.
    fn holders(&self, object: FdObject) -> Holders {
        Holders::of(self.holding.get(&object), None)
    }

    /// The processes but `reader`'s holding an end of `object` that may write.
    fn writers(&self, object: FdObject, reader: ProcKey) -> Holders {
        Holders::of(self.writing.get(&object), Some(reader))
    }
}
