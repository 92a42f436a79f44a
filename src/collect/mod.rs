//! The UI-free /proc collector: attach to a process tree and produce owned
//! [`Snapshot`]s of it (the target's threads, every descendant, orphans and recent exits),
//! cheaply enough to run every 500 ms against a thousand threads.
//!
//! - [`Collector`]: synchronous attach + refresh ([`tree`] and [`entry`] for processes,
//!   [`order`] for their display order, [`threads`] for the target's threads).
//! - [`pidfd`]: process file descriptors (signals and exit notice that never hit a reused pid);
//!   [`exits`]: how each exit ended, resolved (and reaped) exactly once.
//! - [`helpers`]: lifecycle-top's own child processes, which launch mode must not adopt.
//! - [`live`]: the collector on its own thread plus a tokio task that reports exits at once.
//! - [`procfs`], [`dirscan`], [`syscalls`]: kept-open files, getdents, parsers, syscall names.
//! - [`snapshot_text`]: the plain-text table of a snapshot (`lifecycle-top snapshot`).
//!
//! Cost model (measured by `benches/collector.rs` and `bench/vs_top_htop.sh`): per
//! refresh one CPU-clock read (`clock_gettime`) per process (a multi-threaded target's
//! once; with the TUI's demand its `stat` is the main thread's line, which unlike
//! `/proc/PID/stat` does not walk every thread, and its CPU time is that clock's); one `pread` of `schedstat` per thread that ran last time (or is due and wanted),
//! and per every other thread only when those do not account for the process clock's
//! delta; `stat`, `wchan`, `syscall`, `status` only for what ran *and* is wanted
//! ([`WaitDemand`]: all by default, the rows on screen in the TUI; an unwanted thread that
//! runs gets its `stat` one refresh in [`entry::ROTATE_EVERY`]); `/proc/PID/task` listed
//! only when the thread count changes; `/proc` listed, with process events, every
//! `full_reread_every` refreshes only, and without them when something in the tree ran and
//! a pid was created (`/proc/loadavg`'s last-pid field moved). One kept fd per thread
//! (`schedstat`), two per unwanted thread that keeps running (`stat`), five per wanted one.

pub mod dirscan;
pub mod entry;
pub mod exits;
pub mod guard;
pub mod helpers;
pub mod live;
pub mod memwait;
pub mod order;
pub mod pidfd;
pub mod procevents;
pub mod procfs;
pub mod sockdiag;
pub mod syscalls;
mod text;
pub mod threads;
pub mod tree;
pub mod waits;

pub use live::{CollectEvent, LiveCollector};
pub use text::snapshot_text;
pub use threads::WaitDemand;

use crate::model::{ExitInfo, ProcKey, Snapshot, SystemInfo};
use procfs::ProcFile;
use rustix::fd::AsFd;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Knobs of the collector; `Default` is what the TUI uses.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    /// Each process and thread is re-read in full once every this many refreshes regardless
    /// of the `schedstat` gate (spread over refreshes): catches what changes without the
    /// thread running (a name set by another thread, signal dispositions).
    pub full_reread_every: u32,
    /// How long an exited process stays listed (the target stays listed for good).
    pub exited_linger: Duration,
    /// Read the target's threads (the thread table).
    pub threads: bool,
    /// Launch mode: lifecycle-top is the target's parent and child subreaper, so reap exited
    /// tracked children (to get their exit code) and track every process reparented to us
    /// (except registered [`helpers`]).
    pub launch_mode: bool,
    /// Cap on the files the thread table keeps open (1 per thread, 5 per shown thread);
    /// past it, threads are read by opening their files per read. `None`: RLIMIT_NOFILE
    /// less 5,000, at least half of it.
    pub max_thread_fds: Option<usize>,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions {
            full_reread_every: 30,
            exited_linger: Duration::from_secs(10),
            threads: true,
            launch_mode: false,
            max_thread_fds: None,
        }
    }
}

