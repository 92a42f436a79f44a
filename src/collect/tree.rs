//! The target's process tree. Each refresh lists `/proc` (getdents on a kept dirfd) and
//! reads `stat` only for pids it has not seen before (a pid whose `/proc` inode changed
//! counts as new: it was reused). A pid whose parent is tracked joins the tree and gets a
//! pidfd (in launch mode so does any child of lifecycle-top but its own helpers: orphans
//! reparented to us as subreaper, daemons included); processes outside the tree are remembered by (pid, inode) so they cost
//! nothing on later refreshes. Tracked processes stay tracked when reparented out of the
//! tree (marked `orphan`), and exited ones stay listed for a while with their exit status.

use crate::collect::dirscan::DirScanner;
pub use crate::collect::entry::{Clock, Entry};
use crate::collect::exits::{ExitBook, now_unix_ms};
use crate::collect::helpers;
use crate::collect::order::{Node, dfs_order};
use crate::collect::pidfd::PidFd;
use crate::collect::procevents::{Discovery, ProcEvents};
use crate::collect::procfs::{self, ProcFile, Stat};
use crate::model::{ExitInfo, ProcInfo, ProcKey, RunState};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options the tree needs from [`CollectorOptions`](crate::collect::CollectorOptions).
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    pub exited_linger: Duration,
    /// Also track new processes whose parent is lifecycle-top itself (launch mode: orphans
    /// reparented to us as subreaper before a refresh saw them, whatever their group or
    /// session: a daemon that called `setsid()` is the leak to show). lifecycle-top's own
    /// helpers stay out, so their exit status is never stolen by our reaping: those in
    /// [`helpers`](crate::collect::helpers) and those in our own process group (which the
    /// launched tree, started in a group of its own, never is).
    pub adopt_own_children: bool,
}

pub struct Tree {
    opts: TreeOptions,
    proc_root: OwnedFd,
    scanner: DirScanner,
    pub target: ProcKey,
    /// Live tracked processes by pid (orphans included).
    pub live: HashMap<i32, Entry>,
    /// Exited processes, kept for `exited_linger`.
    pub exited: Vec<Entry>,
    /// Pids seen outside the tree: pid -> (inode, generation last seen).
    others: HashMap<i32, (u64, u64)>,
    generation: u64,
    scan: Vec<(i32, u64)>,
    buf: Vec<u8>,
    self_pid: i32,
    exits: ExitBook,
    /// Pidfds opened since the live watcher last asked (only kept once someone asks, so a
    /// collector used without a watcher holds no fds of dead processes).
    new_pidfds: Vec<Arc<PidFd>>,
    watched: bool,
    /// Exits this refresh resolved first (so it must report them), while watched.
    reported: Vec<(ProcKey, ExitInfo)>,
    /// Every fork of a member, as it happens (root only); `None`: the sweep fallback.
    events: Option<ProcEvents>,
    discovery: Discovery,
    /// Process groups and sessions led by a member (past or present): a process in one of
    /// them, started after the target, belongs to the tree even once reparented.
    groups: HashSet<i32>,
    sessions: HashSet<i32>,
}

