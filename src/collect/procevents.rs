//! The kernel's process-events connector (netlink `NETLINK_CONNECTOR`, `CN_IDX_PROC`): every
//! fork and exit on the system, as it happens. The collector's /proc scan misses a process
//! that was forked and reparented (its parent exited) between two scans: its ppid no longer
//! names a tracked process. A reader thread here follows the tree's membership by the fork
//! events themselves (a child of a member is a member, whoever its parent is later), reads
//! the child's start time at once and queues it for the collector's next refresh.
//!
//! Needs CAP_NET_ADMIN (root); [`ProcEvents::subscribe`] fails otherwise (or with
//! `LIFECYCLE_TOP_NO_PROC_EVENTS=1`, which forces the fallback for tests), and the collector
//! then sweeps /proc by process group / session and start time instead (see
//! [`Discovery`]). Lost events (the socket's buffer overflowed: ENOBUFS) are flagged, so the
//! collector runs a full listing with the sweep for that refresh.
//!
//! Self-contained rather than a crate: the protocol is three fixed structs, the crates that
//! wrap it are small and little maintained, and the membership has to be decided in the
//! reader itself (at fork time, before a reparenting), which a generic event stream would
//! leave to us anyway.

use crate::collect::procfs;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The environment variable that disables the connector (forces the sweep fallback).
pub const DISABLE_ENV: &str = "LIFECYCLE_TOP_NO_PROC_EVENTS";

/// How the collector finds the tree's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Kernel process events: every fork of a member is seen when it happens.
    ProcEvents,
    /// /proc scans plus a sweep by process group / session and start time; `why` says why
    /// the connector is not used.
    Sweep { why: String },
}

impl Discovery {
    /// One line for a summary or report.
    pub fn describe(&self) -> String {
        match self {
            Discovery::ProcEvents => "process discovery: kernel process events (cn_proc): every \
                 fork in the tree is seen as it happens"
                .into(),
            Discovery::Sweep { why } => format!(
                "process discovery: /proc scan + sweep by process group/session and start time \
                 (process events unavailable: {why}); a process that left the tree's group and \
                 session and was reparented before a scan can be missed"
            ),
        }
    }
}

/// The method of the collector attached last in this process (`None` before any attach).
static LAST: Mutex<Option<Discovery>> = Mutex::new(None);

pub(crate) fn set_last(d: Discovery) {
    *LAST.lock().unwrap_or_else(PoisonError::into_inner) = Some(d);
}

