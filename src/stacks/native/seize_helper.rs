//! The code that runs in the forked seize helper, and the shared-memory layout it fills.
//! Between fork and _exit only raw syscalls run (async-signal-safe: the parent may have had
//! other threads holding locks at fork time); all memory touched was mapped before the fork.
//! For each thread in turn: PTRACE_SEIZE (options 0: no EXITKILL, so our death detaches and
//! resumes the thread), PTRACE_INTERRUPT, wait for the stop, GETREGS, copy the stack,
//! PTRACE_DETACH. A failure on one thread is recorded and the helper goes on to the next.

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

/// State letter of a thread read with raw syscalls (`stat` is a NUL-terminated path made
/// before the fork). `None` if unreadable.
///
/// # Safety
/// `stat` must point to a NUL-terminated string.
unsafe fn state_of(stat: *const libc::c_char) -> Option<u8> {
    let mut buf = [0u8; 512];
    // SAFETY: open/read/close on a valid path and a local buffer: async-signal-safe.
    let n = unsafe {
        let fd = libc::open(stat, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// Seize, stop, copy and detach one thread into `h` and `data`.
///
/// # Safety
/// `data` must point to `STACK_BYTES` writable bytes.
#[cfg(target_arch = "x86_64")]
unsafe fn one(
    pid: i32,
    tid: i32,
    stat: *const libc::c_char,
    h: &mut Header,
    data: *mut u8,
    hold_ms: u64,
) {
    // SAFETY (whole body): raw syscalls on memory the caller vouches for.
    unsafe {
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
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) != 0 {
            h.errno = errno();
            libc::ptrace(libc::PTRACE_DETACH, tid, null, null);
            return;
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
            h.errno = errno();
            return;
        }
        let stopped_at = now_ns();
        h.stage = 2;
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        let regs_ptr = &mut regs as *mut libc::user_regs_struct as *mut libc::c_void;
        if libc::ptrace(libc::PTRACE_GETREGS, tid, null, regs_ptr) != 0 {
            h.errno = errno();
            libc::ptrace(libc::PTRACE_DETACH, tid, null, null);
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
        if hold_ms > 0 {
            let ts = libc::timespec {
                tv_sec: (hold_ms / 1000) as i64,
                tv_nsec: ((hold_ms % 1000) * 1_000_000) as i64,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
        libc::ptrace(libc::PTRACE_DETACH, tid, null, null);
        h.paused_ns = now_ns().saturating_sub(stopped_at);
        h.stage = 4;
    }
}

/// The helper's whole life. Never returns.
///
/// # Safety
/// `mem` must be the shared mapping laid out by `layout(tids.len())`; `tids` and `stats`
/// (one NUL-terminated /proc/PID/task/TID/stat path per tid) were allocated before the fork.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn run(
    parent: libc::pid_t,
    pid: i32,
    tids: &[i32],
    stats: &[std::ffi::CString],
    mem: *mut u8,
    hold_ms: u64,
) -> ! {
    // SAFETY (whole body): raw syscalls and writes inside the mapping, as the contract says.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
            one(pid, tid, stat.as_ptr(), &mut *headers.add(i), data, hold_ms);
        }
        ctrl.current.store(tids.len() as u64, Ordering::Release);
        libc::_exit(0)
    }
}
