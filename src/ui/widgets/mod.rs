//! One file per panel. Each `render` draws borrowed state into an area.

pub mod agent_panel;
pub mod header;
pub mod help;
pub mod log;
pub mod phases;
pub mod scrub;
pub mod stacks;
pub mod status;
pub mod tasks;
pub mod threads;
pub mod timeline;
pub mod tree;
pub mod why;

use crate::ui::theme;
use ratatui::text::Span;
use ratatui::widgets::{Block, BorderType, Borders};

/// A panel frame with the focus colour and a bold title.
pub fn panel(title: String, focused: bool) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(theme::border(focused))
        .title(Span::styled(format!(" {title} "), theme::title()))
}