/// How the collector attached last in this process finds processes.
pub fn last_discovery() -> Option<Discovery> {
    LAST.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The line headless and `check` print with their verdict.
pub fn summary_line() -> String {
    last_discovery().map_or_else(
        || "process discovery: not attached".to_string(),
        |d| d.describe(),
    )
}

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;
const EV_HDR: usize = 16;
/// Forks of processes not (yet) members, remembered so a member seeded late (found by a scan
/// after the subscription) still gets the children it forked meanwhile. Capped.
const MAX_STRANGERS: usize = 65_536;

#[derive(Default)]
struct Shared {
    members: HashSet<i32>,
    /// child tgid -> (parent tgid, fork time in boot-clock ns), for forks whose parent was
    /// not a member. The time tells a child of this parent from a child of an older process
    /// that had the same pid (pids wrap at 32,768 by default): only forks made after the
    /// member started are its children.
    strangers: HashMap<i32, (i32, u64)>,
    /// New members since the collector last asked: (pid, start time).
    new: Vec<(i32, u64)>,
    /// Events were lost (ENOBUFS): the collector must list /proc in full.
    lost: bool,
    /// `recvmmsg`'s slots, used under the lock by whichever thread drains the socket.
    buf: Vec<u8>,
}

impl Shared {
    /// `pid`, started at `start_ns` (boot clock), is a member.
    fn join(&mut self, pid: i32, start_ns: u64) {
        if !self.members.insert(pid) {
            return;
        }
        if let Ok(start) = procfs::read_start_time(pid) {
            self.new.push((pid, start));
        }
        self.adopt_children(pid, start_ns);
    }

    /// The children member `pid` (started at `start_ns`) forked before it was known to be
    /// a member join too; forks older than its start were another process's with its pid.
    fn adopt_children(&mut self, pid: i32, start_ns: u64) {
        let kids: Vec<(i32, u64)> = self
            .strangers
            .iter()
            .filter(|(_, (p, at))| *p == pid && *at >= start_ns)
            .map(|(c, (_, at))| (*c, *at))
            .collect();
        for (k, at) in kids {
            self.strangers.remove(&k);
            self.join(k, at);
        }
    }
}

/// A subscription to process events, with its reader thread (stopped on drop).
pub struct ProcEvents {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    sock: Arc<OwnedFd>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProcEvents {
    /// Subscribe (root only) and start the reader thread. Fails with the reason when the
    /// connector is unavailable or disabled by [`DISABLE_ENV`].
    pub fn subscribe() -> io::Result<ProcEvents> {
        if std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(io::Error::other(format!("disabled by {DISABLE_ENV}")));
        }
        // Listening needs CAP_NET_ADMIN; without it some kernels accept the subscription and
        // then send nothing, so an unprivileged run does not even try.
        if !rustix::process::geteuid().is_root() {
            return Err(io::Error::other(
                "not root (the connector needs CAP_NET_ADMIN)",
            ));
        }
        let sock = Arc::new(open_socket()?);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2, sock2) = (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&sock));
        std::thread::Builder::new()
            .name("lt-procevents".into())
            .spawn(move || read_loop(&sock2, s2, stop2))?;
        Ok(ProcEvents { shared, stop, sock })
    }

    /// `pid`, started at `start_time` (clock ticks since boot, /proc/PID/stat field 22), is
    /// a member (found by a scan, or the target): its future forks are followed, and those
    /// it made since it started.
    pub fn seed(&self, pid: i32, start_time: u64) {
        let start_ns = ticks_to_ns(start_time);
        let mut s = lock(&self.shared);
        if s.members.insert(pid) {
            s.adopt_children(pid, start_ns);
        }
    }

    /// Members that joined since the last call, with their start times, and whether events
    /// were lost meanwhile (then a full scan is due).
    ///
    /// Every event the kernel queued before this call is applied first (read here, not
    /// left for the reader thread's next batch): a refresh that judges the tree (the final
    /// audit) sees each fork made before it, however late the reader is on a loaded machine.
    pub fn take_new(&self) -> (Vec<(i32, u64)>, bool) {
        let mut s = lock(&self.shared);
        drain_locked(&self.sock, &mut s);
        let lost = std::mem::take(&mut s.lost);
        (std::mem::take(&mut s.new), lost)
    }
}

impl Drop for ProcEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the returned fd is owned right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_CONNECTOR,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = CN_IDX_PROC;
    addr.nl_pid = 0;
    // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // A big receive buffer (forced as root), so a fork storm is not lost; and a timeout so
    // the reader notices a stop request.
    let rcvbuf: libc::c_int = 8 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setsockopt with pointers to live locals and their exact sizes.
    unsafe {
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    attach_filter(fd);
    // Subscribe: nlmsghdr + cn_msg + PROC_CN_MCAST_LISTEN.
    let total = NLMSG_HDR + CN_MSG_HDR + 4;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: sending `msg.len()` bytes from a live buffer on our socket.
    let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// A socket filter (classic BPF, run in the kernel as each event is sent) passing only what
/// [`apply_event`] uses: forks of processes (not threads) and exits of processes. The
/// connector reports every event on the system, so on a busy machine (a build forking
/// compilers, each starting threads) most events are thread forks, thread exits, execs and
/// comm changes: dropped in the kernel, they never wake the reader. Best effort: without the
/// filter the reader drops them itself.
fn attach_filter(fd: std::os::fd::RawFd) {
    // Classic BPF opcodes (linux/filter.h): BPF_LD | BPF_W | BPF_ABS, and so on.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x05 | 0x10;
    const JEQ_X: u16 = 0x05 | 0x10 | 0x08;
    const TAX: u16 = 0x07;
    const RET_K: u16 = 0x06;
    // Absolute loads read big-endian: compare with the events' native bytes read that way.
    let be = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let ev = (NLMSG_HDR + CN_MSG_HDR) as u32;
    let data = ev + EV_HDR as u32;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        op(LD_W_ABS, 0, 0, ev),               // 0: what
        op(JEQ_K, 2, 0, be(PROC_EVENT_FORK)), // 1: fork -> 4
        op(JEQ_K, 5, 0, be(PROC_EVENT_EXIT)), // 2: exit -> 8
        op(RET_K, 0, 0, 0),                   // 3: drop
        op(LD_W_ABS, 0, 0, data + 8),         // 4: child_pid
        op(TAX, 0, 0, 0),                     // 5
        op(LD_W_ABS, 0, 0, data + 12),        // 6: child_tgid
        op(JEQ_X, 5, 4, 0),                   // 7: a process -> 13, a thread -> 12
        op(LD_W_ABS, 0, 0, data),             // 8: process_pid
        op(TAX, 0, 0, 0),                     // 9
        op(LD_W_ABS, 0, 0, data + 4),         // 10: process_tgid
        op(JEQ_X, 1, 0, 0),                   // 11: a process -> 13
        op(RET_K, 0, 0, 0),                   // 12: drop
        op(RET_K, 0, 0, u32::MAX),            // 13: pass
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, both live for the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "process events: no socket filter ({}); events are filtered in the reader",
            io::Error::last_os_error()
        );
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    u32_at(b, off).map(|v| v as i32)
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_ne_bytes)
}

