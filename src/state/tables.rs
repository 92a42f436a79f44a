//! Row models for the tables: the sort order of the threads table (computed once per
//! snapshot or sort change, not per frame) and the join of /proc threads with agent facts,
//! done only for the rows on screen.

use crate::model::{AgentFacts, AgentThreadFact, ThreadInfo};
use std::cmp::Ordering;

/// Columns the threads table can be sorted by (`o` cycles, `r` reverses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Tid,
    Name,
    State,
    Cpu,
    CpuTime,
    /// Non-daemon threads first (they keep a Python process alive), then daemon, then
    /// unknown (no agent).
    Daemon,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            Self::Tid => Self::Name,
            Self::Name => Self::State,
            Self::State => Self::Cpu,
            Self::Cpu => Self::CpuTime,
            Self::CpuTime => Self::Daemon,
            Self::Daemon => Self::Tid,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Tid => "tid",
            Self::Name => "name",
            Self::State => "state",
            Self::Cpu => "cpu%",
            Self::CpuTime => "time",
            Self::Daemon => "daemon",
        }
    }
}

/// One row of the threads table.
#[derive(Debug, Clone, Copy)]
pub struct ThreadRow<'a> {
    pub thread: &'a ThreadInfo,
    /// What the agent says about this thread (Python name, daemon flag), if connected.
    pub agent: Option<&'a AgentThreadFact>,
}

impl ThreadRow<'_> {
    /// `Some(true)` daemon, `Some(false)` non-daemon, `None` unknown (no agent).
    pub fn daemon(&self) -> Option<bool> {
        self.agent.map(|a| a.daemon)
    }
}

/// Indices into `threads` in display order.
pub fn thread_order(
    threads: &[ThreadInfo],
    facts: Option<&AgentFacts>,
    key: SortKey,
    reverse: bool,
) -> Vec<usize> {
    let t = threads;
    // 0 non-daemon, 1 daemon, 2 unknown.
    let daemon_rank = |tid: i32| match facts.and_then(|f| f.thread(tid)) {
        Some(a) if !a.daemon => 0u8,
        Some(_) => 1,
        None => 2,
    };
    // The numeric keys sort a packed copy (key, tid, index): 10,000 threads are sorted once
    // per refresh, and comparing through the 170-byte rows cost twice as much.
    let numeric = |k: &dyn Fn(&ThreadInfo) -> u64| {
        let mut keyed: Vec<(u64, i32, usize)> = t
            .iter()
            .enumerate()
            .map(|(i, x)| (k(x), x.tid, i))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, _, i)| i).collect::<Vec<usize>>()
    };
    // Busiest first: the key is the complement of the (non-negative) percentage's bits,
    // which order as the numbers do; -0.0 and NaN count as 0.
    let busiest = |x: &ThreadInfo| {
        let pct = if x.cpu_percent > 0.0 {
            x.cpu_percent
        } else {
            0.0
        };
        u64::from(!pct.to_bits())
    };
    let fast = match key {
        SortKey::Tid => Some(numeric(&|_| 0)),
        SortKey::State => Some(numeric(&|x| u64::from(x.state.as_char()))),
        SortKey::Cpu => Some(numeric(&busiest)),
        SortKey::CpuTime => Some(numeric(&|x| !x.cpu_ticks)),
        SortKey::Name | SortKey::Daemon => None,
    };
    if let Some(mut order) = fast {
        if reverse {
            order.reverse();
        }
        return order;
    }
    let mut order: Vec<usize> = (0..t.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&t[a], &t[b]);
        let ord = match key {
            SortKey::Tid => x.tid.cmp(&y.tid),
            SortKey::Name => x.name.cmp(&y.name),
            SortKey::State => x.state.as_char().cmp(&y.state.as_char()),
            // Busiest first reads best for CPU columns.
            SortKey::Cpu => y
                .cpu_percent
                .partial_cmp(&x.cpu_percent)
                .unwrap_or(Ordering::Equal),
            SortKey::CpuTime => y.cpu_ticks.cmp(&x.cpu_ticks),
            SortKey::Daemon => daemon_rank(x.tid).cmp(&daemon_rank(y.tid)),
        };
        ord.then(x.tid.cmp(&y.tid))
    });
    if reverse {
        order.reverse();
    }
    order
}