/// Why attaching failed. Each message is one line ending with what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no process with pid {0}: check the pid (e.g. `ps -e`) and that it is still running")]
    NoSuchProcess(i32),
    #[error(
        "permission denied reading /proc/{0}: run lifecycle-top as the user owning the process, \
         or with sudo"
    )]
    PermissionDenied(i32),
    #[error(
        "process {0} is a zombie (it exited; its parent has not reaped it): attach to its parent \
         or to a live process"
    )]
    Zombie(i32),
    #[error(
        "/proc/self/stat is not readable: lifecycle-top needs Linux with /proc mounted \
         (`mount -t proc proc /proc`)"
    )]
    NotLinux,
    #[error("cannot attach to {pid}: {source} (check that /proc is mounted and readable)")]
    Io { pid: i32, source: io::Error },
}

impl AttachError {
    fn from_io(pid: i32, e: io::Error) -> AttachError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => AttachError::NoSuchProcess(pid),
            Some(libc::EACCES) | Some(libc::EPERM) => AttachError::PermissionDenied(pid),
            _ => AttachError::Io { pid, source: e },
        }
    }
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit (the collector keeps ~5 fds per
/// thread and ~3 per process open). Best effort: returns the soft limit now in force
/// (`u64::MAX` = unlimited); a refusal is logged, and the collector then keeps fewer files.
pub fn raise_nofile_limit() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    if lim.current == lim.maximum {
        return lim.current.unwrap_or(u64::MAX);
    }
    let raised = Rlimit {
        current: lim.maximum,
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => lim.maximum.unwrap_or(u64::MAX),
        Err(e) => {
            tracing::warn!("cannot raise RLIMIT_NOFILE: {e}");
            lim.current.unwrap_or(u64::MAX)
        }
    }
}