/// Clock ticks since boot (a start time) in nanoseconds, rounded down to the tick.
fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    ticks.saturating_mul(1_000_000_000 / hz)
}

/// Boot clock minus monotonic clock, ns: what turns an event's timestamp (`ktime_get_ns`,
/// monotonic) into the clock start times count on (boot time, which includes suspend).
fn boot_offset_ns() -> u64 {
    use rustix::time::{ClockId, clock_gettime};
    let ns = |t: rustix::time::Timespec| {
        (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
    };
    ns(clock_gettime(ClockId::Boottime)).saturating_sub(ns(clock_gettime(ClockId::Monotonic)))
}

/// How long the reader sleeps after draining the socket before it waits again: the events of
/// that time (every fork and exit on the machine that passes the filter) are then read in one
/// wake-up instead of one each. On a build-heavy machine that is hundreds of wake-ups a
/// second, each a context switch: most of the reader's cost. The collector takes new members
/// once per refresh (hundreds of ms), so a short delay changes nothing it shows; the child's
/// start time is read that much later (a pid is not reused within it: the kernel would have
/// to cycle through every other pid first), and the 8 MiB receive buffer holds far more than
/// this window's events.
const BATCH: Duration = Duration::from_millis(25);

/// Datagrams taken per `recvmmsg` (each one event, under 100 bytes; a slot holds 1 KiB).
const SLOTS: usize = 64;
const SLOT_BYTES: usize = 1024;

fn read_loop(sock: &OwnedFd, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    // Wait until a datagram is queued without taking it, then take every one queued under
    // the lock (one `recvmmsg` per SLOTS): datagrams leave the socket only under the lock,
    // so `take_new`'s own drain and this one never apply events out of order or miss one
    // held by the other. Then pause `BATCH` unless the slots ran out.
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 1000) };
        if n <= 0 {
            continue; // timeout (look at `stop`) or EINTR
        }
        match drain_locked(sock, &mut lock(&shared)) {
            Some(true) => {}
            Some(false) => std::thread::sleep(BATCH),
            // The socket failed (said in the log, the collector scans /proc): retry slower.
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Takes every datagram queued now (at most 64 batches) and applies it; the caller holds
/// the lock. `Some(true)` when the last batch filled every slot (more may be queued),
/// `None` when the socket failed (events were lost).
fn drain_locked(sock: &OwnedFd, s: &mut Shared) -> Option<bool> {
    let mut buf = std::mem::take(&mut s.buf);
    buf.resize(SLOTS * SLOT_BYTES, 0);
    let mut full = false;
    for _ in 0..64 {
        let got = match recv_batch(sock, &mut buf) {
            Ok(got) => got,
            Err(e) => {
                full = false;
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS) => s.lost = true,
                    _ => {
                        tracing::warn!("process events: {e}; falling back to /proc scans");
                        s.lost = true;
                        s.buf = buf;
                        return None;
                    }
                }
                break;
            }
        };
        let offset = boot_offset_ns();
        for (i, &len) in got.iter().enumerate() {
            let slot = &buf[i * SLOT_BYTES..(i + 1) * SLOT_BYTES];
            handle_datagram(slot.get(..len).unwrap_or_default(), offset, s);
        }
        full = got.len() == SLOTS;
        if !full {
            break;
        }
    }
    s.buf = buf;
    Some(full)
}

