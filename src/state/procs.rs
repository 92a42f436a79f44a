//! The process tree as the dashboard lists it: live processes from the latest snapshot plus
//! every process seen exiting, kept (with its last known facts and its exit) until the user
//! clears them (`Del`), however long ago the collector stopped listing them. The order is a
//! tree walk over all of them, so a child is always listed under its parent, gone or not.
//! Computed once per snapshot or exit, not per frame.

use super::Dashboard;
use crate::model::{ExitInfo, ProcInfo, ProcKey};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A process that exited: what was last known of it, and how it ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gone {
    pub info: ProcInfo,
    pub exit: ExitInfo,
}

/// Where a listed process's facts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `snapshot.processes[i]`, alive.
    Live(usize),
    /// In the gone book.
    Gone(ProcKey),
}

/// One listed process: its slot and its depth in the tree as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub slot: Slot,
    pub depth: u32,
}

/// One row of the tree panel.
#[derive(Debug, Clone, Copy)]
pub struct ProcRow<'a> {
    pub info: &'a ProcInfo,
    pub depth: u32,
    /// Set for a process that is gone.
    pub exit: Option<ExitInfo>,
}

struct Node<'a> {
    slot: Slot,
    info: &'a ProcInfo,
    /// Position among roots when it has no listed parent (live in collector order, then
    /// gone by exit time).
    rank: (u8, u64, usize),
}

