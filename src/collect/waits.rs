//! What the threads of a whole tree wait on, read once from /proc for the wait-for graph
//! (`lifecycle-top why`, `check` evidence): every thread's syscall with its arguments, every
//! process's file descriptors (pipe and socket inodes, files with their device and inode,
//! the access mode from `fdinfo`) and the file locks of `/proc/locks`.
//!
//! Read on demand, not every refresh: one `syscall` read per thread, one `readlink` per fd
//! (plus `fdinfo` for pipes and `stat` for files), one read of `/proc/locks`; a process or
//! thread that did not run since the previous read is not read again (its answers cannot
//! have changed; see `Kept`).

use super::procfs::{self, ProcFile};
use crate::model::{ProcKey, SharedStr, Snapshot};
use rustix::fd::{AsFd, BorrowedFd};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

/// One thread's current syscall (`None` when running in user space or unreadable). Its
/// strings are shared: a syscall name is the table's, names and wait channels are one
/// allocation per distinct text in a read (see [`read_tree`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadWait {
    pub key: ProcKey,
    pub tid: i32,
    /// Kernel thread name (`comm`).
    pub name: SharedStr,
    pub state: char,
    pub syscall: Option<Cow<'static, str>>,
    pub args: super::procfs::SyscallArgs,
    pub wchan: Option<SharedStr>,
    /// In `futex`: the words at its address (see [`super::memwait::classify_futex`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futex_words: Option<super::memwait::FutexWords>,
    /// The data symbol at the futex address (`wal_lock`), when the mapped file has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futex_symbol: Option<Box<str>>,
    /// In `poll`/`select`/`epoll_wait`: the fds it waits to read.
    #[serde(default, skip_serializing_if = "<[i32]>::is_empty")]
    pub polled: Box<[i32]>,
}

/// What an fd refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FdObject {
    Pipe {
        inode: u64,
    },
    Socket {
        inode: u64,
    },
    /// A file: device (major, minor) and inode, as `/proc/locks` names them.
    File {
        major: u32,
        minor: u32,
        inode: u64,
    },
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub key: ProcKey,
    pub fd: i32,
    pub object: FdObject,
    /// Opened for writing (O_WRONLY or O_RDWR); `None` when `fdinfo` was unreadable.
    pub writes: Option<bool>,
}

/// One line of `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// `FLOCK`, `POSIX`, `OFDLCK`, ...
    pub class: String,
    pub write: bool,
    /// The pid the kernel records (the locker; for OFD locks often -1).
    pub pid: i32,
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
    /// A waiter (`->` line), not a holder.
    pub blocked: bool,
}

/// Everything [`read_tree`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeWaits {
    /// Shared with the reuse cache (see `Kept`): a thread that did not run is not copied.
    pub threads: Vec<Arc<ThreadWait>>,
    pub fds: Vec<FdEntry>,
    pub locks: Vec<FileLock>,
    /// For each Unix socket a thread waits to read (`read`/`recv*`, or polled): the inode of
    /// its connected peer (`sock_diag`), whose holders are in `fds`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub socket_peers: BTreeMap<u64, u64>,
    /// What could not be read, in words (permission, races with exits).
    pub unreadable: Vec<String>,
}

/// Caps so a huge tree cannot make one `why` unbounded.
const MAX_THREADS_PER_PROC: usize = 20_000;
const MAX_FDS_PER_PROC: usize = 10_000;

/// What one [`read_tree`] read of a process, kept for the next one. A process whose CPU
/// clock did not move ran no thread since, so its threads' waits and its fd table are what
/// they were (only its own threads change them); in a process that ran, a thread whose
/// `schedstat` did not move has the same syscall, wait channel and state. Reused for at most
/// [`REUSE_ROUNDS`] reads in a row: a thread renamed from outside is caught then.
struct Kept {
    cpu_ns: Option<u64>,
    /// Each thread with the `schedstat` read just before it, and its kept files.
    threads: Vec<KeptThread>,
    fds: Vec<FdEntry>,
    /// Reads since the last one that reused nothing.
    rounds: u32,
}

/// The threads of a process's previous read, in tid order (as [`read_process`] keeps
/// them), looked up by binary search and taken out one by one. It was a `HashMap` built
/// per read: 1.3 MB for 10,000 threads, at the verdict's heap peak.
struct PrevThreads {
    tids: Vec<i32>,
    threads: Vec<Option<KeptThread>>,
}

