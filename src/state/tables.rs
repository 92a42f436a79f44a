//! Row models for the tables: sorting and the join of /proc threads with agent facts.

use crate::model::{AgentFacts, AgentThreadFact, Snapshot, ThreadInfo};
use std::cmp::Ordering;

/// Columns the threads table can be sorted by (`o` cycles, `r` reverses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Tid,
    Name,
    State,
    Cpu,
    CpuTime,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            Self::Tid => Self::Name,
            Self::Name => Self::State,
            Self::State => Self::Cpu,
            Self::Cpu => Self::CpuTime,
            Self::CpuTime => Self::Tid,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Tid => "tid",
            Self::Name => "name",
            Self::State => "state",
            Self::Cpu => "cpu%",
            Self::CpuTime => "time",
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

pub fn thread_rows<'a>(
    snap: &'a Snapshot,
    facts: Option<&'a AgentFacts>,
    key: SortKey,
    reverse: bool,
) -> Vec<ThreadRow<'a>> {
    let mut rows: Vec<ThreadRow<'a>> = snap
        .threads
        .iter()
        .map(|t| ThreadRow {
            thread: t,
            agent: facts.and_then(|f| f.thread(t.tid)),
        })
        .collect();
    rows.sort_by(|a, b| {
        let (x, y) = (a.thread, b.thread);
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
        };
        ord.then(x.tid.cmp(&y.tid))
    });
    if reverse {
        rows.reverse();
    }
    rows
}
