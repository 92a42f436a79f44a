//! Agent panel: adapts the app state to the tasks widget (the agent's report, or why there
//! is no agent and how to get one).

use crate::agent::view::TasksView;
use crate::state::{AgentStatus, Panel, Screen};
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
    }
}

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let status = status_text(&s.agent_status());
    let report = s.report();
    let mut view = TasksView::new(&status, report);
    view.focused = s.view.focus == Panel::Tasks;
    let mut table = TableState::default().with_selected(
        report
            .filter(|r| !r.tasks.is_empty())
            .map(|_| s.view.selected_task),
    );
    tasks::render(frame, area, &view, &mut table);
}
