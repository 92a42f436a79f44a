//! The target's threads. Each refresh re-reads `schedstat` through fds kept open (`pread`),
//! skipping even that for threads the process CPU clock proves idle; `/proc/PID/task` is
//! listed (getdents on a kept dirfd) only when the thread count changed. The rest is read
//! only for the threads someone wants ([`WaitDemand`]: the rows on screen; everyone by
//! default): `stat` (state, name, ticks) and the costly wait files (`wchan`, `syscall`,
//! `status`), when they ran or were not read yet; their files are kept open while they are
//! wanted. A thread nobody wants that runs gets its CPU% and CPU time from `schedstat` and its
//! `stat` one refresh in [`ROTATE_EVERY`](crate::collect::entry::ROTATE_EVERY), through a
//! `stat` file kept while it keeps running (closed once it is found idle). Once every
//! N refreshes (spread by tid) a wanted thread's `stat` is re-read anyway: another thread
//! may have renamed it. Files are kept open within an fd budget; past it, threads are
//! still read, opening files per read.

use crate::collect::dirscan::DirScanner;
use crate::collect::procfs::{self, ProcFile};
use crate::collect::syscalls;
use crate::collect::tree::Clock;
use crate::model::{RunState, SharedStr, ThreadInfo, Wait, WaitPoint};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::io;

/// One per-thread file: kept open, not opened yet (opened the first time it is read, and kept
/// when the thread is wanted and the fd budget has room), opened for each read (the budget
/// is spent, or nobody shows the thread: correct, three syscalls instead of one), or not
/// readable. Opens go through `/proc/PID/task` by tid: no per-thread directory fd is kept,
/// so a thread costs one kept fd (`schedstat`) unless it is shown.
enum File {
    Kept(ProcFile),
    Lazy,
    OnDemand,
    Unavailable,
}

impl File {
    fn path(at: Place<'_>, name: &CStr) -> Option<CString> {
        CString::new(format!("{}/{}", at.tid, name.to_str().ok()?)).ok()
    }

    /// Open now: kept if `keep`, else read per read.
    fn open(at: Place<'_>, name: &CStr, keep: bool) -> File {
        if !keep {
            return File::OnDemand;
        }
        let Some(path) = File::path(at, name) else {
            return File::Unavailable;
        };
        match ProcFile::open_at(at.task_dir, &path) {
            Ok(f) => File::Kept(f),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                File::OnDemand
            }
            // e.g. `syscall` needs ptrace-attach rights (Yama may refuse): column stays empty.
            Err(_) => File::Unavailable,
        }
    }

    /// Read it; a `Lazy` file is opened first (kept if `keep`). A kept file of a dead
    /// thread fails (it stays bound to that thread, even if its tid is reused).
    fn read<'a>(
        &mut self,
        at: Place<'_>,
        name: &CStr,
        keep: bool,
        buf: &'a mut Vec<u8>,
    ) -> Option<&'a [u8]> {
        if matches!(self, File::Lazy) && keep {
            *self = File::open(at, name, true);
        }
        match self {
            File::Kept(f) => f.read(buf).ok(),
            File::OnDemand | File::Lazy => {
                let path = File::path(at, name)?;
                ProcFile::open_at(at.task_dir, &path).ok()?.read(buf).ok()
            }
            File::Unavailable => None,
        }
    }

    /// Close a kept file (it is opened again when next wanted).
    fn release(&mut self) {
        if matches!(self, File::Kept(_)) {
            *self = File::Lazy;
        }
    }
}

/// Where a thread's files are: `/proc/PID/task` and the tid.
#[derive(Clone, Copy)]
struct Place<'a> {
    task_dir: BorrowedFd<'a>,
    tid: i32,
}

/// Files a new slot keeps open (`schedstat`); `stat` and the wait files are kept for wanted
/// threads only, while the budget has room.
const FDS_PER_SLOT: usize = 1;

/// Files of one thread, plus what was last read from them.
struct Slot {
    schedstat: File,
    stat: File,
    wchan: File,
    syscall: File,
    status: File,
    last_sched: Option<[u64; 3]>,
    prev_ticks: u64,
    /// `stat`'s CPU ticks and `schedstat`'s run time (ns) at the last `stat` read: between
    /// `stat` reads the CPU time is estimated from the run time since.
    ticks_at_stat: u64,
    sched_ns_at_stat: u64,
    info: ThreadInfo,
    generation: u64,
    /// Scheduled since the previous refresh (or no schedstat: cannot tell).
    ran: bool,
    /// `info.wait` and the switch counts were read since the thread last ran.
    wait_fresh: bool,
    /// Scratch for [`Threads::refresh`]: read in its first pass; still there.
    read_now: bool,
    alive: bool,
    /// Set by [`Threads`] before each update: the fd budget has room to keep a file opened
    /// now (else it is opened per read).
    room: bool,
}

