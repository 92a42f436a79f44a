//! Agent panel: adapts the app state to the tasks widget (the agent's report, live or the
//! last one kept after the target exited or the agent was lost, or why there is no agent and
//! how to get one).

use crate::agent::view::TasksView;
use crate::state::{AgentStatus, Panel, Rows, Screen};
use crate::ui::widgets::tasks;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::TableState;

pub fn status_text(status: &AgentStatus) -> String {
    match status {
        AgentStatus::Disabled => "off (--no-agent)".into(),
        AgentStatus::Searching => "searching".into(),
        AgentStatus::NotFound(why) => format!("not found ({why})"),
        AgentStatus::Connected(what) => format!("connected ({what})"),
        AgentStatus::Lost(why) => format!("lost ({why})"),
        AgentStatus::TargetExited => "target exited".into(),
    }
}

/// Draws the tasks panel: the live report, or the last one kept and marked as not live.
pub fn render(frame: &mut Frame, area: Rect, s: &Screen) -> Option<Rows> {
    let status = status_text(&s.agent_status());
    let last = s.last_report();
    let report = last.as_ref().map(|(r, _)| *r);
    let stale = match &last {
        Some((_, stale)) => stale.as_ref().map(|w| w.0.clone()),
        None if s.target_exit().is_some() => Some("the target exited".to_string()),
        None => None,
    };
    let mut view = TasksView::new(&status, report);
    view.focused = s.view.focus == Panel::Tasks;
    let mut table = TableState::default().with_selected(
        report
            .filter(|r| !r.tasks.is_empty())
            .map(|_| s.view.selected_task),
    );
    tasks::render(
        frame,
        area,
        &view,
        &mut table,
        stale.as_deref(),
        crate::ui::theme::marker(s),
    )
}
