//! Plain data shared by every part of the core: process identity, the collector's snapshot,
//! and the agent facts the teardown engine counts. No I/O and no UI types live here, so the
//! TUI, the headless printer and the tests all render and assert the same structs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// An immutable string shared by reference count: a process or thread name. A refresh of
/// 10,000 threads copies every [`ThreadInfo`] into its snapshot; with a `String` name each
/// copy was an allocation (and each dropped snapshot 10,000 frees), with this one it is a
/// counter increment. Compares, prints and serializes as the plain string it holds.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        SharedStr(Arc::from(s))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr(Arc::from(s))
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        SharedStr(Arc::from(s.as_str()))
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.0.to_string()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == &*other.0
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == *other.0
    }
}

/// A process identified the only safe way: pid plus its start time (clock ticks since boot,
/// field 22 of `/proc/PID/stat`). Two processes can share a pid, never both fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcKey {
    pub pid: i32,
    pub start_time: u64,
}

/// Scheduler state letter from `/proc/PID/stat` field 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Running,
    Sleeping,
    DiskSleep,
    Zombie,
    Stopped,
    TracingStop,
    Dead,
    Idle,
    Other(char),
}

impl RunState {
    pub fn from_char(c: char) -> Self {
        match c {
            'R' => Self::Running,
            'S' => Self::Sleeping,
            'D' => Self::DiskSleep,
            'Z' => Self::Zombie,
            'T' => Self::Stopped,
            't' => Self::TracingStop,
            'X' | 'x' => Self::Dead,
            'I' => Self::Idle,
            other => Self::Other(other),
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Self::Running => 'R',
            Self::Sleeping => 'S',
            Self::DiskSleep => 'D',
            Self::Zombie => 'Z',
            Self::Stopped => 'T',
            Self::TracingStop => 't',
            Self::Dead => 'X',
            Self::Idle => 'I',
            Self::Other(c) => c,
        }
    }
}

/// What a thread is blocked in, as the kernel tells it without ptrace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitPoint {
    /// `/proc/PID/task/TID/wchan` (a kernel symbol, e.g. `futex_wait_queue`), `None` if 0/unknown.
    pub wchan: Option<String>,
    /// Syscall number from `/proc/PID/task/TID/syscall`; `None` when running in user space.
    pub syscall_nr: Option<i64>,
    /// Syscall name (`futex`, `poll`, `wait4`, `read`...), resolved from the number.
    pub syscall: Option<String>,
    /// The six raw syscall arguments when known.
    pub syscall_args: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub tid: i32,
    /// `comm` of the thread (kernel name, 15 bytes max).
    pub name: SharedStr,
    pub state: RunState,
    pub wait: WaitPoint,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// CPU use over the last refresh, percent of one core.
    pub cpu_percent: f32,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

/// How a process exited, from its pidfd / waitid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// Gone, but not our child and not reaped by us: the code is not knowable.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub status: ExitStatus,
    /// Milliseconds since the Unix epoch when the exit was noticed.
    pub at_unix_ms: u64,
}

/// Signal dispositions from `/proc/PID/status` (SigIgn, SigCgt, SigBlk), as bit masks
/// where bit N-1 is signal N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalMasks {
    pub ignored: u64,
    pub caught: u64,
    pub blocked: u64,
}

impl SignalMasks {
    fn has(mask: u64, sig: i32) -> bool {
        (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0
    }
    pub fn ignores(&self, sig: i32) -> bool {
        Self::has(self.ignored, sig)
    }
    pub fn catches(&self, sig: i32) -> bool {
        Self::has(self.caught, sig)
    }
    pub fn blocks(&self, sig: i32) -> bool {
        Self::has(self.blocked, sig)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcInfo {
    pub key: ProcKey,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub name: SharedStr,
    pub cmdline: Vec<String>,
    pub state: RunState,
    pub cpu_ticks: u64,
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    pub num_threads: u32,
    /// Seconds since the process started.
    pub age_secs: f64,
    /// Depth in the tree below the target (target = 0). Orphans keep the depth they had.
    pub depth: u32,
    /// Was in the tree, then got reparented out of it (to init or a subreaper).
    pub orphan: bool,
    pub signals: SignalMasks,
    /// Set once the process is gone; kept listed for a while after.
    pub exit: Option<ExitInfo>,
}

/// One refresh of the target tree. The target's threads are listed in `threads`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    pub target: ProcKey,
    /// Target first, then descendants in tree (depth-first) order, then orphans, then exited.
    pub processes: Vec<ProcInfo>,
    /// Threads of the target process.
    pub threads: Vec<ThreadInfo>,
    pub system: SystemInfo,
}

impl Snapshot {
    pub fn target_info(&self) -> Option<&ProcInfo> {
        self.processes.iter().find(|p| p.key == self.target)
    }
    /// Live descendants (not the target, not exited), orphans included.
    pub fn live_descendants(&self) -> impl Iterator<Item = &ProcInfo> {
        self.processes
            .iter()
            .filter(move |p| p.key != self.target && p.exit.is_none())
    }
}

/// System-wide figures for the header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub cpus: u32,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub load_avg: [f64; 3],
}

/// What the in-process agent knows that /proc cannot, boiled down to what the teardown
/// engine counts and the thread table joins on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentFacts {
    /// native thread id -> (python thread name, daemon)
    pub threads: Vec<AgentThreadFact>,
    pub pending_tasks: usize,
    pub loops: usize,
    /// Pid of the process the agent runs in (the report's `pid`). Not always the target:
    /// `lifecycle-top -- sh -c "python app.py"` has it in a descendant. `None`: unknown.
    #[serde(default)]
    pub pid: Option<i32>,
    /// The agent said its interpreter is exiting (a disconnect that follows is the exit).
    #[serde(default)]
    pub exiting: bool,
    /// A JVM in its shutdown sequence (SIGTERM, `System.exit`): it halts once its shutdown
    /// hooks return, whatever its other non-daemon threads do.
    #[serde(default)]
    pub jvm_shutdown: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentThreadFact {
    pub native_id: i32,
    pub name: String,
    pub daemon: bool,
    pub alive: bool,
    /// The interpreter's main thread (never a left-over: it is the one that exits).
    #[serde(default)]
    pub main: bool,
    /// A JVM shutdown hook the shutdown sequence waits for.
    #[serde(default)]
    pub hook: bool,
}

impl AgentFacts {
    pub fn non_daemon_threads(&self) -> usize {
        self.threads.iter().filter(|t| t.alive && !t.daemon).count()
    }
    pub fn thread(&self, tid: i32) -> Option<&AgentThreadFact> {
        self.threads.iter().find(|t| t.native_id == tid)
    }
}

/// Helper for durations in reports: milliseconds as f64.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
