//! What a blocked syscall's memory arguments say, read from the target without stopping it
//! (`process_vm_readv`, the same access `/proc/PID/mem` needs): the words at a `futex`
//! address (a pthread mutex's `__lock`/`__count`/`__owner`/`__nusers`/`__kind`, a joined
//! thread's tid word) and the fds a `poll`/`ppoll`/`select`/`pselect6`/`epoll_wait` waits
//! on (`epoll` sets from `/proc/PID/fdinfo/EPFD`). Classification is pure
//! ([`classify_futex`]) so it is unit-tested without a target.

use serde::{Deserialize, Serialize};

/// Fds read per polling syscall (a thread polling thousands is a server loop, not a wait
/// for one peer; the first ones are enough to name it).
pub const MAX_POLLED: usize = 64;

/// The five 32-bit words at a futex address (glibc's `struct __pthread_mutex_s` starts with
/// `__lock, __count, __owner, __nusers, __kind` on x86_64 and aarch64).
pub type FutexWords = [u32; 5];

/// What one thread's `futex` wait is, judged from its arguments and the words read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FutexWait {
    /// A normal/recursive/error-checking pthread mutex: `owner` holds it.
    Mutex { addr: u64, owner: i32 },
    /// A priority-inheritance mutex (`FUTEX_LOCK_PI`): the kernel keeps the owner in the word.
    PiMutex { addr: u64, owner: i32 },
    /// `pthread_join`: the word is the joined thread's tid, cleared by the kernel at its exit.
    Join { addr: u64, tid: i32 },
    /// Something else (a condition variable, a semaphore, CPython's own locks): no owner.
    Other { addr: u64 },
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
const FUTEX_LOCK_PI2: u64 = 13;
/// `FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME`.
const FUTEX_FLAGS: u64 = 128 | 256;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// `PTHREAD_MUTEX_KIND_MASK_NP` plus the robust, PI and PP flags glibc keeps in `__kind`.
const MUTEX_KIND_OK: u32 = 3 | 16 | 32 | 64 | 128;

/// Judges a `futex(uaddr, op, val, ...)` wait of a thread of a process; `other(tid)`: `tid`
/// is another live thread of it. `words`: what was read at `uaddr` (`None`: unreadable).
pub fn classify_futex(
    args: &[u64],
    words: Option<FutexWords>,
    other: impl Fn(i32) -> bool,
) -> Option<FutexWait> {
    let addr = *args.first()?;
    let op = args.get(1)? & !FUTEX_FLAGS;
    let val = args.get(2).map_or(0, |v| *v as u32);
    let live = |t: i32| t > 0 && other(t);
    match op {
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => {
            let owner = (words?[0] & FUTEX_TID_MASK) as i32;
            Some(if live(owner) {
                FutexWait::PiMutex { addr, owner }
            } else {
                FutexWait::Other { addr }
            })
        }
        FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI => {
            let Some([lock, _count, owner, nusers, kind]) = words else {
                return Some(FutexWait::Other { addr });
            };
            // pthread_join waits until the kernel clears the joined thread's tid word.
            if lock == val && live(lock as i32) {
                return Some(FutexWait::Join {
                    addr,
                    tid: lock as i32,
                });
            }
            // A mutex a waiter sleeps on reads 2 ("locked, with waiters") and names a live
            // owner of the same process; its kind has only the bits glibc uses.
            if lock == 2
                && val == 2
                && live(owner as i32)
                && nusers >= 1
                && kind & !MUTEX_KIND_OK == 0
            {
                return Some(FutexWait::Mutex {
                    addr,
                    owner: owner as i32,
                });
            }
            Some(FutexWait::Other { addr })
        }
        _ => None,
    }
}

/// Reads `len` bytes at `addr` in process `pid` (the thread group's memory).
pub fn read_mem(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    use nix::sys::uio::{RemoteIoVec, process_vm_readv};
    use std::io::IoSliceMut;
    if addr == 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: usize::try_from(addr).ok()?,
        len,
    }];
    let n = process_vm_readv(
        nix::unistd::Pid::from_raw(pid),
        &mut [IoSliceMut::new(&mut buf)],
        &remote,
    )
    .ok()?;
    (n == len).then_some(buf)
}

/// The five words at a futex address.
pub fn read_futex_words(pid: i32, addr: u64) -> Option<FutexWords> {
    let b = read_mem(pid, addr, 20)?;
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some([w(0), w(4), w(8), w(12), w(16)])
}

