//! Folding the wait-for graph: walk from each process nothing waits for (the target first)
//! along the waits, to the node that waits for nothing the graph knows (the root cause), or
//! back onto the path (a cycle: a deadlock). Each [`Cause`] renders as one plain line.
//! A JVM's threads (its thread dump as a report, `crate::jvm::report`) are walked from too
//! when they wait for a monitor, so a Java-level deadlock nothing joins is still reported.

use super::Facts;
use super::graph::{Edge, EdgeKind, Graph, Node};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// A chain ending in its root cause.
    Blocked,
    /// A cycle of waits.
    Deadlock,
}

/// What the root of a chain is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Root {
    /// A primitive no known thread or process will release.
    NoOwner { object: String },
    /// Blocked in a syscall nothing in the graph explains.
    InSyscall {
        syscall: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        wchan: Option<String>,
    },
    /// On a CPU, or in user space.
    Running,
    /// A process that ignores the stop signal (its main thread aside).
    IgnoresStop,
    /// Part of a cycle.
    Cycle,
    /// Nothing more is known.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    /// From the process whose exit is blocked to the root (for a deadlock: the cycle).
    pub path: Vec<Node>,
    pub edges: Vec<Edge>,
    /// The root cause: the last node of the path (a deadlock: the first node of the cycle).
    pub root: Node,
    #[serde(flatten)]
    pub root_state: Root,
    /// What the stop signal does to the root's process: `ignores`, `handles`, `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_stop_signal: Option<String>,
    /// The one plain line.
    pub line: String,
}

/// Causes one fold lists at most (a tree of 190 children each left running gives 190).
pub const MAX_CAUSES: usize = 64;
const MAX_DEPTH: usize = 64;

/// Every cause, those reached from the target first.
pub fn fold(g: &Graph, f: &Facts) -> Vec<Cause> {
    let mut starts: Vec<Node> = Vec::new();
    let target = Node::Process {
        key: f.snapshot.target,
    };
    if f.snapshot.target_info().is_some_and(|p| p.exit.is_none()) {
        starts.push(target.clone());
    }
    // Then every live descendant the walks before did not reach (in tree order): it keeps
    // the tree alive whether or not a thread of its parent waits for it.
    for p in f.snapshot.live_descendants() {
        starts.push(Node::Process { key: p.key });
    }
    let mut out = Vec::new();
    let mut expanded = BTreeSet::new();
    let mut cycles = BTreeSet::new();
    // Java threads waiting for a monitor: only the cycles found from them are kept (their
    // chains do not block the exit unless a walk above reached them).
    let monitor_waiters: Vec<Node> = f
        .agent
        .iter()
        .flat_map(|a| {
            a.report.threads.iter().filter_map(move |t| {
                let w = t.waits_on.as_ref()?;
                let tid = t.native_id?;
                (w.kind == "rlock" && w.object.as_deref().is_some_and(is_jvm_lock))
                    .then_some(Node::Thread { key: a.key, tid })
            })
        })
        .collect();
    for s in starts {
        if expanded.contains(&s) {
            continue;
        }
        let mut path = vec![s];
        let mut edges = Vec::new();
        walk(
            g,
            f,
            &mut path,
            &mut edges,
            &mut expanded,
            &mut cycles,
            &mut out,
        );
        if out.len() >= MAX_CAUSES {
            break;
        }
    }
    for s in monitor_waiters {
        if expanded.contains(&s) || out.len() >= MAX_CAUSES {
            continue;
        }
        let mut found = Vec::new();
        let (mut path, mut edges) = (vec![s], Vec::new());
        walk(
            g,
            f,
            &mut path,
            &mut edges,
            &mut expanded,
            &mut cycles,
            &mut found,
        );
        out.extend(found.into_iter().filter(|c| c.kind == CauseKind::Deadlock));
    }
    out
}