/// The rows `order[range]`, joined with the agent's facts.
pub fn thread_rows<'a>(
    threads: &'a [ThreadInfo],
    facts: Option<&'a AgentFacts>,
    order: &[usize],
    range: std::ops::Range<usize>,
) -> Vec<ThreadRow<'a>> {
    let end = range.end.min(order.len());
    let start = range.start.min(end);
    order[start..end]
        .iter()
        .filter_map(|&i| threads.get(i))
        .map(|t| ThreadRow {
            thread: t,
            agent: facts.and_then(|f| f.thread(t.tid)),
        })
        .collect()
}

/// First row to show so that `selected` is on screen: whole pages, so the view does not
/// jump on every key press.
pub fn page_offset(selected: Option<usize>, visible: usize) -> usize {
    match (selected, visible) {
        (Some(s), v) if v > 0 => (s / v) * v,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_sort_puts_non_daemon_threads_first_and_unknown_last() {
        let snap = crate::state::fixture::snapshot();
        let mut facts = crate::state::fixture::agent_facts();
        // 107 unknown to the agent.
        facts.threads.retain(|t| t.native_id != 107);
        let tids = |o: Vec<usize>| -> Vec<i32> { o.iter().map(|&i| snap.threads[i].tid).collect() };
        let order = thread_order(&snap.threads, Some(&facts), SortKey::Daemon, false);
        assert_eq!(tids(order), vec![100, 105, 106, 107]);
        let order = thread_order(&snap.threads, Some(&facts), SortKey::Daemon, true);
        assert_eq!(tids(order), vec![107, 106, 105, 100]);
        assert_eq!(SortKey::CpuTime.next(), SortKey::Daemon);
        assert_eq!(SortKey::Daemon.next(), SortKey::Tid);
    }

    /// The packed-key sorts give the order of the plain comparison (ties by tid), both ways.
    #[test]
    fn numeric_sorts_match_the_plain_comparison() {
        use crate::model::RunState;
        let mut threads = crate::state::fixture::snapshot().threads;
        let base = threads[0].clone();
        let states = ['S', 'R', 'D', 'S', 'Z', 'S', 'R'];
        let pcts = [0.0, 12.5, 0.0, 99.9, 0.01, 12.5, 250.0, -0.0];
        threads = (0..40)
            .map(|i: i32| {
                let mut t = base.clone();
                // Tids out of order, as a replay's threads may be.
                t.tid = 1000 + (i * 7919) % 97;
                t.state = RunState::from_char(states[i as usize % states.len()]);
                t.cpu_percent = pcts[i as usize % pcts.len()];
                t.cpu_ticks = (i as u64 * 31) % 9;
                t
            })
            .collect();
        for key in [SortKey::Tid, SortKey::State, SortKey::Cpu, SortKey::CpuTime] {
            let mut want: Vec<usize> = (0..threads.len()).collect();
            want.sort_by(|&a, &b| {
                let (x, y) = (&threads[a], &threads[b]);
                let ord = match key {
                    SortKey::Tid => Ordering::Equal,
                    SortKey::State => x.state.as_char().cmp(&y.state.as_char()),
                    SortKey::Cpu => y
                        .cpu_percent
                        .partial_cmp(&x.cpu_percent)
                        .unwrap_or(Ordering::Equal),
                    _ => y.cpu_ticks.cmp(&x.cpu_ticks),
                };
                ord.then(x.tid.cmp(&y.tid))
            });
            assert_eq!(thread_order(&threads, None, key, false), want, "{key:?}");
            want.reverse();
            assert_eq!(
                thread_order(&threads, None, key, true),
                want,
                "{key:?} reversed"
            );
        }
    }

    #[test]
    fn pages_follow_the_selection() {
        assert_eq!(page_offset(None, 10), 0);
        assert_eq!(page_offset(Some(9), 10), 0);
        assert_eq!(page_offset(Some(10), 10), 10);
        assert_eq!(page_offset(Some(25), 10), 20);
        assert_eq!(page_offset(Some(3), 0), 0);
    }
}
