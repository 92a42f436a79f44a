//! What the engine knows about the tree: the latest snapshot, agent facts and exits seen,
//! plus the counting and left-over rules built on them. Pure: fed by the engine's inputs.

use super::timeline::{Counts, Leftover, LeftoverKind};
use crate::model::{AgentFacts, ExitStatus, ProcInfo, ProcKey, RunState, SharedStr, Snapshot};
use std::collections::HashMap;

/// Exits the engine keeps beyond those it needs (see [`World::forget_old_exits`]).
pub const MAX_EXITED: usize = 4096;

#[derive(Debug, Clone)]
pub struct World {
    pub target: ProcKey,
    pub snapshot: Option<std::sync::Arc<Snapshot>>,
    /// Number of snapshots received: an audit waits for one newer than its start.
    pub snapshots_seen: u64,
    pub agent: Option<AgentFacts>,
    pub exited: HashMap<ProcKey, ExitStatus>,
    /// When (ms since run start) each process was sent SIGKILL.
    pub killed: HashMap<ProcKey, u64>,
    /// Latest name of every process seen, so notes can name one after it vanished.
    /// Shared with the snapshots (a copy per process per snapshot was 10,000 allocations a
    /// refresh at 10,000 processes).
    pub names: HashMap<ProcKey, SharedStr>,
    /// A signal_target phase ran: from then on a live target is a left-over.
    pub target_signalled: bool,
    /// The pid of lifecycle-top itself (set by the runner): its own children (a launched
    /// target it has not reaped yet) are its to reap, never the target's left-overs.
    pub own_pid: Option<i32>,
    /// The agent said the interpreter is exiting (`{"type":"exiting"}`): a connection that
    /// ends after that is the exit, not a failure. Cleared by facts from another process's
    /// agent (an interpreter that is exiting does not come back).
    pub agent_exiting: bool,
    /// The pid of the agent that said it is exiting (from its facts; `None`: unknown).
    pub exiting_agent_pid: Option<i32>,
    /// A `cancel_tasks` phase woke the loop's main task (it awaited a task it cancelled): the
    /// target may finish on its own, so the next signal phase gives it its timeout first.
    pub main_resumed: bool,
    /// An agent answer said the target exits now (Node.js: nothing keeps its event loop
    /// alive any more): the phase that got it ends when the exit is seen, not before.
    pub exit_announced: bool,
}

impl World {
    pub fn new(target: ProcKey) -> Self {
        Self {
            target,
            snapshot: None,
            snapshots_seen: 0,
            agent: None,
            exited: HashMap::new(),
            killed: HashMap::new(),
            names: HashMap::new(),
            target_signalled: false,
            own_pid: None,
            agent_exiting: false,
            exiting_agent_pid: None,
            main_resumed: false,
            exit_announced: false,
        }
    }

    /// Takes a snapshot; returns exits it shows that were not known yet (the caller records
    /// them, so an exit is in the timeline whether the pidfd or the snapshot told us first).
    pub fn absorb(&mut self, snap: std::sync::Arc<Snapshot>) -> Vec<(ProcKey, ExitStatus)> {
        let mut new_exits = Vec::new();
        for p in &snap.processes {
            self.names.insert(p.key, p.name.clone()); // latest: comm changes at exec
            if let Some(exit) = p.exit
                && !self.exited.contains_key(&p.key)
            {
                new_exits.push((p.key, exit.status));
            }
        }
        self.snapshot = Some(snap);
        self.snapshots_seen += 1;
        new_exits
    }

    pub fn name(&self, key: ProcKey) -> String {
        self.names
            .get(&key)
            .map_or_else(|| "?".into(), |n| n.to_string())
    }

    pub fn info(&self, key: ProcKey) -> Option<&ProcInfo> {
        self.snapshot
            .as_ref()?
            .processes
            .iter()
            .find(|p| p.key == key)
    }

    /// Past [`MAX_EXITED`] exits, forgets those of processes the snapshot no longer lists
    /// (for them "gone" needs no record), keeping the target's and the agent process's: a
    /// tree forking 50 children a second must not grow the engine without bound.
    pub fn forget_old_exits(&mut self) {
        // Without a snapshot "not listed" proves nothing: keep them all until one comes.
        if self.exited.len() <= 2 * MAX_EXITED || self.snapshot.is_none() {
            return;
        }
        let listed: std::collections::HashSet<ProcKey> = self
            .snapshot
            .iter()
            .flat_map(|s| s.processes.iter().map(|p| p.key))
            .collect();
        let (target, agent_pid) = (self.target, self.agent.as_ref().and_then(|a| a.pid));
        self.exited
            .retain(|k, _| *k == target || listed.contains(k) || Some(k.pid) == agent_pid);
    }

