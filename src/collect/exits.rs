//! How tracked processes ended. Both the refresh (which sees a process gone) and the live
//! pidfd watcher (which sees it first, within a millisecond) resolve an exit here, under one
//! lock, so the single chance to reap a child is taken once and both report the same status.
//! Whoever resolves an exit first reports it (under the same lock), so each exit is reported
//! exactly once and before any snapshot that shows it.

use crate::collect::pidfd::{PidFd, decode_wait_status};
use crate::collect::procfs;
use crate::model::{ExitInfo, ExitStatus, ProcKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Shared record of resolved exits, keyed by process identity.
#[derive(Debug, Clone, Default)]
pub struct ExitBook {
    inner: Arc<Mutex<HashMap<ProcKey, ExitInfo>>>,
    /// Reap our own children (launch mode: we are their parent or their subreaper). When off,
    /// the code comes only from a zombie's `/proc/PID/stat`.
    reap: bool,
}

impl ExitBook {
    pub fn new(reap: bool) -> ExitBook {
        ExitBook {
            inner: Arc::default(),
            reap,
        }
    }

    /// The exit of `pidfd`'s process, resolved once: reap it if it is our child, else read
    /// the status a zombie exposes in `stat` field 52, else `Unknown` (already reaped by its
    /// parent, which is the only one told the code). `first` runs, still under the lock, only
    /// for the caller that resolved it: the place to report the exit.
    pub fn resolve(&self, pidfd: &PidFd, first: impl FnOnce(ProcKey, ExitInfo)) -> ExitInfo {
        let key = pidfd.key();
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(info) = book.get(&key) {
            return *info;
        }
        // Read a zombie's status before reaping would make it vanish from /proc.
        let from_stat = zombie_status(key);
        let reaped = if self.reap { pidfd.try_reap() } else { None };
        let info = ExitInfo {
            status: reaped.or(from_stat).unwrap_or(ExitStatus::Unknown),
            at_unix_ms: now_unix_ms(),
        };
        book.insert(key, info);
        first(key, info);
        info
    }

    /// Resolve the exit of a process we hold no pidfd for (it only vanished from /proc).
    pub fn resolve_without_pidfd(
        &self,
        key: ProcKey,
        first: impl FnOnce(ProcKey, ExitInfo),
    ) -> ExitInfo {
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(info) = book.get(&key) {
            return *info;
        }
        let info = ExitInfo {
            status: zombie_status(key).unwrap_or(ExitStatus::Unknown),
            at_unix_ms: now_unix_ms(),
        };
        book.insert(key, info);
        first(key, info);
        info
    }

    pub fn get(&self, key: ProcKey) -> Option<ExitInfo> {
        let book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        book.get(&key).copied()
    }

    /// Forget exits noticed before `cutoff_unix_ms` (their processes are no longer listed).
    pub fn prune(&self, cutoff_unix_ms: u64) {
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        book.retain(|_, i| i.at_unix_ms >= cutoff_unix_ms);
    }
}

/// Exit status of `key` if it is still a zombie in /proc (same start time).
fn zombie_status(key: ProcKey) -> Option<ExitStatus> {
    let buf = procfs::read_path(&format!("/proc/{}/stat", key.pid)).ok()?;
    let stat = procfs::parse_stat(&buf)?;
    if stat.start_time != key.start_time || stat.state != 'Z' {
        return None;
    }
    stat.exit_code.map(decode_wait_status)
}