impl Slot {
    /// Keep the thread's `schedstat` open if `keep` (read every refresh it may have run),
    /// else read it on demand; the other files are opened when first read, and kept only
    /// while the thread is wanted ([`WaitDemand`]).
    fn open(task_dir: BorrowedFd<'_>, tid: i32, keep: bool) -> io::Result<Slot> {
        let at = Place { task_dir, tid };
        let schedstat = File::open(at, c"schedstat", keep);
        if keep && matches!(schedstat, File::Unavailable) {
            // Gone already (or no schedstat at all: then `stat` is read every time).
            rustix::fs::accessat(
                task_dir,
                tid.to_string().as_str(),
                rustix::fs::Access::EXISTS,
                rustix::fs::AtFlags::empty(),
            )?;
        }
        Ok(Slot {
            schedstat,
            stat: File::Lazy,
            wchan: File::Lazy,
            syscall: File::Lazy,
            status: File::Lazy,
            last_sched: None,
            prev_ticks: 0,
            ticks_at_stat: 0,
            sched_ns_at_stat: 0,
            info: ThreadInfo {
                tid,
                name: SharedStr::default(),
                state: RunState::Other('?'),
                wait: Wait::default(),
                cpu_ticks: 0,
                cpu_percent: 0.0,
                voluntary_ctxt_switches: None,
                nonvoluntary_ctxt_switches: None,
            },
            generation: 0,
            ran: true,
            wait_fresh: false,
            read_now: false,
            alive: true,
            room: false,
        })
    }

    /// Files this slot keeps open (counted against the budget).
    fn kept_fds(&self) -> usize {
        let files = [
            &self.schedstat,
            &self.stat,
            &self.wchan,
            &self.syscall,
            &self.status,
        ];
        files.iter().filter(|f| matches!(f, File::Kept(_))).count()
    }

    /// Re-read this thread. Returns `false` when it is gone. `wanted`: someone shows or
    /// audits this thread, so its wait point is read too (when stale). `all`: everyone is
    /// wanted (headless, `check`, `snapshot`): `stat` is read for every thread that ran.
    fn update(
        &mut self,
        at: Place<'_>,
        buf: &mut Vec<u8>,
        first: bool,
        clock: &Clock,
        wanted: bool,
        all: bool,
    ) -> bool {
        let sched_kept = matches!(self.schedstat, File::Kept(_));
        let sched = self
            .schedstat
            .read(at, c"schedstat", true, buf)
            .and_then(procfs::parse_schedstat);
        if sched.is_none() && sched_kept {
            return false; // its kept file failed: this thread is gone
        }
        let ran = sched.is_none() || sched != self.last_sched;
        self.ran = ran;
        // Files of a thread nobody shows are read per read, and closed if kept; except its
        // `stat` while it keeps running: the rotation re-reads it one refresh in
        // ROTATE_EVERY, and a `pread` costs a fifth of an open, read and close (a busy
        // 1,000-thread target: 100 of those per refresh were a third of the collector). It
        // is closed at the first read that finds the thread idle (and never kept for a
        // thread only read because it is new: 10,000 idle threads keep one file each).
        let keep = wanted && self.room;
        let keep_stat = self.room && (wanted || (ran && !first));
        if !wanted {
            if !ran {
                self.stat.release();
            }
            self.wchan.release();
            self.syscall.release();
            self.status.release();
        }
        // schedstat's run time is in ns: a far finer CPU% than 10 ms ticks.
        let sched_pct = match (sched, self.last_sched) {
            (Some(now), Some(before)) if clock.elapsed_ticks > 0.0 => {
                let elapsed_ns = clock.elapsed_ticks / clock.clk_tck * 1e9;
                Some((now[0].saturating_sub(before[0]) as f64 / elapsed_ns * 100.0) as f32)
            }
            _ => None,
        };
        self.last_sched = sched;
        let due = clock.due(self.info.tid) && (all || wanted);
        let stale_wait = wanted && !self.wait_fresh;
        if !(first || ran || due || stale_wait) {
            self.info.cpu_percent = 0.0;
            return true;
        }
        // A thread that ran but nobody shows (the TUI's off-screen rows): `schedstat` gave
        // its CPU% and run time; `stat` (state letter, name, tick counts) waits for its turn
        // in the rotation, so the cost follows the rows shown, not the threads that ran.
        if let (Some(now), Some(pct)) = (sched, sched_pct)
            && !(first || due || stale_wait || all || clock.rotating(self.info.tid))
        {
            self.info.cpu_percent = pct;
            let ran_ns = now[0].saturating_sub(self.sched_ns_at_stat);
            self.info.cpu_ticks = self.ticks_at_stat + (ran_ns as f64 * clock.clk_tck / 1e9) as u64;
            self.wait_fresh = false;
            if !wanted {
                self.clear_wait();
            }
            return true;
        }
        let Some(stat) = self
            .stat
            .read(at, c"stat", keep_stat, buf)
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
        if stat.comm != self.info.name {
            self.info.name = stat.comm.into();
        }
        self.info.state = state;
        self.info.cpu_ticks = stat.cpu_ticks;
        self.ticks_at_stat = stat.cpu_ticks;
        self.sched_ns_at_stat = sched.map_or(0, |s| s[0]);
        self.info.cpu_percent = sched_pct.unwrap_or_else(|| {
            if clock.elapsed_ticks > 0.0 {
                let delta = stat.cpu_ticks.saturating_sub(self.prev_ticks);
                (delta as f64 / clock.elapsed_ticks * 100.0) as f32
            } else {
                clock.lifetime_percent(stat.cpu_ticks, stat.start_time)
            }
        });
        if changed {
            self.wait_fresh = false;
        }
        if !wanted {
            // Nobody shows it: drop what would be stale (and its allocations).
            if !self.wait_fresh {
                self.clear_wait();
            }
            return true;
        }
        if self.wait_fresh {
            return true;
        }
        self.wait_fresh = true;
        // Opened now and kept while the budget has room, else opened per read.
        let wchan = self
            .wchan
            .read(at, c"wchan", keep, buf)
            .and_then(procfs::parse_wchan);
        let sc = self
            .syscall
            .read(at, c"syscall", keep, buf)
            .and_then(procfs::parse_syscall);
        // Boxed only when something is known (see `Wait`).
        self.info.wait = WaitPoint {
            wchan,
            syscall_nr: sc.as_ref().map(|(nr, _)| *nr),
            syscall: sc
                .as_ref()
                .and_then(|(nr, _)| syscalls::name(*nr))
                .map(str::to_owned),
            syscall_args: sc.map(|(_, a)| a.to_vec()).unwrap_or_default(),
        }
        .into();
        if let Some(st) = self.status.read(at, c"status", keep, buf) {
            let st = procfs::parse_status(st);
            self.info.voluntary_ctxt_switches = st.voluntary;
            self.info.nonvoluntary_ctxt_switches = st.nonvoluntary;
        }
        true
    }

