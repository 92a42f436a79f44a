//! Log panel: the tail of the launched command's stdout/stderr (launch mode only).

use crate::state::AppState;
use crate::ui::widgets::panel;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

pub fn render(frame: &mut Frame, area: Rect, state: &AppState) {
    let height = area.height.saturating_sub(2) as usize;
    let skip = state.log_tail.len().saturating_sub(height);
    let lines: Vec<Line> = state.log_tail[skip..]
        .iter()
        .map(|l| Line::raw(l.clone()))
        .collect();
    let title = match &state.log_path {
        Some(p) => format!("Output ({p})"),
        None => "Output".to_string(),
    };
    frame.render_widget(
        // Not wrapped: the last lines must stay on screen; long lines are cut at the edge.
        Paragraph::new(lines).block(panel(title, false)),
        area,
    );
}