/// One non-blocking `recvmmsg` into `buf`'s slots: the datagrams queued now (at most
/// [`SLOTS`]), as their lengths; EAGAIN when there is none.
fn recv_batch(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero iovec/mmsghdr is valid (null pointers, zero lengths); each is
    // pointed at its own slot of `buf` below.
    let mut iov: [libc::iovec; SLOTS] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
    for (i, (v, m)) in iov.iter_mut().zip(msgs.iter_mut()).enumerate() {
        v.iov_base = buf[i * SLOT_BYTES..].as_mut_ptr().cast();
        v.iov_len = SLOT_BYTES;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs` holds SLOTS headers, each pointing at one live iovec, which points at
    // SLOT_BYTES of `buf`; all outlive the call. No timeout.
    let n = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            SLOTS as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(msgs[..n as usize]
        .iter()
        .map(|m| (m.msg_len as usize).min(SLOT_BYTES))
        .collect())
}

/// Parse one datagram (one or more netlink messages) and apply its events.
fn handle_datagram(data: &[u8], offset: u64, s: &mut Shared) {
    let mut off = 0;
    while let Some(len) = u32_at(data, off) {
        let len = len as usize;
        if len < NLMSG_HDR || off + len > data.len() {
            break;
        }
        let msg = &data[off + NLMSG_HDR..off + len];
        if u32_at(msg, 0) == Some(CN_IDX_PROC) && u32_at(msg, 4) == Some(CN_VAL_PROC) {
            let ev = msg.get(CN_MSG_HDR..).unwrap_or_default();
            apply_event(ev, offset, s);
        }
        // NLMSG_ALIGN
        off += (len + 3) & !3;
    }
}

/// Applies one event; `offset` turns its monotonic timestamp into boot-clock time.
fn apply_event(ev: &[u8], offset: u64, s: &mut Shared) {
    let Some(what) = u32_at(ev, 0) else { return };
    let at = u64_at(ev, 8).unwrap_or(0).saturating_add(offset);
    let d = EV_HDR;
    match what {
        PROC_EVENT_FORK => {
            let (Some(parent_tgid), Some(child_pid), Some(child_tgid)) =
                (i32_at(ev, d + 4), i32_at(ev, d + 8), i32_at(ev, d + 12))
            else {
                return;
            };
            if child_pid != child_tgid {
                return; // a new thread, not a process
            }
            if s.members.contains(&parent_tgid) {
                s.join(child_tgid, at);
            } else if s.strangers.len() < MAX_STRANGERS {
                s.strangers.insert(child_tgid, (parent_tgid, at));
            }
        }
        PROC_EVENT_EXIT => {
            let (Some(pid), Some(tgid)) = (i32_at(ev, d), i32_at(ev, d + 4)) else {
                return;
            };
            if pid == tgid {
                s.members.remove(&tgid);
                s.strangers.remove(&tgid);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fork_event(parent: i32, child: i32, thread: bool, at_ns: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&PROC_EVENT_FORK.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&at_ns.to_ne_bytes());
        for x in [
            parent,
            parent,
            if thread { child + 1 } else { child },
            child,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        v
    }

    #[test]
    fn forks_of_members_join_and_late_seeds_pick_up_their_children() {
        let mut s = Shared::default();
        let me = std::process::id() as i32;
        s.members.insert(1 << 29);
        // A fork by a stranger whose parent becomes a member later (our own pid: it is
        // alive, so its start time reads).
        apply_event(&fork_event(1 << 28, me, false, 5_000), 0, &mut s);
        assert!(s.new.is_empty() && s.strangers.contains_key(&me));
        s.join(1 << 28, 4_000);
        assert!(s.members.contains(&me));
        assert_eq!(s.new.iter().filter(|(p, _)| *p == me).count(), 1);
        // Threads are not processes.
        apply_event(&fork_event(me, 1 << 27, true, 6_000), 0, &mut s);
        assert!(!s.members.contains(&((1 << 27) + 1)) && !s.members.contains(&(1 << 27)));
    }

    #[test]
    fn a_fork_older_than_the_member_was_another_process_with_its_pid() {
        // Pid 1<<28 forked a long-lived child, exited, and the pid was reused by a new
        // process that is then seeded: the old child is not the new member's.
        let mut s = Shared::default();
        apply_event(&fork_event(1 << 28, 1 << 26, false, 1_000), 0, &mut s);
        s.join(1 << 28, 2_000);
        assert!(!s.members.contains(&(1 << 26)), "a stale child was adopted");
        assert!(s.strangers.contains_key(&(1 << 26)));
        // The boot-clock offset is added to the event's monotonic stamp.
        let mut s = Shared::default();
        apply_event(&fork_event(1 << 28, 1 << 26, false, 1_000), 5_000, &mut s);
        s.join(1 << 28, 2_000);
        assert!(s.members.contains(&(1 << 26)));
        assert_eq!(
            ticks_to_ns(3),
            3 * (1_000_000_000 / rustix::param::clock_ticks_per_second())
        );
    }
}