impl PrevThreads {
    fn new(mut threads: Vec<KeptThread>) -> Self {
        // Kept in tid order already; sorting an ordered list is one pass.
        threads.sort_by_key(|t| t.wait.tid);
        PrevThreads {
            tids: threads.iter().map(|t| t.wait.tid).collect(),
            threads: threads.into_iter().map(Some).collect(),
        }
    }

    fn get(&self, tid: i32) -> Option<&KeptThread> {
        let i = self.tids.binary_search(&tid).ok()?;
        self.threads.get(i)?.as_ref()
    }

    fn remove(&mut self, tid: i32) -> Option<KeptThread> {
        let i = self.tids.binary_search(&tid).ok()?;
        self.threads.get_mut(i)?.take()
    }
}

/// One thread of [`Kept`].
struct KeptThread {
    wait: Arc<ThreadWait>,
    sched: Option<[u64; 3]>,
    files: Option<Box<ThreadFiles>>,
    /// Its `schedstat` moved since the read before (or it was new then).
    ran: bool,
    /// A hash of the raw `syscall` line (number, arguments, stack pointer and program
    /// counter) when the thread was asleep in a syscall at that read, else 0 (a plain `u64`:
    /// 10,000 of these are kept, and an `Option` would add 8 bytes to each).
    line: u64,
    /// It ran, and was found asleep in the same syscall at the same place (same line): its
    /// name, state and wait channel were taken from the read before (see [`read_thread`]).
    partial: bool,
}

/// A thread's `schedstat`, `stat`, `syscall` and `wchan`, kept open between two reads once
/// it ran between two (a busy thread is re-read each time: four opens and closes, most of a
/// busy 1,000-thread tree's read, become `pread`s). A thread back in the same wait keeps
/// only `schedstat` and `syscall`, the two files read then (see [`read_thread`]). A kept file stays bound
/// to its thread: a dead thread's read fails and the path is opened instead (a reused tid
/// is then read as a new thread). At most [`kept_threads_cap`] threads keep files.
#[derive(Default)]
struct ThreadFiles([Option<ProcFile>; 4]);

/// Indices into [`ThreadFiles`].
const SCHEDSTAT: usize = 0;
const STAT: usize = 1;
const SYSCALL: usize = 2;
const WCHAN: usize = 3;
const THREAD_FILES: [&str; 4] = ["schedstat", "stat", "syscall", "wchan"];

/// How many threads (over the whole tree) may keep their four files: at most 1,024, and
/// at most a quarter of the fd limit (the collector's kept files and on-demand opens need
/// the rest). An eighth left a busy 1,000-thread target under a 20,000 limit with 375
/// threads opening and closing four files at every verdict (a third of its reads' cost).
fn kept_threads_cap() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let by_limit = usize::try_from(limit / 4 / THREAD_FILES.len() as u64).unwrap_or(usize::MAX);
    by_limit.min(1_024)
}

impl ThreadFiles {
    /// Read file `which` of thread `tid`: through the kept file if there is one (dropped if
    /// its read fails), else opened by path and kept when `keep`.
    fn read<'a>(
        files: &mut Option<Box<ThreadFiles>>,
        keep: bool,
        which: usize,
        dir: BorrowedFd<'_>,
        tid: i32,
        buf: &'a mut Vec<u8>,
    ) -> Option<&'a [u8]> {
        if let Some(f) = files.as_mut().and_then(|f| f.0[which].take())
            && let Ok(n) = f.read(buf).map(<[u8]>::len)
        {
            if let Some(fs) = files.as_mut() {
                fs.0[which] = Some(f);
            }
            return buf.get(..n);
        }
        let path = CString::new(format!("task/{tid}/{}", THREAD_FILES[which])).ok()?;
        let f = ProcFile::open_at(dir, &path).ok()?;
        let n = f.read(buf).ok()?.len();
        if keep {
            files.get_or_insert_with(Box::default).0[which] = Some(f);
        }
        buf.get(..n)
    }
}

/// See [`Kept`]: e.g. the TUI's verdict, refreshed every 5 s, re-reads everything every
/// 50 s at least.
const REUSE_ROUNDS: u32 = 10;

/// The processes of the last [`read_tree`] (only those still in the tree are kept).
static KEPT: Mutex<Option<HashMap<ProcKey, Kept>>> = Mutex::new(None);