/// The fds a polling syscall waits on (at most [`MAX_POLLED`]); empty when not polling or
/// unreadable.
pub fn polled_fds(pid: i32, syscall: &str, args: &[u64]) -> Vec<i32> {
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    match syscall {
        "poll" | "ppoll" => {
            let n = (arg(1) as usize).min(MAX_POLLED);
            read_mem(pid, arg(0), n * 8).map_or_else(Vec::new, |b| parse_pollfds(&b))
        }
        "select" | "pselect6" => {
            let nfds = (arg(0) as usize).min(1024);
            let bytes = nfds.div_ceil(64) * 8;
            read_mem(pid, arg(1), bytes).map_or_else(Vec::new, |b| parse_fd_set(&b, nfds))
        }
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => {
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", arg(0) as u32 as i32))
                .map_or_else(|_| Vec::new(), |s| parse_epoll_fdinfo(&s))
        }
        _ => Vec::new(),
    }
}

/// `struct pollfd { int fd; short events; short revents; }`, reading fds asked for input.
pub fn parse_pollfds(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(8)
        .filter_map(|c| {
            let fd = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            let events = i16::from_ne_bytes([c[4], c[5]]);
            // POLLIN | POLLPRI | POLLRDNORM: a wait for input.
            (fd >= 0 && events & (0x1 | 0x2 | 0x40) != 0).then_some(fd)
        })
        .collect()
}

/// The set bits of a read `fd_set` (64-bit words), below `nfds`.
pub fn parse_fd_set(b: &[u8], nfds: usize) -> Vec<i32> {
    let mut out = Vec::new();
    for (w, c) in b.chunks_exact(8).enumerate() {
        let word = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        for bit in 0..64 {
            let fd = w * 64 + bit;
            if fd < nfds && word & (1 << bit) != 0 && out.len() < MAX_POLLED {
                out.push(fd as i32);
            }
        }
    }
    out
}

/// `tfd:        5 events:       19 data: ...` lines of an epoll fd's fdinfo, waiting for input.
pub fn parse_epoll_fdinfo(s: &str) -> Vec<i32> {
    s.lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            (f.next()? == "tfd:").then_some(())?;
            let fd: i32 = f.next()?.parse().ok()?;
            (f.next()? == "events:").then_some(())?;
            let ev = u32::from_str_radix(f.next()?, 16).ok()?;
            (ev & (0x1 | 0x2 | 0x40) != 0).then_some(fd)
        })
        .take(MAX_POLLED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_words_are_judged_by_shape() {
        let tids = [100, 101, 102];
        let tids = |t: i32| tids.contains(&t);
        // A mutex held by 101 with waiters; private flag set on the op.
        let m = classify_futex(&[0x1000, 128, 2], Some([2, 0, 101, 2, 0]), tids);
        assert_eq!(
            m,
            Some(FutexWait::Mutex {
                addr: 0x1000,
                owner: 101
            })
        );
        // A recursive robust mutex kind is still a mutex; an owner of another process is not.
        assert!(matches!(
            classify_futex(&[1, 0, 2], Some([2, 1, 102, 1, 1 | 16]), tids),
            Some(FutexWait::Mutex { owner: 102, .. })
        ));
        assert_eq!(
            classify_futex(&[1, 0, 2], Some([2, 0, 999, 1, 0]), tids),
            Some(FutexWait::Other { addr: 1 })
        );
        // A kind with bits glibc never sets: not a mutex (a condvar or a semaphore).
        assert_eq!(
            classify_futex(&[1, 0, 2], Some([2, 0, 101, 1, 0x4000]), tids),
            Some(FutexWait::Other { addr: 1 })
        );
        // pthread_join: the word and the expected value are the joined thread's tid.
        assert_eq!(
            classify_futex(&[8, 9, 102], Some([102, 0, 0, 0, 0]), tids),
            Some(FutexWait::Join { addr: 8, tid: 102 })
        );
        // PI: the owner is in the word, with the waiters bit.
        assert_eq!(
            classify_futex(
                &[4, 6 | 128, 0],
                Some([0x8000_0000 | 100, 0, 0, 0, 0]),
                tids
            ),
            Some(FutexWait::PiMutex {
                addr: 4,
                owner: 100
            })
        );
        // Not a wait (FUTEX_WAKE = 1), or unreadable words.
        assert_eq!(classify_futex(&[4, 1, 1], None, tids), None);
        assert_eq!(
            classify_futex(&[4, 0, 2], None, tids),
            Some(FutexWait::Other { addr: 4 })
        );
    }

    #[test]
    fn polled_fds_parse() {
        let mut b = Vec::new();
        for (fd, ev) in [(3i32, 1i16), (4, 4), (-1, 1), (7, 0x40)] {
            b.extend(fd.to_ne_bytes());
            b.extend(ev.to_ne_bytes());
            b.extend(0i16.to_ne_bytes());
        }
        assert_eq!(parse_pollfds(&b), vec![3, 7]);
        let set = (1u64 << 3 | 1 << 9 | 1 << 63).to_ne_bytes();
        assert_eq!(parse_fd_set(&set, 10), vec![3, 9]);
        assert_eq!(
            parse_epoll_fdinfo(
                "pos:\t0\nflags:\t02\ntfd:        5 events:       19 data:                5  pos:0 ino:2b sdev:d\ntfd:        6 events:        4 data: 6\n"
            ),
            vec![5]
        );
    }
}

