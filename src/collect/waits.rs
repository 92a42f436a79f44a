//! What the threads of a whole tree wait on, read once from /proc for the wait-for graph
//! (`lifecycle-top why`, `check` evidence): every thread's syscall with its arguments, every
//! process's file descriptors (pipe and socket inodes, files with their device and inode,
//! the access mode from `fdinfo`) and the file locks of `/proc/locks`.
//!
//! Read on demand, not every refresh: one `syscall` read per thread, one `readlink` per fd
//! (plus `fdinfo` for pipes and `stat` for files), one read of `/proc/locks`.

use crate::model::{ProcKey, Snapshot};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;

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
    /// What could not be read, in words (permission, races with exits).
    pub unreadable: Vec<String>,
}

/// Caps so a huge tree cannot make one `why` unbounded.
const MAX_THREADS_PER_PROC: usize = 20_000;
const MAX_FDS_PER_PROC: usize = 10_000;

/// Reads the waits of every live process of `snap`.
pub fn read_tree(snap: &Snapshot) -> TreeWaits {
    let mut out = TreeWaits::default();
    let mut syms = super::memwait::DataSymbols::default();
    for p in snap.processes.iter().filter(|p| p.exit.is_none()) {
        read_process(p.key, &mut out, &mut syms);
    }
    match std::fs::read("/proc/locks") {
        Ok(buf) => out.locks = parse_locks(&String::from_utf8_lossy(&buf)),
        Err(e) => out.unreadable.push(format!("/proc/locks: {e}")),
    }
    out
}

fn read_process(key: ProcKey, out: &mut TreeWaits, syms: &mut super::memwait::DataSymbols) {
    let base = format!("/proc/{}", key.pid);
    // The pid could have been reused since the snapshot: check the start time.
    match super::procfs::read_start_time(key.pid) {
        Ok(st) if st == key.start_time => {}
        _ => return,
    }
    match std::fs::read_dir(format!("{base}/task")) {
        Ok(dir) => {
            let mut tids: Vec<i32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            tids.sort_unstable();
            tids.truncate(MAX_THREADS_PER_PROC);
            for tid in tids {
                if let Some(t) = read_thread(key, tid, syms) {
                    out.threads.push(t);
                }
            }
        }
        Err(e) => out.unreadable.push(format!("{base}/task: {e}")),
    }
    match std::fs::read_dir(format!("{base}/fd")) {
        Ok(dir) => {
            let mut fds: Vec<i32> = dir
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
}

fn read_thread(
    key: ProcKey,
    tid: i32,
    syms: &mut super::memwait::DataSymbols,
) -> Option<ThreadWait> {
    let dir = format!("/proc/{}/task/{tid}", key.pid);
    let stat = super::procfs::parse_stat(&std::fs::read(format!("{dir}/stat")).ok()?)?;
    let (syscall, args) = std::fs::read(format!("{dir}/syscall"))
        .ok()
        .and_then(|b| super::procfs::parse_syscall(&b))
        .map_or((None, Vec::new()), |(nr, args)| {
            (
                Some(
                    super::syscalls::name(nr)
                        .map_or_else(|| format!("syscall {nr}"), str::to_string),
                ),
                args,
            )
        });
    let wchan = std::fs::read(format!("{dir}/wchan"))
        .ok()
        .and_then(|b| super::procfs::parse_wchan(&b));
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
