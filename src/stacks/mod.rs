//! Stack snapshots of a process's threads: where each thread is blocked, told by up to four
//! sources, best first: Python frames from the agent, Python frames read without an agent,
//! native user-space frames (framehop + blazesym, ptrace-free where possible), and the kernel
//! view (state, wchan, syscall with decoded arguments, kernel stack). Every stack carries the
//! source it came from and every failure is one line with a remedy, so the UI and the report
//! can say how much to trust what they show. No drawing here: see `ui::widgets::stacks`.

pub mod cli;
pub mod cpython;
mod from_agent;
pub mod kernel;
pub mod native;
mod pyspy;
pub mod python;
pub mod stuck;
mod syscalls;
pub mod tasks;
mod worker;

use crate::model::{RunState, WaitPoint};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a stack came from; shown next to every stack so the user knows what it is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `sys._current_frames()` from the in-process agent.
    AgentPython,
    /// JavaScript frames from the Node.js agent (the main thread's, through the inspector).
    AgentJs,
    /// Java frames from the JVM's own thread dump (attach protocol), joined by `nid`.
    Java,
    /// CPython frames read from the outside (py-spy), no agent needed.
    PySpyPython,
    /// User-space native frames: framehop unwinding, blazesym symbols.
    Native,
    /// What the kernel says without ptrace: wait channel, syscall, kernel stack.
    Kernel,
}

impl SourceKind {
    /// Short label for the UI and the text output.
    pub fn label(self) -> &'static str {
        match self {
            Self::AgentPython => "python (agent)",
            Self::AgentJs => "javascript (agent)",
            Self::Java => "java",
            // Read from the process memory without an agent: the built-in CPython reader or
            // py-spy, which the stack's note names.
            Self::PySpyPython => "python (memory)",
            Self::Native => "native",
            Self::Kernel => "kernel",
        }
    }
}

/// One frame of any source. Fields a source does not know stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Demangled function name, or `??` when unknown.
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Instruction address (native frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<u64>,
    /// Module (shared object, executable) basename (native frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// An inlined call site expanded from the frame above it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
}

/// The frames one source produced for one thread, innermost first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStack {
    pub source: SourceKind,
    pub frames: Vec<Frame>,
    /// How it was captured ("ptrace-free", "seized 0.04 ms", "truncated: ..."), if worth saying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A source that could not say anything for a thread (or the process): one line + remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceError {
    pub source: SourceKind,
    pub message: String,
}

/// The kernel's view of a thread, read from /proc without ptrace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelView {
    pub state: RunState,
    pub wait: WaitPoint,
    /// Syscall arguments decoded for a human: `fd 3 = pipe:[1234]`, `futex 0x7f..`, `pid 42`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub described_args: Vec<String>,
    /// User stack pointer and program counter from /proc/TID/syscall (blocked threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_sp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_pc: Option<u64>,
    pub cpu_ticks: u64,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Non-zero when a debugger (or anything else) already traces this thread.
    pub tracer_pid: i32,
    /// /proc/TID/stack symbols, innermost first (root only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_stack: Vec<String>,
}

/// Everything known about one thread, joined by kernel tid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadStacks {
    pub tid: i32,
    pub name: String,
    /// `None` when the thread vanished while being read.
    pub kernel: Option<KernelView>,
    /// Best source first (python, then native).
    pub stacks: Vec<SourceStack>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceError>,
}

impl ThreadStacks {
    /// The stack of one source, if captured.
    pub fn stack(&self, source: SourceKind) -> Option<&SourceStack> {
        self.stacks.iter().find(|s| s.source == source)
    }
}

/// One capture of some or all threads of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSnapshot {
    pub pid: i32,
    pub taken_at_unix_ms: u64,
    /// Wall time the capture took, microseconds.
    pub capture_us: u64,
    pub threads: Vec<ThreadStacks>,
    /// Process-wide failures (e.g. maps unreadable, not a Python process).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceError>,
    /// Await chains of pending asyncio tasks (from the agent), when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<tasks::TaskStack>,
}

impl StackSnapshot {
    pub fn thread(&self, tid: i32) -> Option<&ThreadStacks> {
        self.threads.iter().find(|t| t.tid == tid)
    }
}

