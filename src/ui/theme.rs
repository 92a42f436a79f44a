//! Colours and styles in one place, so panels agree on what red means. The colours can be
//! replaced once at start from the config file's `[colors]` table ([`install`]). Under
//! `NO_COLOR` the frame is drawn with these styles, then every colour is removed from the
//! buffer ([`strip_colors`]): reverse video, bold and the selection marker stay, so the
//! selected row stays visible.

use crate::state::Screen;
use ratatui::buffer::Buffer;
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

/// Whether `NO_COLOR` asks for no colours (<https://no-color.org>: set and not empty).
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The selected row's marker: needed without colours (reverse video alone is easy to miss
/// on a monochrome screen), none with them.
pub fn marker(s: &Screen) -> &'static str {
    if s.view.no_color { "▶" } else { "" }
}

pub fn marker_width(s: &Screen) -> u16 {
    u16::from(s.view.no_color)
}

/// Removes every colour from the frame, keeping modifiers (reverse, bold, underline).
/// Emitting no colour at all matters: crossterm writes an empty SGR (`ESC[m`, a reset of
/// every attribute) for a colour under `NO_COLOR`, which would cancel the reverse video.
pub fn strip_colors(buf: &mut Buffer) {
    for cell in buf.content.iter_mut() {
        cell.set_fg(Color::Reset);
        cell.set_bg(Color::Reset);
    }
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
    Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
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
