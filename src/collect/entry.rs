//! One tracked process ([`Entry`]): its kept `/proc/PID` files, its pidfd and its last
//! figures, re-read only when its `schedstat` says it ran (or when due), and the [`Clock`]
//! a refresh reads them with.

use crate::collect::pidfd::{PidFd, PidFdError};
use crate::collect::procfs::{self, ProcFile, Stat};
use crate::model::{ProcInfo, ProcKey, RunState, SharedStr, SignalMasks};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

/// Conversion factors and the clock for one refresh.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub clk_tck: f64,
    pub page_size: u64,
    pub uptime_secs: f64,
    /// Wall time since the previous refresh, in clock ticks (CPU% denominator).
    pub elapsed_ticks: f64,
    /// Refresh counter and the re-read period: each process and thread is re-read in full
    /// once every `every` refreshes, on a refresh that depends on its id, so the safety-net
    /// re-reads are spread evenly instead of making every Nth refresh a spike.
    pub tick: u64,
    pub every: u64,
}

impl Clock {
    /// CPU% before there is an interval to measure over (the first refresh): the average
    /// since the process or thread started, as `ps` shows it.
    pub fn lifetime_percent(&self, cpu_ticks: u64, start_time: u64) -> f32 {
        let age_ticks = self.uptime_secs * self.clk_tck - start_time as f64;
        if age_ticks > 0.0 {
            (cpu_ticks as f64 / age_ticks * 100.0) as f32
        } else {
            0.0
        }
    }

    /// Is `id` due for its periodic full re-read on this refresh?
    pub fn due(&self, id: i32) -> bool {
        (id as u64)
            .wrapping_add(self.tick)
            .is_multiple_of(self.every.max(1))
    }

    /// Is `id` due for its turn in the faster rotation (one refresh in [`ROTATE_EVERY`]),
    /// which re-reads what ran but nobody shows (an off-screen thread's `stat`)?
    pub fn rotating(&self, id: i32) -> bool {
        (id as u64)
            .wrapping_add(self.tick)
            .is_multiple_of(ROTATE_EVERY)
    }
}

/// See [`Clock::rotating`]: a thread off screen that keeps running has its state letter and
/// name re-read at least once every this many refreshes (5 s at the default 500 ms).
pub const ROTATE_EVERY: u64 = 10;

/// One tracked process: its kept files, pidfd and last figures.
pub struct Entry {
    pub info: ProcInfo,
    pub(crate) ino: u64,
    dir: OwnedFd,
    stat: ProcFile,
    /// `task/PID/stat`, the main thread's own line, opened on first use (see
    /// [`Entry::update_ordered`]'s `light`): unlike `PID/stat` the kernel answers it without
    /// walking every thread of the process.
    main_stat: Option<ProcFile>,
    /// The process CPU clock (all threads' run time, ns): one cheap syscall that says
    /// whether any of its threads ran, where `schedstat` says it for the main thread only.
    cpu_clock: Option<libc::clockid_t>,
    last_cpu_ns: Option<u64>,
    pub pidfd: Option<Arc<PidFd>>,
    pub(crate) exited_at: Option<Instant>,
    /// Ran since the previous refresh (or multi-threaded: cannot tell).
    pub(crate) ran: bool,
}

impl Entry {
    /// Open `/proc/PID` and its files and check that they are the process `stat` described.
    pub(crate) fn open(
        proc_root: &OwnedFd,
        pid: i32,
        ino: u64,
        stat: Stat,
        depth: u32,
    ) -> Option<Entry> {
        let dir = procfs::open_dir_at(proc_root.as_fd(), &pid.to_string()).ok()?;
        let stat_file = ProcFile::open_at(dir.as_fd(), c"stat").ok()?;
        let key = ProcKey {
            pid,
            start_time: stat.start_time,
        };
        // The pidfd re-checks the start time, so from here on it is this exact process. Gone
        // or reused already: nothing to track. Other failures (an old kernel without
        // pidfd_open, out of fds): track it anyway, exits then show at the next refresh.
        let pidfd = match PidFd::open(key) {
            Ok(fd) => Some(Arc::new(fd)),
            Err(PidFdError::NoSuchProcess(_) | PidFdError::Reused { .. }) => return None,
            Err(_) => None,
        };
        let mut e = Entry {
            info: ProcInfo {
                key,
                ppid: stat.ppid,
                pgid: stat.pgrp,
                sid: stat.session,
                name: SharedStr::default(),
                cmdline: Vec::new(),
                state: RunState::from_char(stat.state),
                cpu_ticks: stat.cpu_ticks,
                cpu_percent: 0.0,
                rss_bytes: 0,
                num_threads: stat.num_threads,
                age_secs: 0.0,
                depth,
                orphan: false,
                signals: SignalMasks::default(),
                exit: None,
            },
            ino,
            cpu_clock: procfs::process_cpu_clock(pid),
            dir,
            stat: stat_file,
            main_stat: None,
            last_cpu_ns: None,
            pidfd,
            exited_at: None,
            ran: true,
        };
        e.read_rare();
        Some(e)
    }

