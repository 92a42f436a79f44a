//! Boils a [`Report`] down to the [`AgentFacts`] the teardown engine counts and the thread
//! table joins on (native tid -> Python name + daemon flag).

use super::protocol::Report;
use crate::model::{AgentFacts, AgentThreadFact};

impl From<&Report> for AgentFacts {
    fn from(r: &Report) -> Self {
        let hooks: Vec<i32> = crate::jvm::report::running_hook_tids(r).collect();
        AgentFacts {
            threads: r
                .threads
                .iter()
                .filter_map(|t| {
                    Some(AgentThreadFact {
                        native_id: t.native_id?,
                        name: t.name.clone(),
                        daemon: t.daemon,
                        alive: t.alive,
                        main: t.main,
                        hook: t.native_id.is_some_and(|n| hooks.contains(&n)),
                    })
                })
                .collect(),
            pending_tasks: r
                .loops
                .iter()
                .filter(|l| !l.closed)
                // The main task (what asyncio.run waits on) is not pending work: it ends
                // with the program, by the target's SIGINT, and cancel_tasks spares it.
                .map(|l| {
                    l.tasks_total
                        .saturating_sub(u64::from(l.main_task.is_some()))
                })
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .sum(),
            loops: r.loops.iter().filter(|l| !l.closed).count(),
            pid: Some(r.pid).filter(|p| *p > 0),
            exiting: false,
            jvm_shutdown: crate::jvm::report::in_shutdown_sequence(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::{LoopInfo, PyThread};

    #[test]
    fn facts_count_open_loops_and_join_threads() {
        let r = Report {
            threads: vec![
                PyThread {
                    name: "MainThread".into(),
                    native_id: Some(10),
                    alive: true,
                    main: true,
                    ..PyThread::default()
                },
                PyThread {
                    name: "gone".into(),
                    native_id: None,
                    ..PyThread::default()
                },
            ],
            loops: vec![
                LoopInfo {
                    tasks_total: 3,
                    ..LoopInfo::default()
                },
                LoopInfo {
                    tasks_total: 9,
                    closed: true,
                    ..LoopInfo::default()
                },
            ],
            pid: 10,
            ..Report::default()
        };
        let f = AgentFacts::from(&r);
        assert_eq!(f.threads.len(), 1);
        assert_eq!(f.non_daemon_threads(), 1);
        assert_eq!(f.pending_tasks, 3);
        assert_eq!(f.loops, 1);
        assert!(f.threads[0].main);
        assert_eq!(f.pid, Some(10));
    }
}
