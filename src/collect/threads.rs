//! The target's threads. Each refresh lists `/proc/PID/task` (getdents on a dirfd kept open),
//! keeps the per-thread files open and re-reads them with `pread`, and reads the expensive
//! ones (`stat`, `wchan`, `syscall`, `status`) only for threads whose `schedstat` changed: a
//! thread that was not scheduled cannot have changed state, wait point or counters. Even the
//! `schedstat` reads are skipped for threads the process CPU clock proves idle. Once
//! every N refreshes (spread by tid) a thread's `stat` is re-read anyway: another thread
//! may have renamed it; if anything in it changed, the rest is re-read too. Files are kept
//! open within an fd budget; past it, threads are still read, opening files per read.

use crate::collect::dirscan::DirScanner;
use crate::collect::procfs::{self, ProcFile};
use crate::collect::syscalls;
use crate::collect::tree::Clock;
use crate::model::{RunState, ThreadInfo, WaitPoint};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io;

/// One per-thread file: kept open (the normal case), opened for each read once the fd budget
/// is spent (correct, three syscalls instead of one), or not readable at all.
enum File {
    Kept(ProcFile),
    OnDemand,
    Unavailable,
}

impl File {
    fn open(dir: Option<BorrowedFd<'_>>, name: &CStr) -> File {
        let Some(dir) = dir else {
            return File::OnDemand;
        };
        match ProcFile::open_at(dir, name) {
            Ok(f) => File::Kept(f),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                File::OnDemand
            }
            // e.g. `syscall` needs ptrace-attach rights (Yama may refuse): column stays empty.
            Err(_) => File::Unavailable,
        }
    }

    fn read<'a>(&self, at: Place<'_>, name: &CStr, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        match self {
            File::Kept(f) => f.read(buf).ok(),
            File::OnDemand => {
                let path = CString::new(format!("{}/{}", at.tid, name.to_str().ok()?)).ok()?;
                ProcFile::open_at(at.task_dir, &path).ok()?.read(buf).ok()
            }
            File::Unavailable => None,
        }
    }

    fn kept(&self) -> usize {
        usize::from(matches!(self, File::Kept(_)))
    }
}

/// Where a thread's files are: `/proc/PID/task` and the tid.
#[derive(Clone, Copy)]
struct Place<'a> {
    task_dir: BorrowedFd<'a>,
    tid: i32,
}

/// Files of one thread, plus what was last read from them.
struct Slot {
    schedstat: File,
    stat: File,
    wchan: File,
    syscall: File,
    status: File,
    last_sched: Option<[u64; 3]>,
    prev_ticks: u64,
    info: ThreadInfo,
    generation: u64,
    /// Scheduled since the previous refresh (or no schedstat: cannot tell).
    ran: bool,
    /// Scratch for [`Threads::refresh`]: read in its first pass; still there.
    read_now: bool,
    alive: bool,
}

impl Slot {
    /// Keep the thread's files open if `keep`, else read them on demand.
    fn open(task_dir: BorrowedFd<'_>, tid: i32, keep: bool) -> io::Result<Slot> {
        let dir = match keep {
            true => Some(procfs::open_dir_at(task_dir, &tid.to_string())?),
            false => None,
        };
        let d = dir.as_ref().map(|d| d.as_fd());
        Ok(Slot {
            schedstat: File::open(d, c"schedstat"),
            stat: File::open(d, c"stat"),
            wchan: File::open(d, c"wchan"),
            syscall: File::open(d, c"syscall"),
            status: File::open(d, c"status"),
            last_sched: None,
            prev_ticks: 0,
            info: ThreadInfo {
                tid,
                name: String::new(),
                state: RunState::Other('?'),
                wait: WaitPoint::default(),
                cpu_ticks: 0,
                cpu_percent: 0.0,
                voluntary_ctxt_switches: None,
                nonvoluntary_ctxt_switches: None,
            },
            generation: 0,
            ran: true,
            read_now: false,
            alive: true,
        })
    }

    fn kept_fds(&self) -> usize {
        [
            &self.schedstat,
            &self.stat,
            &self.wchan,
            &self.syscall,
            &self.status,
        ]
        .iter()
        .map(|f| f.kept())
        .sum()
    }

