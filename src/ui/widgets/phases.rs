//! Teardown panel: the plan's phases and the per-phase timeline.

use crate::state::{AppState, Panel};
use crate::ui::theme;
use crate::ui::widgets::panel;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

pub fn render(frame: &mut Frame, area: Rect, state: &AppState) {
    let focused = state.focus == Panel::Timeline;
    let lines = vec![Line::styled("no teardown plan loaded", theme::dim())];
    frame.render_widget(
        Paragraph::new(lines).block(panel("Teardown".into(), focused)),
        area,
    );
}