impl Tree {
    pub fn new(target: ProcKey, opts: TreeOptions, exits: ExitBook) -> io::Result<Tree> {
        let proc_root = procfs::open_dir("/proc")?;
        let buf = procfs::read_path(&format!("/proc/{}/stat", target.pid))?;
        let stat = procfs::parse_stat(&buf)
            .filter(|s| s.start_time == target.start_time)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        let entry = Entry::open(&proc_root, target.pid, 0, stat, 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        // Subscribed before the first scan: a fork after it is an event, one before it is
        // in /proc.
        let (events, discovery) = match ProcEvents::subscribe() {
            Ok(ev) => (Some(ev), Discovery::ProcEvents),
            Err(e) => (None, Discovery::Sweep { why: e.to_string() }),
        };
        crate::collect::procevents::set_last(discovery.clone());
        let mut tree = Tree {
            opts,
            proc_root,
            scanner: DirScanner::new(),
            target,
            live: HashMap::new(),
            exited: Vec::new(),
            others: HashMap::new(),
            generation: 0,
            scan: Vec::new(),
            buf: vec![0; 1024],
            self_pid: std::process::id() as i32,
            exits,
            new_pidfds: Vec::new(),
            watched: false,
            reported: Vec::new(),
            events,
            discovery,
            groups: HashSet::new(),
            sessions: HashSet::new(),
        };
        tree.track(entry);
        Ok(tree)
    }

    fn track(&mut self, e: Entry) {
        let (pid, pgid, sid) = (e.info.key.pid, e.info.pgid, e.info.sid);
        if let Some(ev) = &self.events {
            ev.seed(pid, e.info.key.start_time);
        }
        if pgid == pid {
            self.groups.insert(pgid);
        }
        if sid == pid {
            self.sessions.insert(sid);
        }
        if let Some(fd) = e.pidfd.as_ref().filter(|_| self.watched) {
            self.new_pidfds.push(Arc::clone(fd));
        }
        self.live.insert(e.info.key.pid, e);
    }

    /// Pidfds of the processes that joined since the last call; the first call returns
    /// those of every live tracked process.
    pub fn take_new_pidfds(&mut self) -> Vec<Arc<PidFd>> {
        if !self.watched {
            self.watched = true;
            return self.live.values().filter_map(|e| e.pidfd.clone()).collect();
        }
        std::mem::take(&mut self.new_pidfds)
    }

    /// Exits resolved by refreshes (not by the watcher) since the last call.
    pub fn take_reported_exits(&mut self) -> Vec<(ProcKey, ExitInfo)> {
        std::mem::take(&mut self.reported)
    }

    /// How this tree finds its processes.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Without process events, each listing sweeps by group/session, so list on every
    /// created pid (as launch mode does).
    pub fn sweeping(&self) -> bool {
        self.events.is_none()
    }

    /// Is `pid` a live tracked process?
    pub fn contains(&self, pid: i32) -> bool {
        self.live.contains_key(&pid)
    }

    /// Re-read the tracked processes: exits, updates, orphans, lingering. Returns whether a
    /// tracked process may have forked since the last refresh (it ran, it is multi-threaded
    /// so we cannot tell, or something exited), which is when [`Tree::discover`] must list
    /// /proc. With `target_threads_known`, a multi-threaded target is left to the caller,
    /// who knows from its thread table whether any of its threads ran. `light_target`: that
    /// target's `stat` is its main thread's line, its CPU time its CPU clock (see
    /// `Entry::update_ordered`), for a consumer that does not need every figure exact.
    pub fn update_tracked(
        &mut self,
        clock: &Clock,
        target_threads_known: bool,
        light_target: bool,
    ) -> bool {
        // 1. Tracked processes: exited or updated. Exiting means running, so the gated read
        //    sees it: the kept `stat` fd fails once the process is reaped (even if its pid
        //    was reused meanwhile), and a zombie shows `Z`. `Z` is also what a process whose
        //    main thread exited shows while other threads run: the pidfd tells them apart.
        //    A failed read is only believed if the pidfd agrees (or there is none).
        let mut gone = Vec::new();
        let mut may_fork = false;
        // A multi-threaded target whose threads the caller reads goes last, `stat` then its
        // CPU clock, so the caller's idle proof can use that clock reading (see
        // `Entry::update_ordered`).
        let target = self.target.pid;
        let target_last = target_threads_known
            && self
                .live
                .get(&target)
                .is_some_and(|e| e.info.num_threads > 1);
        let mut order: Vec<i32> = self
            .live
            .keys()
            .copied()
            .filter(|&p| !target_last || p != target)
            .collect();
        if target_last {
            order.push(target);
        }
        for pid in order {
            let Some(e) = self.live.get_mut(&pid) else {
                continue;
            };
            let last = target_last && pid == target;
            let read = e.update_ordered(&mut self.buf, false, clock, last, last && light_target);
            let pid = &pid;
            let suspect = !read || e.info.state == RunState::Zombie;
            let exited = suspect && e.pidfd.as_ref().is_none_or(|fd| fd.has_exited());
            if exited {
                gone.push(*pid);
            }
            let judged_by_threads =
                target_threads_known && *pid == self.target.pid && e.info.num_threads > 1;
            may_fork |= e.ran && !judged_by_threads;
        }
        may_fork |= !gone.is_empty();
        for pid in gone {
            if let Some(e) = self.live.remove(&pid) {
                self.retire(e);
            }
        }

        // 2. Reparenting: a process whose parent left the tree was reparented without running,
        //    so its gated stat may be stale; re-read it before judging it an orphan.
        let orphan_check: Vec<i32> = self
            .live
            .values()
            .filter(|e| {
                e.info.key != self.target && !e.info.orphan && !self.live.contains_key(&e.info.ppid)
            })
            .map(|e| e.info.key.pid)
            .collect();
        for pid in orphan_check {
            if let Some(e) = self.live.get_mut(&pid) {
                e.update(&mut self.buf, true, clock);
            }
            let ppid = self.live.get(&pid).map_or(0, |e| e.info.ppid);
            let out = !self.live.contains_key(&ppid);
            if let Some(e) = self.live.get_mut(&pid) {
                e.info.orphan |= out;
            }
        }

        // 4. Exited processes linger, then go (with their remembered exit). The target stays:
        //    how it ended is the headline until the user quits.
        let linger = self.opts.exited_linger;
        let target = self.target;
        self.exited
            .retain(|e| e.info.key == target || e.exited_at.is_some_and(|t| t.elapsed() < linger));
        let cutoff = now_unix_ms().saturating_sub(linger.as_millis() as u64 * 2);
        self.exits.prune(cutoff);
        may_fork
    }

    /// New descendants: list /proc (getdents) when `list`, read `stat` once for each pid
    /// not seen before, and take in those whose parent is tracked. A new process needs a
    /// parent that ran (forked), so when nothing in the tree ran the listing, whose cost
    /// grows with every task on the system, is skipped.
    pub fn discover(&mut self, clock: &Clock, list: bool) -> io::Result<()> {
        let mut list = list;
        let mut sweep = self.events.is_none();
        if let Some(ev) = &self.events {
            let (joined, lost) = ev.take_new();
            if lost {
                // Events were dropped: this refresh lists and sweeps.
                list = true;
                sweep = true;
            }
            self.adopt_forked(clock, joined);
        }
        if !list {
            return Ok(());
        }
        self.generation += 1;
        let generation = self.generation;
        self.scan.clear();
        let scan = &mut self.scan;
        self.scanner
            .scan_pids(self.proc_root.as_fd(), |pid, ino| scan.push((pid, ino)))?;

        // 3. New pids: read stat once, join the tree if the parent is tracked.
        let mut candidates: Vec<(i32, u64, Stat)> = Vec::new();
        for &(pid, ino) in &self.scan {
            if let Some(e) = self.live.get_mut(&pid) {
                e.ino = ino;
                continue;
            }
            if let Some(o) = self.others.get_mut(&pid)
                && o.0 == ino
            {
                o.1 = generation;
                continue;
            }
            let Ok(f) = ProcFile::open_at(self.proc_root.as_fd(), &stat_path(pid)) else {
                continue;
            };
            if let Some(stat) = f.read(&mut self.buf).ok().and_then(procfs::parse_stat) {
                let key = ProcKey {
                    pid,
                    start_time: stat.start_time,
                };
                // An exited process we listed, still a zombie in /proc: not new.
                if self.exited.iter().any(|e| e.info.key == key) {
                    self.others.insert(pid, (ino, generation));
                    continue;
                }
                candidates.push((pid, ino, stat));
            }
        }
        let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
        let adopt_own = self.opts.adopt_own_children;
        loop {
            let mut added = false;
            let mut rest = Vec::with_capacity(candidates.len());
            for (pid, ino, stat) in candidates {
                let parent_depth = self.live.get(&stat.ppid).map(|p| p.info.depth);
                let adopt = parent_depth.is_none()
                    && stat.pgrp != own_pgid
                    && pid != self.self_pid
                    && ((adopt_own && stat.ppid == self.self_pid)
                        || (sweep && self.swept_member(&stat)))
                    && !helpers::is_helper(pid);
                if parent_depth.is_none() && !adopt {
                    rest.push((pid, ino, stat));
                    continue;
                }
                let depth = parent_depth.map_or(1, |d| d + 1);
                if let Some(mut e) = Entry::open(&self.proc_root, pid, ino, stat, depth) {
                    e.info.orphan = adopt;
                    e.update(&mut self.buf, true, clock);
                    self.track(e);
                    added = true;
                }
            }
            candidates = rest;
            if !added {
                break;
            }
        }
        for (pid, ino, _) in candidates {
            self.others.insert(pid, (ino, generation));
        }
        self.others.retain(|_, o| o.1 == generation);

        Ok(())
    }

    /// The sweep rule: started after the target, not a zombie, and in a process group or
    /// session led by a member (whoever its parent is now).
    fn swept_member(&self, stat: &Stat) -> bool {
        stat.start_time >= self.target.start_time
            && stat.state != 'Z'
            && (self.groups.contains(&stat.pgrp) || self.sessions.contains(&stat.session))
    }

    /// `e` has exited: resolve how (once, with the live watcher), keep it among the exited.
    fn retire(&mut self, mut e: Entry) {
        // Noticed here first: queue the report for the live watcher's channel (only when one
        // is attached), ahead of the snapshot showing it.
        let reported = &mut self.reported;
        let watched = self.watched;
        let report = |key, info| {
            if watched {
                reported.push((key, info));
            }
        };
        let info: ExitInfo = match &e.pidfd {
            Some(fd) => self.exits.resolve(fd, report),
            None => self.exits.resolve_without_pidfd(e.info.key, report),
        };
        e.info.exit = Some(info);
        e.info.cpu_percent = 0.0;
        e.exited_at = Some(Instant::now());
        e.pidfd = None;
        self.exited.push(e);
    }

    /// Track processes the event reader saw forked by a member (even if their parent has
    /// exited and they were reparented since).
    fn adopt_forked(&mut self, clock: &Clock, joined: Vec<(i32, u64)>) {
        let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
        for (pid, start_time) in joined {
            if self.live.contains_key(&pid) || pid == self.self_pid || helpers::is_helper(pid) {
                continue;
            }
            let Ok(f) = ProcFile::open_at(self.proc_root.as_fd(), &stat_path(pid)) else {
                continue; // already gone
            };
            let Some(stat) = f.read(&mut self.buf).ok().and_then(procfs::parse_stat) else {
                continue;
            };
            // Reused pid, or lifecycle-top's own (a helper forked by a member cannot be).
            if stat.start_time != start_time || stat.pgrp == own_pgid {
                continue;
            }
            let zombie = stat.state == 'Z';
            let parent_depth = self.live.get(&stat.ppid).map(|p| p.info.depth);
            let depth = parent_depth.map_or(1, |d| d + 1);
            if let Some(mut e) = Entry::open(&self.proc_root, pid, 0, stat, depth) {
                e.info.orphan = parent_depth.is_none();
                e.update(&mut self.buf, true, clock);
                // A member that ended before this refresh read it (a short child on a loaded
                // machine): listed, and its exit resolved now, while its status is still in
                // its `stat` (its parent may reap it before the next refresh).
                if zombie && e.pidfd.as_ref().is_none_or(|fd| fd.has_exited()) {
                    self.retire(e);
                } else {
                    self.track(e);
                }
            }
        }
    }

    /// Target first, its live descendants depth-first (children by start time), then the
    /// orphans with their subtrees, then the exited processes (newest exit first).
    pub fn ordered(&mut self) -> Vec<ProcInfo> {
        let nodes: Vec<Node> = self
            .live
            .values()
            .map(|e| Node {
                pid: e.info.key.pid,
                ppid: e.info.ppid,
                start_time: e.info.key.start_time,
                depth: e.info.depth,
            })
            .collect();
        let order = dfs_order(self.target.pid, &nodes);
        let target_exited = !self.live.contains_key(&self.target.pid);
        let mut out = Vec::with_capacity(order.len() + self.exited.len());
        if target_exited && let Some(t) = self.exited.iter().find(|e| e.info.key == self.target) {
            out.push(t.info.clone());
        }
        for (pid, depth) in order {
            if let Some(e) = self.live.get_mut(&pid) {
                e.info.depth = depth;
                out.push(e.info.clone());
            }
        }
        let mut exited: Vec<&Entry> = self
            .exited
            .iter()
            .filter(|e| e.info.key != self.target)
            .collect();
        exited.sort_by_key(|e| std::cmp::Reverse(e.info.exit.map_or(0, |x| x.at_unix_ms)));
        out.extend(exited.into_iter().map(|e| e.info.clone()));
        out
    }
}

fn stat_path(pid: i32) -> std::ffi::CString {
    // A decimal pid never contains NUL.
    std::ffi::CString::new(format!("{pid}/stat")).unwrap_or_default()
}