/// A JVM monitor or lock as `crate::jvm::report` labels it (`the monitor <0x..> (a Foo)`).
fn is_jvm_lock(object: &str) -> bool {
    object.starts_with("the monitor <") || object.starts_with("the lock <")
}

/// The `object` of the wait of the edge's waiting thread, as its report says.
fn wait_object<'a>(f: &'a Facts, e: &Edge) -> Option<&'a str> {
    py_thread(f, &e.from)?.waits_on.as_ref()?.object.as_deref()
}

/// The phrase of a JVM edge (`crate::jvm::report`'s objects), if the edge is one.
fn jvm_phrase(f: &Facts, e: &Edge, to: &str) -> Option<String> {
    use crate::jvm::report::{DESTROY_JVM, SHUTDOWN_HOOK, SHUTDOWN_SEQUENCE, is_jvm_report};
    if e.kind == EdgeKind::ShutdownLater
        && f.agent.as_ref().is_some_and(|a| is_jvm_report(&a.report))
    {
        return Some(format!(
            "will wait in DestroyJavaVM, once main() returns, for non-daemon thread {to}"
        ));
    }
    let object = wait_object(f, e)?;
    Some(match &e.kind {
        EdgeKind::Join if object == SHUTDOWN_SEQUENCE => {
            format!("is in the JVM's shutdown sequence (SIGTERM), run by {to}")
        }
        EdgeKind::Join if object == SHUTDOWN_HOOK => format!(
            "waits for the shutdown hook {to} to finish (the JVM halts only when every hook has returned)"
        ),
        EdgeKind::Shutdown if object == DESTROY_JVM => {
            format!("waits in DestroyJavaVM (main() has returned) for non-daemon thread {to}")
        }
        EdgeKind::RLock if is_jvm_lock(object) => format!("wants {object} held by {to}"),
        _ => return None,
    })
}

fn walk(
    g: &Graph,
    f: &Facts,
    path: &mut Vec<Node>,
    edges: &mut Vec<Edge>,
    expanded: &mut BTreeSet<Node>,
    cycles: &mut BTreeSet<Vec<Node>>,
    out: &mut Vec<Cause>,
) {
    let Some(here) = path.last().cloned() else {
        return;
    };
    expanded.insert(here.clone());
    let next: Vec<&Edge> = g.outgoing(&here).collect();
    if next.is_empty() || path.len() >= MAX_DEPTH {
        out.push(blocked(f, path.clone(), edges.clone()));
        return;
    }
    for e in next {
        if out.len() >= MAX_CAUSES {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == e.to) {
            let mut cyc_nodes = path[at..].to_vec();
            let mut cyc_edges = edges[at..].to_vec();
            cyc_edges.push(e.clone());
            // One report per cycle, whichever node it was entered by.
            let mut norm = cyc_nodes.clone();
            norm.sort();
            if cycles.insert(norm) {
                start_at_thread(&mut cyc_nodes, &mut cyc_edges);
                out.push(deadlock(f, cyc_nodes, cyc_edges));
            }
            continue;
        }
        if expanded.contains(&e.to) {
            continue; // reached before: its causes are listed already
        }
        path.push(e.to.clone());
        edges.push(e.clone());
        walk(g, f, path, edges, expanded, cycles, out);
        path.pop();
        edges.pop();
    }
}

/// A cycle through a process and its main thread reads better from the thread.
fn start_at_thread(nodes: &mut [Node], edges: &mut [Edge]) {
    if let Some(i) = nodes.iter().position(|n| matches!(n, Node::Thread { .. })) {
        nodes.rotate_left(i);
        edges.rotate_left(i);
    }
}

fn blocked(f: &Facts, path: Vec<Node>, edges: Vec<Edge>) -> Cause {
    let root = path.last().cloned().unwrap_or(Node::Process {
        key: f.snapshot.target,
    });
    let root_state = root_state(f, &root);
    let root_stop_signal = stop_disposition(f, &root);
    let mut c = Cause {
        kind: CauseKind::Blocked,
        path,
        edges,
        root,
        root_state,
        root_stop_signal,
        line: String::new(),
    };
    c.line = render_blocked(f, &c);
    c
}