    /// The process CPU clock (ns, all threads) as read by the last [`Entry::update`].
    pub fn cpu_ns(&self) -> Option<u64> {
        self.last_cpu_ns
    }

    /// The process CPU clock read now (not the value of this refresh's update).
    pub fn cpu_ns_now(&self) -> Option<u64> {
        self.cpu_clock.and_then(procfs::cpu_clock_ns)
    }

    /// The process's `/proc/PID` directory fd (bound to this process, not to the pid).
    pub fn dir(&self) -> rustix::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// `cmdline` and `status` (signal masks): read on first sight, on exec and when due (another
    /// thread may change the signal dispositions without this one running).
    fn read_rare(&mut self) {
        if let Ok(f) = ProcFile::open_at(self.dir.as_fd(), c"cmdline") {
            let mut buf = Vec::new();
            if let Ok(b) = f.read(&mut buf) {
                self.info.cmdline = procfs::parse_cmdline(b);
            }
        }
        if let Ok(f) = ProcFile::open_at(self.dir.as_fd(), c"status") {
            let mut buf = vec![0; 2048];
            if let Ok(b) = f.read(&mut buf) {
                let st = procfs::parse_status(b);
                self.info.signals = SignalMasks {
                    ignored: st.sig_ign,
                    caught: st.sig_cgt,
                    blocked: st.sig_blk,
                };
            }
        }
    }

    /// Re-read `stat` unless the process provably did not run (its CPU clock unchanged; the
    /// clock is found by pid, but a reused pid's clock differs and then the kept `stat` fd
    /// fails) and is not due. Returns `false` if the process is gone.
    pub(crate) fn update(&mut self, buf: &mut Vec<u8>, force: bool, clock: &Clock) -> bool {
        self.update_ordered(buf, force, clock, false, false)
    }

    /// The main thread's kept `stat` (opened now if it was not), `None` if it cannot be.
    fn main_stat(&mut self) -> Option<&ProcFile> {
        if self.main_stat.is_none() {
            let path = std::ffi::CString::new(format!("task/{}/stat", self.info.key.pid)).ok()?;
            self.main_stat = ProcFile::open_at(self.dir.as_fd(), &path).ok();
        }
        self.main_stat.as_ref()
    }

