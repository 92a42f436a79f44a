//! Agent panel: what the in-process agent reports (tasks, loops, daemon threads), or why
//! there is no agent and how to get one.

use crate::state::{AgentStatus, AppState, Panel};
use crate::ui::theme;
use crate::ui::widgets::panel;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn render(frame: &mut Frame, area: Rect, state: &AppState) {
    let focused = state.focus == Panel::Tasks;
    let mut lines = Vec::new();
    match (&state.agent, &state.agent_facts) {
        (AgentStatus::Connected(_), Some(f)) => {
            lines.push(Line::from(vec![
                Span::raw("pending tasks "),
                Span::styled(f.pending_tasks.to_string(), theme::warn()),
                Span::raw(format!("   loops {}", f.loops)),
            ]));
            lines.push(Line::from(vec![
                Span::raw("non-daemon threads "),
                Span::styled(f.non_daemon_threads().to_string(), theme::non_daemon()),
                Span::raw(format!(" of {}", f.threads.len())),
            ]));
        }
        (AgentStatus::Connected(_), None) => lines.push(Line::raw("waiting for the first report")),
        (status, _) => {
            let why = match status {
                AgentStatus::Disabled => "agent disabled (--no-agent)".to_string(),
                AgentStatus::NotFound(r) => format!("no agent: {r}"),
                AgentStatus::Lost(r) => format!("agent lost: {r}"),
                _ => "looking for an agent".to_string(),
            };
            lines.push(Line::styled(why, theme::dim()));
            lines.push(Line::styled(
                "Python: run under `lifecycle-top -- python app.py`, or",
                theme::dim(),
            ));
            lines.push(Line::styled(
                "import lifecycle_top_agent; lifecycle_top_agent.install()",
                theme::dim(),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(panel("Tasks (agent)".into(), focused)),
        area,
    );
}