/// How many fds the thread table may keep open (one per thread, plus four per shown
/// thread): the limit less 5,000 (the process tree keeps ~4 per process, plus on-demand
/// reads and everything else lifecycle-top opens), and at least half the limit.
fn thread_fd_budget(nofile_limit: u64) -> usize {
    let budget = (nofile_limit / 2).max(nofile_limit.saturating_sub(5_000));
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// One snapshot for `lifecycle-top snapshot`: attach and read once. CPU% is each process's
/// and thread's average since it started (as `ps` shows it): no waiting.
pub fn snapshot_once(pid: i32) -> Result<Snapshot, AttachError> {
    snapshot_over(pid, None)
}

/// Like [`snapshot_once`]; with `Some(interval)`, reads twice that far apart so CPU% is the
/// use over that interval (as `top` shows it) instead of the average since start.
pub fn snapshot_over(pid: i32, interval: Option<Duration>) -> Result<Snapshot, AttachError> {
    let mut c = Collector::attach(pid, CollectorOptions::default())?;
    let first = c.refresh();
    let Some(interval) = interval else {
        return Ok(first);
    };
    drop(first);
    std::thread::sleep(interval);
    Ok(c.refresh())
}

/// System-wide files for the header, kept open (two `pread`s per refresh: cheaper than
/// sysinfo's refresh, which parses more than we show).
struct SystemFiles {
    meminfo: Option<ProcFile>,
    loadavg: Option<ProcFile>,
    uptime: ProcFile,
    cpus: u32,
}

/// A synchronous collector for one target tree. Not `Sync`; [`live::spawn`] runs it on
/// its own thread.
pub struct Collector {
    opts: CollectorOptions,
    tree: tree::Tree,
    threads: Option<threads::Threads>,
    exits: exits::ExitBook,
    sys: SystemFiles,
    buf: Vec<u8>,
    clk_tck: f64,
    page_size: u64,
    last: Option<Instant>,
    ticks: u64,
    /// `/proc/loadavg`'s last-pid field as read by the previous two refreshes (newest first).
    last_pids: [Option<i32>; 2],
    load_avg: [f64; 3],
}

impl Collector {
    /// Attach to `pid`: check it exists, is alive and readable, open its files and pidfd.
    pub fn attach(pid: i32, opts: CollectorOptions) -> Result<Collector, AttachError> {
        if procfs::read_path("/proc/self/stat").is_err() {
            return Err(AttachError::NotLinux);
        }
        if pid <= 0 {
            return Err(AttachError::NoSuchProcess(pid));
        }
        let buf = procfs::read_path(&format!("/proc/{pid}/stat"))
            .map_err(|e| AttachError::from_io(pid, e))?;
        let stat = procfs::parse_stat(&buf).ok_or_else(|| AttachError::Io {
            pid,
            source: io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/PID/stat"),
        })?;
        // A process whose main thread exited shows `Z` while other threads run; only a
        // process whose pidfd says "exited" is a real zombie.
        if stat.state == 'Z' || stat.state == 'X' {
            let key = ProcKey {
                pid,
                start_time: stat.start_time,
            };
            if pidfd::PidFd::open(key).map_or(true, |fd| fd.has_exited()) {
                return Err(AttachError::Zombie(pid));
            }
        }
        // environ needs the same ptrace-read right as wchan and the memory maps; its open
        // fails with EACCES for another user's process, where wchan would just read "0".
        rustix::fs::open(
            format!("/proc/{pid}/environ").as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| AttachError::from_io(pid, e.into()))?;
        // Best effort: without a higher limit we still work, with fewer fds kept open.
        let nofile = raise_nofile_limit();
        let key = ProcKey {
            pid,
            start_time: stat.start_time,
        };
        let exits = exits::ExitBook::new(opts.launch_mode);
        let tree_opts = tree::TreeOptions {
            exited_linger: opts.exited_linger,
            adopt_own_children: opts.launch_mode,
        };
        let tree = tree::Tree::new(key, tree_opts, exits.clone())
            .map_err(|e| AttachError::from_io(pid, e))?;
        // Through the target's own /proc/PID fd: the pid cannot have changed hands since.
        let threads = match (opts.threads, tree.live.get(&pid)) {
            (true, Some(target)) => Some(
                threads::Threads::new(
                    target.dir(),
                    opts.max_thread_fds.unwrap_or(thread_fd_budget(nofile)),
                )
                .map_err(|e| AttachError::from_io(pid, e))?,
            ),
            (true, None) => return Err(AttachError::NoSuchProcess(pid)),
            (false, _) => None,
        };
        let root = procfs::open_dir("/proc").map_err(|e| AttachError::from_io(pid, e))?;
        let sys = SystemFiles {
            meminfo: ProcFile::open_at(root.as_fd(), c"meminfo").ok(),
            loadavg: ProcFile::open_at(root.as_fd(), c"loadavg").ok(),
            uptime: ProcFile::open_at(root.as_fd(), c"uptime")
                .map_err(|e| AttachError::from_io(pid, e))?,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        };
        Ok(Collector {
            opts,
            tree,
            threads,
            exits,
            sys,
            buf: vec![0; 4096],
            clk_tck: rustix::param::clock_ticks_per_second() as f64,
            page_size: rustix::param::page_size() as u64,
            last: None,
            ticks: 0,
            last_pids: [None; 2],
            load_avg: [0.0; 3],
        })
    }

    pub fn target(&self) -> ProcKey {
        self.tree.target
    }

    /// How this collector finds the tree's processes (process events, or the sweep).
    pub fn discovery(&self) -> &procevents::Discovery {
        self.tree.discovery()
    }

    /// Is `pid` a live process of the tracked tree (orphans included)?
    pub fn contains(&self, pid: i32) -> bool {
        self.tree.contains(pid)
    }

    /// The shared exit record (the live watcher resolves exits through it).
    pub fn exit_book(&self) -> exits::ExitBook {
        self.exits.clone()
    }

    /// Exits that refreshes noticed before the pidfd watcher did, since the last call (only
    /// collected once [`Collector::take_new_pidfds`] was called: a watcher is attached). The
    /// watcher reports the others; together each exit is reported once.
    pub fn take_reported_exits(&mut self) -> Vec<(ProcKey, ExitInfo)> {
        self.tree.take_reported_exits()
    }

    /// Whose wait points the thread table reads from the next refresh on (the target's main
    /// thread always).
    pub fn set_wait_demand(&mut self, demand: WaitDemand) {
        let main = self.tree.target.pid;
        let demand = match demand {
            WaitDemand::Tids(mut t) => {
                t.insert(main);
                WaitDemand::Tids(t)
            }
            all => all,
        };
        if let Some(t) = &mut self.threads {
            t.set_demand(demand);
        }
    }

    /// Pidfds of processes that joined the tree since the last call (the first call: of all
    /// tracked processes). For an exit watcher such as [`live`].
    pub fn take_new_pidfds(&mut self) -> Vec<Arc<pidfd::PidFd>> {
        self.tree.take_new_pidfds()
    }

    /// Read the tree and threads once. Never fails: a vanished target shows as exited.
    pub fn refresh(&mut self) -> Snapshot {
        let now = Instant::now();
        let elapsed = self
            .last
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        self.last = Some(now);
        let tick = self.ticks;
        self.ticks += 1;
        let uptime_secs = self
            .sys
            .uptime
            .read(&mut self.buf)
            .ok()
            .and_then(procfs::parse_uptime)
            .unwrap_or(0.0);
        let clock = tree::Clock {
            clk_tck: self.clk_tck,
            page_size: self.page_size,
            uptime_secs,
            elapsed_ticks: elapsed * self.clk_tck,
            tick,
            every: u64::from(self.opts.full_reread_every.max(1)),
        };
        // The TUI (wait points for the rows on screen only) takes a big target's CPU time
        // from its CPU clock instead of a `stat` that walks all its threads; headless,
        // `check` and `snapshot` read the full line.
        let light = self.threads.as_ref().is_some_and(|t| !t.wants_all());
        let may_fork = self
            .tree
            .update_tracked(&clock, self.threads.is_some(), light);
        let target = self.tree.live.get(&self.tree.target.pid);
        let expected = target.map(|e| e.info.num_threads);
        // Read right before the threads: the idle proof compares this clock's delta with
        // the threads' schedstat deltas, and reading all the tree's processes in between
        // (milliseconds for 1,000 children) leaves time for a thread to run, which made
        // the proof fail on most refreshes. A multi-threaded target was updated last, its
        // clock read after its `stat` (each read walks all its threads): that reading.
        let cpu_now = target.and_then(|e| match self.threads.is_some() && e.info.num_threads > 1 {
            true => e.cpu_ns(),
            false => e.cpu_ns_now(),
        });
        let threads = match (&mut self.threads, target.is_some()) {
            (Some(t), true) => t.refresh(&clock, expected, cpu_now).unwrap_or_default(),
            _ => Vec::new(),
        };
        let threads_ran = self.threads.as_ref().is_some_and(|t| t.any_ran());
        // Read after every schedstat above: see `pid_created`.
        let created = self.pid_created();
        // Launch mode lists whenever a pid was created: orphans reparented to us have no
        // tracked parent that ran. Without process events, the tree lists when something
        // ran and a pid was created. With them, every fork of a member is an event already
        // (on a busy machine pids are created all the time: listing /proc for each refresh
        // was a third of a busy target's cost). Everyone lists every `every` refreshes
        // anyway (safety net).
        let tree_may_fork =
            may_fork || threads_ran || self.opts.launch_mode || self.tree.sweeping();
        let events_suffice = !self.tree.sweeping() && !self.opts.launch_mode;
        let list =
            (created && tree_may_fork && !events_suffice) || tick.is_multiple_of(clock.every);
        if let Err(e) = self.tree.discover(&clock, list) {
            tracing::warn!("process scan failed: {e}");
        }
        Snapshot {
            taken_at_unix_ms: exits::now_unix_ms(),
            target: self.tree.target,
            processes: self.tree.ordered(),
            threads,
            system: self.system_info(),
        }
    }

    /// Was any pid (process or thread) allocated since the refresh before the previous one?
    /// Reads `/proc/loadavg` (also the header's load). Its last-pid field moves on every
    /// fork anywhere: unchanged, nobody forked and listing /proc would find nothing new.
    /// Compared with the value from two refreshes back because a fork between a forker's
    /// `schedstat` read and this read shows here before the forker shows as having run
    /// (next refresh); reading this after all `schedstat`s makes two back always enough.
    fn pid_created(&mut self) -> bool {
        let text = self
            .sys
            .loadavg
            .as_ref()
            .and_then(|f| f.read(&mut self.buf).ok());
        self.load_avg = text.map_or([0.0; 3], procfs::parse_loadavg);
        let now = text.and_then(procfs::parse_last_pid);
        let [prev, before] = self.last_pids;
        self.last_pids = [now, prev];
        now.is_none() || before != now
    }

    fn system_info(&mut self) -> SystemInfo {
        let (mem_total_bytes, mem_available_bytes) = self
            .sys
            .meminfo
            .as_ref()
            .and_then(|f| f.read(&mut self.buf).ok())
            .map_or((0, 0), procfs::parse_meminfo);
        let load_avg = self.load_avg;
        SystemInfo {
            cpus: self.sys.cpus,
            mem_total_bytes,
            mem_available_bytes,
            load_avg,
        }
    }
}