    /// [`Entry::update`]; with `clock_last`, `stat` is read first (always) and the CPU clock
    /// right after it, so the caller can use [`Entry::cpu_ns`] as a reading taken "now": a
    /// multi-threaded target's clock read walks all its threads, and reading it twice per
    /// refresh cost a tenth of a refresh at 10,000 threads.
    ///
    /// `light` (with `clock_last`, for the TUI): `stat` is the main thread's line
    /// (`task/PID/stat`), which the kernel answers without walking the threads, as `PID/stat`
    /// does to sum their CPU times (10,000 threads: a walk per refresh). What differs is
    /// the CPU time, taken from the process CPU clock read right after (the same sum, in
    /// ns); state, name, parent, group, thread count, RSS and signal masks are the
    /// process's in both lines. Without a CPU clock the full line is read.
    pub(crate) fn update_ordered(
        &mut self,
        buf: &mut Vec<u8>,
        force: bool,
        clock: &Clock,
        clock_last: bool,
        light: bool,
    ) -> bool {
        let due = clock.due(self.info.key.pid);
        let force = force || due || clock_last;
        let read_clock = |e: &Self| e.cpu_clock.and_then(procfs::cpu_clock_ns);
        let mut cpu = if clock_last { None } else { read_clock(self) };
        let ran = cpu.is_none() || cpu != self.last_cpu_ns;
        if force || ran {
            let light = light && clock_last && self.cpu_clock.is_some();
            let light = light && self.main_stat().is_some();
            let file = match (light, &self.main_stat) {
                (true, Some(f)) => f,
                _ => &self.stat,
            };
            let mut light = light;
            let stat = match file.read(buf).ok().and_then(procfs::parse_stat) {
                Some(s) => Some(s),
                // The main thread's file failed (it exec'd from another thread, say): the
                // process line says whether the process is gone; reopened next time.
                None if light => {
                    self.main_stat = None;
                    light = false;
                    self.stat.read(buf).ok().and_then(procfs::parse_stat)
                }
                None => None,
            };
            let Some(mut stat) = stat else {
                return false;
            };
            if stat.start_time != self.info.key.start_time {
                return false;
            }
            if clock_last {
                cpu = read_clock(self);
            }
            if light {
                match cpu {
                    Some(ns) => stat.cpu_ticks = (ns as f64 * clock.clk_tck / 1e9) as u64,
                    // The clock failed (the process is going): the full line says.
                    None => match self.stat.read(buf).ok().and_then(procfs::parse_stat) {
                        Some(full) => stat = full,
                        None => return false,
                    },
                }
            }
            // The clock (ns) is the whole process's CPU: finer than ticks.
            let sched_pct = match (cpu, self.last_cpu_ns) {
                (Some(now), Some(before)) if clock.elapsed_ticks > 0.0 => {
                    let elapsed_ns = clock.elapsed_ticks / clock.clk_tck * 1e9;
                    Some((now.saturating_sub(before) as f64 / elapsed_ns * 100.0) as f32)
                }
                _ => None,
            };
            self.ran = cpu.is_none() || cpu != self.last_cpu_ns;
            self.last_cpu_ns = cpu;
            let delta = stat.cpu_ticks.saturating_sub(self.info.cpu_ticks);
            self.info.cpu_percent = sched_pct.unwrap_or_else(|| {
                if clock.elapsed_ticks > 0.0 {
                    (delta as f64 / clock.elapsed_ticks * 100.0) as f32
                } else {
                    clock.lifetime_percent(stat.cpu_ticks, stat.start_time)
                }
            });
            let execed = !self.info.name.is_empty() && self.info.name != stat.comm;
            let first = self.info.name.is_empty();
            if self.info.name != stat.comm {
                self.info.name = stat.comm.into();
            }
            self.info.ppid = stat.ppid;
            self.info.pgid = stat.pgrp;
            self.info.sid = stat.session;
            self.info.state = RunState::from_char(stat.state);
            self.info.cpu_ticks = stat.cpu_ticks;
            self.info.num_threads = stat.num_threads;
            self.info.rss_bytes = stat.rss_pages * clock.page_size;
            // Signals 1-31 come free with every stat read (a handler installed since the last
            // `status` read shows at once); real-time ones only from `status`.
            let merge = |old: u64, low: u64| (old & !procfs::LOW_SIGNALS) | low;
            let sig = &mut self.info.signals;
            sig.blocked = merge(sig.blocked, stat.sig_blocked);
            sig.ignored = merge(sig.ignored, stat.sig_ignored);
            sig.caught = merge(sig.caught, stat.sig_caught);
            // Only its own threads change its argv or signal dispositions: when none ran
            // (its CPU clock did not move), the due re-read skips them (a `cmdline` read
            // walks the target's memory: a third of an idle 1,000-process refresh).
            // An empty argv was read mid-exec (the new image's arguments not set up yet; a
            // process found by its fork event is read at once): read again until it shows.
            let unread = self.info.cmdline.is_empty() && stat.state != 'Z';
            if execed || unread || (due && !first && self.ran) {
                self.read_rare();
            }
        } else {
            self.ran = false;
            self.last_cpu_ns = cpu;
            self.info.cpu_percent = 0.0;
        }
        let started = self.info.key.start_time as f64 / clock.clk_tck;
        self.info.age_secs = (clock.uptime_secs - started).max(0.0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_refresh_cpu_is_the_average_since_start() {
        let clock = Clock {
            clk_tck: 100.0,
            page_size: 4096,
            uptime_secs: 200.0,
            elapsed_ticks: 0.0,
            tick: 0,
            every: 30,
        };
        // Started at 100 s (10,000 ticks), used 2,500 ticks over 100 s: 25 %.
        assert_eq!(clock.lifetime_percent(2_500, 10_000), 25.0);
        // Started "now" (or a clock skew): no division by zero.
        assert_eq!(clock.lifetime_percent(5, 20_000), 0.0);
        assert_eq!(clock.lifetime_percent(5, 30_000), 0.0);
    }
}
