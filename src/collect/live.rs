//! The collector, live: refreshes run on a dedicated thread at the interval (the reads are
//! blocking syscalls, kept off the async runtime), and a tokio task waits on the pidfd of
//! every tracked process so an exit is reported the moment the kernel signals it, however
//! long the refresh interval. Everything arrives on one event channel.

use crate::collect::exits::ExitBook;
use crate::collect::pidfd::PidFd;
use crate::collect::{Collector, WaitDemand};
use crate::model::{ExitStatus, ProcKey, Snapshot};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What the live collector reports.
#[derive(Debug, Clone)]
pub enum CollectEvent {
    Snapshot(Box<Snapshot>),
    /// A tracked process exited (noticed through its pidfd).
    Exited {
        key: ProcKey,
        status: ExitStatus,
        at_unix_ms: u64,
    },
    Error(String),
}

enum Cmd {
    RefreshNow,
    SetInterval(Duration),
    Demand(WaitDemand),
}

/// Handle on a running live collector. Dropping it stops the refresh thread (after its
/// current refresh) and the exit watcher.
pub struct LiveCollector {
    pub events: mpsc::Receiver<CollectEvent>,
    cmd: std_mpsc::Sender<Cmd>,
    watcher: tokio::task::JoinHandle<()>,
}

impl LiveCollector {
    /// Refresh as soon as possible (coalesced with other pending requests).
    pub fn refresh_now(&self) {
        let _ = self.cmd.send(Cmd::RefreshNow);
    }

    /// Read the wait points of these threads only (see [`WaitDemand`]), from the next
    /// refresh on.
    pub fn set_wait_demand(&self, d: WaitDemand) {
        let _ = self.cmd.send(Cmd::Demand(d));
    }

    /// Change the refresh interval; the next refresh comes one new interval after the last.
    pub fn set_interval(&self, d: Duration) {
        let _ = self.cmd.send(Cmd::SetInterval(d));
    }
}

impl Drop for LiveCollector {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Start refreshing `collector` every `interval` and watching exits. Must be called from
/// within a tokio runtime. The first snapshot is taken at once.
pub fn spawn(mut collector: Collector, interval: Duration) -> LiveCollector {
    let (events_tx, events) = mpsc::channel(256);
    let (cmd_tx, cmd_rx) = std_mpsc::channel();
    let (fd_tx, fd_rx) = mpsc::unbounded_channel::<Arc<PidFd>>();
    // The target's pidfd exists since attach: watch it before the first refresh.
    for fd in collector.take_new_pidfds() {
        let _ = fd_tx.send(fd);
    }
    let watcher = tokio::spawn(watch_all(
        fd_rx,
        collector.exit_book(),
        events_tx.clone(),
        cmd_tx.clone(),
    ));
    let thread_events = events_tx.clone();
    let spawned = std::thread::Builder::new()
        .name("lt-collect".into())
        .spawn(move || refresh_loop(collector, interval, cmd_rx, thread_events, fd_tx));
    if let Err(e) = spawned {
        let _ = events_tx.try_send(CollectEvent::Error(format!(
            "cannot start the collector thread: {e} (system out of threads? close some programs)"
        )));
    }
    LiveCollector {
        events,
        cmd: cmd_tx,
        watcher,
    }
}

fn refresh_loop(
    mut collector: Collector,
    mut interval: Duration,
    cmd: std_mpsc::Receiver<Cmd>,
    events: mpsc::Sender<CollectEvent>,
    fds: mpsc::UnboundedSender<Arc<PidFd>>,
) {
    let mut next = Instant::now();
    let mut last = Instant::now();
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match cmd.recv_timeout(wait) {
            Ok(Cmd::SetInterval(d)) => {
                interval = d;
                next = last + d;
                continue;
            }
            // Read from the next refresh on. Not brought forward: with rows sorted by CPU%
            // the rows on screen change with every refresh, and each change would then
            // cost one more refresh.
            Ok(Cmd::Demand(d)) => {
                collector.set_wait_demand(d);
                continue;
            }
            Ok(Cmd::RefreshNow) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Coalesce a burst of requests (e.g. a whole tree exiting) into one refresh.
        while let Ok(c) = cmd.try_recv() {
            match c {
                Cmd::SetInterval(d) => interval = d,
                Cmd::Demand(d) => collector.set_wait_demand(d),
                Cmd::RefreshNow => {}
            }
        }
        // A bug in a refresh must not leave the UI waiting on a silent channel.
        let refreshed = std::panic::catch_unwind(AssertUnwindSafe(|| collector.refresh()));
        let snap = match refreshed {
            Ok(snap) => snap,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let _ = events.blocking_send(CollectEvent::Error(format!(
                    "the collector stopped after an internal error ({what}): please report it; \
                     exits are still reported"
                )));
                return;
            }
        };
        last = Instant::now();
        next = last + interval;
        for fd in collector.take_new_pidfds() {
            let _ = fds.send(fd);
        }
        // Exits this refresh saw before the watcher: reported ahead of the snapshot.
        for (key, info) in collector.take_reported_exits() {
            let exited = CollectEvent::Exited {
                key,
                status: info.status,
                at_unix_ms: info.at_unix_ms,
            };
            if events.blocking_send(exited).is_err() {
                return;
            }
        }
        if events
            .blocking_send(CollectEvent::Snapshot(Box::new(snap)))
            .is_err()
        {
            return; // receiver dropped: nobody is watching any more
        }
    }
}

