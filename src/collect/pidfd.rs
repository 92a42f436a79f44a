//! Process file descriptors: the only safe handle on a process. A pidfd names one process
//! for its whole life, so a signal sent through it can never hit a process that reused the
//! pid, and it polls readable the moment the process exits. [`PidFd::open`] re-checks the
//! start time after opening, which closes the window between reading a pid and opening it.

use crate::collect::procfs;
use crate::model::{ExitStatus, ProcKey};
use crate::teardown::exec::SignalRight;
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, waitid};
use std::io;

/// Why a pidfd could not be opened for a [`ProcKey`].
#[derive(Debug, thiserror::Error)]
pub enum PidFdError {
    #[error("process {0} does not exist (any more)")]
    NoSuchProcess(i32),
    #[error(
        "pid {pid} now belongs to another process (start time {found}, expected {expected}); \
         the one we knew has exited"
    )]
    Reused { pid: i32, expected: u64, found: u64 },
    #[error("pidfd_open is not supported by this kernel (needs Linux 5.3+): {0}")]
    Unsupported(io::Error),
    #[error("cannot open a pidfd for {pid}: {source}")]
    Io { pid: i32, source: io::Error },
}

/// A pidfd bound to one [`ProcKey`].
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    key: ProcKey,
}

impl PidFd {
    /// `pidfd_open(key.pid)`, then verify that the pid still has `key.start_time`: the fd
    /// was opened on whoever held the pid; if that is still the process we knew, it is ours
    /// (a pid cannot change hands while its holder lives).
    pub fn open(key: ProcKey) -> Result<PidFd, PidFdError> {
        let pid = Pid::from_raw(key.pid).ok_or(PidFdError::NoSuchProcess(key.pid))?;
        let fd = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| match e {
            rustix::io::Errno::SRCH => PidFdError::NoSuchProcess(key.pid),
            rustix::io::Errno::NOSYS => PidFdError::Unsupported(e.into()),
            other => PidFdError::Io {
                pid: key.pid,
                source: other.into(),
            },
        })?;
        match procfs::read_start_time(key.pid) {
            Ok(found) if found == key.start_time => Ok(PidFd { fd, key }),
            Ok(found) => Err(PidFdError::Reused {
                pid: key.pid,
                expected: key.start_time,
                found,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(PidFdError::NoSuchProcess(key.pid))
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(PidFdError::NoSuchProcess(key.pid))
            }
            Err(source) => Err(PidFdError::Io {
                pid: key.pid,
                source,
            }),
        }
    }

    pub fn key(&self) -> ProcKey {
        self.key
    }

    /// `pidfd_send_signal(sig)`. `sig` 0 only checks that the process is still there.
    ///
    /// Only [`crate::teardown::exec`] can call it: the [`SignalRight`] it takes can be made
    /// nowhere else, so every signal lifecycle-top sends goes through one audited place
    /// (`exec::signal`, used by the engine, `check` and the launch tree guard).
    ///
    /// ```compile_fail
    /// use lifecycle_top::collect::pidfd::PidFd;
    /// use lifecycle_top::model::ProcKey;
    /// let fd = PidFd::open(ProcKey { pid: 1, start_time: 0 }).unwrap();
    /// fd.send_signal(9, lifecycle_top::teardown::exec::SignalRight::new()).unwrap();
    /// ```
    /// ```compile_fail
    /// use lifecycle_top::collect::pidfd::PidFd;
    /// use lifecycle_top::model::ProcKey;
    /// let fd = PidFd::open(ProcKey { pid: 1, start_time: 0 }).unwrap();
    /// fd.send_signal(9).unwrap();
    /// ```
    pub fn send_signal(&self, sig: i32, _right: SignalRight) -> io::Result<()> {
        if let Some(signal) = Signal::from_named_raw(sig) {
            return Ok(rustix::process::pidfd_send_signal(&self.fd, signal)?);
        }
        if !(0..=64).contains(&sig) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid signal number {sig}"),
            ));
        }
        // rustix only builds `Signal`s for named signals; real-time signals and the 0 probe go
        // through the raw syscall.
        // SAFETY: pidfd_send_signal takes (int pidfd, int sig, siginfo_t *info, unsigned flags);
        // the fd is owned and open for the call, info is NULL (kernel fills it), flags 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Zero-timeout poll: has the process exited (zombie or reaped)?
    pub fn has_exited(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(n) => n > 0 && fds[0].revents().intersects(PollFlags::IN | PollFlags::HUP),
            Err(_) => false,
        }
    }

    /// `waitid(P_PIDFD, WEXITED | WNOHANG)`: reap the process and return how it ended. Only
    /// works for our own children (launch mode, or orphans reparented to us as subreaper);
    /// `None` if it is still running or not ours to reap.
    pub fn try_reap(&self) -> Option<ExitStatus> {
        let status = waitid(
            WaitId::PidFd(self.fd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        )
        .ok()??;
        if let Some(sig) = status.terminating_signal() {
            Some(ExitStatus::Signal(sig))
        } else {
            status.exit_status().map(ExitStatus::Code)
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Decode the waitpid-style status found in `/proc/PID/stat` field 52 of a zombie.
pub fn decode_wait_status(raw: i32) -> ExitStatus {
    let sig = raw & 0x7f;
    if sig == 0 {
        ExitStatus::Code((raw >> 8) & 0xff)
    } else {
        ExitStatus::Signal(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        assert_eq!(decode_wait_status(0), ExitStatus::Code(0));
        assert_eq!(decode_wait_status(3 << 8), ExitStatus::Code(3));
        assert_eq!(decode_wait_status(9), ExitStatus::Signal(9));
        assert_eq!(decode_wait_status(15 | 0x80), ExitStatus::Signal(15));
    }

    #[test]
    fn self_pidfd_opens_and_wrong_start_time_is_refused() {
        let pid = std::process::id() as i32;
        let start = procfs::read_start_time(pid).expect("own start time");
        let fd = PidFd::open(ProcKey {
            pid,
            start_time: start,
        })
        .expect("own pidfd");
        assert!(!fd.has_exited());
        assert!(crate::teardown::exec::signal(fd.key(), 0).is_ok());
        let wrong = PidFd::open(ProcKey {
            pid,
            start_time: start + 1,
        });
        assert!(matches!(wrong, Err(PidFdError::Reused { .. })), "{wrong:?}");
    }
}
