//! Status line: the last message or error, then key hints.

use crate::state::Screen;
use crate::ui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

const HINTS: &str = "q quit  Tab panel  j/k move  o sort  n next phase  a all  s stack  ? help";
const REPLAY_HINTS: &str =
    "q quit  space play/pause  < > speed  , . step  { } phase  ←/→ 5 s  [ ] stacks  ? help";

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let mut spans = Vec::new();
    if let Some(err) = s.last_error() {
        spans.push(Span::styled(format!("{err}  "), theme::bad()));
    } else if let Some(msg) = &s.view.status {
        spans.push(Span::styled(format!("{msg}  "), theme::warn()));
    }
    let hints = if s.view.replay.is_some() {
        REPLAY_HINTS
    } else {
        HINTS
    };
    spans.push(Span::styled(hints, theme::dim()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