fn deadlock(f: &Facts, path: Vec<Node>, edges: Vec<Edge>) -> Cause {
    let root = path.first().cloned().unwrap_or(Node::Process {
        key: f.snapshot.target,
    });
    let mut c = Cause {
        kind: CauseKind::Deadlock,
        path,
        edges,
        root,
        root_state: Root::Cycle,
        root_stop_signal: None,
        line: String::new(),
    };
    c.line = render_deadlock(f, &c);
    c
}

fn thread_wait<'a>(f: &'a Facts, n: &Node) -> Option<&'a crate::collect::waits::ThreadWait> {
    let found = match n {
        Node::Thread { key, tid } => f
            .waits
            .threads
            .iter()
            .find(|t| t.key == *key && t.tid == *tid),
        Node::Process { key } => f
            .waits
            .threads
            .iter()
            .find(|t| t.key == *key && t.tid == key.pid),
        _ => None,
    };
    found.map(|t| &**t)
}

fn root_state(f: &Facts, n: &Node) -> Root {
    if let Node::Unowned { object, .. } = n {
        return Root::NoOwner {
            object: object.clone(),
        };
    }
    if let Some(t) = thread_wait(f, n) {
        if t.state == 'R' {
            return Root::Running;
        }
        if let Some(sc) = &t.syscall {
            return Root::InSyscall {
                syscall: sc.to_string(),
                wchan: t.wchan.as_deref().map(str::to_string),
            };
        }
        return Root::Running;
    }
    if stop_disposition(f, n).as_deref() == Some("ignores") {
        return Root::IgnoresStop;
    }
    Root::Unknown
}

fn stop_disposition(f: &Facts, n: &Node) -> Option<String> {
    // Only for a process or its main thread: other threads do not decide.
    let key = match n {
        Node::Process { key } => *key,
        Node::Thread { key, tid } if *tid == key.pid => *key,
        _ => return None,
    };
    let p = f.snapshot.processes.iter().find(|p| p.key == key)?;
    let s = f.stop_signal;
    Some(
        if p.signals.ignores(s) {
            "ignores"
        } else if p.signals.catches(s) {
            "handles"
        } else {
            "default"
        }
        .into(),
    )
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

fn py_thread<'a>(f: &'a Facts, n: &Node) -> Option<&'a crate::agent::protocol::PyThread> {
    let (Node::Thread { key, tid }, Some(a)) = (n, &f.agent) else {
        return None;
    };
    if a.key != *key {
        return None;
    }
    a.report.threads.iter().find(|t| t.native_id == Some(*tid))
}

fn py_task<'a>(f: &'a Facts, n: &Node) -> Option<&'a crate::agent::protocol::TaskInfo> {
    let (Node::Task { key, task_id, .. }, Some(a)) = (n, &f.agent) else {
        return None;
    };
    if a.key != *key {
        return None;
    }
    a.report.tasks.iter().find(|t| t.id == *task_id)
}

fn proc_name(f: &Facts, key: crate::model::ProcKey) -> String {
    f.snapshot
        .processes
        .iter()
        .find(|p| p.key == key)
        .map_or_else(String::new, |p| p.name.to_string())
}

