//! Colours and styles in one place, so panels agree on what red means. The colours can be
//! replaced once at start from the config file's `[colors]` table ([`install`]).

use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;
use std::sync::OnceLock;

static COLORS: OnceLock<BTreeMap<String, Color>> = OnceLock::new();

/// Replaces slots of the theme (names as in `config::COLOR_SLOTS`); the first call wins.
pub fn install(colors: BTreeMap<String, Color>) {
    let _ = COLORS.set(colors);
}

/// The colour of `slot`: the config file's, else `default`.
fn c(slot: &str, default: Color) -> Color {
    COLORS
        .get()
        .and_then(|m| m.get(slot).copied())
        .unwrap_or(default)
}

pub fn title() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}
pub fn border(focused: bool) -> Style {
    if focused {
        Style::new().fg(c("focused_border", Color::Cyan))
    } else {
        Style::new().fg(c("border", Color::DarkGray))
    }
}
pub fn header_key() -> Style {
    Style::new().fg(c("header_key", Color::DarkGray))
}
pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}
pub fn table_header() -> Style {
    Style::new()
        .fg(c("table_header", Color::Yellow))
        .add_modifier(Modifier::BOLD)
}
/// Non-daemon threads keep a Python process alive: they stand out.
pub fn non_daemon() -> Style {
    Style::new().fg(c("non_daemon", Color::LightRed))
}
pub fn dim() -> Style {
    Style::new().fg(c("dim", Color::DarkGray))
}
pub fn ok() -> Style {
    Style::new().fg(c("ok", Color::Green))
}
pub fn warn() -> Style {
    Style::new().fg(c("warn", Color::Yellow))
}
pub fn bad() -> Style {
    Style::new()
        .fg(c("bad", Color::Red))
        .add_modifier(Modifier::BOLD)
}
pub fn orphan() -> Style {
    Style::new().fg(c("orphan", Color::Magenta))
}