/// What to capture and how hard to try.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Allow PTRACE_SEIZE + PTRACE_INTERRUPT of one thread at a time when the ptrace-free
    /// path cannot read it (a thread running in user space). Opt-in: a ptrace stop makes
    /// epoll_wait/sigtimedwait return EINTR in the target.
    pub seize: bool,
    /// With `seize`, interrupt even threads the ptrace-free path could read (comparisons,
    /// benchmarks). Off by default.
    pub prefer_seize: bool,
    /// Test hook: keep a seized thread stopped this long before detaching, so tests can kill
    /// the helper or lifecycle-top mid-capture and check the thread resumes. Zero otherwise.
    #[doc(hidden)]
    pub hold_stopped: Duration,
    /// Test hook: wait up to this long between PTRACE_SEIZE and PTRACE_INTERRUPT (so a test
    /// can land a signal there). Zero otherwise.
    #[doc(hidden)]
    pub hold_seized: Duration,
    /// Start time (clock ticks since boot, /proc/PID/stat field 22) the process must have:
    /// the `start_time` of the `ProcKey` the pid came from. When set, a pid that now names
    /// another process is refused as a whole ("pid N was reused") and the seize helper
    /// re-checks it right before each PTRACE_SEIZE. `None`: the pid is trusted as is.
    pub expect_start_time: Option<u64>,
    /// The agent's `stacks` response, if an agent is connected (see `python::from_agent`).
    pub python_from_agent: Option<serde_json::Value>,
    /// Read Python stacks without an agent (the py-spy crate) when none came from one. Off
    /// when the caller asks the agent itself, concurrently.
    pub pyspy: bool,
    /// Unwind native stacks at all.
    pub native: bool,
    /// Read the kernel stack (/proc/TID/stack, root only).
    pub kernel_stack: bool,
    /// Read system libraries' separate DWARF (debug packages) for file:line of their
    /// frames too. Off: they are named from symbol tables, which is much cheaper cold; the
    /// program's own DWARF is read either way.
    pub debug_info: bool,
    /// Bound for the whole snapshot; threads past it get a "budget exhausted" error.
    pub budget: Duration,
    /// Hard bound for one seized thread (the helper is killed past it; the kernel detaches).
    pub per_thread_budget: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            seize: false,
            prefer_seize: false,
            hold_stopped: Duration::ZERO,
            hold_seized: Duration::ZERO,
            expect_start_time: None,
            python_from_agent: None,
            pyspy: true,
            native: true,
            kernel_stack: true,
            debug_info: false,
            budget: Duration::from_secs(2),
            per_thread_budget: Duration::from_millis(200),
        }
    }
}

/// Capture stacks of `tids` (all threads when empty) of `pid`. Never fails as a whole: what
/// could not be read is listed in `errors` per thread or per process. Blocking (a few ms for
/// 100 threads when warm): call it from a blocking context. Runs on one internal thread so
/// its caches stay warm whichever thread calls it.
pub fn capture(pid: i32, tids: &[i32], opts: &StackOptions) -> StackSnapshot {
    let (tids, job_opts) = (tids.to_vec(), opts.clone());
    worker::STACKS
        .run(move || capture_here(pid, &tids, &job_opts))
        .unwrap_or_else(|| StackSnapshot {
            pid,
            taken_at_unix_ms: 0,
            capture_us: 0,
            threads: Vec::new(),
            errors: vec![SourceError {
                source: SourceKind::Kernel,
                message: "stack capture failed internally (a bug: please report it with the log)"
                    .into(),
            }],
            tasks: Vec::new(),
        })
}

/// Why `pid` no longer names the process that started at `expected`, if it does not.
fn identity_error(pid: i32, expected: u64) -> Option<String> {
    match crate::collect::procfs::read_start_time(pid) {
        Ok(st) if st == expected => None,
        Ok(st) => Some(format!(
            "pid {pid} was reused (start time {st}, expected {expected}): the process it named has exited; nothing captured"
        )),
        Err(e) => Some(format!(
            "pid {pid} is gone ({e}): the process has exited; nothing captured"
        )),
    }
}

/// Why no stack of `pid` can be read (ptrace-read access refused), with the remedy.
pub fn refused(pid: i32) -> Option<String> {
    use crate::access::Reason;
    let l = crate::access::limitation(pid)?;
    let who = format!("pid {pid} ({})", l.name);
    Some(match l.reason {
        Reason::NotDumpable => format!(
            "{who}: the process is not dumpable (prctl PR_SET_DUMPABLE 0): run as root \
             (sudo lifecycle-top stacks --pid {pid}); nothing captured"
        ),
        Reason::OtherUser { uid } => format!(
            "{who} belongs to uid {uid}: only its user or root may read its stacks; {}; \
             nothing captured",
            l.remedy
        ),
        Reason::NoPtraceRights { detail } => {
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            format!(
                "{who}: ptrace access refused{detail}: {}; nothing captured",
                l.remedy
            )
        }
    })
}

/// Threads past which the kernel views are read on two threads (half each): /proc reads are
/// a third of a cold capture, and a thread costs less than 10 of them.
const SPLIT_KERNEL_READS: usize = 32;

