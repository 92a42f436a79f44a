//! What the tasks panel shows, borrowed from the latest report (no ratatui here, so the
//! state module can build it and tests can inspect it).

use super::protocol::{LoopInfo, Report, TaskInfo};

/// Borrowed inputs of `ui::widgets::tasks::render`.
#[derive(Debug, Clone, Copy)]
pub struct TasksView<'a> {
    /// The agent connection line: "connected", "not found (...)", "lost (...)".
    pub status: &'a str,
    /// Latest complete report, if any.
    pub report: Option<&'a Report>,
    /// Draw the panel border as focused.
    pub focused: bool,
}

impl<'a> TasksView<'a> {
    pub fn new(status: &'a str, report: Option<&'a Report>) -> Self {
        Self {
            status,
            report,
            focused: false,
        }
    }

    pub fn loops(&self) -> &'a [LoopInfo] {
        self.report.map_or(&[], |r| r.loops.as_slice())
    }

    pub fn tasks(&self) -> &'a [TaskInfo] {
        self.report.map_or(&[], |r| r.tasks.as_slice())
    }

    /// Index of a loop in `loops()` by id (tasks name their loop by id).
    pub fn loop_index(&self, id: u64) -> Option<usize> {
        self.loops().iter().position(|l| l.id == id)
    }
}
