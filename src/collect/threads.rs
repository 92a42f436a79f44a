//! The target's threads. Each refresh lists `/proc/PID/task` (getdents on a dirfd kept open),
//! keeps the per-thread files open and re-reads them with `pread`, and reads the expensive
//! ones (`stat`, `wchan`, `syscall`, `status`) only for threads whose `schedstat` changed: a
//! thread that was not scheduled cannot have changed state, wait point or counters. Once
//! every N refreshes (spread by tid) a thread's `stat` is re-read anyway: another thread
//! may have renamed it; if anything in it changed, the rest is re-read too.

use crate::collect::dirscan::DirScanner;
use crate::collect::procfs::{self, ProcFile};
use crate::collect::syscalls;
use crate::collect::tree::Clock;
use crate::model::{RunState, ThreadInfo, WaitPoint};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::collections::BTreeMap;
use std::io;

/// Open files of one thread, plus what was last read from them.
struct Slot {
    schedstat: Option<ProcFile>,
    stat: ProcFile,
    wchan: Option<ProcFile>,
    syscall: Option<ProcFile>,
    status: Option<ProcFile>,
    last_sched: Option<[u64; 3]>,
    prev_ticks: u64,
    info: ThreadInfo,
    generation: u64,
}

impl Slot {
    fn open(task_dir: BorrowedFd<'_>, tid: i32) -> io::Result<Slot> {
        let dir = procfs::open_dir_at(task_dir, &tid.to_string())?;
        let d = dir.as_fd();
        let stat = ProcFile::open_at(d, c"stat")?;
        Ok(Slot {
            schedstat: ProcFile::open_at(d, c"schedstat").ok(),
            stat,
            wchan: ProcFile::open_at(d, c"wchan").ok(),
            // Needs ptrace-attach rights (Yama may refuse): then the syscall column stays empty.
            syscall: ProcFile::open_at(d, c"syscall").ok(),
            status: ProcFile::open_at(d, c"status").ok(),
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
        })
    }

    /// Re-read this thread. Returns `false` when it is gone.
    fn update(&mut self, buf: &mut Vec<u8>, first: bool, clock: &Clock) -> bool {
        let sched = self
            .schedstat
            .as_ref()
            .and_then(|f| f.read(buf).ok())
            .and_then(procfs::parse_schedstat);
        let ran = sched.is_none() || sched != self.last_sched;
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
        let Some(stat) = self.stat.read(buf).ok().and_then(procfs::parse_stat) else {
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
            .as_ref()
            .and_then(|f| f.read(buf).ok())
            .and_then(procfs::parse_wchan);
        let sc = self
            .syscall
            .as_ref()
            .and_then(|f| f.read(buf).ok())
            .and_then(procfs::parse_syscall);
        self.info.wait.syscall_nr = sc.as_ref().map(|(nr, _)| *nr);
        self.info.wait.syscall = sc
            .as_ref()
            .and_then(|(nr, _)| syscalls::name(*nr))
            .map(str::to_owned);
        self.info.wait.syscall_args = sc.map(|(_, a)| a).unwrap_or_default();
        if let Some(st) = self.status.as_ref().and_then(|f| f.read(buf).ok()) {
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
    buf: Vec<u8>,
    generation: u64,
    tids: Vec<i32>,
}

impl Threads {
    /// `proc_dir` is the process's `/proc/PID` dirfd.
    pub fn new(proc_dir: BorrowedFd<'_>) -> io::Result<Threads> {
        Ok(Threads {
            task_dir: procfs::open_dir_at(proc_dir, "task")?,
            scanner: DirScanner::new(),
            slots: BTreeMap::new(),
            listed: false,
            buf: vec![0; 4096],
            generation: 0,
            tids: Vec::new(),
        })
    }

    /// Refresh and return the threads sorted by tid. `expected` is the thread count from the
    /// process's `stat`, read this refresh: a dead thread shows as a failed read on its kept
    /// fds, so `/proc/PID/task` only needs listing (the costliest part of a steady refresh:
    /// a dentry lookup per thread) when the count says a thread was born, plus once every
    /// N refreshes as a safety net. An error means the process is gone.
    pub fn refresh(&mut self, clock: &Clock, expected: Option<u32>) -> io::Result<Vec<ThreadInfo>> {
        let buf = &mut self.buf;
        self.slots.retain(|_, s| s.update(buf, false, clock));
        let count_differs = expected.is_none_or(|n| n as usize != self.slots.len());
        if !self.listed || count_differs || clock.tick.is_multiple_of(clock.every.max(1)) {
            self.list(clock)?;
        }
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
        for &tid in &self.tids {
            if let Some(slot) = self.slots.get_mut(&tid) {
                slot.generation = generation;
                continue;
            }
            // Exited between getdents and open, or out of fds: skip this round.
            let Ok(mut slot) = Slot::open(self.task_dir.as_fd(), tid) else {
                continue;
            };
            if slot.update(&mut self.buf, true, clock) {
                slot.generation = generation;
                self.slots.insert(tid, slot);
            }
        }
        self.slots.retain(|_, s| s.generation == generation);
        Ok(())
    }

    /// Number of open files held (for diagnostics and the fd-limit check).
    pub fn open_files(&self) -> usize {
        self.slots
            .values()
            .map(|s| {
                1 + usize::from(s.schedstat.is_some())
                    + usize::from(s.wchan.is_some())
                    + usize::from(s.syscall.is_some())
                    + usize::from(s.status.is_some())
            })
            .sum::<usize>()
            + 1
    }
}
