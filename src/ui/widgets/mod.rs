//! One file per panel. Each `render` draws borrowed state into an area.

pub mod agent_panel;
pub mod header;
pub mod help;
pub mod log;
pub mod phase;
pub mod phases;
pub mod scrub;
pub mod stacks;
pub mod status;
pub mod tasks;
pub mod threads;
pub mod timeline;
pub mod tree;
pub mod why;

use crate::state::Area;
use crate::ui::theme;
use ratatui::layout::Rect;
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

/// The list rows inside a bordered panel whose table has `header` lines, as a state
/// [`Area`] (for mouse clicks).
pub fn rows_area(panel: Rect, header: u16) -> Area {
    area(Rect {
        x: panel.x + 1,
        y: panel.y + 1 + header,
        width: panel.width.saturating_sub(2),
        height: panel.height.saturating_sub(2 + header),
    })
}

/// A ratatui rectangle as the state's plain [`Area`].
pub fn area(r: Rect) -> Area {
    Area {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    }
}