/// Reads the waits of every live process of `snap`. Cost follows what ran: a process that
/// did not run since the previous call is not re-read, nor a thread that did not (see
/// [`Kept`]); the result is the same as reading everything.
pub fn read_tree(snap: &Snapshot) -> TreeWaits {
    let mut out = TreeWaits::default();
    let mut syms = super::memwait::DataSymbols::default();
    let mut strings = Strings::default();
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut before = kept.take().unwrap_or_default();
    let mut now = HashMap::new();
    let mut room = kept_threads_cap();
    for p in snap.processes.iter().filter(|p| p.exit.is_none()) {
        let prev = before.remove(&p.key);
        let read = read_process(p.key, prev, &mut out, &mut syms, &mut strings, &mut room);
        if let Some(k) = read {
            now.insert(p.key, k);
        }
    }
    *kept = Some(now);
    drop(kept);
    match std::fs::read("/proc/locks") {
        Ok(buf) => out.locks = parse_locks(&String::from_utf8_lossy(&buf)),
        Err(e) => out.unreadable.push(format!("/proc/locks: {e}")),
    }
    let waited = waited_sockets(&out);
    match super::sockdiag::unix_peers(&waited) {
        Ok(peers) => out.socket_peers = peers,
        Err(e) => out.unreadable.push(e),
    }
    out
}

/// Syscalls that wait to read their first argument's fd.
pub const READ_SYSCALLS: &[&str] = &[
    "read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg",
];

/// The socket inodes some thread waits to read: the fd of a read-like syscall, or polled.
fn waited_sockets(w: &TreeWaits) -> BTreeSet<u64> {
    let sockets: HashMap<(ProcKey, i32), u64> = w
        .fds
        .iter()
        .filter_map(|e| match e.object {
            FdObject::Socket { inode } => Some(((e.key, e.fd), inode)),
            _ => None,
        })
        .collect();
    if sockets.is_empty() {
        return BTreeSet::new();
    }
    let mut out = BTreeSet::new();
    for t in w.threads.iter().filter(|t| matches!(t.state, 'S' | 'D')) {
        let read_fd = t
            .syscall
            .as_deref()
            .filter(|sc| READ_SYSCALLS.contains(sc))
            .and(t.args.first())
            .map(|a| *a as u32 as i32);
        for fd in t.polled.iter().copied().chain(read_fd) {
            if let Some(inode) = sockets.get(&(t.key, fd)) {
                out.insert(*inode);
            }
        }
    }
    out
}

