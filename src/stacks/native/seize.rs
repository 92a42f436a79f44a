//! The opt-in ptrace fallback for ONE thread: PTRACE_SEIZE + PTRACE_INTERRUPT, copy its
//! registers and stack, detach at once; the unwinding happens after the thread runs again.
//! The ptrace work runs in a forked helper process with a watchdog, because only killing
//! the tracer is a guaranteed way out of a stuck ptrace call: when a tracer dies the kernel
//! detaches its tracees and, since we SEIZE (no SIGSTOP is ever sent) and never set
//! PTRACE_O_EXITKILL, a thread in an interrupt stop simply resumes. The helper has
//! PR_SET_PDEATHSIG(SIGKILL), so lifecycle-top being SIGKILLed mid-capture kills the helper
//! too and the target is never left stopped. Between fork and _exit the helper only makes
//! raw syscalls (async-signal-safe): all memory it touches is mapped before the fork.

use std::time::{Duration, Instant};

/// Registers and stack of a thread copied while it was briefly stopped.
#[derive(Debug)]
pub struct Captured {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub stack: Vec<u8>,
    /// How long the thread was stopped (from the stop being seen to the detach).
    pub paused: Duration,
}

const PAGE: usize = 4096;
/// Stack copied by the helper: 16 pages (one iovec each, so a read stops cleanly at the end
/// of the stack mapping instead of failing whole). 64 KiB holds typical blocked stacks and
/// keeps the pause near 0.1 ms; 256 KiB measured 0.26 ms. Deeper stacks show as truncated.
const PAGES: usize = 16;
const STACK_BYTES: usize = PAGE * PAGES;

/// Why a thread must not be interrupted, if it must not: a thread in D state (the stop would
/// only land when it wakes, holding our helper for nobody knows how long), or a thread that
/// already has a tracer (a debugger: never fight it).
pub fn refusal(k: &crate::stacks::KernelView) -> Option<String> {
    if k.state == crate::model::RunState::DiskSleep {
        return Some("in uninterruptible sleep (D): never interrupted, kernel view only".into());
    }
    if k.tracer_pid != 0 {
        return Some(format!(
            "already traced by pid {}: not touched (detach the debugger to see native frames)",
            k.tracer_pid
        ));
    }
    None
}

/// Written by the helper into memory shared with us.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Header {
    /// 0 = not started, 1 = seized, 2 = stopped, 3 = registers read, 4 = done (detached).
    stage: u64,
    errno: u64,
    ip: u64,
    sp: u64,
    bp: u64,
    nbytes: u64,
    paused_ns: u64,
}

fn errno() -> u64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs in the forked helper. Only raw syscalls; never returns.
///
/// # Safety
/// `hdr` must point to a shared `Header` followed by `STACK_BYTES` writable bytes.
#[cfg(target_arch = "x86_64")]
unsafe fn helper(parent: libc::pid_t, pid: i32, tid: i32, hdr: *mut Header, hold_ms: u64) -> ! {
    // SAFETY (whole body): raw syscalls on memory mapped before the fork, as the contract says.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(90);
        }
        let h = &mut *hdr;
        let null = std::ptr::null_mut::<libc::c_void>();
        // Options 0: no EXITKILL, so our death detaches and resumes the thread.
        if libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) != 0 {
            h.errno = errno();
            libc::_exit(10);
        }
        h.stage = 1;
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) != 0 {
            h.errno = errno();
            libc::_exit(11);
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
            h.errno = errno();
            libc::_exit(12);
        }
        let stopped_at = now_ns();
        h.stage = 2;
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        if libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            null,
            &mut regs as *mut _ as *mut libc::c_void,
        ) != 0
        {
            h.errno = errno();
            libc::ptrace(libc::PTRACE_DETACH, tid, null, null);
            libc::_exit(13);
        }
        h.stage = 3;
        (h.ip, h.sp, h.bp) = (regs.rip, regs.rsp, regs.rbp);
        // One iovec per page: the first up to the next page boundary.
        let data = (hdr as *mut u8).add(std::mem::size_of::<Header>());
        let first = PAGE - (regs.rsp as usize % PAGE);
        let mut local: [libc::iovec; PAGES] = std::mem::zeroed();
        let mut remote: [libc::iovec; PAGES] = std::mem::zeroed();
        let (mut off, mut n) = (0usize, 0usize);
        while n < PAGES && off < STACK_BYTES {
            let len = if n == 0 { first } else { PAGE }.min(STACK_BYTES - off);
            local[n] = libc::iovec {
                iov_base: data.add(off) as *mut libc::c_void,
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
        libc::_exit(0)
    }
}