    fn clear_wait(&mut self) {
        self.info.wait.clear();
        self.info.voluntary_ctxt_switches = None;
        self.info.nonvoluntary_ctxt_switches = None;
    }
}

/// Whose wait points (`wchan`, `syscall`, `status`: the reads that cost most, `syscall`
/// above all, which waits for a running thread to leave the CPU) the collector reads: every
/// thread's (the default: headless, `check`, `snapshot` show them all), or only those of
/// the threads a consumer shows (the TUI's rows on screen). The target's main thread is
/// always read (the engine's audits name where it waits). The others' [`WaitPoint`]s are
/// left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WaitDemand {
    #[default]
    All,
    Tids(BTreeSet<i32>),
}

impl WaitDemand {
    pub fn wants(&self, tid: i32) -> bool {
        match self {
            WaitDemand::All => true,
            WaitDemand::Tids(t) => t.contains(&tid),
        }
    }
}

/// Thread table of one process.
pub struct Threads {
    task_dir: OwnedFd,
    scanner: DirScanner,
    /// Sorted by tid, so the table comes out sorted. A sorted `Vec`, not a `BTreeMap`: at
    /// 10,000 threads the map's half-full nodes cost 5.0 MB of heap, the `Vec` 2.9 MB.
    slots: Vec<Slot>,
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
    demand: WaitDemand,
}

