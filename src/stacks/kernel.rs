//! The kernel source: what /proc says about a thread with no ptrace at all: state, wait
//! channel, the syscall it sits in with decoded arguments (fds resolved through
//! /proc/PID/fd), context switches, and the kernel stack where readable (root). The `stat`
//! and `syscall` parsers are the collector's (`collect::procfs`); only what the collector
//! does not need is parsed here (the user sp/pc of the syscall line, TracerPid, the kernel
//! stack), split from reading so it is unit-tested on fixed text.

use super::syscalls::{self, ArgKind};
use super::{KernelView, SourceError, SourceKind, ThreadStacks};
use crate::collect::procfs;
use crate::model::{RunState, WaitPoint};
use rustix::fs::{Mode, OFlags};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;

/// Kernel tids of a process, sorted (main thread first since it has the lowest tid).
pub fn list_tids(pid: i32) -> io::Result<Vec<i32>> {
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Parsed `/proc/PID/task/TID/syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallLine {
    /// The thread is on a CPU (the kernel will not read a running task's registers).
    Running,
    /// Blocked, but not in a syscall (page fault, preempted in user space): only sp, pc.
    NotInSyscall { sp: u64, pc: u64 },
    /// In syscall `nr` with its six arguments.
    InSyscall {
        nr: i64,
        args: [u64; 6],
        sp: u64,
        pc: u64,
    },
}

impl SyscallLine {
    pub fn sp_pc(&self) -> Option<(u64, u64)> {
        match *self {
            Self::Running => None,
            Self::NotInSyscall { sp, pc } | Self::InSyscall { sp, pc, .. } => Some((sp, pc)),
        }
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// Parse the syscall file: `running`, `-1 SP PC`, or `NR A0 .. A5 SP PC` (hex). The number
/// and arguments come from the collector's parser; the user sp and pc, which only stacks
/// needs, are the last two fields of both non-running forms.
pub fn parse_syscall(text: &str) -> Option<SyscallLine> {
    let mut fields = text.split_whitespace();
    let first = fields.next()?;
    if first == "running" {
        return Some(SyscallLine::Running);
    }
    let mut tail = fields.rev();
    let (pc, sp) = (hex(tail.next()?)?, hex(tail.next()?)?);
    if first == "-1" {
        return Some(SyscallLine::NotInSyscall { sp, pc });
    }
    let (nr, parsed) = procfs::parse_syscall(text.as_bytes())?;
    let args: [u64; 6] = (*parsed).try_into().ok()?;
    Some(SyscallLine::InSyscall { nr, args, sp, pc })
}

/// From `/proc/PID/task/TID/status`: (voluntary, nonvoluntary ctx switches, TracerPid).
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>, i32) {
    let mut out = (None, None, 0);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "voluntary_ctxt_switches" => out.0 = v.parse().ok(),
            "nonvoluntary_ctxt_switches" => out.1 = v.parse().ok(),
            "TracerPid" => out.2 = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    out
}

/// `/proc/TID/stack` lines `[<0>] futex_wait_queue+0x60/0x90` -> `futex_wait_queue+0x60/0x90`.
pub fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.split_once("] ") {
            Some((_, sym)) => sym.trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Human description of the interesting arguments; `fd_target` resolves an fd to its link.
pub fn describe_args(
    nr: i64,
    args: &[u64; 6],
    fd_target: &dyn Fn(u64) -> Option<String>,
) -> Vec<String> {
    let Some((_, kind)) = syscalls::lookup(nr) else {
        return Vec::new();
    };
    let fd = |n: u64, what: &str| match fd_target(n) {
        Some(t) => format!("{what} {n} = {t}"),
        None => format!("{what} {n}"),
    };
    match kind {
        ArgKind::Fd => vec![fd(args[0], "fd")],
        ArgKind::EpollFd => vec![fd(args[0], "epoll fd")],
        ArgKind::Futex => vec![format!(
            "futex {:#x} {}",
            args[0],
            syscalls::futex_op(args[1])
        )],
        ArgKind::Pid => vec![format!("pid {}", args[0] as i64 as i32)],
        ArgKind::Pid1 => vec![format!("id {}", args[1] as i64 as i32)],
        ArgKind::PollFds => vec![format!("{} fds", args[1])],
        ArgKind::Plain => Vec::new(),
    }
}

fn read_fd_link(pid: i32, fd: u64) -> Option<String> {
    if fd > i32::MAX as u64 {
        return None;
    }
    let p = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some(p.to_string_lossy().into_owned())
}

/// Read the user sp/pc of a thread blocked in the kernel (None while it runs).
pub fn read_syscall(pid: i32, tid: i32) -> io::Result<Option<SyscallLine>> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))?;
    Ok(parse_syscall(&text))
}

/// An open /proc/PID/task/TID directory: files are opened relative to it (no path walk per
/// file) and read with one reusable buffer, which halves the cost of a 100-thread snapshot.
pub struct TaskDir {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl TaskDir {
    pub fn open(pid: i32, tid: i32) -> io::Result<Self> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(format!("/proc/{pid}/task/{tid}"), flags, Mode::empty())?;
        Ok(Self {
            fd,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The whole file as text (lossy: /proc text is ASCII but comm may not be).
    pub fn read(&mut self, name: &str) -> io::Result<String> {
        let f = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.buf.clear();
        loop {
            let spare = self.buf.spare_capacity_mut();
            if spare.len() < 1024 {
                self.buf.reserve(4096);
                continue;
            }
            let (got, _) = rustix::io::read(&f, spare)?;
            let n = got.len();
            if n == 0 {
                break;
            }
            // SAFETY: `read` initialised exactly `n` bytes of the spare capacity.
            unsafe { self.buf.set_len(self.buf.len() + n) };
        }
        Ok(String::from_utf8_lossy(&self.buf).into_owned())
    }
}

/// Everything the kernel tells about one thread; never fails: errors are listed in it.
pub fn read_thread(pid: i32, tid: i32, want_kernel_stack: bool) -> ThreadStacks {
    let mut t = ThreadStacks {
        tid,
        name: String::new(),
        kernel: None,
        stacks: Vec::new(),
        errors: Vec::new(),
    };
    let err = |m: String| SourceError {
        source: SourceKind::Kernel,
        message: m,
    };
    let gone = || err(format!("thread {tid} is gone (exited while being read)"));
    let Ok(mut dir) = TaskDir::open(pid, tid) else {
        t.errors.push(gone());
        return t;
    };
    let Some(stat) = dir
        .read("stat")
        .ok()
        .and_then(|s| procfs::parse_stat(s.as_bytes()))
    else {
        t.errors.push(gone());
        return t;
    };
    let (state, cpu_ticks) = (RunState::from_char(stat.state), stat.cpu_ticks);
    t.name = stat.comm;
    let (vol, nonvol, tracer_pid) = dir
        .read("status")
        .map(|s| parse_status(&s))
        .unwrap_or((None, None, 0));
    let wchan = dir
        .read("wchan")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "0");
    let mut view = KernelView {
        state,
        wait: WaitPoint {
            wchan,
            ..WaitPoint::default()
        },
        described_args: Vec::new(),
        user_sp: None,
        user_pc: None,
        cpu_ticks,
        voluntary_ctxt_switches: vol,
        nonvoluntary_ctxt_switches: nonvol,
        tracer_pid,
        kernel_stack: Vec::new(),
    };
    match dir.read("syscall").map(|s| parse_syscall(&s)) {
        Ok(Some(line)) => {
            if let Some((sp, pc)) = line.sp_pc() {
                view.user_sp = Some(sp);
                view.user_pc = Some(pc);
            }
            if let SyscallLine::InSyscall { nr, args, .. } = line {
                view.wait.syscall_nr = Some(nr);
                view.wait.syscall = syscalls::lookup(nr).map(|(n, _)| n.to_string());
                view.wait.syscall_args = args.to_vec();
                view.described_args = describe_args(nr, &args, &|fd| read_fd_link(pid, fd));
            }
        }
        Ok(None) => {}
        Err(e) => t.errors.push(err(format!(
            "/proc/{pid}/task/{tid}/syscall unreadable: {e} (run as the target's user or root)"
        ))),
    }
    if want_kernel_stack {
        match dir.read("stack") {
            Ok(s) => view.kernel_stack = parse_kernel_stack(&s),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => t.errors.push(err(
                "kernel stack needs root (CAP_SYS_ADMIN): run with sudo to see it".into(),
            )),
            Err(_) => {}
        }
    }
    t.kernel = Some(view);
    t
}

/// The syscall line as it was when the kernel view was read (to confirm a stack copy).
pub fn line_of(k: &KernelView) -> Option<SyscallLine> {
    let (sp, pc) = (k.user_sp?, k.user_pc?);
    Some(match k.wait.syscall_nr {
        Some(nr) => {
            let mut args = [0u64; 6];
            for (slot, a) in args.iter_mut().zip(&k.wait.syscall_args) {
                *slot = *a;
            }
            SyscallLine::InSyscall { nr, args, sp, pc }
        }
        None => SyscallLine::NotInSyscall { sp, pc },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_syscall_forms() {
        assert_eq!(parse_syscall("running\n"), Some(SyscallLine::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffd1000 0x401000\n"),
            Some(SyscallLine::NotInSyscall {
                sp: 0x7ffd1000,
                pc: 0x401000
            })
        );
        let l = parse_syscall("202 0x55d0 0x80 0x0 0x0 0x0 0x0 0x7ffc10 0x7f11\n");
        assert_eq!(
            l,
            Some(SyscallLine::InSyscall {
                nr: 202,
                args: [0x55d0, 0x80, 0, 0, 0, 0],
                sp: 0x7ffc10,
                pc: 0x7f11
            })
        );
        assert_eq!(parse_syscall("garbage"), None);
        assert_eq!(parse_syscall("202 0x1 0x2 0x7ffc10 0x7f11"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn parses_status_and_kernel_stack() {
        let st = "Name:\tx\nTracerPid:\t77\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(parse_status(st), (Some(5), Some(2), 77));
        let ks = "[<0>] futex_wait_queue+0x60/0x90\n[<0>] do_syscall_64+0x5d/0x170\n";
        assert_eq!(
            parse_kernel_stack(ks),
            vec!["futex_wait_queue+0x60/0x90", "do_syscall_64+0x5d/0x170"]
        );
    }

    #[test]
    fn describes_fd_and_futex_args() {
        let link = |fd: u64| (fd == 3).then(|| "pipe:[99]".to_string());
        let read = describe_args(libc::SYS_read, &[3, 0, 0, 0, 0, 0], &link);
        assert_eq!(read, vec!["fd 3 = pipe:[99]"]);
        let fx = describe_args(libc::SYS_futex, &[0x1000, 0x89, 0, 0, 0, 0], &link);
        assert_eq!(fx, vec!["futex 0x1000 WAIT_BITSET"]);
        let w = describe_args(libc::SYS_wait4, &[1234, 0, 0, 0, 0, 0], &link);
        assert_eq!(w, vec!["pid 1234"]);
    }
}