/// How a node is named in a line.
pub fn name(f: &Facts, n: &Node) -> String {
    match n {
        Node::Process { key } => format!("pid {} {:?}", key.pid, proc_name(f, *key)),
        Node::Thread { key, tid } => {
            if let Some(t) = py_thread(f, n) {
                return format!("{:?} (tid {tid})", t.name);
            }
            if *tid == key.pid {
                return format!(
                    "the main thread of pid {} {:?}",
                    key.pid,
                    proc_name(f, *key)
                );
            }
            let comm = thread_wait(f, n).map_or_else(String::new, |t| t.name.to_string());
            format!("thread {comm:?} (tid {tid}) of pid {}", key.pid)
        }
        Node::Task { key, task_id, .. } => {
            let name = f
                .agent
                .as_ref()
                .filter(|a| a.key == *key)
                .and_then(|a| a.report.tasks.iter().find(|t| t.id == *task_id))
                .map(|t| t.name.clone());
            match name {
                Some(n) => format!("task {n:?}"),
                None => format!("task #{task_id}"),
            }
        }
        Node::Executor { id, .. } => format!("executor #{id}"),
        Node::Unowned { object, .. } => object.clone(),
    }
}

fn at(e: &Edge) -> String {
    e.where_
        .as_ref()
        .map_or_else(String::new, |w| format!(" at {w}"))
}

/// The verb phrase of one edge ("joins X", "waits on an Event at a.py:3 ...").
fn phrase(f: &Facts, e: &Edge) -> String {
    let to = name(f, &e.to);
    if let Some(p) = jvm_phrase(f, e, &to) {
        return p;
    }
    let unowned = matches!(e.to, Node::Unowned { .. });
    match &e.kind {
        EdgeKind::MainThread => format!("runs its main thread {to}"),
        EdgeKind::Shutdown => format!("waits in threading._shutdown for non-daemon thread {to}"),
        EdgeKind::ShutdownLater => format!(
            "will wait in threading._shutdown, once its main thread returns, for non-daemon thread {to}"
        ),
        EdgeKind::Join if unowned => format!("joins {to}{}", at(e)),
        EdgeKind::Join => format!("joins {to}"),
        EdgeKind::Event => format!("waits on an Event{} that no thread is known to set", at(e)),
        EdgeKind::Condition => format!(
            "waits on a Condition{} that no thread is known to notify",
            at(e)
        ),
        EdgeKind::Queue => format!("waits on a Queue{} that no thread is known to feed", at(e)),
        EdgeKind::Semaphore => format!(
            "waits on a Semaphore{} that no thread is known to release",
            at(e)
        ),
        EdgeKind::Lock => format!(
            "waits for a Lock{} whose owner is not known (threading.Lock records none)",
            at(e)
        ),
        EdgeKind::RLock if unowned => {
            format!("waits for an RLock{} whose owner is not known", at(e))
        }
        EdgeKind::RLock => format!("wants an RLock{} held by {to}", at(e)),
        EdgeKind::Wait4 { pid_arg } if unowned => {
            format!("waits (wait4 {pid_arg}) for {to}")
        }
        EdgeKind::Wait4 { pid_arg } if *pid_arg > 0 => format!("waits (wait4) for child {to}"),
        EdgeKind::Wait4 { .. } => format!("waits (wait4, any child) for child {to}"),
        EdgeKind::PipeRead { fd, .. } if unowned => format!("reads fd {fd}, a {to}"),
        EdgeKind::PipeRead { fd, inode } => {
            format!("reads a pipe (fd {fd}, pipe:[{inode}]) whose write end is held by {to}")
        }
        EdgeKind::Mutex { pi, .. } => format!(
            "waits for {} held by {to}",
            mutex_name(&e.kind, if *pi { "priority-inheritance " } else { "" })
        ),
        EdgeKind::PthreadJoin { .. } => format!("joins (pthread_join) {to}"),
        EdgeKind::PipePoll { fd, .. } if unowned => format!("polls fd {fd}, a {to}"),
        EdgeKind::PipePoll { fd, inode } => {
            format!("polls a pipe (fd {fd}, pipe:[{inode}]) whose write end is held by {to}")
        }
        EdgeKind::SocketRead { fd, poll, .. } if unowned => {
            format!("{} fd {fd}, a {to}", if *poll { "polls" } else { "reads" })
        }
        EdgeKind::SocketRead {
            fd,
            inode,
            peer,
            poll,
        } => format!(
            "{} a Unix socket (fd {fd}, socket:[{inode}]) whose other end (socket:[{peer}]) is held by {to}",
            if *poll { "polls" } else { "reads" }
        ),
        EdgeKind::FileLock { fd, .. } if unowned => format!("waits (fd {fd}) for {to}"),
        EdgeKind::FileLock { fd, inode } => {
            format!("waits for a file lock (fd {fd}, inode {inode}) held by {to}")
        }
        EdgeKind::LoopMain => format!("runs an event loop whose main task is {to}"),
        EdgeKind::AwaitTask => format!("awaits {to}{}", at(e)),
        EdgeKind::Gather => format!("gathers {to}{}", at(e)),
        EdgeKind::AwaitSubprocess { .. } => format!("awaits subprocess {to}{}", at(e)),
        EdgeKind::AwaitExecutor => format!("awaits executor work run by {to}{}", at(e)),
        EdgeKind::AwaitExecutorShutdown => format!(
            "awaits the default executor's shutdown (loop.shutdown_default_executor), run by {to}"
        ),
        EdgeKind::FutureResult if unowned => format!("waits for the result of {to}{}", at(e)),
        EdgeKind::FutureResult => {
            format!("waits for the result of executor work run by {to}{}", at(e))
        }
        EdgeKind::LoopHandles { count } => format!(
            "runs an event loop that stays alive because of {count} ref'ed {}: {to}",
            if *count == 1 { "handle" } else { "handles" }
        ),
        EdgeKind::LoopBlocked { blocked_ms } => format!(
            "has had its event loop blocked for {:.1} s by {to}",
            *blocked_ms as f64 / 1000.0
        ),
    }
}

