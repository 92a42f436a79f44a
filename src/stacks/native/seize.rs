//! The opt-in ptrace fallback: PTRACE_SEIZE + PTRACE_INTERRUPT of one thread at a time, copy
//! its registers and stack, detach at once; unwinding happens after the thread runs again.
//! The ptrace work runs in ONE forked helper per snapshot (see `seize_helper`) under a
//! watchdog, because only killing the tracer is a guaranteed way out of a stuck ptrace call:
//! when a tracer dies the kernel detaches its tracees and, since we SEIZE (no SIGSTOP is ever
//! sent) and never set PTRACE_O_EXITKILL, a thread in an interrupt stop simply resumes. The
//! helper has PR_SET_PDEATHSIG(SIGKILL), so lifecycle-top being SIGKILLed mid-capture kills
//! the helper too and the target is never left stopped. It runs in a process group of its
//! own, so Ctrl-Z or Ctrl-C at the terminal (sent to lifecycle-top's group) cannot stop or
//! kill it while it holds a thread stopped.

use super::seize_helper::{self as helper, Control, Header, STACK_BYTES};
use std::sync::atomic::Ordering;
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
    /// The thread was caught in a signal-delivery-stop for this signal (it arrived before
    /// our interrupt), and the detach delivered it after all.
    pub reinjected_signal: Option<i32>,
}

/// Bounds, identity check and test hooks for one seize helper.
#[derive(Debug, Clone, Default)]
pub struct SeizeParams {
    /// Past this on one thread, the helper is SIGKILLed (the kernel detaches, it resumes).
    pub per_thread: Duration,
    /// Past this for all threads, likewise.
    pub total: Duration,
    /// Start time (stat field 22) the process must still have right before each seize;
    /// a pid now naming another process is refused. `None`: not checked.
    pub expect_start_time: Option<u64>,
    /// Test hook: keep each thread stopped this much longer. Zero in real use.
    #[doc(hidden)]
    pub hold_stopped: Duration,
    /// Test hook: wait up to this long between PTRACE_SEIZE and PTRACE_INTERRUPT (less if
    /// the thread stops or dies meanwhile), so a test can make a signal arrive in that
    /// window. Zero in real use.
    #[doc(hidden)]
    pub hold_seized: Duration,
}

impl SeizeParams {
    /// One `budget` for each thread and for all of them, no identity check, no hooks.
    pub fn within(budget: Duration) -> Self {
        Self {
            per_thread: budget,
            total: budget,
            ..Self::default()
        }
    }
}

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