    /// Gone = exit seen, zombie/dead in the snapshot, or no longer listed by the collector
    /// (which keeps every process it has seen listed while it lives, orphans included).
    pub fn is_gone(&self, key: ProcKey) -> bool {
        if self.exited.contains_key(&key) {
            return true;
        }
        match &self.snapshot {
            None => false,
            Some(s) => match s.processes.iter().find(|p| p.key == key) {
                None => true,
                Some(p) => p.exit.is_some() || matches!(p.state, RunState::Zombie | RunState::Dead),
            },
        }
    }

    pub fn target_exited(&self) -> bool {
        self.is_gone(self.target)
    }

    /// Live descendants (orphans included), deepest first, then by pid.
    pub fn live_children(&self) -> Vec<&ProcInfo> {
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        let mut v: Vec<&ProcInfo> = s
            .live_descendants()
            .filter(|p| !self.is_gone(p.key))
            .collect();
        v.sort_by_key(|p| (std::cmp::Reverse(p.depth), p.key.pid));
        v
    }

    /// The process the agent runs in: the target, or the descendant whose pid the agent
    /// reported (keyed from the snapshot, or the exits seen once it is gone). `None` without
    /// agent facts or when that pid was never listed.
    pub fn agent_process(&self) -> Option<ProcKey> {
        let pid = match self.agent.as_ref()?.pid {
            None => return Some(self.target),
            Some(p) if p == self.target.pid => return Some(self.target),
            Some(p) => p,
        };
        let listed = self.snapshot.iter().flat_map(|s| &s.processes);
        listed
            .map(|p| p.key)
            .chain(self.exited.keys().copied())
            .filter(|k| k.pid == pid)
            .max_by_key(|k| k.start_time)
    }

    /// The agent's process is gone (its threads and tasks went with it).
    fn agent_gone(&self) -> bool {
        self.agent_process().is_some_and(|k| self.is_gone(k))
    }

    /// Python non-daemon threads other than the main thread; `None` without agent facts.
    pub fn non_daemon_threads(&self) -> Option<Vec<(i32, String)>> {
        let facts = self.agent.as_ref()?;
        if self.agent_gone() {
            return Some(Vec::new());
        }
        // The main thread's tid is its process's pid: a fallback for facts without `main`.
        let main_tid = facts.pid.unwrap_or(self.target.pid);
        Some(
            facts
                .threads
                .iter()
                .filter(|t| t.alive && !t.daemon && !t.main && t.native_id != main_tid)
                .map(|t| (t.native_id, t.name.clone()))
                .collect(),
        )
    }

    pub fn pending_tasks(&self) -> Option<usize> {
        let facts = self.agent.as_ref()?;
        Some(if self.agent_gone() {
            0
        } else {
            facts.pending_tasks
        })
    }

    pub fn counts(&self) -> Counts {
        let threads = if self.target_exited() {
            0
        } else {
            self.snapshot.as_ref().map_or(0, |s| s.threads.len())
        };
        Counts {
            threads,
            non_daemon_threads: self.non_daemon_threads().map(|v| v.len()),
            children: self.live_children().len(),
            pending_tasks: self.pending_tasks(),
        }
    }

