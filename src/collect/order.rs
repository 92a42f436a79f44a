//! Display order of the tracked processes, as a pure function of (pid, ppid, start time,
//! depth) so it is unit-tested without processes.

use std::collections::{HashMap, HashSet};

/// What the order needs of one live tracked process.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub pid: i32,
    pub ppid: i32,
    pub start_time: u64,
    /// Depth it had when last placed (kept by orphans).
    pub depth: u32,
}

/// `(pid, depth)` in display order: the target (if among `nodes`) and its descendants
/// depth-first, siblings oldest first; then each process whose parent is not tracked (an
/// orphan), oldest first, with its subtree, keeping the depth it had; last, anything a racing
/// read left in a ppid loop. Every node appears exactly once.
pub fn dfs_order(target: i32, nodes: &[Node]) -> Vec<(i32, u32)> {
    let known: HashSet<i32> = nodes.iter().map(|n| n.pid).collect();
    let mut children: HashMap<i32, Vec<(u64, i32)>> = HashMap::new();
    for n in nodes.iter().filter(|n| n.pid != target) {
        children
            .entry(n.ppid)
            .or_default()
            .push((n.start_time, n.pid));
    }
    for v in children.values_mut() {
        v.sort_unstable();
    }
    let mut order = Vec::with_capacity(nodes.len());
    let mut seen: HashSet<i32> = HashSet::with_capacity(nodes.len());
    let mut stack: Vec<(i32, u32)> = Vec::new();
    let mut visit = |root: i32, depth: u32, order: &mut Vec<(i32, u32)>| {
        stack.push((root, depth));
        while let Some((pid, d)) = stack.pop() {
            if !seen.insert(pid) {
                continue;
            }
            order.push((pid, d));
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids.iter().rev().map(|&(_, k)| (k, d + 1)));
            }
        }
    };
    if known.contains(&target) {
        visit(target, 0, &mut order);
    }
    let mut rest: Vec<(bool, u64, i32, u32)> = nodes
        .iter()
        .filter(|n| n.pid != target)
        // Orphan roots first (parent not tracked), then loop members.
        .map(|n| (known.contains(&n.ppid), n.start_time, n.pid, n.depth))
        .collect();
    rest.sort_unstable();
    for (_, _, pid, depth) in rest {
        visit(pid, depth, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(pid: i32, ppid: i32, start_time: u64, depth: u32) -> Node {
        Node {
            pid,
            ppid,
            start_time,
            depth,
        }
    }

    #[test]
    fn target_first_then_depth_first_oldest_sibling_first() {
        let nodes = [
            n(30, 10, 5, 0),
            n(10, 1, 1, 0),
            n(20, 10, 3, 0),
            n(21, 20, 4, 0),
            n(31, 30, 6, 0),
        ];
        assert_eq!(
            dfs_order(10, &nodes),
            vec![(10, 0), (20, 1), (21, 2), (30, 1), (31, 2)]
        );
    }

    #[test]
    fn orphans_after_the_tree_with_their_subtrees_and_kept_depth() {
        let nodes = [
            n(10, 1, 1, 0),
            n(50, 1, 9, 3), // orphan (reparented to init), was at depth 3
            n(51, 50, 10, 0),
            n(40, 999, 8, 2), // orphan (reparented to a subreaper)
            n(20, 10, 3, 1),
        ];
        assert_eq!(
            dfs_order(10, &nodes),
            vec![(10, 0), (20, 1), (40, 2), (50, 3), (51, 4)]
        );
    }

    #[test]
    fn exited_target_and_ppid_loops_still_list_everyone_once() {
        let nodes = [
            n(20, 10, 3, 1),
            n(21, 20, 4, 2),
            n(60, 61, 7, 1),
            n(61, 60, 8, 1),
        ];
        let order = dfs_order(10, &nodes);
        assert_eq!(&order[..2], &[(20, 1), (21, 2)]);
        let mut pids: Vec<i32> = order.iter().map(|&(p, _)| p).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![20, 21, 60, 61]);
    }
}