/// Reads one process into `out`; returns what to keep for the next call (`None` when
/// something was unreadable: then it is read in full next time).
fn read_process(
    key: ProcKey,
    prev: Option<Kept>,
    out: &mut TreeWaits,
    syms: &mut super::memwait::DataSymbols,
    strings: &mut Strings,
    room: &mut usize,
) -> Option<Kept> {
    let base = format!("/proc/{}", key.pid);
    // Relative opens from the process's directory: no walk of /proc and the pid per file.
    let dir = procfs::open_dir(&base).ok()?;
    // The pid could have been reused since the snapshot: check the start time.
    let start = ProcFile::open_at(dir.as_fd(), c"stat")
        .and_then(|f| f.read(&mut Vec::new()).map(procfs::parse_stat))
        .ok()
        .flatten()
        .map(|s| s.start_time);
    if start != Some(key.start_time) {
        return None;
    }
    let mut cpu_ns = procfs::process_cpu_clock(key.pid).and_then(procfs::cpu_clock_ns);
    let prev = prev.filter(|k| k.rounds < REUSE_ROUNDS);
    let prev_cpu_ns = prev.as_ref().and_then(|k| k.cpu_ns);
    if let Some(k) = &prev
        && cpu_ns.is_some()
        && k.cpu_ns == cpu_ns
    {
        out.threads.extend(k.threads.iter().map(|t| t.wait.clone()));
        *room = room.saturating_sub(k.threads.iter().filter(|t| t.files.is_some()).count());
        out.fds.extend(k.fds.iter().cloned());
        return prev.map(|k| Kept {
            rounds: k.rounds + 1,
            ..k
        });
    }
    let unreadable_before = out.unreadable.len();
    let mut reused_any = false;
    let prev_rounds = prev.as_ref().map_or(0, |k| k.rounds);
    let mut prev_threads = PrevThreads::new(prev.map(|k| k.threads).unwrap_or_default());
    let mut threads = Vec::new();
    let mut buf = vec![0u8; 4096];
    match std::fs::read_dir(format!("{base}/task")) {
        Ok(list) => {
            let mut tids: Vec<i32> = list
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            tids.sort_unstable();
            tids.truncate(MAX_THREADS_PER_PROC);
            // The clock again, right before the first `schedstat`: a thread that runs
            // between the two readings (listing 10,000 tids takes milliseconds) would
            // otherwise make the proof below fail.
            cpu_ns = procfs::process_cpu_clock(key.pid).and_then(procfs::cpu_clock_ns);
            let cpu_delta = match (prev_cpu_ns, cpu_ns) {
                (Some(before), Some(now)) => now.checked_sub(before),
                _ => None,
            };
            let mut reader = ThreadReader {
                key,
                dir: dir.as_fd(),
                buf: &mut buf,
                syms,
                strings,
                room,
            };
            // Pass 1: the threads that ran at the last read, and new ones. When their
            // run-time deltas add up to the process clock's to the nanosecond, no other
            // thread ran since: the others are not read at all (their `schedstat` would
            // say the same), as the collector's own thread table does.
            let mut sum = cpu_delta.map(|_| 0u64);
            // What each tid's read found, by its place in `tids`: filled by pass 1 (the
            // first read of a tree reads every thread there), then pass 2, then compacted
            // in place. A separate list for pass 1 doubled the peak of that first read (two
            // 64-byte entries per thread: 1.2 MB at 10,000 threads).
            let mut read_first = vec![false; tids.len()];
            let mut slots: Vec<Option<KeptThread>> = Vec::new();
            slots.resize_with(tids.len(), || None);
            out.threads.reserve(tids.len());
            for ((&tid, was_read), slot) in tids.iter().zip(&mut read_first).zip(&mut slots) {
                let candidate = cpu_delta.is_none() || prev_threads.get(tid).is_none_or(|t| t.ran);
                if !candidate {
                    continue;
                }
                *was_read = true;
                let prev = prev_threads.remove(tid);
                let before = prev.as_ref().map_or(Some(0), |t| t.sched.map(|s| s[0]));
                let read = reader.thread(tid, prev);
                let after = read.as_ref().and_then(|t| t.sched.map(|s| s[0]));
                sum = match (sum, before, after) {
                    (Some(acc), Some(b), Some(a)) => a.checked_sub(b).map(|d| acc + d),
                    _ => None,
                };
                *slot = read;
            }
            let others_idle = sum.is_some() && sum == cpu_delta;
            // Pass 2, in tid order: the rest, reused when proven idle, else read as above.
            for ((&tid, was_read), slot) in tids.iter().zip(read_first).zip(&mut slots) {
                if !was_read {
                    *slot = match prev_threads.remove(tid) {
                        Some(mut t) if others_idle => {
                            t.ran = false;
                            if t.files.is_some() {
                                *reader.room = reader.room.saturating_sub(1);
                            }
                            Some(t)
                        }
                        prev => reader.thread(tid, prev),
                    };
                }
                if let Some(t) = slot {
                    reused_any |= !t.ran || t.partial;
                    out.threads.push(t.wait.clone());
                }
            }
            // `filter_map` collects in place (into the same allocation); `flatten` does not:
            // it built a second list at the read's peak.
            #[allow(clippy::filter_map_identity)]
            {
                threads = slots.into_iter().filter_map(|t| t).collect();
            }
        }
        Err(e) => out.unreadable.push(format!("{base}/task: {e}")),
    }
    let fds_from = out.fds.len();
    match std::fs::read_dir(format!("{base}/fd")) {
        Ok(list) => {
            let mut fds: Vec<i32> = list
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            fds.sort_unstable();
            fds.truncate(MAX_FDS_PER_PROC);
            for fd in fds {
                if let Some(e) = read_fd(key, &base, fd) {
                    out.fds.push(e);
                }
            }
        }
        Err(e) => out.unreadable.push(format!("{base}/fd: {e}")),
    }
    if out.unreadable.len() != unreadable_before {
        return None;
    }
    Some(Kept {
        cpu_ns,
        threads,
        fds: out.fds[fds_from..].to_vec(),
        rounds: if reused_any { prev_rounds + 1 } else { 0 },
    })
}

/// One allocation per distinct string of a [`read_tree`] (190 children named alike, 1,000
/// threads asleep in the same wait channel). Strings short enough to be kept inline (every
/// `comm`, most wait channels) are not remembered: they allocate nothing anyway, and a set
/// of 10,000 distinct thread names was 1.5 MB of the TUI's heap peak at every verdict
/// (`bench/rss_breakdown.py --threads 10000 --heap`).
#[derive(Default)]
struct Strings(HashSet<SharedStr>);

impl Strings {
    fn get(&mut self, s: &str) -> SharedStr {
        if s.len() <= SharedStr::INLINE {
            return SharedStr::from(s);
        }
        if let Some(known) = self.0.get(s) {
            return known.clone();
        }
        let new = SharedStr::from(s);
        self.0.insert(new.clone());
        new
    }
}