    /// Re-read this thread. Returns `false` when it is gone.
    fn update(&mut self, at: Place<'_>, buf: &mut Vec<u8>, first: bool, clock: &Clock) -> bool {
        let sched = self
            .schedstat
            .read(at, c"schedstat", buf)
            .and_then(procfs::parse_schedstat);
        let ran = sched.is_none() || sched != self.last_sched;
        self.ran = ran;
        // schedstat's run time is in ns: a far finer CPU% than 10 ms ticks.
        let sched_pct = match (sched, self.last_sched) {
            (Some(now), Some(before)) if clock.elapsed_ticks > 0.0 => {
                let elapsed_ns = clock.elapsed_ticks / clock.clk_tck * 1e9;
                Some((now[0].saturating_sub(before[0]) as f64 / elapsed_ns * 100.0) as f32)
            }
            _ => None,
        };
        self.last_sched = sched;
        let due = clock.due(self.info.tid);
        if !(first || ran || due) {
            self.info.cpu_percent = 0.0;
            return true;
        }
        let Some(stat) = self
            .stat
            .read(at, c"stat", buf)
            .and_then(procfs::parse_stat)
        else {
            return false;
        };
        let state = RunState::from_char(stat.state);
        let changed = first
            || ran
            || stat.comm != self.info.name
            || state != self.info.state
            || stat.cpu_ticks != self.info.cpu_ticks;
        self.prev_ticks = if first {
            stat.cpu_ticks
        } else {
            self.info.cpu_ticks
        };
        self.info.name = stat.comm;
        self.info.state = state;
        self.info.cpu_ticks = stat.cpu_ticks;
        self.info.cpu_percent = sched_pct.unwrap_or_else(|| {
            if clock.elapsed_ticks > 0.0 {
                let delta = stat.cpu_ticks.saturating_sub(self.prev_ticks);
                (delta as f64 / clock.elapsed_ticks * 100.0) as f32
            } else {
                0.0
            }
        });
        if !changed {
            return true;
        }
        self.info.wait.wchan = self
            .wchan
            .read(at, c"wchan", buf)
            .and_then(procfs::parse_wchan);
        let sc = self
            .syscall
            .read(at, c"syscall", buf)
            .and_then(procfs::parse_syscall);
        self.info.wait.syscall_nr = sc.as_ref().map(|(nr, _)| *nr);
        self.info.wait.syscall = sc
            .as_ref()
            .and_then(|(nr, _)| syscalls::name(*nr))
            .map(str::to_owned);
        self.info.wait.syscall_args = sc.map(|(_, a)| a).unwrap_or_default();
        if let Some(st) = self.status.read(at, c"status", buf) {
            let st = procfs::parse_status(st);
            self.info.voluntary_ctxt_switches = st.voluntary;
            self.info.nonvoluntary_ctxt_switches = st.nonvoluntary;
        }
        true
    }
}

/// Thread table of one process.
pub struct Threads {
    task_dir: OwnedFd,
    scanner: DirScanner,
    /// By tid, so the table comes out sorted.
    slots: BTreeMap<i32, Slot>,
    /// `task` was listed at least once.
    listed: bool,
    /// Some thread ran (or was born or died) during the last refresh.
    any_ran: bool,
    /// Files kept open by the slots, and how many may be (half the fd limit at attach, so
    /// on-demand opens and the rest of lifecycle-top always have room).
    kept_fds: usize,
    fd_budget: usize,
    warned_fds: bool,
    buf: Vec<u8>,
    generation: u64,
    tids: Vec<i32>,
    /// The process CPU clock's reading at the last refresh: see [`Threads::refresh`].
    last_cpu_ns: Option<u64>,
}

impl Threads {
    /// `proc_dir` is the process's `/proc/PID` dirfd; at most `fd_budget` files are kept open.
    pub fn new(proc_dir: BorrowedFd<'_>, fd_budget: usize) -> io::Result<Threads> {
        Ok(Threads {
            task_dir: procfs::open_dir_at(proc_dir, "task")?,
            scanner: DirScanner::new(),
            slots: BTreeMap::new(),
            listed: false,
            any_ran: true,
            kept_fds: 0,
            fd_budget,
            warned_fds: false,
            buf: vec![0; 4096],
            generation: 0,
            tids: Vec::new(),
            last_cpu_ns: None,
        })
    }