/// One thread: see [`capture_many`].
pub fn capture(pid: i32, tid: i32, params: &SeizeParams) -> Result<Captured, String> {
    capture_many(pid, &[tid], params)
        .pop()
        .unwrap_or_else(|| Err("seize helper returned nothing".into()))
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

/// How the helper ended.
enum End {
    Finished,
    /// Killed by the watchdog while on thread `at`.
    Killed {
        at: usize,
        total: bool,
    },
}

/// Interrupt each of `tids` in turn, as briefly as possible, and copy registers and stack.
/// Bounds: `params.per_thread` for each thread, `params.total` for all; past either the
/// helper is SIGKILLed (the kernel then detaches and the thread resumes). With
/// `params.expect_start_time`, a thread is seized only if /proc/PID/stat still shows that
/// start time just before. Errors are one line with reason and remedy.
#[cfg(target_arch = "x86_64")]
pub fn capture_many(pid: i32, tids: &[i32], params: &SeizeParams) -> Vec<Result<Captured, String>> {
    let (per_thread, total) = (params.per_thread, params.total);
    if tids.is_empty() {
        return Vec::new();
    }
    let (stacks_at, size) = helper::layout(tids.len());
    // SAFETY: anonymous shared mapping, checked for MAP_FAILED, unmapped by `Shared::drop`.
    let mem = unsafe {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        libc::mmap(
            std::ptr::null_mut(),
            size,
            prot,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        let e = format!(
            "mmap for the seize helper failed: {}",
            std::io::Error::last_os_error()
        );
        return tids.iter().map(|_| Err(e.clone())).collect();
    }
    let shared = Shared { mem, size };
    let base = shared.mem as *mut u8;
    let plan = helper::Plan {
        // 0 never is a real start time after boot's first tick: it means "do not check".
        expect_start_time: params.expect_start_time.unwrap_or(0),
        hold_seized_ms: params.hold_seized.as_millis() as u64,
        hold_stopped_ms: params.hold_stopped.as_millis() as u64,
    };
    let proc_stat = std::ffi::CString::new(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Paths the helper re-checks the state in (allocated here: the helper must not allocate).
    let stats: Vec<std::ffi::CString> = tids
        .iter()
        .map(|t| std::ffi::CString::new(format!("/proc/{pid}/task/{t}/stat")).unwrap_or_default())
        .collect();
    // SAFETY: getpid/fork are plain syscalls; the child only runs `helper::run` (raw syscalls
    // on `tids` and the mapping, both allocated before the fork).
    let parent = unsafe { libc::getpid() };
    // Registered before a launch-mode collector can see it, so it is never adopted as part
    // of the tree (the registry stays locked from before the fork until it is recorded).
    let forking = crate::collect::helpers::forking();
    // SAFETY: as above; the child never touches the registry (it only runs `helper::run`).
    let child = unsafe { libc::fork() };
    if child < 0 {
        drop(forking);
        let e = format!(
            "fork of the seize helper failed: {}",
            std::io::Error::last_os_error()
        );
        return tids.iter().map(|_| Err(e.clone())).collect();
    }
    if child == 0 {
        // SAFETY: `base` is the mapping laid out for `tids.len()` threads.
        unsafe { helper::run(parent, pid, tids, &stats, &proc_stat, base, plan) }
    }
    // Its own process group, set from both sides so no terminal signal to our group can
    // land before it is in place (see `seize_helper::run`). EACCES/ESRCH: it already did.
    // SAFETY: setpgid on our own child, which never execs.
    unsafe { libc::setpgid(child, child) };
    forking.register(child);
    // SAFETY: the mapping starts with a Control, valid for the mapping's lifetime.
    let ctrl = unsafe { &*(base as *const Control) };
    // Our own unreaped child cannot be replaced under its pid, so a pidfd opened now is it;
    // the watchdog kills through it, like every other signal lifecycle-top sends.
    let pidfd = rustix::process::Pid::from_raw(child)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let end = watch(child, pidfd.as_ref(), ctrl, per_thread, total);
    // `watch` reaped it: its pid may be reused from here on.
    crate::collect::helpers::unregister(child);
    let headers = base.wrapping_add(std::mem::size_of::<Control>()) as *const Header;
    tids.iter()
        .enumerate()
        .map(|(i, &tid)| {
            // SAFETY: the helper is gone (reaped in `watch`); header i lies in the mapping.
            let h: Header = unsafe { *headers.add(i) };
            match end {
                End::Killed { at, total: t } if i >= at && h.stage != 4 => {
                    return Err(if i > at {
                        format!("thread {tid}: not seized, snapshot time budget spent")
                    } else {
                        let bound = if t { total } else { per_thread };
                        format!(
                            "thread {tid}: ptrace capture exceeded {} ms (stage {}); helper killed, thread resumed",
                            bound.as_millis(),
                            h.stage
                        )
                    });
                }
                _ => {}
            }
            if h.errno == helper::PID_REUSED {
                return Err(format!(
                    "pid {pid} was reused (its start time changed): thread {tid} of another process not seized"
                ));
            }
            if h.errno == helper::FOUND_IN_D {
                return Err(format!(
                    "thread {tid}: in uninterruptible sleep (D): never interrupted, kernel view only"
                ));
            }
            if h.stage != 4 {
                let why = std::io::Error::from_raw_os_error(h.errno as i32);
                let remedy = match h.errno as i32 {
                    libc::EPERM => " (ptrace refused: run as root or the target's user; check kernel.yama.ptrace_scope)",
                    libc::ESRCH => " (thread exited)",
                    _ => "",
                };
                return Err(format!("thread {tid}: ptrace seize failed at stage {}: {why}{remedy}", h.stage));
            }
            let n = (h.nbytes as usize).min(STACK_BYTES);
            // SAFETY: the helper wrote `n` <= STACK_BYTES bytes into stack slot i.
            let stack = unsafe { std::slice::from_raw_parts(base.add(stacks_at + i * STACK_BYTES), n) }.to_vec();
            let reinjected_signal = i32::try_from(h.signal).ok().filter(|&s| s != 0);
            Ok(Captured { ip: h.ip, sp: h.sp, bp: h.bp, stack, paused: Duration::from_nanos(h.paused_ns), reinjected_signal })
        })
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
pub fn capture_many(
    _pid: i32,
    tids: &[i32],
    _params: &SeizeParams,
) -> Vec<Result<Captured, String>> {
    let e = "ptrace capture is implemented for x86_64 only in this build";
    tids.iter().map(|_| Err(e.to_string())).collect()
}

/// Reap the helper; SIGKILL it (and reap) when one thread takes longer than `per_thread` or
/// all take longer than `total`.
fn watch(
    child: libc::pid_t,
    pidfd: Option<&std::os::fd::OwnedFd>,
    ctrl: &Control,
    per_thread: Duration,
    total: Duration,
) -> End {
    let deadline = Instant::now() + total;
    let per_ns = per_thread.as_nanos() as u64;
    let mut status = 0;
    let mut pause = Duration::from_micros(20);
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        // r < 0 (ECHILD): reaped by a wildcard waitpid elsewhere; it has exited all the same,
        // and the headers tell what it finished.
        if r == child || r < 0 {
            return End::Finished;
        }
        let started = ctrl.started_ns.load(Ordering::Acquire);
        let over_thread = started != 0 && helper::now_ns().saturating_sub(started) > per_ns;
        let over_total = Instant::now() >= deadline;
        if over_thread || over_total {
            let at = ctrl.current.load(Ordering::Acquire) as usize;
            match pidfd {
                Some(fd) => {
                    let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
                }
                // No pidfd (pre-5.3 kernel): the pid is still pinned, we have not reaped it.
                // SAFETY: kill(2) of our own unreaped child.
                None => unsafe {
                    libc::kill(child, libc::SIGKILL);
                },
            }
            // SAFETY: blocking reap of our own child, which SIGKILL always ends.
            unsafe {
                libc::waitpid(child, &mut status, 0);
            }
            return End::Killed {
                at,
                total: over_total && !over_thread,
            };
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_seize_is_ever_used() {
        // A tracer killed after an ATTACH leaves the target in group-stop: forbid it.
        let forbidden = ["PTRACE_", "ATTACH"].concat();
        assert!(!include_str!("seize.rs").contains(&forbidden));
        assert!(!include_str!("seize_helper.rs").contains(&forbidden));
        assert!(!include_str!("seize_helper.rs").contains(&["EXIT", "KILL)"].concat()));
    }
}
