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
use crate::model::{ProcKey, Snapshot};
use rustix::fd::{AsFd, BorrowedFd};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// One thread's current syscall (`None` when running in user space or unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadWait {
    pub key: ProcKey,
    pub tid: i32,
    /// Kernel thread name (`comm`).
    pub name: String,
    pub state: char,
    pub syscall: Option<String>,
    pub args: Vec<u64>,
    pub wchan: Option<String>,
    /// In `futex`: the words at its address (see [`super::memwait::classify_futex`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futex_words: Option<super::memwait::FutexWords>,
    /// The data symbol at the futex address (`wal_lock`), when the mapped file has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futex_symbol: Option<String>,
    /// In `poll`/`select`/`epoll_wait`: the fds it waits to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polled: Vec<i32>,
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
    pub threads: Vec<ThreadWait>,
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
    /// Each thread with the `schedstat` read just before it.
    threads: Vec<(ThreadWait, Option<[u64; 3]>)>,
    fds: Vec<FdEntry>,
    /// Reads since the last one that reused nothing.
    rounds: u32,
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
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut before = kept.take().unwrap_or_default();
    let mut now = HashMap::new();
    for p in snap.processes.iter().filter(|p| p.exit.is_none()) {
        let prev = before.remove(&p.key);
        if let Some(k) = read_process(p.key, prev, &mut out, &mut syms) {
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
    let cpu_ns = procfs::process_cpu_clock(key.pid).and_then(procfs::cpu_clock_ns);
    let prev = prev.filter(|k| k.rounds < REUSE_ROUNDS);
    if let Some(k) = &prev
        && cpu_ns.is_some()
        && k.cpu_ns == cpu_ns
    {
        out.threads.extend(k.threads.iter().map(|(t, _)| t.clone()));
        out.fds.extend(k.fds.iter().cloned());
        return prev.map(|k| Kept {
            rounds: k.rounds + 1,
            ..k
        });
    }
    let unreadable_before = out.unreadable.len();
    let mut reused_any = false;
    let prev_rounds = prev.as_ref().map_or(0, |k| k.rounds);
    let mut prev_threads: HashMap<i32, (ThreadWait, Option<[u64; 3]>)> = prev
        .map(|k| k.threads.into_iter().map(|t| (t.0.tid, t)).collect())
        .unwrap_or_default();
    let mut threads = Vec::new();
    let mut buf = vec![0u8; 4096];
    match std::fs::read_dir(format!("{base}/task")) {
        Ok(list) => {
            let mut tids: Vec<i32> = list
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            tids.sort_unstable();
            tids.truncate(MAX_THREADS_PER_PROC);
            for tid in tids {
                let sched = read_rel(dir.as_fd(), &format!("task/{tid}/schedstat"), &mut buf)
                    .and_then(procfs::parse_schedstat);
                let t = match prev_threads.remove(&tid) {
                    Some((t, Some(was))) if sched == Some(was) => {
                        reused_any = true;
                        t
                    }
                    _ => match read_thread(key, dir.as_fd(), tid, &mut buf, syms) {
                        Some(t) => t,
                        None => continue,
                    },
                };
                out.threads.push(t.clone());
                threads.push((t, sched));
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

/// Read a file relative to the process's directory.
fn read_rel<'a>(dir: BorrowedFd<'_>, rel: &str, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let path = CString::new(rel).ok()?;
    ProcFile::open_at(dir, &path).ok()?.read(buf).ok()
}

fn read_thread(
    key: ProcKey,
    dir: BorrowedFd<'_>,
    tid: i32,
    buf: &mut Vec<u8>,
    syms: &mut super::memwait::DataSymbols,
) -> Option<ThreadWait> {
    let stat = procfs::parse_stat(read_rel(dir, &format!("task/{tid}/stat"), buf)?)?;
    let (syscall, args) = read_rel(dir, &format!("task/{tid}/syscall"), buf)
        .and_then(procfs::parse_syscall)
        .map_or((None, Vec::new()), |(nr, args)| {
            (
                Some(
                    super::syscalls::name(nr)
                        .map_or_else(|| format!("syscall {nr}"), str::to_string),
                ),
                args,
            )
        });
    let wchan = read_rel(dir, &format!("task/{tid}/wchan"), buf).and_then(procfs::parse_wchan);
    // Memory arguments only of a thread asleep in the syscall (a running one moves on).
    let asleep = matches!(stat.state, 'S' | 'D');
    let (futex_words, polled) = match syscall.as_deref() {
        Some("futex") if asleep => (
            args.first()
                .and_then(|a| super::memwait::read_futex_words(key.pid, *a)),
            Vec::new(),
        ),
        Some(sc) if asleep => (None, super::memwait::polled_fds(key.pid, sc, &args)),
        _ => (None, Vec::new()),
    };
    let futex_symbol = futex_words
        .and(args.first())
        .and_then(|a| syms.name(key.pid, *a));
    Some(ThreadWait {
        key,
        tid,
        name: stat.comm,
        state: stat.state,
        syscall,
        args,
        wchan,
        futex_words,
        futex_symbol,
        polled,
    })
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