/// What a leaf (thread or process) is doing, for the end of a line.
fn leaf(f: &Facts, c: &Cause) -> Option<String> {
    let mut s = match &c.root_state {
        Root::NoOwner { .. } | Root::Cycle => return None,
        Root::Running => "is running".to_string(),
        Root::InSyscall { syscall, wchan } => {
            let mut s = format!("is blocked in {syscall}");
            if let Some(w) = wchan {
                s.push_str(&format!(" ({w})"));
            }
            s
        }
        Root::IgnoresStop | Root::Unknown => "is alive".to_string(),
    };
    if let Node::Task { key, task_id, .. } = &c.root
        && let Some(t) = f
            .agent
            .as_ref()
            .filter(|a| a.key == *key)
            .and_then(|a| a.report.tasks.iter().find(|t| t.id == *task_id))
    {
        return Some(match &t.where_ {
            Some(w) => format!("is {} at {w}", t.state),
            None => format!("is {}", t.state),
        });
    }
    if let Some(w) = py_thread(f, &c.root).and_then(|t| t.waits_on.as_ref()) {
        match (w.kind.as_str(), &w.where_) {
            ("sleep", Some(at)) => s = format!("sleeps at {at}"),
            ("serve_forever", Some(at)) => {
                let server = w.object.as_deref().unwrap_or("a socketserver server");
                s = format!(
                    "serves requests in {server}.serve_forever() at {at}, which returns only when the server's shutdown() is called"
                );
            }
            (_, Some(at)) => s.push_str(&format!(" at {at}")),
            _ => {}
        }
    }
    if let Some(d) = &c.root_stop_signal {
        let sig = signal_name(f.stop_signal);
        match d.as_str() {
            "ignores" => s.push_str(&format!(" and ignores {sig}")),
            "handles" => s.push_str(&format!(" and handles {sig} without exiting")),
            _ => {}
        }
    }
    Some(s)
}

