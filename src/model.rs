//! Plain data shared by every part of the core: process identity, the collector's snapshot,
//! and the agent facts the teardown engine counts. No I/O and no UI types live here, so the
//! TUI, the headless printer and the tests all render and assert the same structs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// An immutable name: a process or thread name. A refresh of 10,000 threads copies every
/// [`ThreadInfo`] into its snapshot, so a copy must not allocate nor touch shared memory:
/// names up to [`SharedStr::INLINE`] bytes (every kernel `comm`: 15 at most) are kept inline
/// and copied with the struct; longer ones are shared by reference count. Compares, hashes,
/// prints and serializes as the plain string it holds.
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of `bytes`, always valid UTF-8 (cut only at a char boundary: never, since
    /// only strings that fit whole are kept inline).
    Inline {
        len: u8,
        bytes: [u8; SharedStr::INLINE],
    },
    Shared(Arc<str>),
}

impl SharedStr {
    /// Longest name kept inline (the struct stays 24 bytes).
    pub const INLINE: usize = 22;

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
    }

    fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                SharedStr(Repr::Inline { len, bytes })
            }
            _ => SharedStr(Repr::Shared(Arc::from(s))),
        }
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr::new("")
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SharedStr::from)
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        SharedStr::new(s)
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr::new(&s)
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        SharedStr::new(s)
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        self.as_str() == other.as_str()
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

impl WaitPoint {
    /// Nothing known (the state of every thread whose wait was not read).
    pub const EMPTY: WaitPoint = WaitPoint {
        wchan: None,
        syscall_nr: None,
        syscall: None,
        syscall_args: Vec::new(),
    };
}

/// A thread's [`WaitPoint`], boxed only when something is known. The collector reads
/// waits only for the threads someone looks at (rows on screen, the Why view, the
/// engine's audits), so on a 10,000-thread target nearly every one is empty: inline, the
/// 88-byte `WaitPoint` was half of every `ThreadInfo` in the collector's table and in each
/// snapshot (1.6 MB per copy at 10,000 threads; issue 14). Reads as a `WaitPoint`
/// (`Deref`), writes box it (`DerefMut`), and it serializes exactly as one, so recordings
/// and `--json` keep their shape.
#[derive(Clone, Default)]
pub struct Wait(Option<Box<WaitPoint>>);

impl std::ops::Deref for Wait {
    type Target = WaitPoint;
    fn deref(&self) -> &WaitPoint {
        static EMPTY: WaitPoint = WaitPoint::EMPTY;
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Wait {
    fn deref_mut(&mut self) -> &mut WaitPoint {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Wait {
    /// Back to "nothing known", freeing the box.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl From<WaitPoint> for Wait {
    fn from(w: WaitPoint) -> Self {
        if w == WaitPoint::EMPTY {
            Wait(None)
        } else {
            Wait(Some(Box::new(w)))
        }
    }
}

impl PartialEq for Wait {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<WaitPoint> for Wait {
    fn eq(&self, other: &WaitPoint) -> bool {
        **self == *other
    }
}

impl std::fmt::Debug for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Wait {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Wait {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WaitPoint::deserialize(d).map(Wait::from)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub tid: i32,
    /// `comm` of the thread (kernel name, 15 bytes max).
    pub name: SharedStr,
    pub state: RunState,
    pub wait: Wait,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// CPU use over the last refresh, percent of one core (on the first read: since the
    /// thread started).
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_wait_reads_writes_and_serializes_as_the_wait_point_it_holds() {
        // Empty: no box, and the JSON of an empty `WaitPoint`.
        let empty = Wait::default();
        assert!(empty.0.is_none());
        assert_eq!(
            serde_json::to_value(&empty).unwrap(),
            serde_json::to_value(WaitPoint::default()).unwrap()
        );
        let back: Wait = serde_json::from_value(serde_json::to_value(&empty).unwrap()).unwrap();
        assert!(back.0.is_none(), "an empty wait read back stays unboxed");
        // Known: boxed, same JSON, same value read back.
        let wp = WaitPoint {
            wchan: Some("futex_wait_queue".into()),
            syscall_nr: Some(202),
            syscall: Some("futex".into()),
            syscall_args: vec![1, 128, 0, 0, 0, 0],
        };
        let w = Wait::from(wp.clone());
        assert!(w.0.is_some());
        assert_eq!(w, wp);
        assert_eq!(w.wchan.as_deref(), Some("futex_wait_queue"));
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json, serde_json::to_value(&wp).unwrap());
        assert_eq!(serde_json::from_value::<Wait>(json).unwrap(), wp);
        // Written through: boxed; cleared: unboxed again.
        let mut m = Wait::from(WaitPoint::EMPTY);
        m.syscall_nr = Some(7);
        assert_eq!(m.syscall_nr, Some(7));
        m.clear();
        assert!(m.0.is_none() && m == WaitPoint::EMPTY);
        // The point of it: the wait is pointer-sized (it was 88 bytes), a thread 88 (was 168).
        assert_eq!(std::mem::size_of::<Wait>(), 8);
        assert!(
            std::mem::size_of::<ThreadInfo>() <= 88,
            "{}",
            std::mem::size_of::<ThreadInfo>()
        );
    }

    #[test]
    fn shared_str_is_the_string_it_holds_inline_or_shared() {
        let comm = SharedStr::from("tree_target-w15");
        let long = SharedStr::from("a name far longer than any kernel comm".to_string());
        assert!(matches!(comm.0, Repr::Inline { .. }));
        assert!(matches!(long.0, Repr::Shared(_)));
        let edge = "é".repeat(SharedStr::INLINE / 2);
        assert_eq!(SharedStr::from(edge.as_str()), edge.as_str());
        assert_eq!(comm, "tree_target-w15");
        assert_eq!(&*long, "a name far longer than any kernel comm");
        assert_eq!(SharedStr::default(), "");
        let (a, b, zz) = (
            SharedStr::from("a"),
            SharedStr::from("b"),
            SharedStr::from("zz"),
        );
        assert!(a < b);
        assert!(zz > long, "ordered as strings, whatever the storage");
        let json = serde_json::to_string(&vec![comm.clone(), long.clone()]).unwrap();
        assert_eq!(
            json,
            r#"["tree_target-w15","a name far longer than any kernel comm"]"#
        );
        let back: Vec<SharedStr> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![comm, long]);
        assert_eq!(std::mem::size_of::<SharedStr>(), 24);
    }
}
