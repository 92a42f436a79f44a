//! The only code in lifecycle-top that sends signals. Every signal goes through the process's
//! pidfd (`pidfd_send_signal`), opened from a [`ProcKey`] whose start time is re-checked, so a
//! pid that was reused by another process is refused and never hit.

use crate::collect::pidfd::{PidFd, PidFdError};
use crate::model::ProcKey;

/// The right to call [`PidFd::send_signal`]: its field is private to this module, so no other
/// code can make one (`SignalRight::new` is private too).
#[derive(Debug, Clone, Copy)]
pub struct SignalRight(());

impl SignalRight {
    fn new() -> Self {
        SignalRight(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Exited before the signal (not an error for teardown: it is what we wanted).
    #[error("already gone")]
    Gone,
    /// The pid now belongs to another process: refused on purpose.
    #[error("refused: {0}")]
    Reused(String),
    #[error("permission denied (run lifecycle-top as the target's user or root)")]
    PermissionDenied,
    #[error("{0}")]
    Other(String),
}

/// Sends `sig` to exactly the process `key` names.
pub fn signal(key: ProcKey, sig: i32) -> Result<(), SignalError> {
    let fd = PidFd::open(key).map_err(|e| match e {
        PidFdError::NoSuchProcess(_) => SignalError::Gone,
        e @ PidFdError::Reused { .. } => SignalError::Reused(e.to_string()),
        e => SignalError::Other(e.to_string()),
    })?;
    fd.send_signal(sig, SignalRight::new())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => SignalError::Gone,
            Some(libc::EPERM) => SignalError::PermissionDenied,
            _ => SignalError::Other(e.to_string()),
        })
}