/// The display order: the target and its descendants depth-first (children oldest first),
/// then every other root (orphans, processes whose parent was cleared) with its subtree.
/// A child goes under a listed process with its parent's pid that started before it (the
/// live one first: a pid may have been reused). Every process appears once.
/// `hidden`: snapshot processes not to list (exited ones the user cleared). `first_ppid`:
/// the parent each process had when first seen, so an orphan (reparented to init or a
/// subreaper) is still listed under the parent it came from while that one is listed.
pub fn order(
    target: Option<ProcKey>,
    live: &[ProcInfo],
    gone: &BTreeMap<ProcKey, Gone>,
    hidden: impl Fn(&ProcInfo) -> bool,
    first_ppid: &HashMap<ProcKey, i32>,
) -> Vec<Listed> {
    let mut nodes: Vec<Node> = Vec::with_capacity(live.len() + gone.len());
    for (i, p) in live.iter().enumerate() {
        if !gone.contains_key(&p.key) && !hidden(p) {
            nodes.push(Node {
                slot: Slot::Live(i),
                info: p,
                rank: (0, 0, i),
            });
        }
    }
    for (key, g) in gone {
        nodes.push(Node {
            slot: Slot::Gone(*key),
            info: &g.info,
            rank: (1, g.exit.at_unix_ms, nodes.len()),
        });
    }
    // Index-addressed, no hashing (a refresh of 1,000 children hashed each key ~8 times:
    // 12 % of the dashboard thread watching 10,000 threads): nodes by pid, sorted.
    let mut by_pid: Vec<(i32, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.info.key.pid, i))
        .collect();
    by_pid.sort_unstable();
    let with_pid = |pid: i32| {
        let from = by_pid.partition_point(|&(p, _)| p < pid);
        by_pid[from..]
            .iter()
            .take_while(move |&&(p, _)| p == pid)
            .map(|&(_, i)| i)
    };
    let parent_of = |i: usize| -> Option<usize> {
        let n = &nodes[i];
        if Some(n.info.key) == target {
            return None;
        }
        let ppid = match first_ppid.get(&n.info.key) {
            Some(&first) if n.info.orphan => first,
            _ => n.info.ppid,
        };
        with_pid(ppid)
            .filter(|&j| j != i && nodes[j].info.key.start_time <= n.info.key.start_time)
            .min_by_key(|&j| {
                (
                    matches!(nodes[j].slot, Slot::Gone(_)),
                    u64::MAX - nodes[j].info.key.start_time,
                )
            })
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots: Vec<usize> = Vec::new();
    for i in 0..nodes.len() {
        match parent_of(i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    for kids in children.iter_mut().filter(|k| k.len() > 1) {
        kids.sort_by_key(|&k| (nodes[k].info.key.start_time, nodes[k].info.key.pid));
    }
    roots.sort_by_key(|&r| (Some(nodes[r].info.key) != target, nodes[r].rank));
    let mut out = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let mut walk = |root: usize, out: &mut Vec<Listed>| {
        let depth = if Some(nodes[root].info.key) == target {
            0
        } else {
            nodes[root].info.depth
        };
        let mut stack = vec![(root, depth)];
        while let Some((i, d)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            out.push(Listed {
                slot: nodes[i].slot,
                depth: d,
            });
            stack.extend(children[i].iter().rev().map(|&k| (k, d + 1)));
        }
    };
    for r in roots {
        walk(r, &mut out);
    }
    // A ppid loop (a racing read) has no root: list what is left as it comes.
    for i in 0..nodes.len() {
        walk(i, &mut out);
    }
    out
}

/// Gone processes the dashboard keeps listed (until `Del`); older ones are dropped first.
pub const MAX_GONE: usize = 1000;

impl Dashboard {
    /// Books the exits the snapshot shows or the Model noticed (with the process's last
    /// known facts), then recomputes the list order.
    pub(super) fn book_exits(&mut self) {
        let Some(snap) = self.model.snapshot.clone() else {
            return;
        };
        // Remember where each process came from (orphans lose their parent's pid); forget
        // what is neither listed nor kept.
        let first = &mut self.view.first_ppid;
        for p in &snap.processes {
            first.entry(p.key).or_insert(p.ppid);
        }
        let gone = &self.view.gone;
        let listed: HashSet<ProcKey> = snap.processes.iter().map(|p| p.key).collect();
        first.retain(|k, _| gone.contains_key(k) || listed.contains(k));
        for p in &snap.processes {
            if self.view.cleared.contains(&p.key) {
                continue;
            }
            let exit = p.exit.or_else(|| {
                self.model.exits.get(&p.key).map(|e| ExitInfo {
                    status: e.status,
                    at_unix_ms: e.at_unix_ms,
                })
            });
            if let Some(exit) = exit {
                let g = self.view.gone.entry(p.key).or_insert_with(|| Gone {
                    info: p.clone(),
                    exit,
                });
                // Keep the exit first seen; a later listing may only know "exited".
                if p.exit.is_some() && g.exit.status == crate::model::ExitStatus::Unknown {
                    g.exit = exit;
                }
            }
        }
        self.drop_old_gone();
        self.reorder_processes();
    }

    /// Past [`MAX_GONE`] kept gone processes, the ones that exited first are forgotten (the
    /// target never): a tree forking 50 children a second must not grow the list forever.
    fn drop_old_gone(&mut self) {
        let target = self.model.target();
        while self.view.gone.len() > MAX_GONE {
            let oldest = self
                .view
                .gone
                .iter()
                .filter(|(k, _)| Some(**k) != target)
                .min_by_key(|(k, g)| (g.exit.at_unix_ms, **k))
                .map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            self.view.gone.remove(&k);
            self.view.gone_dropped += 1;
        }
    }

    pub(super) fn reorder_processes(&mut self) {
        let live = self
            .model
            .snapshot
            .as_ref()
            .map_or(&[][..], |s| s.processes.as_slice());
        let (exits, cleared) = (&self.model.exits, &self.view.cleared);
        // An exited process is listed from the gone book only (or not at all once cleared).
        let hidden = |p: &ProcInfo| {
            p.exit.is_some() || exits.contains_key(&p.key) || cleared.contains(&p.key)
        };
        self.view.proc_order = order(
            self.model.target(),
            live,
            &self.view.gone,
            hidden,
            &self.view.first_ppid,
        );
    }

    /// `Del`: forgets the gone processes (the target excepted: how it ended stays the
    /// headline). They do not come back when the collector lists them again.
    pub(super) fn clear_gone(&mut self) -> usize {
        let target = self.model.target();
        let keys: Vec<ProcKey> = self
            .view
            .gone
            .keys()
            .copied()
            .filter(|k| Some(*k) != target)
            .collect();
        for k in &keys {
            self.view.gone.remove(k);
            self.view.cleared.insert(*k);
        }
        self.reorder_processes();
        self.fix_selection();
        keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExitStatus;

    fn p(pid: i32, ppid: i32, start: u64, depth: u32) -> ProcInfo {
        let mut info = crate::state::fixture::snapshot().processes[0].clone();
        info.key = ProcKey {
            pid,
            start_time: start,
        };
        info.ppid = ppid;
        info.depth = depth;
        info
    }

    fn gone(info: ProcInfo, at: u64) -> (ProcKey, Gone) {
        (
            info.key,
            Gone {
                info,
                exit: ExitInfo {
                    status: ExitStatus::Signal(9),
                    at_unix_ms: at,
                },
            },
        )
    }

    fn pids(target: ProcKey, live: &[ProcInfo], g: &BTreeMap<ProcKey, Gone>) -> Vec<(i32, u32)> {
        let l = order(Some(target), live, g, |_| false, &HashMap::new());
        l.iter()
            .map(|x| {
                let pid = match x.slot {
                    Slot::Live(i) => live[i].key.pid,
                    Slot::Gone(k) => k.pid,
                };
                (pid, x.depth)
            })
            .collect()
    }

    #[test]
    fn gone_children_stay_under_their_parent() {
        let target = p(10, 1, 1, 0);
        let live = vec![target.clone(), p(12, 10, 3, 1)];
        // 11 (a child of the target) and its child 13 are gone; 13 exited last.
        let g: BTreeMap<_, _> = [gone(p(11, 10, 2, 1), 5), gone(p(13, 11, 4, 2), 9)].into();
        assert_eq!(
            pids(target.key, &live, &g),
            vec![(10, 0), (11, 1), (13, 2), (12, 1)]
        );
    }

    #[test]
    fn a_gone_target_is_still_the_root_and_orphans_follow() {
        let target = p(10, 1, 1, 0);
        // The target exited; its child was reparented to init (an orphan, depth kept).
        let live = vec![p(12, 1, 3, 1)];
        let g: BTreeMap<_, _> = [gone(target.clone(), 5)].into();
        assert_eq!(pids(target.key, &live, &g), vec![(10, 0), (12, 1)]);
    }

    #[test]
    fn a_reused_pid_does_not_adopt_older_children() {
        let target = p(10, 1, 1, 0);
        // pid 20 exited and was reused by a newer process; 21 is the old 20's child.
        let old20 = p(20, 10, 2, 1);
        let child = p(21, 20, 3, 2);
        let new20 = p(20, 10, 50, 1);
        let live = vec![target.clone(), new20, child];
        let g: BTreeMap<_, _> = [gone(old20, 9)].into();
        assert_eq!(
            pids(target.key, &live, &g),
            vec![(10, 0), (20, 1), (21, 2), (20, 1)]
        );
        let l = order(Some(target.key), &live, &g, |_| false, &HashMap::new());
        assert_eq!(
            l[1].slot,
            Slot::Gone(ProcKey {
                pid: 20,
                start_time: 2
            })
        );
    }

    #[test]
    fn an_orphan_stays_under_the_gone_parent_it_came_from() {
        let target = p(10, 1, 1, 0);
        let mut orphan = p(12, 1, 3, 2);
        orphan.orphan = true;
        let live = vec![target.clone(), orphan.clone()];
        let g: BTreeMap<_, _> = [gone(p(11, 10, 2, 1), 5)].into();
        let first: HashMap<ProcKey, i32> = [(orphan.key, 11)].into();
        let l = order(Some(target.key), &live, &g, |_| false, &first);
        let got: Vec<(Slot, u32)> = l.iter().map(|x| (x.slot, x.depth)).collect();
        assert_eq!(
            got,
            vec![
                (Slot::Live(0), 0),
                (
                    Slot::Gone(ProcKey {
                        pid: 11,
                        start_time: 2
                    }),
                    1
                ),
                (Slot::Live(1), 2)
            ]
        );
    }

    #[test]
    fn a_ppid_loop_lists_everything_once() {
        let target = p(10, 1, 1, 0);
        let live = vec![target.clone(), p(30, 31, 5, 1), p(31, 30, 5, 1)];
        let l = order(
            Some(target.key),
            &live,
            &BTreeMap::new(),
            |_| false,
            &HashMap::new(),
        );
        assert_eq!(l.len(), 3);
    }
}