    /// Why non-daemon thread `tid` is a left-over, in the runtime's terms. A JVM's facts come
    /// from its thread dump (`crate::jvm::report`): in the shutdown sequence only the hooks
    /// hold the exit.
    fn non_daemon_reason(&self, tid: i32) -> &'static str {
        let facts = self.agent.as_ref();
        let jvm = facts.is_some_and(|f| f.jvm_shutdown)
            || self.info(self.target).is_some_and(|p| p.name == "java");
        if !jvm {
            return "non-daemon thread: the interpreter joins it at exit (threading._shutdown)";
        }
        match facts {
            Some(f) if f.thread(tid).is_some_and(|t| t.hook) => {
                "shutdown hook still running: the JVM's shutdown sequence halts only when every \
                 hook has returned"
            }
            Some(f) if f.jvm_shutdown => {
                "non-daemon Java thread, not what holds the exit now: the JVM is in its shutdown \
                 sequence and halts once its hooks return"
            }
            _ => "non-daemon Java thread: DestroyJavaVM waits for it once main() returns",
        }
    }

    /// Everything still there, each with the reason it stays.
    pub fn leftovers(&self, now_ms: u64) -> Vec<Leftover> {
        let mut out = Vec::new();
        if let Some(s) = &self.snapshot {
            for p in &s.processes {
                if self.exited.contains_key(&p.key) || p.exit.is_some() {
                    continue;
                }
                if p.key == self.target && !self.target_signalled {
                    continue;
                }
                if let Some(l) = self.leftover_process(p, now_ms) {
                    out.push(l);
                }
            }
        }
        if let Some(threads) = self.non_daemon_threads() {
            for (tid, name) in threads {
                out.push(Leftover {
                    pid: tid,
                    reason: self.non_daemon_reason(tid).into(),
                    name,
                    kind: LeftoverKind::NonDaemonThread,
                });
            }
        }
        if let Some(n) = self.pending_tasks().filter(|n| *n > 0) {
            let at = self.agent_process().unwrap_or(self.target);
            out.push(Leftover {
                pid: at.pid,
                name: self.name(at),
                kind: LeftoverKind::PendingTasks,
                reason: format!(
                    "{n} asyncio {} still pending",
                    if n == 1 { "task" } else { "tasks" }
                ),
            });
        }
        out
    }

    /// What cannot be known, one plain line each: without agent facts, whether the target's
    /// threads besides the main one block its exit (daemon flags are Python's, not /proc's).
    pub fn unknowns(&self) -> Vec<String> {
        if self.agent.is_some() || self.target_exited() {
            return Vec::new();
        }
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        let others = s
            .threads
            .iter()
            .filter(|t| t.tid != self.target.pid)
            .count();
        if others == 0 {
            return Vec::new();
        }
        vec![format!(
            "{} besides the main thread; daemon flags unknown without the agent; run with the \
             agent to know which block exit",
            if others == 1 {
                "1 thread".to_string()
            } else {
                format!("{others} threads")
            }
        )]
    }

    /// Where the main thread of `key` waits in the kernel (wchan, else the syscall). Only the
    /// target's threads are in the snapshot, so other processes have none.
    fn main_thread_wait(&self, key: ProcKey) -> Option<String> {
        let s = self.snapshot.as_ref().filter(|s| s.target == key)?;
        let t = s.threads.iter().find(|t| t.tid == key.pid)?;
        t.wait
            .wchan
            .clone()
            .or_else(|| t.wait.syscall.as_ref().map(|c| format!("syscall {c}")))
    }

    fn leftover_process(&self, p: &ProcInfo, now_ms: u64) -> Option<Leftover> {
        let (kind, reason) = if p.state == RunState::Dead {
            return None;
        } else if p.state == RunState::Zombie && Some(p.ppid) == self.own_pid {
            // Our own child (the launched target, or a process reparented to us as the
            // subreaper): the launch code reaps it.
            return None;
        } else if p.state == RunState::Zombie {
            (
                LeftoverKind::Zombie,
                format!(
                    "zombie: exited but not reaped by its parent (pid {})",
                    p.ppid
                ),
            )
        } else if let Some(at) = self.killed.get(&p.key) {
            let mut why = if p.state == RunState::DiskSleep {
                "in D state (uninterruptible sleep, usually I/O or a driver)".to_string()
            } else {
                format!("state {}", p.state.as_char())
            };
            if let Some(w) = self.main_thread_wait(p.key) {
                why.push_str(&format!(", waiting in {w}"));
            }
            (
                LeftoverKind::Unkillable,
                format!(
                    "still around {:.1} s after SIGKILL: {why}",
                    now_ms.saturating_sub(*at) as f64 / 1000.0
                ),
            )
        } else if p.orphan {
            (
                LeftoverKind::Orphan,
                format!(
                    "orphan: reparented out of the tree to pid {}, still running",
                    p.ppid
                ),
            )
        } else {
            let sig = libc::SIGTERM;
            let m = p.signals;
            let disposition = if m.ignores(sig) {
                "; ignores SIGTERM"
            } else if m.blocks(sig) {
                "; blocks SIGTERM"
            } else if m.catches(sig) {
                "; handles SIGTERM"
            } else {
                ""
            };
            (
                LeftoverKind::Alive,
                format!("alive (state {}){disposition}", p.state.as_char()),
            )
        };
        Some(Leftover {
            pid: p.key.pid,
            name: p.name.to_string(),
            kind,
            reason,
        })
    }
}

#[cfg(test)]
mod churn_tests {
    use super::*;

    #[test]
    fn exits_of_unlisted_processes_are_forgotten_past_the_cap_but_the_targets_stays() {
        let key = |pid| ProcKey { pid, start_time: 1 };
        let mut w = World::new(key(100));
        w.snapshot = Some(std::sync::Arc::new(Snapshot {
            taken_at_unix_ms: 0,
            target: key(100),
            processes: Vec::new(),
            threads: Vec::new(),
            system: Default::default(),
        }));
        w.exited.insert(key(100), ExitStatus::Code(0));
        for pid in 1000..1000 + 2 * MAX_EXITED as i32 {
            w.exited.insert(key(pid), ExitStatus::Code(0));
            w.forget_old_exits();
        }
        assert!(w.exited.len() <= 2 * MAX_EXITED + 1, "{}", w.exited.len());
        assert!(w.exited.contains_key(&key(100)));
        assert!(
            w.is_gone(key(1000)),
            "a forgotten exit is still gone (not listed)"
        );
    }
}