/// Reads one thread for [`read_process`], reusing what the last read found when its
/// `schedstat` did not move.
struct ThreadReader<'a> {
    key: ProcKey,
    dir: BorrowedFd<'a>,
    buf: &'a mut Vec<u8>,
    syms: &'a mut super::memwait::DataSymbols,
    strings: &'a mut Strings,
    /// Threads that may still keep files ([`kept_threads_cap`] less those keeping them).
    room: &'a mut usize,
}

impl ThreadReader<'_> {
    /// `None` when the thread is gone.
    fn thread(&mut self, tid: i32, prev: Option<KeptThread>) -> Option<KeptThread> {
        let (prev, mut files) = match prev {
            Some(KeptThread {
                wait,
                sched,
                files,
                line,
                ..
            }) => (Some((wait, sched, line)), files),
            None => (None, None),
        };
        // A thread seen before that is read again in full ran between two reads: it keeps
        // its files for the next, while there is room.
        let keep = *self.room > 0 && prev.is_some();
        if !keep {
            files = None;
        }
        let kept = files.is_some();
        let sched = ThreadFiles::read(&mut files, kept, SCHEDSTAT, self.dir, tid, self.buf)
            .and_then(procfs::parse_schedstat);
        let (wait, ran, line, partial) = match prev {
            Some((t, Some(was), line)) if sched == Some(was) => (t, false, line, false),
            prev => {
                let at = ThreadAt {
                    dir: self.dir,
                    tid,
                    keep,
                };
                let before = prev
                    .as_ref()
                    .and_then(|(t, _, line)| (*line != 0).then_some((&**t, *line)));
                let (t, line, partial) = read_thread(
                    self.key,
                    at,
                    &mut files,
                    self.buf,
                    self.syms,
                    self.strings,
                    before,
                )?;
                (Arc::new(t), true, line.unwrap_or(0), partial)
            }
        };
        if files.is_some() {
            *self.room = self.room.saturating_sub(1);
        }
        Some(KeptThread {
            wait,
            sched,
            files,
            ran,
            line,
            partial,
        })
    }
}

/// Where [`read_thread`] reads: the process's directory, the tid, and whether the files
/// opened now are kept ([`ThreadFiles`]).
struct ThreadAt<'a> {
    dir: BorrowedFd<'a>,
    tid: i32,
    keep: bool,
}

/// Reads one thread's wait: `stat` (name, state), `syscall`, `wchan`, and the memory its
/// syscall waits on. `before`: the thread's wait at the previous read with the hash of its
/// `syscall` line then, if it was asleep in one. Returns the wait, the hash of the line now
/// (asleep in a syscall only), and whether the name, state and wait channel were reused.
///
/// A thread that wakes often and goes back to the same wait (a timer loop's `nanosleep`, a
/// worker's `futex` on its queue) ran since the last read, yet its `syscall` line (number,
/// arguments, stack pointer, program counter) is the same: it sleeps in the same call of
/// the same code. Its `stat` and `wchan` (two of its four reads, `wchan` the costliest: a
/// kernel symbol lookup) are then taken from the read before; what lies in its memory
/// (futex words, polled fds) is read again. A rename is caught by the full read every
/// [`REUSE_ROUNDS`]; a different kernel wait point inside the same call (rare: the same
/// call on the same fd) shows up then too.
fn read_thread(
    key: ProcKey,
    at: ThreadAt<'_>,
    files: &mut Option<Box<ThreadFiles>>,
    buf: &mut Vec<u8>,
    syms: &mut super::memwait::DataSymbols,
    strings: &mut Strings,
    before: Option<(&ThreadWait, u64)>,
) -> Option<(ThreadWait, Option<u64>, bool)> {
    let ThreadAt { dir, tid, keep } = at;
    let line_of = |raw: &[u8]| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut h);
        h.finish().max(1) // 0 means "no line"
    };
    let parse_line = |raw: &[u8]| {
        procfs::parse_syscall(raw).map(|(nr, args)| {
            (
                super::syscalls::name(nr)
                    .map_or_else(|| Cow::Owned(format!("syscall {nr}")), Cow::Borrowed),
                args,
            )
        })
    };
    // The thread asleep in a syscall before: its line first, to see if it is the same.
    let mut early = None;
    if let Some((was, line)) = before
        && was.syscall.is_some()
        && matches!(was.state, 'S' | 'D')
        && let Some(raw) = ThreadFiles::read(files, keep, SYSCALL, dir, tid, buf)
    {
        let now = line_of(raw);
        let parsed = parse_line(raw);
        if now == line && parsed.is_some() {
            // Its `stat` and `wchan` are not read now: not kept open either (each kept
            // /proc file holds a page of kernel memory; they are opened again at the next
            // full read).
            if let Some(f) = files.as_mut() {
                f.0[STAT] = None;
                f.0[WCHAN] = None;
            }
            let (syscall, args) = parsed.unzip();
            let wait = waits_in_memory(key, was.name.clone(), was.state, syscall, args, syms);
            return Some((
                ThreadWait {
                    wchan: was.wchan.clone(),
                    tid,
                    ..wait
                },
                Some(now),
                true,
            ));
        }
        early = Some((parsed, now));
    }
    let stat = procfs::parse_stat(ThreadFiles::read(files, keep, STAT, dir, tid, buf)?)?;
    let (parsed, line) = match early {
        Some(e) => e,
        None => match ThreadFiles::read(files, keep, SYSCALL, dir, tid, buf) {
            Some(raw) => (parse_line(raw), line_of(raw)),
            None => (None, 0),
        },
    };
    let (syscall, args) = parsed.unzip();
    let wchan = ThreadFiles::read(files, keep, WCHAN, dir, tid, buf)
        .and_then(procfs::parse_wchan)
        .map(|w| strings.get(&w));
    // Reusable by the next read only when the three reads agree that it sleeps: a thread
    // that woke between its `syscall` and `wchan` reads has no wait channel (0 while it
    // runs), and that `None` would be reused for a thread asleep again in the same call
    // (seen under load: the ticker test's partial read had no wchan).
    let asleep_in_call = syscall.is_some() && matches!(stat.state, 'S' | 'D') && wchan.is_some();
    let name = strings.get(&stat.comm);
    let wait = waits_in_memory(key, name, stat.state, syscall, args, syms);
    Some((
        ThreadWait { wchan, tid, ..wait },
        asleep_in_call.then_some(line),
        false,
    ))
}