async fn watch_all(
    mut fds: mpsc::UnboundedReceiver<Arc<PidFd>>,
    book: ExitBook,
    events: mpsc::Sender<CollectEvent>,
    cmd: std_mpsc::Sender<Cmd>,
) {
    let mut set = JoinSet::new();
    loop {
        tokio::select! {
            fd = fds.recv() => match fd {
                Some(fd) => {
                    set.spawn(watch_one(fd, book.clone(), events.clone(), cmd.clone()));
                }
                None => break,
            },
            Some(_) = set.join_next(), if !set.is_empty() => {}
        }
    }
    // The refresh thread is gone; keep reporting exits of what we already watch.
    while set.join_next().await.is_some() {}
}

async fn watch_one(
    fd: Arc<PidFd>,
    book: ExitBook,
    events: mpsc::Sender<CollectEvent>,
    cmd: std_mpsc::Sender<Cmd>,
) {
    let key = fd.key();
    // SAFETY: the AsyncFd owns a clone of the Arc, so the pidfd stays open for the AsyncFd's
    // whole life, and `PidFd::as_raw_fd` always returns the one fd it was opened with.
    let registered =
        unsafe { AsyncFd::register_with_interest(Arc::clone(&fd), Interest::READABLE) };
    let afd = match registered {
        Ok(a) => a,
        Err(e) => {
            let _ = events
                .send(CollectEvent::Error(format!(
                    "cannot watch pid {} for exit: {e} (its exit will show at the next refresh)",
                    key.pid
                )))
                .await;
            return;
        }
    };
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        // Readiness can be spurious; a zero-timeout poll on the pidfd is the truth.
        if fd.has_exited() {
            break;
        }
        guard.clear_ready();
    }
    drop(afd);
    // Queued under the book's lock when we resolve first, so no snapshot showing this exit
    // (the refresh thread resolves under the same lock) can be queued ahead of it.
    let mut overflow = None;
    book.resolve(&fd, |key, info| {
        let exited = CollectEvent::Exited {
            key,
            status: info.status,
            at_unix_ms: info.at_unix_ms,
        };
        if let Err(mpsc::error::TrySendError::Full(ev)) = events.try_send(exited) {
            overflow = Some(ev);
        }
    });
    if let Some(ev) = overflow {
        let _ = events.send(ev).await; // channel full: late, but not lost
    }
    let _ = cmd.send(Cmd::RefreshNow);
}
