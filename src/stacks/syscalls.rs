//! The few syscalls a blocked thread is usually sitting in, with what their first arguments
//! mean, so the kernel view can say `read(fd 3 = pipe:[123])` instead of raw numbers. Only
//! the blocking ones: the full name table lives in `collect::syscalls`.

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

#[cfg(target_arch = "x86_64")]
const TABLE: &[(i64, &str, ArgKind)] = &[
    (0, "read", ArgKind::Fd),
    (1, "write", ArgKind::Fd),
    (7, "poll", ArgKind::PollFds),
    (17, "pread64", ArgKind::Fd),
    (18, "pwrite64", ArgKind::Fd),
    (19, "readv", ArgKind::Fd),
    (20, "writev", ArgKind::Fd),
    (23, "select", ArgKind::Plain),
    (34, "pause", ArgKind::Plain),
    (35, "nanosleep", ArgKind::Plain),
    (43, "accept", ArgKind::Fd),
    (44, "sendto", ArgKind::Fd),
    (45, "recvfrom", ArgKind::Fd),
    (46, "sendmsg", ArgKind::Fd),
    (47, "recvmsg", ArgKind::Fd),
    (42, "connect", ArgKind::Fd),
    (61, "wait4", ArgKind::Pid),
    (72, "fcntl", ArgKind::Fd),
    (73, "flock", ArgKind::Fd),
    (74, "fsync", ArgKind::Fd),
    (128, "rt_sigtimedwait", ArgKind::Plain),
    (130, "rt_sigsuspend", ArgKind::Plain),
    (202, "futex", ArgKind::Futex),
    (230, "clock_nanosleep", ArgKind::Plain),
    (232, "epoll_wait", ArgKind::EpollFd),
    (247, "waitid", ArgKind::Pid1),
    (270, "pselect6", ArgKind::Plain),
    (271, "ppoll", ArgKind::PollFds),
    (281, "epoll_pwait", ArgKind::EpollFd),
    (288, "accept4", ArgKind::Fd),
    (441, "epoll_pwait2", ArgKind::EpollFd),
    (449, "futex_waitv", ArgKind::Plain),
];

#[cfg(target_arch = "aarch64")]
const TABLE: &[(i64, &str, ArgKind)] = &[
    (22, "epoll_pwait", ArgKind::EpollFd),
    (25, "fcntl", ArgKind::Fd),
    (32, "flock", ArgKind::Fd),
    (63, "read", ArgKind::Fd),
    (64, "write", ArgKind::Fd),
    (65, "readv", ArgKind::Fd),
    (66, "writev", ArgKind::Fd),
    (67, "pread64", ArgKind::Fd),
    (68, "pwrite64", ArgKind::Fd),
    (72, "pselect6", ArgKind::Plain),
    (73, "ppoll", ArgKind::PollFds),
    (82, "fsync", ArgKind::Fd),
    (95, "waitid", ArgKind::Pid1),
    (98, "futex", ArgKind::Futex),
    (101, "nanosleep", ArgKind::Plain),
    (115, "clock_nanosleep", ArgKind::Plain),
    (133, "rt_sigsuspend", ArgKind::Plain),
    (137, "rt_sigtimedwait", ArgKind::Plain),
    (202, "accept", ArgKind::Fd),
    (203, "connect", ArgKind::Fd),
    (206, "sendto", ArgKind::Fd),
    (207, "recvfrom", ArgKind::Fd),
    (211, "sendmsg", ArgKind::Fd),
    (212, "recvmsg", ArgKind::Fd),
    (242, "accept4", ArgKind::Fd),
    (260, "wait4", ArgKind::Pid),
    (441, "epoll_pwait2", ArgKind::EpollFd),
    (449, "futex_waitv", ArgKind::Plain),
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TABLE: &[(i64, &str, ArgKind)] = &[];

/// Name and argument kind of a blocking syscall, if it is one we decode.
pub(crate) fn lookup(nr: i64) -> Option<(&'static str, ArgKind)> {
    TABLE
        .iter()
        .find(|(n, _, _)| *n == nr)
        .map(|(_, name, kind)| (*name, *kind))
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
        assert_eq!(futex_op(0x80 | 9), "WAIT_BITSET");
    }
}
