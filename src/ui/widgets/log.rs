//! Log panel: the tail of the launched command's stdout/stderr (launch mode only).

use crate::state::Screen;
use crate::ui::widgets::panel;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let height = area.height.saturating_sub(2) as usize;
    let tail = &s.view.log_tail;
    let skip = tail.len().saturating_sub(height);
    let lines: Vec<Line> = tail[skip..].iter().map(|l| Line::raw(l.clone())).collect();
    let title = match s.log_path() {
        Some(p) => format!("Output ({p})"),
        None => "Output".to_string(),
    };
    frame.render_widget(
        // Not wrapped: the last lines must stay on screen; long lines are cut at the edge.
        Paragraph::new(lines).block(panel(title, false)),
        area,
    );
}