/// A [`ThreadWait`] (tid and wait channel left for the caller) with what its syscall waits
/// on in memory: the futex words and the data symbol at the futex, the polled fds.
fn waits_in_memory(
    key: ProcKey,
    name: SharedStr,
    state: char,
    syscall: Option<Cow<'static, str>>,
    args: Option<super::procfs::SyscallArgs>,
    syms: &mut super::memwait::DataSymbols,
) -> ThreadWait {
    let args = args.unwrap_or_default();
    // Memory arguments only of a thread asleep in the syscall (a running one moves on).
    let asleep = matches!(state, 'S' | 'D');
    let (futex_words, polled) = match syscall.as_deref() {
        Some("futex") if asleep => (
            args.first()
                .and_then(|a| super::memwait::read_futex_words(key.pid, *a)),
            Box::default(),
        ),
        Some(sc) if asleep => (
            None,
            super::memwait::polled_fds(key.pid, sc, &args).into_boxed_slice(),
        ),
        _ => (None, Box::default()),
    };
    let futex_symbol = futex_words
        .and(args.first())
        .and_then(|a| syms.name(key.pid, *a))
        .map(String::into_boxed_str);
    ThreadWait {
        key,
        tid: 0,
        name,
        state,
        syscall,
        args,
        wchan: None,
        futex_words,
        futex_symbol,
        polled,
    }
}

fn read_fd(key: ProcKey, base: &str, fd: i32) -> Option<FdEntry> {
    let path = format!("{base}/fd/{fd}");
    let link = std::fs::read_link(&path).ok()?;
    let link = link.to_string_lossy();
    let object = if let Some(n) = bracketed(&link, "pipe:") {
        FdObject::Pipe { inode: n }
    } else if let Some(n) = bracketed(&link, "socket:") {
        FdObject::Socket { inode: n }
    } else if link.starts_with('/') {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let dev = m.dev();
                FdObject::File {
                    major: libc::major(dev),
                    minor: libc::minor(dev),
                    inode: m.ino(),
                }
            }
            _ => FdObject::Other,
        }
    } else {
        FdObject::Other
    };
    let writes = if matches!(object, FdObject::Pipe { .. }) {
        std::fs::read_to_string(format!("{base}/fdinfo/{fd}"))
            .ok()
            .and_then(|s| parse_fdinfo_flags(&s))
            .map(|flags| flags & 0o3 != 0)
    } else {
        None
    };
    Some(FdEntry {
        key,
        fd,
        object,
        writes,
    })
}

