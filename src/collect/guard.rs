//! The launched tree's watchdog: a forked child of lifecycle-top that outlives it and kills
//! the trees it launched when lifecycle-top dies without saying goodbye (SIGKILL, a crash,
//! the OOM killer). Nothing in lifecycle-top can run after a SIGKILL, so the only way to not
//! leave a launched tree behind is a process that watches ours.
//!
//! - Started once per process, lazily, by [`launch_target`] (called for every `-- CMD`/demo
//!   launch); registered with [`helpers`](crate::collect::helpers), in a process group of its
//!   own (a Ctrl-C for lifecycle-top does not reach it), stdin/stdout/stderr on /dev/null and
//!   every other fd closed (it keeps no pipe or terminal of ours open).
//! - It holds a pidfd of lifecycle-top and polls it. lifecycle-top tells it, through a pipe,
//!   the trees it launched (`T pid start`), their members as the collector finds them
//!   (`M root pid start`) and trees it is done with (`D root`: killed already, or the user
//!   chose to leave it running).
//! - When lifecycle-top dies, for each tree not done with: SIGKILL each member it was told of
//!   (through a pidfd, after re-checking the start time), then sweep /proc for processes in
//!   a process group or session led by a member and started after the root, until a sweep
//!   finds none (bounded). Then it exits.
//!
//! The child is forked from a multi-threaded process, so it only makes raw system calls on
//! memory allocated before the fork (no allocation, no locks): see [`child_main`].

use crate::collect::helpers;
use crate::model::ProcKey;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

/// Members the watchdog can remember (beyond that, the sweep by group/session still finds
/// the rest).
const SLOTS: usize = 16_384;

struct Conn {
    /// Write end of the pipe (non-blocking: lifecycle-top never waits for the watchdog).
    wr: OwnedFd,
    pid: i32,
}

static GUARD: Mutex<Option<Conn>> = Mutex::new(None);

/// The watchdog's pid, if it is running.
pub fn pid() -> Option<i32> {
    GUARD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|c| c.pid)
}

