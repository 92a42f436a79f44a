//! The code that runs in the forked seize helper, and the shared-memory layout it fills.
//! Between fork and _exit only raw syscalls run (async-signal-safe: the parent may have had
//! other threads holding locks at fork time); all memory touched was mapped before the fork.
//! For each thread in turn: check the pid still names the expected process, PTRACE_SEIZE
//! (options 0: no EXITKILL, so our death detaches and resumes the thread), PTRACE_INTERRUPT,
//! wait for the stop, GETREGS, copy the stack, PTRACE_DETACH. The stop waited for may be a
//! signal-delivery-stop (a signal arrived between SEIZE and the interrupt's trap): then the
//! detach re-injects that signal, or the target would never see it (a teardown SIGTERM
//! lost). A failure on one thread is recorded and the helper goes on to the next.

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) const PAGE: usize = 4096;
/// Stack copied per thread: 16 pages (one iovec each, so a read stops cleanly at the end of
/// the stack mapping instead of failing whole). 64 KiB holds typical blocked stacks and keeps
/// the pause near 0.1 ms; 256 KiB measured 0.26 ms. Deeper stacks show as truncated.
pub(super) const PAGES: usize = 16;
pub(super) const STACK_BYTES: usize = PAGE * PAGES;

/// Progress, read by the parent's watchdog while the helper runs.
#[repr(C)]
pub(super) struct Control {
    /// Index of the thread being worked on (== count when all are done).
    pub current: AtomicU64,
    /// CLOCK_MONOTONIC ns when work on `current` started.
    pub started_ns: AtomicU64,
}

/// Per-thread result, written by the helper.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(super) struct Header {
    /// 0 = not started, 1 = seized, 2 = stopped, 3 = registers read, 4 = done (detached).
    pub stage: u64,
    pub errno: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub nbytes: u64,
    pub paused_ns: u64,
    /// Signal the thread was stopped for (signal-delivery-stop) and that the detach
    /// re-injected; 0 when the stop was our interrupt's event stop.
    pub signal: u64,
}

/// What the helper is told besides the threads: identity check and test hooks.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Plan {
    /// Expected start time of the process (stat field 22); 0 = do not check.
    pub expect_start_time: u64,
    /// Test hook: stay seized (not yet interrupted) up to this long, so a signal can land
    /// there (ends early when the thread stops or dies).
    pub hold_seized_ms: u64,
    /// Test hook: stay stopped this long before detaching.
    pub hold_stopped_ms: u64,
}

/// Bytes of shared memory for `n` threads: control, headers, then page-aligned stacks.
pub(super) fn layout(n: usize) -> (usize, usize) {
    let head = std::mem::size_of::<Control>() + n * std::mem::size_of::<Header>();
    let stacks_at = head.div_ceil(PAGE) * PAGE;
    (stacks_at, stacks_at + n * STACK_BYTES)
}

fn errno() -> u64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64
}

pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Errno-like code recorded when the helper itself found the thread in D state just before
/// seizing it (the parent checked too, a little earlier).
pub(super) const FOUND_IN_D: u64 = 1 << 32;
/// Errno-like code recorded when /proc/PID/stat showed another start time (or none) right
/// before the seize: the pid now names another process, which must not be touched.
pub(super) const PID_REUSED: u64 = 1 << 33;

/// `PTRACE_EVENT_STOP` of linux/ptrace.h (not exported by the libc crate for glibc): the
/// event of the stop PTRACE_INTERRUPT (or a group-stop) causes in a seized thread.
const PTRACE_EVENT_STOP: i32 = 128;

/// Field `n` (numbered as in proc(5), so `n >= 3`) of a stat line. Fields start after the
/// LAST ')' since comm may contain spaces and parentheses. Allocation-free for the helper.
pub(super) fn stat_field(text: &[u8], n: usize) -> Option<&[u8]> {
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 1..)?
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|f| !f.is_empty())
        .nth(n.checked_sub(3)?)
}