fn render_blocked(f: &Facts, c: &Cause) -> String {
    let mut subject = c.path.first().map(|n| name(f, n)).unwrap_or_default();
    let edges: Vec<&Edge> = c
        .edges
        .iter()
        .filter(|e| e.kind != EdgeKind::MainThread)
        .collect();
    if let (Some(first), Some(Node::Process { key })) = (edges.first(), c.path.first())
        && first.kind == EdgeKind::Shutdown
    {
        subject = format!("the interpreter (pid {})", key.pid);
    }
    let mut line = format!("exit blocked: {subject}");
    for (i, e) in edges.iter().enumerate() {
        if i > 0 {
            line.push_str(", which");
        }
        line.push(' ');
        line.push_str(&phrase(f, e));
    }
    if let Some(l) = leaf(f, c) {
        if edges.is_empty() {
            line.push(' ');
        } else {
            line.push_str(", which ");
        }
        line.push_str(&l);
    }
    // Where the threads of the chain were started and its tasks created.
    let mut started = Vec::new();
    for n in &c.path {
        if let Some(t) = py_thread(f, n)
            && let Some(s) = &t.started_at
        {
            started.push(format!("{:?} was started at {s}", t.name));
        }
        if let Some(t) = py_task(f, n)
            && let Some(s) = &t.created_at
        {
            started.push(format!("task {:?} was created at {s}", t.name));
        }
    }
    if !started.is_empty() {
        line.push_str("; ");
        line.push_str(&started.join(", "));
    }
    line.push('.');
    line
}

fn lock_like(k: &EdgeKind) -> bool {
    matches!(
        k,
        EdgeKind::RLock | EdgeKind::FileLock { .. } | EdgeKind::Mutex { .. }
    )
}

/// `the pthread mutex wal_lock (0x55..80)`, or by address alone without a symbol.
fn mutex_name(k: &EdgeKind, what: &str) -> String {
    match k {
        EdgeKind::Mutex {
            addr,
            symbol: Some(s),
            ..
        } => format!("the {what}pthread mutex {s} ({addr:#x})"),
        EdgeKind::Mutex { addr, .. } => format!("the {what}pthread mutex at {addr:#x}"),
        _ => "?".into(),
    }
}

fn lock_object(f: &Facts, e: &Edge) -> String {
    if let Some(o) = wait_object(f, e).filter(|o| is_jvm_lock(o)) {
        return o.to_string();
    }
    match &e.kind {
        EdgeKind::RLock => format!("an RLock{}", at(e)),
        EdgeKind::FileLock { inode, .. } => format!("a file lock on inode {inode}"),
        EdgeKind::Mutex { .. } => mutex_name(&e.kind, ""),
        _ => "?".into(),
    }
}

fn render_deadlock(f: &Facts, c: &Cause) -> String {
    // Drop the process -> main thread hops: name the thread.
    let hops: Vec<&Edge> = c
        .edges
        .iter()
        .filter(|e| e.kind != EdgeKind::MainThread)
        .collect();
    let Some(first) = hops.first() else {
        return "deadlock".into();
    };
    let by_name = |n: &Node| match n {
        // A lock edge to a process means its main thread (or one of its threads) holds it.
        Node::Process { key } => thread_name_of_process(f, *key),
        other => name(f, other),
    };
    if hops.iter().all(|e| lock_like(&e.kind)) {
        let last = hops.last().copied().unwrap_or(first);
        let mut line = format!(
            "deadlock: {} holds {}, wants {}",
            by_name(&first.from),
            lock_object(f, last),
            lock_object(f, first)
        );
        for w in hops.windows(2) {
            line.push_str(&format!(
                " held by {}, which wants {}",
                by_name(&w[1].from),
                lock_object(f, w[1])
            ));
        }
        line.push('.');
        return line;
    }
    let mut line = format!("deadlock: {}", by_name(&first.from));
    for (i, e) in hops.iter().enumerate() {
        if i > 0 {
            line.push_str(", which");
        }
        line.push(' ');
        line.push_str(&phrase(f, e));
    }
    line.push_str(&format!(", which waits for {}", by_name(&first.from)));
    line.push('.');
    line
}

fn thread_name_of_process(f: &Facts, key: crate::model::ProcKey) -> String {
    format!("pid {} {:?}", key.pid, proc_name(f, key))
}
