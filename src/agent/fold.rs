//! Folds `report_delta` messages (docs/protocol.md §5.3) into the full [`Report`] the rest of
//! lifecycle-top sees: the client keeps the task rows and threads of the last report and
//! applies each delta's removals and upserts to them. A delta whose `base` is not the last
//! report folded (a lost or reordered report), or whose result disagrees with the header's
//! `tasks_listed`, is refused: the session then asks the agent for a full report.

use super::protocol::{PyThread, Report, ReportDelta, TaskInfo};
use std::collections::{HashMap, HashSet};

/// The task rows and threads of the last report folded, by id.
#[derive(Debug, Default)]
pub(super) struct Folded {
    /// `seq` of the report these rows are.
    pub seq: u64,
    tasks: Vec<TaskInfo>,
    index: HashMap<u64, usize>,
    threads: Vec<PyThread>,
}

impl Folded {
    /// The state after a full report.
    pub fn from_full(r: &Report) -> Self {
        let mut f = Folded {
            seq: r.seq,
            tasks: r.tasks.clone(),
            index: HashMap::new(),
            threads: r.threads.clone(),
        };
        f.reindex();
        f
    }

    fn reindex(&mut self) {
        self.index = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
    }

    /// Applies `d` (its chunks decoded: `rows` added or changed, `removed` ids) and returns
    /// the full report it stands for; `Err` (one line) when `d` does not follow this state.
    pub fn apply(
        &mut self,
        d: ReportDelta,
        rows: Vec<TaskInfo>,
        removed: &[u64],
    ) -> Result<Box<Report>, String> {
        if d.base != self.seq {
            return Err(format!(
                "delta report {} is based on report {}, the last one folded is {}",
                d.report.seq, d.base, self.seq
            ));
        }
        if !removed.is_empty() {
            let gone: HashSet<u64> = removed.iter().copied().collect();
            self.tasks.retain(|t| !gone.contains(&t.id));
            self.reindex();
        }
        for row in rows {
            match self.index.get(&row.id) {
                Some(&i) => self.tasks[i] = row,
                None => {
                    self.index.insert(row.id, self.tasks.len());
                    self.tasks.push(row);
                }
            }
        }
        // Threads: by ident; one without an ident (still starting) is sent in every delta.
        let gone: HashSet<u64> = d.threads_removed.iter().copied().collect();
        self.threads
            .retain(|t| t.ident.is_some_and(|i| !gone.contains(&i)));
        for th in &d.report.threads {
            match th
                .ident
                .and_then(|i| self.threads.iter().position(|t| t.ident == Some(i)))
            {
                Some(i) => self.threads[i] = th.clone(),
                None => self.threads.push(th.clone()),
            }
        }
        let mut r = Box::new(d.report);
        if self.tasks.len() as u64 != r.tasks_listed {
            return Err(format!(
                "delta report {} folds to {} task rows, its header says {}",
                r.seq,
                self.tasks.len(),
                r.tasks_listed
            ));
        }
        self.seq = r.seq;
        r.tasks = self.tasks.clone();
        r.threads = self.threads.clone();
        Ok(r)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, state: &str) -> TaskInfo {
        TaskInfo {
            id,
            loop_id: 1,
            name: format!("t{id}"),
            state: state.into(),
            ..TaskInfo::default()
        }
    }

    fn thread(ident: u64, name: &str) -> PyThread {
        PyThread {
            ident: Some(ident),
            name: name.into(),
            ..PyThread::default()
        }
    }

    fn full(seq: u64) -> Report {
        Report {
            seq,
            tasks: vec![task(1, "pending"), task(2, "pending"), task(3, "pending")],
            tasks_listed: 3,
            threads: vec![thread(10, "MainThread"), thread(11, "worker")],
            ..Report::default()
        }
    }

    fn delta(seq: u64, base: u64, listed: u64) -> ReportDelta {
        ReportDelta {
            base,
            threads_removed: vec![],
            report: Report {
                seq,
                tasks_listed: listed,
                ..Report::default()
            },
        }
    }

    #[test]
    fn removals_then_upserts_give_the_full_report() {
        let mut f = Folded::from_full(&full(7));
        let mut d = delta(8, 7, 3);
        d.threads_removed = vec![11];
        d.report.threads = vec![thread(10, "MainThread renamed"), thread(12, "new")];
        let r = f
            .apply(d, vec![task(2, "cancelling"), task(4, "pending")], &[1])
            .expect("applies");
        let ids: Vec<(u64, &str)> = r.tasks.iter().map(|t| (t.id, t.state.as_str())).collect();
        assert_eq!(ids, vec![(2, "cancelling"), (3, "pending"), (4, "pending")]);
        let names: Vec<&str> = r.threads.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["MainThread renamed", "new"]);
        assert_eq!((r.seq, f.seq, f.len()), (8, 8, 3));
        // An id removed and reused by a new task in the same delta: the new row stays.
        let r = f
            .apply(delta(9, 8, 3), vec![task(3, "running")], &[3])
            .expect("applies");
        assert_eq!(
            r.tasks.iter().find(|t| t.id == 3).map(|t| t.state.as_str()),
            Some("running")
        );
    }

    #[test]
    fn a_gap_or_a_wrong_count_is_refused() {
        let mut f = Folded::from_full(&full(7));
        let err = f.apply(delta(9, 8, 3), vec![], &[]).expect_err("gap");
        assert!(
            err.contains("based on report 8") && err.contains("is 7"),
            "{err}"
        );
        let err = f.apply(delta(8, 7, 5), vec![], &[]).expect_err("count");
        assert!(
            err.contains("folds to 3 task rows, its header says 5"),
            "{err}"
        );
        assert_eq!(
            f.seq, 7,
            "a refused delta is not folded (the session drops this state)"
        );
    }

    #[test]
    fn a_thread_without_ident_is_replaced_by_each_delta() {
        let mut r = full(1);
        r.threads.push(PyThread {
            ident: None,
            name: "starting".into(),
            ..PyThread::default()
        });
        let mut f = Folded::from_full(&r);
        let r = f.apply(delta(2, 1, 3), vec![], &[]).expect("applies");
        assert_eq!(
            r.threads.len(),
            2,
            "the identless thread is not kept: {:?}",
            r.threads
        );
    }
}
