//! The set of processes in the target tree, as (pid, start time), shared with the agent
//! client so it accepts a socket peer only from inside the tree.

use crate::collect;
use crate::model::{ProcKey, Snapshot};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// The processes currently in the target tree, shared with the agent client so it only
/// accepts a socket peer from inside the tree. Kept as (pid, start time): a peer whose pid was
/// reused since the last refresh does not pass.
#[derive(Clone)]
pub struct TreePids(Arc<RwLock<HashSet<ProcKey>>>);

impl TreePids {
    pub fn new(target: ProcKey) -> Self {
        Self(Arc::new(RwLock::new(HashSet::from([target]))))
    }
    pub fn update(&self, snap: &Snapshot) {
        if let Ok(mut set) = self.0.write() {
            set.clear();
            set.extend(
                snap.processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| p.key),
            );
            set.insert(snap.target);
        }
    }
    pub fn checker(&self) -> Arc<dyn Fn(i32) -> bool + Send + Sync> {
        let set = self.0.clone();
        Arc::new(move |pid| {
            let Ok(start_time) = collect::procfs::read_start_time(pid) else {
                return false;
            };
            set.read()
                .is_ok_and(|s| s.contains(&ProcKey { pid, start_time }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_must_match_pid_and_start_time() {
        let pid = std::process::id() as i32;
        let start_time = collect::procfs::read_start_time(pid).expect("own start time");
        let ours = TreePids::new(ProcKey { pid, start_time });
        assert!(ours.checker()(pid));
        let reused = TreePids::new(ProcKey {
            pid,
            start_time: start_time + 1,
        });
        assert!(!reused.checker()(pid), "same pid, other process");
        assert!(!ours.checker()(i32::MAX), "not in the tree");
    }
}