impl Threads {
    /// `proc_dir` is the process's `/proc/PID` dirfd; at most `fd_budget` files are kept open.
    pub fn new(proc_dir: BorrowedFd<'_>, fd_budget: usize) -> io::Result<Threads> {
        Ok(Threads {
            task_dir: procfs::open_dir_at(proc_dir, "task")?,
            scanner: DirScanner::new(),
            slots: Vec::new(),
            listed: false,
            any_ran: true,
            kept_fds: 0,
            fd_budget,
            warned_fds: false,
            buf: vec![0; 4096],
            generation: 0,
            tids: Vec::new(),
            last_cpu_ns: None,
            demand: WaitDemand::All,
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
        let budget = self.fd_budget;
        let mut any_ran = false;
        let mut any_dead = false;
        let cpu_delta = match (cpu_now, self.last_cpu_ns) {
            (Some(now), Some(before)) => now.checked_sub(before),
            _ => None,
        };
        self.last_cpu_ns = cpu_now;
        // Pass 1: the likely runners. `sum` stays `Some` while every delta is known.
        let mut sum = cpu_delta.map(|_| 0u64);
        let demand = &self.demand;
        let all = matches!(demand, WaitDemand::All);
        for s in self.slots.iter_mut() {
            let tid = s.info.tid;
            let wanted = demand.wants(tid);
            // The periodic re-read (a name set from another thread) only for what is shown:
            // an off-screen thread is read when it runs or comes on screen.
            let due = clock.due(tid) && (all || wanted);
            s.read_now = s.ran || due || cpu_delta.is_none() || (wanted && !s.wait_fresh);
            if !s.read_now {
                continue;
            }
            let before = s.last_sched.map(|x| x[0]);
            let fds = s.kept_fds();
            s.room = *kept < budget;
            s.alive = s.update(Place { task_dir, tid }, buf, false, clock, wanted, all);
            *kept = (*kept + s.kept_fds()).saturating_sub(fds);
            any_ran |= s.ran || !s.alive;
            any_dead |= !s.alive;
            let after = s.last_sched.map(|x| x[0]).filter(|_| s.alive);
            sum = match (sum, before, after) {
                (Some(acc), Some(b), Some(a)) => a.checked_sub(b).map(|d| acc + d),
                _ => None,
            };
        }
        let others_idle = sum.is_some() && sum == cpu_delta;
        // Pass 2: the rest, unless proven idle. A slot left unread did not run at its last
        // read (`ran` is part of `read_now`), which set its CPU% to 0 and kept it alive: a
        // proof leaves nothing to change, so the 10,000-slot walk is skipped.
        let rest = match others_idle {
            true => None,
            false => Some(self.slots.iter_mut()),
        };
        for s in rest.into_iter().flatten() {
            if s.read_now {
                continue;
            }
            let tid = s.info.tid;
            let wanted = demand.wants(tid);
            let fds = s.kept_fds();
            s.room = *kept < budget;
            s.alive = s.update(Place { task_dir, tid }, buf, false, clock, wanted, all);
            *kept = (*kept + s.kept_fds()).saturating_sub(fds);
            any_ran |= s.ran || !s.alive;
            any_dead |= !s.alive;
        }
        // A slot left unread did not run at its last read and was alive then (a dead one is
        // dropped below): only the slots read now can say a thread ran or died, so the
        // 10,000-slot walk that drops the dead is needed only when one died.
        if any_dead {
            self.slots.retain(|s| {
                if !s.alive {
                    *kept -= s.kept_fds();
                }
                s.alive
            });
        }
        let count_differs = expected.is_none_or(|n| n as usize != self.slots.len());
        if !self.listed || count_differs || clock.tick.is_multiple_of(clock.every.max(1)) {
            any_ran |= count_differs;
            self.list(clock)?;
        }
        self.any_ran = any_ran;
        Ok(self.slots.iter().map(|s| s.info.clone()).collect())
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
        // New threads are pushed after the sorted slots, then sorted in (in place: new tids
        // are most often the highest, and an already sorted `Vec` sorts in one pass).
        let sorted = self.slots.len();
        // Room for every listed thread at once: grown by doubling, a 10,000-thread table
        // had room for 16,384 (1.7 MB unused).
        self.slots
            .reserve_exact(self.tids.len().saturating_sub(self.slots.len()));
        for &tid in &self.tids {
            if let Ok(i) = self.slots[..sorted].binary_search_by_key(&tid, |s| s.info.tid) {
                self.slots[i].generation = generation;
                continue;
            }
            let keep = self.kept_fds + FDS_PER_SLOT <= self.fd_budget;
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
            let wanted = self.demand.wants(tid);
            let all = matches!(self.demand, WaitDemand::All);
            slot.room = self.kept_fds + FDS_PER_SLOT < self.fd_budget;
            if slot.update(
                Place { task_dir, tid },
                &mut self.buf,
                true,
                clock,
                wanted,
                all,
            ) {
                slot.generation = generation;
                self.kept_fds += slot.kept_fds();
                self.slots.push(slot);
            }
        }
        if self.slots.len() > sorted {
            self.slots.sort_unstable_by_key(|s| s.info.tid);
        }
        let kept = &mut self.kept_fds;
        self.slots.retain(|s| {
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

    /// Files kept open or reserved for the kept threads (for diagnostics).
    pub fn open_files(&self) -> usize {
        self.kept_fds + 1
    }

    /// Is every thread wanted ([`WaitDemand::All`]: headless, `check`, `snapshot`)?
    pub fn wants_all(&self) -> bool {
        matches!(self.demand, WaitDemand::All)
    }

    /// Read the wait points of these threads only from the next refresh on (see
    /// [`WaitDemand`]); a thread newly wanted is read then even if it did not run.
    pub fn set_demand(&mut self, demand: WaitDemand) {
        self.demand = demand;
    }
}