/// Data symbols of the ELF files mapped by the processes looked at, by path: a lock's
/// address reads as `wal_lock` rather than `0x55..80`. Parsed once per file per `why`.
#[derive(Default)]
pub struct DataSymbols {
    files: std::collections::HashMap<String, Option<Vec<DataSym>>>,
    /// Each process's file-backed mappings, read once per `why` (a process with 10,000
    /// threads has a 20,000-line maps file: reading it per futex made a refresh of such a
    /// target cost a third of a core).
    maps: std::collections::HashMap<i32, Option<FileMaps>>,
}

/// (vaddr, size, name) of one data object.
type DataSym = (u64, u64, String);

/// A process's file-backed mappings: (start, end, path) and, per path, the start of its
/// offset-0 mapping (the load bias).
struct FileMaps {
    ranges: Vec<(u64, u64, String)>,
    bases: std::collections::HashMap<String, u64>,
}

/// Line by line: the maps file of a 10,000-thread process is 1.4 MB of text (a stack and
/// a guard page per thread), which read whole was 1 MB of the dashboard's peak heap.
fn read_file_maps(pid: i32) -> Option<FileMaps> {
    use std::io::BufRead;
    let file = std::fs::File::open(format!("/proc/{pid}/maps")).ok()?;
    let mut maps = std::io::BufReader::with_capacity(16 * 1024, file);
    let mut out = FileMaps {
        ranges: Vec::new(),
        bases: std::collections::HashMap::new(),
    };
    let mut line = String::new();
    loop {
        line.clear();
        match maps.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
        let l = line.trim_end_matches('\n');
        let Some((start, end, path)) = map_line(l) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let off = l.split_ascii_whitespace().nth(2);
        if off.and_then(|o| u64::from_str_radix(o, 16).ok()) == Some(0) {
            out.bases.entry(path.to_string()).or_insert(start);
        }
        out.ranges.push((start, end, path.to_string()));
    }
    Some(out)
}

impl DataSymbols {
    /// The data symbol (`name` or `name+off`) covering `addr` in process `pid`, from the
    /// symbol tables of the file mapped there (opened through `/proc/PID/root`, which needs
    /// no capability, unlike `map_files`).
    pub fn name(&mut self, pid: i32, addr: u64) -> Option<String> {
        let maps = self
            .maps
            .entry(pid)
            .or_insert_with(|| read_file_maps(pid))
            .as_ref()?;
        let path = maps
            .ranges
            .iter()
            .find(|(start, end, _)| *start <= addr && addr < *end)
            .map(|(_, _, p)| p.clone())?;
        // The load bias: where the file's offset-0 mapping starts, minus the first PT_LOAD's
        // page-aligned address (0 for PIE executables and shared objects).
        let base = *maps.bases.get(&path)?;
        let syms = self
            .files
            .entry(path.clone())
            .or_insert_with(|| load_data_symbols(&format!("/proc/{pid}/root{path}")))
            .as_ref()?;
        let (first_vaddr, list) = syms.split_first()?;
        let v = addr.checked_sub(base)?.checked_add(first_vaddr.0)?;
        list.iter().find_map(|(start, size, name)| {
            (*start <= v && v < start + (*size).max(1)).then(|| match v - start {
                0 => name.clone(),
                off => format!("{name}+{off:#x}"),
            })
        })
    }
}

/// `start-end perms offset dev inode path`.
fn map_line(l: &str) -> Option<(u64, u64, &str)> {
    let mut f = l.split_ascii_whitespace();
    let (s, e) = f.next()?.split_once('-')?;
    let path = f.nth(4).unwrap_or("");
    Some((
        u64::from_str_radix(s, 16).ok()?,
        u64::from_str_radix(e, 16).ok()?,
        path,
    ))
}

/// First entry: (the first PT_LOAD's page-aligned vaddr, 0, ""); then (vaddr, size, name)
/// of every data object symbol. `None`: unreadable or not ELF.
fn load_data_symbols(path: &str) -> Option<Vec<DataSym>> {
    use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let first = file
        .segments()
        .map(|s| s.address() & !0xfff)
        .min()
        .unwrap_or(0);
    let mut out = vec![(first, 0, String::new())];
    for s in file.symbols().chain(file.dynamic_symbols()) {
        if s.kind() == SymbolKind::Data
            && s.size() > 0
            && let Ok(name) = s.name()
            && !name.is_empty()
        {
            out.push((s.address(), s.size(), name.to_string()));
        }
    }
    Some(out)
}