fn send(line: &str) {
    let guard = GUARD.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = guard.as_ref() {
        // SAFETY: writing a live buffer to our own pipe fd. A short line (< PIPE_BUF) is
        // written whole or not at all; EAGAIN (the watchdog is behind) drops it, and the sweep
        // by group/session still covers that member.
        let n = unsafe { libc::write(c.wr.as_raw_fd(), line.as_ptr().cast(), line.len()) };
        if n < 0 {
            tracing::debug!(
                "tree watchdog: cannot send {line:?}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Start the watchdog (once per process). Called before a tree is launched.
pub fn ensure_started() -> io::Result<()> {
    let mut guard = GUARD.lock().unwrap_or_else(PoisonError::into_inner);
    if guard.is_some() {
        return Ok(());
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own fd, no pointers.
    unsafe {
        let fl = libc::fcntl(wr.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(wr.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let me = rustix::process::getpid();
    let parent = rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty())?;
    // Everything the child uses, allocated before the fork.
    let mut slots: Box<[Slot]> = vec![Slot::EMPTY; SLOTS].into_boxed_slice();
    let reg = helpers::forking();
    // SAFETY: fork(2). The child runs `child_main` only, which makes raw syscalls on memory
    // allocated before the fork and never returns (it ends with `_exit`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child_main(rd.as_raw_fd(), parent.as_raw_fd(), &mut slots);
    }
    reg.register(pid);
    drop(rd);
    drop(parent);
    *guard = Some(Conn { wr, pid });
    Ok(())
}

/// A tree was launched: kill it if lifecycle-top dies, until [`forget`].
pub fn launch_target(key: ProcKey) {
    send(&format!("T {} {}\n", key.pid, key.start_time));
}

/// A member of the tree rooted at `root`, found by the collector.
pub fn note_member(root: i32, key: ProcKey) {
    send(&format!("M {root} {} {}\n", key.pid, key.start_time));
}

/// Done with the tree rooted at `root` (killed it, or the user leaves it running).
pub fn forget(root: i32) {
    send(&format!("D {root}\n"));
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0: empty; else the root pid of its tree.
    root: i32,
    pid: i32,
    start: u64,
    /// A root (from `T`): its tree is to be killed.
    is_root: bool,
}

impl Slot {
    const EMPTY: Slot = Slot {
        root: 0,
        pid: 0,
        start: 0,
        is_root: false,
    };
}

/// The watchdog: never returns. Only raw syscalls, only on memory allocated before the fork.
fn child_main(rd: RawFd, parent: RawFd, slots: &mut [Slot]) -> ! {
    // SAFETY: raw async-signal-safe syscalls on our own fds and stack buffers.
    unsafe {
        libc::setpgid(0, 0);
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGPIPE,
            libc::SIGTERM,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &all, std::ptr::null_mut());
        libc::prctl(
            libc::PR_SET_NAME,
            c"lt-tree-guard".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        // Our two fds to 3 and 4 (via high numbers, so no dup2 clobbers the other), the
        // standard ones to /dev/null, everything else closed.
        let a = libc::fcntl(rd, libc::F_DUPFD_CLOEXEC, 1000);
        let b = libc::fcntl(parent, libc::F_DUPFD_CLOEXEC, 1000);
        if a < 0 || b < 0 {
            libc::_exit(1);
        }
        libc::dup2(a, 3);
        libc::dup2(b, 4);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        if libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32) != 0 {
            for fd in 5..4096 {
                libc::close(fd);
            }
        }
    }
    let (rd, parent) = (3, 4);
    let mut line = [0u8; 128];
    let mut line_len = 0usize;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: rd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: parent,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on a live array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            // SAFETY: reading into a live stack buffer.
            let got = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                for &c in &buf[..got as usize] {
                    if c == b'\n' {
                        apply_line(&line[..line_len], slots);
                        line_len = 0;
                    } else if line_len < line.len() {
                        line[line_len] = c;
                        line_len += 1;
                    }
                }
                continue;
            }
            if got < 0 {
                continue;
            }
            // EOF: every write end is closed, lifecycle-top is exiting or gone; its pidfd
            // says when it is gone (a final message may still be in flight before that).
        }
        if fds[1].revents != 0 || fds[0].revents & (libc::POLLHUP | libc::POLLIN) != 0 {
            // Drain what is left, then act once lifecycle-top is gone.
            wait_gone(parent);
            drain(rd, &mut buf, &mut line, &mut line_len, slots);
            kill_trees(slots);
            // SAFETY: ending the watchdog.
            unsafe { libc::_exit(0) };
        }
    }
}

fn wait_gone(parent: RawFd) {
    let mut fds = [libc::pollfd {
        fd: parent,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll on a live pollfd. lifecycle-top closed the pipe: it is on its way out.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
}

fn drain(
    rd: RawFd,
    buf: &mut [u8; 4096],
    line: &mut [u8; 128],
    len: &mut usize,
    slots: &mut [Slot],
) {
    // SAFETY: fcntl/read on our own fd into a live buffer.
    unsafe {
        let fl = libc::fcntl(rd, libc::F_GETFL);
        libc::fcntl(rd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    loop {
        // SAFETY: as above.
        let got = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            return;
        }
        for &c in &buf[..got as usize] {
            if c == b'\n' {
                apply_line(&line[..*len], slots);
                *len = 0;
            } else if *len < line.len() {
                line[*len] = c;
                *len += 1;
            }
        }
    }
}

/// Parse up to three decimal numbers after the command letter.
fn numbers(rest: &[u8]) -> [u64; 3] {
    let mut out = [0u64; 3];
    let mut i = 0;
    let mut cur: Option<u64> = None;
    for &c in rest {
        if c.is_ascii_digit() {
            cur = Some(
                cur.unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(u64::from(c - b'0')),
            );
        } else if let Some(v) = cur.take() {
            if i < 3 {
                out[i] = v;
            }
            i += 1;
        }
    }
    if let Some(v) = cur
        && i < 3
    {
        out[i] = v;
    }
    out
}

fn put(slots: &mut [Slot], s: Slot) {
    // Already there?
    if slots
        .iter()
        .any(|x| x.root == s.root && x.pid == s.pid && x.start == s.start && x.is_root == s.is_root)
    {
        return;
    }
    if let Some(free) = slots.iter_mut().find(|x| x.root == 0) {
        *free = s;
        return;
    }
    // Full: reuse a member slot whose process is gone.
    for x in slots.iter_mut() {
        if !x.is_root && read_stat(x.pid).is_none_or(|st| st.start != x.start) {
            *x = s;
            return;
        }
    }
}

fn apply_line(l: &[u8], slots: &mut [Slot]) {
    let Some((&cmd, rest)) = l.split_first() else {
        return;
    };
    let n = numbers(rest);
    let as_pid = |v: u64| i32::try_from(v).unwrap_or(0);
    match cmd {
        b'T' => put(
            slots,
            Slot {
                root: as_pid(n[0]),
                pid: as_pid(n[0]),
                start: n[1],
                is_root: true,
            },
        ),
        b'M' => {
            let root = as_pid(n[0]);
            if slots.iter().any(|x| x.is_root && x.root == root) {
                put(
                    slots,
                    Slot {
                        root,
                        pid: as_pid(n[1]),
                        start: n[2],
                        is_root: false,
                    },
                );
            }
        }
        b'D' => {
            let root = as_pid(n[0]);
            for x in slots.iter_mut().filter(|x| x.root == root) {
                *x = Slot::EMPTY;
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
struct MiniStat {
    start: u64,
    pgrp: i32,
    session: i32,
    zombie: bool,
}

/// `/proc/PID/stat`'s state, pgrp, session and start time, read without allocating.
fn read_stat(pid: i32) -> Option<MiniStat> {
    let mut path = [0u8; 32];
    let prefix = b"/proc/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut p = prefix.len();
    let mut digits = [0u8; 12];
    let mut nd = 0;
    let mut v = u32::try_from(pid).ok()?;
    loop {
        digits[nd] = b'0' + (v % 10) as u8;
        nd += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in (0..nd).rev() {
        path[p] = digits[i];
        p += 1;
    }
    let suffix = b"/stat\0";
    path[p..p + suffix.len()].copy_from_slice(suffix);
    let mut buf = [0u8; 1024];
    // SAFETY: a NUL-terminated path in a live buffer; read into a live buffer; close ours.
    let got = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = buf.get(..usize::try_from(got).ok()?)?;
    let close = text.iter().rposition(|&c| c == b')')?;
    // Fields after the comm: 3 state, 4 ppid, 5 pgrp, 6 session, ... 22 starttime.
    let mut field = 2;
    let mut out = MiniStat {
        start: 0,
        pgrp: 0,
        session: 0,
        zombie: false,
    };
    for tok in text[close + 1..]
        .split(|&c| c == b' ')
        .filter(|t| !t.is_empty())
    {
        field += 1;
        let num = || {
            tok.iter().try_fold(0u64, |a, &c| {
                c.is_ascii_digit().then(|| a * 10 + u64::from(c - b'0'))
            })
        };
        match field {
            3 => out.zombie = tok.first().is_some_and(|&c| c == b'Z' || c == b'X'),
            5 => out.pgrp = i32::try_from(num()?).ok()?,
            6 => out.session = i32::try_from(num()?).ok()?,
            22 => {
                out.start = num()?;
                return Some(out);
            }
            _ => {}
        }
    }
    None
}

/// SIGKILL `pid` if it still has `start` (through a pidfd, so a reused pid is never hit).
fn kill_exact(pid: i32, start: u64) -> bool {
    // SAFETY: pidfd_open takes (pid, flags); the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) } as i32;
    if fd < 0 {
        return false;
    }
    let ok = read_stat(pid).is_some_and(|st| st.start == start && !st.zombie)
        // SAFETY: pidfd_send_signal(fd, SIGKILL, NULL, 0) on the pidfd just opened.
        && unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        } == 0;
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    ok
}

/// Kill every tree still listed: members by key, then sweeps of /proc until one finds none.
fn kill_trees(slots: &[Slot]) {
    if !slots.iter().any(|s| s.is_root) {
        return;
    }
    for s in slots.iter().filter(|s| s.root != 0) {
        kill_exact(s.pid, s.start);
    }
    for _round in 0..200 {
        if sweep(slots) == 0 {
            return;
        }
        // SAFETY: nanosleep with a live timespec.
        unsafe {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}

/// One pass over /proc: SIGKILL each live process in a group or session led by a member of
/// a listed tree and started after its root. Returns how many were found.
fn sweep(slots: &[Slot]) -> usize {
    let me = std::process::id() as i32;
    // SAFETY: open a directory fd; closed at the end.
    let dir = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return 0;
    }
    let mut found = 0;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: getdents64 into a live buffer of its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + 19 < n {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[off + 19..(off + reclen).min(n)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            off += reclen;
            let Some(pid) = name.iter().try_fold(0i32, |a, &c| {
                c.is_ascii_digit()
                    .then(|| a.saturating_mul(10).saturating_add(i32::from(c - b'0')))
            }) else {
                continue;
            };
            if pid <= 1 || pid == me || name.is_empty() {
                continue;
            }
            let Some(st) = read_stat(pid) else { continue };
            if st.zombie {
                continue;
            }
            let member = slots.iter().any(|s| {
                s.root != 0
                    && (st.pgrp == s.pid || st.session == s.pid)
                    && slots
                        .iter()
                        .any(|r| r.is_root && r.root == s.root && st.start >= r.start)
            });
            if member && kill_exact(pid, st.start) {
                found += 1;
            }
        }
    }
    // SAFETY: closing the directory fd opened above.
    unsafe { libc::close(dir) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_stat() {
        assert_eq!(numbers(b" 12 345 6789"), [12, 345, 6789]);
        let mut slots = vec![Slot::EMPTY; 4];
        apply_line(b"M 5 6 7", &mut slots);
        assert!(
            slots.iter().all(|s| s.root == 0),
            "member of an unknown tree"
        );
        apply_line(b"T 5 100", &mut slots);
        apply_line(b"M 5 6 7", &mut slots);
        assert_eq!(slots.iter().filter(|s| s.root == 5).count(), 2);
        apply_line(b"D 5", &mut slots);
        assert!(slots.iter().all(|s| s.root == 0));
        let me = std::process::id() as i32;
        let st = read_stat(me).expect("own stat");
        let want = crate::collect::procfs::read_start_time(me).expect("start");
        assert_eq!(st.start, want);
        assert!(!st.zombie);
    }
}