/// Interrupt `tid` of `pid` for as short as possible and copy its registers and stack.
/// Bounded by `budget`: past it the helper is SIGKILLed (the kernel then detaches and the
/// thread resumes). Errors are one line with the reason and a remedy.
#[cfg(target_arch = "x86_64")]
/// `hold` keeps the thread stopped that much longer (test hook, zero in real use).
pub fn capture(pid: i32, tid: i32, budget: Duration, hold: Duration) -> Result<Captured, String> {
    let hold_ms = hold.as_millis() as u64;
    let size = std::mem::size_of::<Header>() + STACK_BYTES;
    // SAFETY: anonymous shared mapping, checked for MAP_FAILED, unmapped by `Shared::drop`.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(format!(
            "mmap for the seize helper failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let shared = Shared { mem, size };
    let hdr = mem as *mut Header;
    // SAFETY: getpid/fork are plain syscalls; the child only runs `helper` (raw syscalls).
    let parent = unsafe { libc::getpid() };
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!(
            "fork of the seize helper failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if child == 0 {
        // SAFETY: `hdr` is the shared mapping of `size` bytes made above.
        unsafe { helper(parent, pid, tid, hdr, hold_ms) }
    }
    let code = wait_bounded(child, budget);
    // SAFETY: the helper has exited (reaped above); the mapping is ours alone now.
    let h: Header = unsafe { *hdr };
    let _keep = &shared;
    let code = match code {
        Some(c) => c,
        None => {
            return Err(format!(
                "thread {tid}: ptrace capture exceeded {} ms (stage {}); helper killed, thread resumed",
                budget.as_millis(),
                h.stage
            ));
        }
    };
    if code != 0 || h.stage != 4 {
        let why = std::io::Error::from_raw_os_error(h.errno as i32);
        let remedy = match h.errno as i32 {
            libc::EPERM => {
                " (ptrace refused: run as root or the target's user; check kernel.yama.ptrace_scope)"
            }
            libc::ESRCH => " (thread exited)",
            _ => "",
        };
        return Err(format!(
            "thread {tid}: ptrace seize failed at stage {}: {why}{remedy}",
            h.stage
        ));
    }
    let n = (h.nbytes as usize).min(STACK_BYTES);
    // SAFETY: the helper wrote `n` <= STACK_BYTES bytes after the header in our mapping.
    let stack = unsafe {
        std::slice::from_raw_parts((mem as *const u8).add(std::mem::size_of::<Header>()), n)
    }
    .to_vec();
    Ok(Captured {
        ip: h.ip,
        sp: h.sp,
        bp: h.bp,
        stack,
        paused: Duration::from_nanos(h.paused_ns),
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub fn capture(
    _pid: i32,
    _tid: i32,
    _budget: Duration,
    _hold: Duration,
) -> Result<Captured, String> {
    Err("ptrace capture is implemented for x86_64 only in this build".into())
}

struct Shared {
    mem: *mut libc::c_void,
    size: usize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: `mem` came from mmap with this size and is not used after drop.
        unsafe { libc::munmap(self.mem, self.size) };
    }
}

/// Reap `child` within `budget`; past it SIGKILL and reap. `None` means it was killed.
fn wait_bounded(child: libc::pid_t, budget: Duration) -> Option<i32> {
    let deadline = Instant::now() + budget;
    let mut status = 0;
    let mut pause = Duration::from_micros(20);
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            });
        }
        if r < 0 {
            // ECHILD: someone else reaped it (a wildcard waitpid elsewhere in the process).
            // It has exited, so the shared header's stage tells whether it finished.
            return Some(0);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill + blocking reap of our own child, which SIGKILL always ends.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_seize_is_ever_used() {
        // A tracer killed after an ATTACH leaves the target in group-stop: forbid it.
        let src = include_str!("seize.rs");
        let forbidden = ["PTRACE_", "ATTACH"].concat();
        assert!(!src.contains(&forbidden));
    }
}