/// Decimal number, allocation-free; `None` on anything else or overflow.
pub(super) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Read a stat file with raw syscalls into `buf`; the filled part, `None` if unreadable.
///
/// # Safety
/// `path` must point to a NUL-terminated string.
unsafe fn read_stat(path: *const libc::c_char, buf: &mut [u8; 512]) -> Option<&[u8]> {
    // SAFETY: open/read/close on a valid path and a local buffer: async-signal-safe.
    let n = unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    buf.get(..usize::try_from(n).ok()?)
}

/// State letter of a thread (`stat` is its /proc/PID/task/TID/stat path). `None` if unreadable.
///
/// # Safety
/// `stat` must point to a NUL-terminated string.
unsafe fn state_of(stat: *const libc::c_char) -> Option<u8> {
    let mut buf = [0u8; 512];
    // SAFETY: forwarded contract.
    let text = unsafe { read_stat(stat, &mut buf) }?;
    stat_field(text, 3)?.first().copied()
}

/// Start time (field 22) of the process whose /proc/PID/stat path is `stat`.
///
/// # Safety
/// `stat` must point to a NUL-terminated string.
unsafe fn start_time_of(stat: *const libc::c_char) -> Option<u64> {
    let mut buf = [0u8; 512];
    // SAFETY: forwarded contract.
    let text = unsafe { read_stat(stat, &mut buf) }?;
    parse_u64(stat_field(text, 22)?)
}

fn sleep_ms(ms: u64) {
    if ms == 0 {
        return;
    }
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: nanosleep reads a local timespec; async-signal-safe.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// Test hook: stay seized (not interrupted) up to `ms`, ending early once the thread is in
/// a ptrace stop (a signal arrived) or gone, so a test never waits the whole hold out.
///
/// # Safety
/// `stat` must point to a NUL-terminated string.
unsafe fn hold_seized(stat: *const libc::c_char, ms: u64) {
    let until = now_ns().saturating_add(ms.saturating_mul(1_000_000));
    while ms > 0 && now_ns() < until {
        // SAFETY: forwarded contract.
        match unsafe { state_of(stat) } {
            Some(b't' | b'Z' | b'X') | None => return,
            _ => sleep_ms(1),
        }
    }
}

/// Seize, stop, copy and detach one thread into `h` and `data`.
///
/// # Safety
/// `data` must point to `STACK_BYTES` writable bytes; `stat` and `proc_stat` to
/// NUL-terminated paths.
#[cfg(target_arch = "x86_64")]
unsafe fn one(
    pid: i32,
    tid: i32,
    stat: *const libc::c_char,
    proc_stat: *const libc::c_char,
    h: &mut Header,
    data: *mut u8,
    plan: Plan,
) {
    // SAFETY (whole body): raw syscalls on memory the caller vouches for.
    unsafe {
        // The pid may have been reused since the snapshot named it: compare the start time
        // as late as possible, right before the seize.
        if plan.expect_start_time != 0 && start_time_of(proc_stat) != Some(plan.expect_start_time) {
            h.errno = PID_REUSED;
            return;
        }
        // Never interrupt a thread in D: the stop would only land when it wakes.
        if state_of(stat) == Some(b'D') {
            h.errno = FOUND_IN_D;
            return;
        }
        let null = std::ptr::null_mut::<libc::c_void>();
        if libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) != 0 {
            h.errno = errno();
            return;
        }
        h.stage = 1;
        hold_seized(stat, plan.hold_seized_ms);
        // On failure there is no stop to detach from (DETACH needs a stopped tracee); the
        // helper's exit detaches it.
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) != 0 {
            h.errno = errno();
            return;
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
            h.errno = errno();
            return;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            // Exited meanwhile (e.g. the process was killed): nothing left to detach.
            h.errno = libc::ESRCH as u64;
            return;
        }
        // A stop that is not our event stop is a signal-delivery-stop (no ptrace options
        // are set, so no other events exist): the signal must go back with the detach.
        let resig = if libc::WIFSTOPPED(status) && (status >> 16) != PTRACE_EVENT_STOP {
            libc::WSTOPSIG(status)
        } else {
            0
        };
        h.signal = resig as u64;
        let detach = || {
            libc::ptrace(
                libc::PTRACE_DETACH,
                tid,
                null,
                resig as usize as *mut libc::c_void,
            )
        };
        let stopped_at = now_ns();
        h.stage = 2;
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        let regs_ptr = &mut regs as *mut libc::user_regs_struct as *mut libc::c_void;
        if libc::ptrace(libc::PTRACE_GETREGS, tid, null, regs_ptr) != 0 {
            h.errno = errno();
            detach();
            return;
        }
        h.stage = 3;
        (h.ip, h.sp, h.bp) = (regs.rip, regs.rsp, regs.rbp);
        // One iovec per page, the first up to the next page boundary.
        let first = PAGE - (regs.rsp as usize % PAGE);
        let mut local: [libc::iovec; PAGES] = std::mem::zeroed();
        let mut remote: [libc::iovec; PAGES] = std::mem::zeroed();
        let (mut off, mut n) = (0usize, 0usize);
        while n < PAGES && off < STACK_BYTES {
            let len = if n == 0 { first } else { PAGE }.min(STACK_BYTES - off);
            local[n] = libc::iovec {
                iov_base: data.add(off).cast(),
                iov_len: len,
            };
            remote[n] = libc::iovec {
                iov_base: (regs.rsp as usize + off) as *mut libc::c_void,
                iov_len: len,
            };
            off += len;
            n += 1;
        }
        let got =
            libc::process_vm_readv(pid, local.as_ptr(), n as u64, remote.as_ptr(), n as u64, 0);
        h.nbytes = got.max(0) as u64;
        sleep_ms(plan.hold_stopped_ms);
        if detach() != 0 {
            // Only fails if the thread died meanwhile; then nothing is left stopped.
            h.errno = errno();
        }
        h.paused_ns = now_ns().saturating_sub(stopped_at);
        h.stage = 4;
    }
}

