//! What the View knows about a replay (position, speed, paused, phase boundaries; drawn by
//! the header and the scrub bar) and rebuilding the View around a Model folded again after a
//! backwards seek. The replay controller (`crate::replay`) owns the position; the Model
//! never holds replay state.

use super::{Dashboard, Overlay};
use crate::session::Model;

/// The replay's position as the screen shows it, set by the controller after every move.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayBar {
    /// Session time shown, and the recording's span.
    pub pos_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub speed: f64,
    pub paused: bool,
    /// Session times where a phase started or ended.
    pub boundaries: Vec<u64>,
    /// Events folded so far, of all.
    pub event: usize,
    pub events: usize,
}

impl Dashboard {
    /// Replaces the Model (folded again from a checkpoint) and keeps the View consistent
    /// with it: the parsed plan, selections, the stack pane's page.
    pub fn replace_model(&mut self, model: Model) {
        self.model = model;
        // The gone book follows the Model: a seek back forgets exits not yet happened.
        self.view.gone.clear();
        self.view.plan = self.model.plan.as_ref().and_then(|p| p.load().ok());
        self.fix_selection();
        let stacks = self.model.stacks.len();
        if stacks == 0 {
            self.view.stack_view = 0;
            if self.view.overlay == Overlay::Stacks {
                self.view.overlay = Overlay::None;
            }
        } else {
            self.view.stack_view = self.view.stack_view.min(stacks - 1);
        }
        let tasks = self.model.report.as_ref().map_or(0, |r| r.tasks.len());
        self.view.selected_task = self.view.selected_task.min(tasks.saturating_sub(1));
    }
}
