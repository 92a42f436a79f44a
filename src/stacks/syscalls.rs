//! What the first arguments of the syscalls a blocked thread usually sits in mean, so the
//! kernel view can say `read(fd 3 = pipe:[123])` instead of raw numbers. Numbers and names
//! come from `collect::syscalls`; only the argument kinds live here.

/// How to present the interesting argument(s) of a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgKind {
    /// arg0 is a file descriptor.
    Fd,
    /// arg0 is a futex word address.
    Futex,
    /// arg0 is a pid (wait4, waitid's arg1 handled as Pid1).
    Pid,
    /// arg1 is a pid (waitid(idtype, id, ...)).
    Pid1,
    /// arg0 is an array of pollfd, arg1 its length.
    PollFds,
    /// arg0 is an epoll fd.
    EpollFd,
    /// Nothing worth decoding.
    Plain,
}

/// How the arguments of the syscall named `name` are described (names, not numbers, so
/// one list serves every architecture).
pub(crate) fn arg_kind(name: &str) -> ArgKind {
    match name {
        "read" | "write" | "pread64" | "pwrite64" | "readv" | "writev" | "accept" | "accept4"
        | "connect" | "sendto" | "recvfrom" | "sendmsg" | "recvmsg" | "fcntl" | "flock"
        | "fsync" => ArgKind::Fd,
        "poll" | "ppoll" => ArgKind::PollFds,
        "futex" => ArgKind::Futex,
        "wait4" => ArgKind::Pid,
        "waitid" => ArgKind::Pid1,
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => ArgKind::EpollFd,
        _ => ArgKind::Plain,
    }
}

/// Name (from the collector's table) and argument kind of syscall `nr` on this build's
/// architecture; `None` for an unknown number.
pub(crate) fn lookup(nr: i64) -> Option<(&'static str, ArgKind)> {
    let name = crate::collect::syscalls::name(nr)?;
    Some((name, arg_kind(name)))
}

/// Futex operation name from arg1 (without the PRIVATE/CLOCK_REALTIME flags).
pub(crate) fn futex_op(op: u64) -> &'static str {
    match op & 0x7f {
        0 => "WAIT",
        1 => "WAKE",
        9 => "WAIT_BITSET",
        6 => "LOCK_PI",
        12 => "LOCK_PI2",
        11 => "WAIT_REQUEUE_PI",
        _ => "op",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_and_read_are_known() {
        assert_eq!(lookup(libc::SYS_futex).map(|x| x.0), Some("futex"));
        assert_eq!(lookup(libc::SYS_read).map(|x| x.1), Some(ArgKind::Fd));
        assert_eq!(lookup(libc::SYS_wait4), Some(("wait4", ArgKind::Pid)));
        assert_eq!(lookup(libc::SYS_getpid), Some(("getpid", ArgKind::Plain)));
        assert_eq!(lookup(-1), None);
        assert_eq!(futex_op(0x80 | 9), "WAIT_BITSET");
    }
}
