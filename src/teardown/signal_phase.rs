//! The signal part of the engine: who gets which signal when, for `signal_children` and
//! `signal_target` phases. Leaves first, SIGCONT after the stop signal for stopped processes,
//! the timeout re-armed per escalation step (all as systemd does), and notes that explain
//! every escalation from the process's SigIgn/SigCgt/SigBlk masks.

use super::engine::Effect;
use super::plan::{Scope, signal_name};
use super::world::World;
use crate::model::{ProcKey, RunState};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Victim {
    pub key: ProcKey,
    pub name: String,
    /// Escalation step this victim was last signalled at.
    sent: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SignalState {
    pub children: bool,
    /// Snapshot count when the last victim went; `None` while victims remain.
    pub confirm_after: Option<u64>,
    pub signals: Vec<i32>,
    pub step: usize,
    step_started_ms: u64,
    pub victims: Vec<Victim>,
}

fn victim(world: &World, key: ProcKey) -> Victim {
    Victim {
        key,
        name: world.name(key),
        sent: None,
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl SignalState {
    pub fn for_target(world: &World, signals: Vec<i32>, now: u64) -> Self {
        Self {
            children: false,
            confirm_after: None,
            signals,
            step: 0,
            step_started_ms: now,
            victims: vec![victim(world, world.target)],
        }
    }

    pub fn for_children(world: &World, signals: Vec<i32>, scope: Scope, now: u64) -> Self {
        let kids = world.live_children(); // deepest first: leaves before their parents
        let keys: Vec<ProcKey> = match scope {
            Scope::Process => kids.iter().map(|p| p.key).collect(),
            Scope::Group => {
                // Whole groups one after the other, the group holding the deepest process first.
                let mut first_seen: HashMap<i32, usize> = HashMap::new();
                for (i, p) in kids.iter().enumerate() {
                    first_seen.entry(p.pgid).or_insert(i);
                }
                let mut v: Vec<(usize, usize, ProcKey)> = kids
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (first_seen.get(&p.pgid).copied().unwrap_or(i), i, p.key))
                    .collect();
                v.sort();
                v.into_iter().map(|t| t.2).collect()
            }
        };
        let victims = keys.into_iter().map(|k| victim(world, k)).collect();
        Self {
            children: true,
            confirm_after: None,
            signals,
            step: 0,
            step_started_ms: now,
            victims,
        }
    }

    pub fn current(&self) -> i32 {
        self.signals
            .get(self.step)
            .copied()
            .unwrap_or(libc::SIGKILL)
    }

    /// Sends the current step's signal to every victim not yet signalled at this step.
    pub fn send_current(
        &mut self,
        world: &World,
        now: u64,
        due: Option<u64>,
        notes: &mut Vec<String>,
        out: &mut Vec<Effect>,
    ) {
        let sig = self.current();
        let sname = signal_name(sig);
        for v in &mut self.victims {
            if v.sent == Some(self.step) {
                continue;
            }
            v.sent = Some(self.step);
            let info = world.info(v.key);
            if let Some(p) = info {
                if p.signals.ignores(sig) {
                    notes.push(format!(
                        "pid {} ({}) ignores {sname} (SigIgn)",
                        v.key.pid, v.name
                    ));
                } else if p.signals.blocks(sig) {
                    notes.push(format!(
                        "pid {} ({}) blocks {sname} (SigBlk): it stays pending",
                        v.key.pid, v.name
                    ));
                }
            }
            out.push(Effect::Signal {
                key: v.key,
                sig,
                name: v.name.clone(),
                due_ms: due,
            });
            let stopped = info.is_some_and(|p| p.state == RunState::Stopped);
            if stopped && sig != libc::SIGKILL && sig != libc::SIGCONT {
                notes.push(format!(
                    "pid {} ({}) is stopped: SIGCONT after {sname}",
                    v.key.pid, v.name
                ));
                out.push(Effect::Signal {
                    key: v.key,
                    sig: libc::SIGCONT,
                    name: v.name.clone(),
                    due_ms: due,
                });
            }
        }
        let _ = now;
    }

    pub fn forget_gone(&mut self, world: &World) {
        self.victims.retain(|v| !world.is_gone(v.key));
    }

    /// Children that appeared during the phase (re-spawned) join the victims.
    pub fn adopt_new_children(&mut self, world: &World) {
        if !self.children {
            return;
        }
        for p in world.live_children() {
            if !self.victims.iter().any(|v| v.key == p.key) {
                self.victims.push(victim(world, p.key));
            }
        }
    }

    /// Grace is over: the next signal of the list for every survivor, with the reason.
    pub fn escalate(
        &mut self,
        world: &mut World,
        now: u64,
        due: u64,
        notes: &mut Vec<String>,
        out: &mut Vec<Effect>,
    ) {
        let prev = self.current();
        let waited = now.saturating_sub(self.step_started_ms);
        self.step += 1;
        self.step_started_ms = now;
        let next = self.current();
        let (pname, nname) = (signal_name(prev), signal_name(next));
        for v in &self.victims {
            let why = match world.info(v.key) {
                Some(p) if p.signals.ignores(prev) => format!("ignored {pname}"),
                Some(p) if p.signals.blocks(prev) => format!("blocks {pname}"),
                Some(p) if p.signals.catches(prev) => format!("handles {pname} but did not exit"),
                Some(p) if p.state == RunState::DiskSleep => {
                    format!("did not exit on {pname} (in D state)")
                }
                _ => format!("did not exit on {pname}"),
            };
            notes.push(if next == libc::SIGKILL {
                format!(
                    "pid {} ({}) {why}, killed after {}",
                    v.key.pid,
                    v.name,
                    secs(waited)
                )
            } else {
                format!(
                    "pid {} ({}) {why} within {}: sending {nname}",
                    v.key.pid,
                    v.name,
                    secs(waited)
                )
            });
        }
        self.send_current(world, now, Some(due), notes, out);
    }

    /// The last step timed out: say what is still there and why.
    pub fn note_survivors(&self, world: &World, now: u64, notes: &mut Vec<String>) {
        let sname = signal_name(self.current());
        for v in &self.victims {
            let state = world.info(v.key).map(|p| p.state);
            notes.push(if self.current() == libc::SIGKILL {
                let d = if state == Some(RunState::DiskSleep) { " in D state (uninterruptible)" } else { "" };
                format!("pid {} ({}) still around after SIGKILL{d}", v.key.pid, v.name)
            } else {
                format!(
                    "pid {} ({}) still alive {} after {sname} (no escalation by this phase's policy)",
                    v.key.pid,
                    v.name,
                    secs(now.saturating_sub(self.step_started_ms))
                )
            });
        }
    }
}