    /// Refresh and return the threads sorted by tid. `expected` is the thread count from the
    /// process's `stat`, read this refresh: a dead thread shows as a failed read on its kept
    /// fds, so `/proc/PID/task` only needs listing (the costliest part of a steady refresh:
    /// a dentry lookup per thread) when the count says a thread was born, plus once every
    /// N refreshes as a safety net. An error means the process is gone.
    ///
    /// Most threads of a big process sleep, yet proving it costs a `schedstat` read each.
    /// The process CPU clock is the sum of its threads' run times, so: read first the
    /// threads that ran last time (and those due), and if their run-time deltas add up to
    /// the clock's delta to the nanosecond, no other thread ran and they are left unread.
    /// Anything else (a mismatch, a failed read, no clock) reads every thread as before.
    /// `cpu_now` is the process CPU clock (ns), read this refresh before any thread (the
    /// caller reads it anyway; over 1,000 threads each read costs a walk of them all).
    pub fn refresh(
        &mut self,
        clock: &Clock,
        expected: Option<u32>,
        cpu_now: Option<u64>,
    ) -> io::Result<Vec<ThreadInfo>> {
        let buf = &mut self.buf;
        let task_dir = self.task_dir.as_fd();
        let kept = &mut self.kept_fds;
        let mut any_ran = false;
        let cpu_delta = match (cpu_now, self.last_cpu_ns) {
            (Some(now), Some(before)) => now.checked_sub(before),
            _ => None,
        };
        self.last_cpu_ns = cpu_now;
        // Pass 1: the likely runners. `sum` stays `Some` while every delta is known.
        let mut sum = cpu_delta.map(|_| 0u64);
        for (&tid, s) in self.slots.iter_mut() {
            s.read_now = s.ran || clock.due(tid) || cpu_delta.is_none();
            if !s.read_now {
                continue;
            }
            let before = s.last_sched.map(|x| x[0]);
            s.alive = s.update(Place { task_dir, tid }, buf, false, clock);
            let after = s.last_sched.map(|x| x[0]).filter(|_| s.alive);
            sum = match (sum, before, after) {
                (Some(acc), Some(b), Some(a)) => a.checked_sub(b).map(|d| acc + d),
                _ => None,
            };
        }
        let others_idle = sum.is_some() && sum == cpu_delta;
        // Pass 2: the rest, unless proven idle (then only their CPU% drops to 0).
        for (&tid, s) in self.slots.iter_mut() {
            if s.read_now {
                continue;
            }
            if others_idle {
                s.ran = false;
                s.alive = true;
                s.info.cpu_percent = 0.0;
            } else {
                s.alive = s.update(Place { task_dir, tid }, buf, false, clock);
            }
        }
        self.slots.retain(|_, s| {
            any_ran |= s.ran || !s.alive;
            if !s.alive {
                *kept -= s.kept_fds();
            }
            s.alive
        });
        let count_differs = expected.is_none_or(|n| n as usize != self.slots.len());
        if !self.listed || count_differs || clock.tick.is_multiple_of(clock.every.max(1)) {
            any_ran |= count_differs;
            self.list(clock)?;
        }
        self.any_ran = any_ran;
        Ok(self.slots.values().map(|s| s.info.clone()).collect())
    }

    /// getdents of `/proc/PID/task`: open and read the new threads, drop the unlisted ones.
    fn list(&mut self, clock: &Clock) -> io::Result<()> {
        self.generation += 1;
        let generation = self.generation;
        self.tids.clear();
        let tids = &mut self.tids;
        self.scanner
            .scan_pids(self.task_dir.as_fd(), |tid, _ino| tids.push(tid))?;
        self.listed = true;
        let task_dir = self.task_dir.as_fd();
        for &tid in &self.tids {
            if let Some(slot) = self.slots.get_mut(&tid) {
                slot.generation = generation;
                continue;
            }
            let keep = self.kept_fds + 6 <= self.fd_budget;
            if !keep && !self.warned_fds {
                self.warned_fds = true;
                tracing::warn!(
                    "fd budget spent at {} threads: further threads are read without kept fds \
                     (slower); raise RLIMIT_NOFILE (ulimit -Hn) for big processes",
                    self.slots.len()
                );
            }
            // Exited between getdents and open: skip it.
            let Ok(mut slot) = Slot::open(task_dir, tid, keep) else {
                continue;
            };
            if slot.update(Place { task_dir, tid }, &mut self.buf, true, clock) {
                slot.generation = generation;
                self.kept_fds += slot.kept_fds();
                self.slots.insert(tid, slot);
            }
        }
        let kept = &mut self.kept_fds;
        self.slots.retain(|_, s| {
            let listed = s.generation == generation;
            if !listed {
                *kept -= s.kept_fds();
            }
            listed
        });
        Ok(())
    }

    /// Did any thread run (be born, die) during the last refresh? A thread that forked ran.
    pub fn any_ran(&self) -> bool {
        self.any_ran
    }

    /// Number of files kept open (for diagnostics).
    pub fn open_files(&self) -> usize {
        self.kept_fds + 1
    }
}