/// `pipe:[1234]` -> 1234.
fn bracketed(link: &str, prefix: &str) -> Option<u64> {
    link.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `flags:` line of `/proc/PID/fdinfo/FD` (octal).
pub fn parse_fdinfo_flags(s: &str) -> Option<u32> {
    s.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// Parses `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, waiters as
/// `1: -> FLOCK ...`. Malformed lines are skipped.
pub fn parse_locks(s: &str) -> Vec<FileLock> {
    s.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace().skip(1).peekable();
            let blocked = f.peek() == Some(&"->");
            if blocked {
                f.next();
            }
            let class = f.next()?.to_string();
            let _mandatory = f.next()?;
            let mode = f.next()?;
            let pid: i32 = f.next()?.parse().ok()?;
            let mut dev = f.next()?.split(':');
            let major = u32::from_str_radix(dev.next()?, 16).ok()?;
            let minor = u32::from_str_radix(dev.next()?, 16).ok()?;
            let inode = dev.next()?.parse().ok()?;
            Some(FileLock {
                class,
                write: mode == "WRITE",
                pid,
                major,
                minor,
                inode,
                blocked,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// 20 idle threads, one that ticks every 5 ms, and one blocked in `read` on a pipe
    /// until a line comes on stdin, then asleep; prints the reader's tid, the ticker's, then
    /// the 20 sleepers'.
    const TARGET: &str = r#"
import os, sys, threading, time
r, w = os.pipe()
def reader():
    os.read(r, 1)
    time.sleep(1000)
sleepers = [threading.Thread(target=time.sleep, args=(1000,), daemon=True) for _ in range(20)]
for s in sleepers:
    s.start()
def tick():
    while True:
        time.sleep(0.005)
k = threading.Thread(target=tick, daemon=True)
k.start()
t = threading.Thread(target=reader, daemon=True)
t.start()
print(t.native_id, k.native_id, *(s.native_id for s in sleepers), flush=True)
sys.stdin.readline()
os.write(w, b"x")
sys.stdin.readline()
"#;

    /// Waits (10 s at most) until the kernel shows thread `tid` of `pid` in syscall `nr`.
    fn wait_for_syscall(pid: i32, tid: i32, nr: u32) {
        let path = format!("/proc/{pid}/task/{tid}/syscall");
        let want = format!("{nr} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(&want)) {
            assert!(
                Instant::now() < deadline,
                "thread {tid} never entered syscall {nr}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn syscall_of(waits: &TreeWaits, tid: i32) -> Option<String> {
        let t = waits.threads.iter().find(|t| t.tid == tid)?;
        t.syscall.as_deref().map(str::to_owned)
    }

    /// Reads that reuse what did not run (the idle proof, kept files) see a thread that was
    /// idle through several reads once it moves on, and agree with a read from scratch.
    #[test]
    fn reused_reads_see_an_idle_thread_move_on() {
        // read and clock_nanosleep: x86-64 0 and 230, arm64 63 and 115.
        let (read_nr, sleep_nr) = if cfg!(target_arch = "aarch64") {
            (63, 115)
        } else {
            (0, 230)
        };
        let mut child = Command::new("python3")
            .args(["-c", TARGET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("tid");
        let tids: Vec<i32> = line
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        let [tid, _ticker, ref sleepers @ ..] = tids[..] else {
            panic!("tids expected: {line:?}");
        };
        assert_eq!(sleepers.len(), 20, "{line:?}");
        let pid = i32::try_from(child.id()).expect("pid");
        // A started thread has not necessarily reached its first call yet.
        wait_for_syscall(pid, tid, read_nr);
        for &s in sleepers {
            wait_for_syscall(pid, s, sleep_nr);
        }
        let snap = crate::collect::snapshot_once(pid).expect("snapshot");
        // Several reads: the reader is idle in all of them, so later ones reuse it.
        for _ in 0..4 {
            let w = read_tree(&snap);
            assert_eq!(syscall_of(&w, tid).as_deref(), Some("read"));
            std::thread::sleep(Duration::from_millis(20));
        }
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write");
        stdin.flush().expect("flush");
        // Its next wait: asleep for good (not the way there: taking the GIL, say).
        wait_for_syscall(pid, tid, sleep_nr);
        let reused = read_tree(&snap);
        assert_eq!(
            syscall_of(&reused, tid).as_deref(),
            Some("clock_nanosleep"),
            "the reader moved on from read"
        );
        // A read from scratch (nothing kept for this process) finds the same waits for
        // every thread that sleeps for good: the sleepers and the reader (the main thread
        // and the ticker move on their own).
        if let Some(kept) = KEPT.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            kept.retain(|k, _| k.pid != pid);
        }
        let fresh = read_tree(&snap);
        // tid, syscall, its arguments, wait channel.
        type Wait = (i32, Option<String>, Vec<u64>, Option<String>);
        let settled = |w: &TreeWaits| -> Vec<Wait> {
            let mut v: Vec<Wait> = w
                .threads
                .iter()
                .filter(|t| t.key.pid == pid && (t.tid == tid || sleepers.contains(&t.tid)))
                .map(|t| {
                    let sc = t.syscall.as_deref().map(str::to_owned);
                    let wchan = t.wchan.as_deref().map(str::to_owned);
                    (t.tid, sc, t.args.to_vec(), wchan)
                })
                .collect();
            v.sort();
            v
        };
        let (a, b) = (settled(&reused), settled(&fresh));
        assert_eq!(a.len(), 21, "{a:?}");
        assert_eq!(a, b);
        let _ = child.kill();
        let _ = child.wait();
    }

    const TICKER: &str = r#"
import sys, threading, time
def tick():
    while True:
        time.sleep(0.002)
k = threading.Thread(target=tick, daemon=True)
k.start()
print(k.native_id, flush=True)
sys.stdin.readline()
with open("/proc/self/task/%d/comm" % k.native_id, "w") as f:
    f.write("renamed")
print("done", flush=True)
sys.stdin.readline()
"#;

    /// The ticker's wait in the last read and whether it was a partial one.
    fn kept_ticker(pid: i32, tid: i32) -> Option<(ThreadWait, bool)> {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let k = kept.as_ref()?.iter().find(|(k, _)| k.pid == pid)?.1;
        let t = k.threads.iter().find(|t| t.wait.tid == tid)?;
        Some(((*t.wait).clone(), t.partial))
    }

    #[test]
    fn a_thread_back_in_the_same_wait_is_reused_and_a_rename_still_shows() {
        let mut child = Command::new("python3")
            .args(["-c", TICKER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("tid");
        let tid: i32 = line.trim().parse().expect("tid");
        let pid = i32::try_from(child.id()).expect("pid");
        let snap = crate::collect::snapshot_once(pid).expect("snapshot");
        // The ticker runs between any two reads (every 2 ms) and sleeps again in the same
        // clock_nanosleep call: once read in full asleep, later reads reuse its name, state
        // and wait channel, and give what a full read gives.
        let mut partial = 0;
        for _ in 0..100 {
            let w = read_tree(&snap);
            if let Some((t, true)) = kept_ticker(pid, tid) {
                partial += 1;
                assert_eq!(syscall_of(&w, tid).as_deref(), Some("clock_nanosleep"));
                assert_eq!(t.state, 'S', "{t:?}");
                assert!(t.wchan.is_some(), "{t:?}");
                assert!(
                    t.name.starts_with("Thread-") || &*t.name == "python3",
                    "{t:?}"
                );
            }
            if partial >= 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            partial >= 5,
            "a ticker back in the same sleep was never reused"
        );
        // Renamed from another thread while its syscall line stays the same: a full read
        // every REUSE_ROUNDS reads shows the new name.
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"rename\n").expect("write");
        stdin.flush().expect("flush");
        line.clear();
        out.read_line(&mut line).expect("done");
        assert_eq!(line, "done\n");
        let mut seen = None;
        for n in 0..=(2 * REUSE_ROUNDS as usize + 2) {
            read_tree(&snap);
            if kept_ticker(pid, tid).is_some_and(|(t, _)| &*t.name == "renamed") {
                seen = Some(n);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(seen.is_some(), "the rename never showed");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn locks_parse_holders_and_waiters() {
        let l = parse_locks(
            "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 1240 08:01:5678 0 EOF\n2: POSIX  ADVISORY  READ 99 fd:00:12 0 EOF\ngarbage\n",
        );
        assert_eq!(l.len(), 3);
        assert!(l[0].write && !l[0].blocked && l[0].pid == 1234 && l[0].inode == 5678);
        assert!(l[1].blocked && l[1].pid == 1240);
        assert_eq!((l[2].major, l[2].minor, l[2].write), (0xfd, 0, false));
    }

    #[test]
    fn fdinfo_flags_and_links() {
        assert_eq!(
            parse_fdinfo_flags("pos:\t0\nflags:\t02000001\nmnt_id:\t15\n"),
            Some(0o2000001)
        );
        assert_eq!(bracketed("pipe:[42]", "pipe:"), Some(42));
        assert_eq!(bracketed("socket:[7]", "pipe:"), None);
    }
}