/// The helper's whole life. Never returns.
///
/// # Safety
/// `mem` must be the shared mapping laid out by `layout(tids.len())`; `tids`, `stats` (one
/// NUL-terminated /proc/PID/task/TID/stat path per tid) and `proc_stat` (/proc/PID/stat)
/// were allocated before the fork.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn run(
    parent: libc::pid_t,
    pid: i32,
    tids: &[i32],
    stats: &[std::ffi::CString],
    proc_stat: &std::ffi::CStr,
    mem: *mut u8,
    plan: Plan,
) -> ! {
    // SAFETY (whole body): raw syscalls and writes inside the mapping, as the contract says.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // A process group of its own (the parent sets it too, whichever runs first): the
        // terminal's Ctrl-Z (SIGTSTP) or Ctrl-C goes to lifecycle-top's group and must never
        // stop or kill the helper between an interrupt and its detach.
        libc::setpgid(0, 0);
        if libc::getppid() != parent {
            libc::_exit(90);
        }
        let ctrl = &*(mem as *const Control);
        let headers = mem.add(std::mem::size_of::<Control>()) as *mut Header;
        let (stacks_at, _) = layout(tids.len());
        for (i, (&tid, stat)) in tids.iter().zip(stats).enumerate() {
            ctrl.started_ns.store(now_ns(), Ordering::Release);
            ctrl.current.store(i as u64, Ordering::Release);
            let data = mem.add(stacks_at + i * STACK_BYTES);
            let h = &mut *headers.add(i);
            one(pid, tid, stat.as_ptr(), proc_stat.as_ptr(), h, data, plan);
        }
        ctrl.current.store(tids.len() as u64, Ordering::Release);
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_comm() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99 0 0\n";
        assert_eq!(stat_field(line, 3), Some(&b"S"[..]));
        assert_eq!(stat_field(line, 22).and_then(parse_u64), Some(99));
        assert_eq!(stat_field(line, 2), None);
        assert_eq!(stat_field(b"no paren", 3), None);
        assert_eq!(stat_field(line, 60), None);
    }

    #[test]
    fn parses_decimal_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b""), None);
    }

    #[test]
    fn reads_own_start_time_like_collect() {
        let path = std::ffi::CString::new("/proc/self/stat").expect("no NUL");
        // SAFETY: a NUL-terminated path.
        let ours = unsafe { start_time_of(path.as_ptr()) };
        let collect = crate::collect::procfs::read_start_time(std::process::id() as i32).ok();
        assert!(ours.is_some());
        assert_eq!(ours, collect);
    }
}