/// The kernel view of each thread, in `tids` order.
fn read_kernel_views(pid: i32, tids: &[i32], kernel_stack: bool) -> Vec<ThreadStacks> {
    let read = |part: &[i32]| -> Vec<ThreadStacks> {
        part.iter()
            .map(|&tid| kernel::read_thread(pid, tid, kernel_stack))
            .collect()
    };
    if tids.len() < SPLIT_KERNEL_READS {
        return read(tids);
    }
    let (first, second) = tids.split_at(tids.len() / 2);
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("lt-kernel".into())
            .spawn_scoped(s, || read(second));
        let mut views = read(first);
        match other.map(|h| h.join()) {
            Ok(Ok(rest)) => views.extend(rest),
            // No thread (or it panicked): read the rest here.
            _ => views.extend(read(second)),
        }
        views
    })
}

/// Whether some thread has Python frames (the agent's or read from outside).
fn has_python_frames(threads: &[ThreadStacks]) -> bool {
    threads.iter().flat_map(|t| &t.stacks).any(|s| {
        matches!(s.source, SourceKind::AgentPython | SourceKind::PySpyPython)
            && !s.frames.is_empty()
    })
}

fn capture_here(pid: i32, tids: &[i32], opts: &StackOptions) -> StackSnapshot {
    let started = Instant::now();
    let taken_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut errors = Vec::new();
    if let Some(expected) = opts.expect_start_time
        && let Some(message) = identity_error(pid, expected)
    {
        return StackSnapshot {
            pid,
            taken_at_unix_ms,
            capture_us: started.elapsed().as_micros() as u64,
            threads: Vec::new(),
            errors: vec![SourceError {
                source: SourceKind::Kernel,
                message,
            }],
            tasks: Vec::new(),
        };
    }
    let tids: Vec<i32> = if tids.is_empty() {
        match kernel::list_tids(pid) {
            Ok(t) => t,
            Err(e) => {
                errors.push(SourceError {
                    source: SourceKind::Kernel,
                    message: format!(
                        "cannot list threads of pid {pid}: {e} (is it running? run as its user or root)"
                    ),
                });
                Vec::new()
            }
        }
    } else {
        tids.to_vec()
    };
    // Read once: with many threads the maps file is long (a stack and a guard per thread).
    let maps_text = std::fs::read_to_string(format!("/proc/{pid}/maps"));
    let refusal = refused(pid);
    // Python frames without an agent are read on their own thread meanwhile (see `worker`).
    let pyspy = (opts.python_from_agent.is_none() && refusal.is_none())
        .then(|| python::start(pid, maps_text.as_deref().ok(), opts))
        .flatten();
    let mut threads = read_kernel_views(pid, &tids, opts.kernel_stack);
    // A process we may list but not read (another user's, non-dumpable, ptrace refused):
    // one process-wide line with the real reason instead of "permission denied" per file
    // and thread; the kernel view keeps what is readable (state, wchan, switches).
    if let Some(why) = refusal {
        for t in &mut threads {
            t.errors.retain(|e| !e.message.contains("unreadable"));
        }
        errors.push(SourceError {
            source: SourceKind::Native,
            message: why,
        });
        return StackSnapshot {
            pid,
            taken_at_unix_ms,
            capture_us: started.elapsed().as_micros() as u64,
            threads,
            errors,
            tasks: Vec::new(),
        };
    }
    let unwound = match (&maps_text, opts.native) {
        (_, false) => None,
        (Ok(text), true) => {
            native::unwind_into(pid, text, &mut threads, opts, started, &mut errors)
        }
        (Err(e), true) => {
            errors.push(SourceError {
                source: SourceKind::Native,
                message: format!(
                    "/proc/{pid}/maps unreadable: {e} (run as the target's user or root)"
                ),
            });
            None
        }
    };
    // Joined before the native frames are named: with Python frames, the interpreter's own
    // frames are named from its symbol table (see `native::Naming`).
    match pyspy {
        Some(pending) => python::finish(pending, &mut threads, &mut errors),
        None => python::join_into(
            pid,
            maps_text.as_deref().ok(),
            &mut threads,
            opts,
            &mut errors,
        ),
    }
    if let Some(unwound) = unwound {
        let naming = native::Naming {
            debug_info: opts.debug_info,
            interpreter_by_symbols: has_python_frames(&threads),
        };
        unwound.symbolize(&mut threads, naming, &mut errors);
    }
    StackSnapshot {
        pid,
        taken_at_unix_ms,
        capture_us: started.elapsed().as_micros() as u64,
        threads,
        errors,
        tasks: Vec::new(),
    }
}
