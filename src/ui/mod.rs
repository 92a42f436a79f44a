//! The terminal UI: layout, theme, key map and one widget per panel. Widgets draw a
//! borrowed [`Screen`] (the session's Model and the TUI's View) and never do I/O, so every
//! screen can be rendered into a `TestBackend` in tests.
//!
//! The layout adapts to the terminal: from [`GRID_WIDTH`]x[`GRID_HEIGHT`] on, every panel at
//! once (threads and tree above, tasks and teardown below); below that, one panel at a time
//! under a tab bar (Tab / Shift-Tab or a click switch), like k9s views; under
//! [`MIN_WIDTH`]x[`MIN_HEIGHT`], a "terminal too small" message. [`draw_measured`] reports
//! where things went ([`Geometry`]) so the state can map mouse clicks and clamp scrolling.

pub mod columns;
pub mod fmt;
pub mod keys;
pub mod theme;
pub mod widgets;

use crate::state::{Geometry, Mode, Overlay, Panel, PanelArea, Screen};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use widgets::area as plain;

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;
/// From this size on, all panels at once; below it, one panel at a time.
pub const GRID_WIDTH: u16 = 120;
pub const GRID_HEIGHT: u16 = 30;

/// How the panels are arranged at a terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrangement {
    TooSmall,
    /// One panel at a time, with tabs.
    Single,
    /// Every panel at once.
    Grid,
}

pub fn arrangement(width: u16, height: u16) -> Arrangement {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        Arrangement::TooSmall
    } else if width < GRID_WIDTH || height < GRID_HEIGHT {
        Arrangement::Single
    } else {
        Arrangement::Grid
    }
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, s: &Screen) {
    draw_measured(frame, s);
}

/// Draws the whole dashboard and says where its parts went.
pub fn draw_measured(frame: &mut Frame, s: &Screen) -> Geometry {
    let area = frame.area();
    let mut g = Geometry::default();
    let arrangement = arrangement(area.width, area.height);
    if arrangement == Arrangement::TooSmall {
        too_small(frame, area);
        g.too_small = true;
    } else {
        draw_dashboard(frame, area, s, arrangement, &mut g);
    }
    if s.view.no_color {
        theme::strip_colors(frame.buffer_mut());
    }
    g
}

fn too_small(frame: &mut Frame, area: Rect) {
    let lines = vec![
        Line::styled(
            format!(
                "terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT}, have {}x{})",
                area.width, area.height
            ),
            theme::warn(),
        ),
        Line::styled("enlarge it, or q to quit", theme::dim()),
    ];
    let [v] = Layout::vertical([Constraint::Length(4.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    frame.render_widget(
        Paragraph::new(lines).centered().wrap(Wrap { trim: true }),
        v,
    );
}

fn draw_dashboard(
    frame: &mut Frame,
    area: Rect,
    s: &Screen,
    arrangement: Arrangement,
    g: &mut Geometry,
) {
    let replay = s.view.replay.is_some();
    // The verdict of the last diagnosis takes one more header line once there is one.
    let verdict = widgets::why::verdict_line(s, area.width);
    let [header, body, scrub, status] = Layout::vertical([
        Constraint::Length(
            3 + u16::from(verdict.is_some()) + u16::from(!s.model.limitations.is_empty()),
        ),
        Constraint::Min(6),
        Constraint::Length(u16::from(replay)),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(bar) = &s.view.replay {
        widgets::scrub::render(frame, scrub, bar);
    }
    widgets::header::render(frame, header, s, verdict);
    match arrangement {
        Arrangement::Grid => draw_grid(frame, body, s, g),
        _ => draw_single(frame, body, s, g),
    }
    widgets::status::render(frame, status, s);
    match s.view.overlay {
        Overlay::Help => {
            g.help_max_scroll = widgets::help::render(frame, area, replay, s.view.help_scroll);
        }
        Overlay::QuitPrompt => widgets::help::render_quit_prompt(frame, area, s),
        Overlay::Stacks => g.stack_rows = draw_stacks(frame, body, s),
        Overlay::Why => widgets::why::render(frame, body, s),
        Overlay::Phase => widgets::phase::render(frame, body, s),
        Overlay::None => {}
    }
}

/// Every panel at once: threads | tree above, tasks (and the log) | teardown below.
fn draw_grid(frame: &mut Frame, body: Rect, s: &Screen, g: &mut Geometry) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    let [threads, tree] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    for (panel, area) in [
        (Panel::Threads, threads),
        (Panel::Tree, tree),
        (Panel::Tasks, left),
        (Panel::Timeline, right),
    ] {
        let rows = draw_panel(frame, panel, area, s);
        g.panels.push(PanelArea {
            panel,
            area: plain(area),
            rows,
        });
    }
}

/// One panel at a time under a tab bar.
fn draw_single(frame: &mut Frame, body: Rect, s: &Screen, g: &mut Geometry) {
    let [tabs, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
    let mut spans = Vec::new();
    let mut x = tabs.x;
    for (i, panel) in Panel::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", theme::dim()));
            x = x.saturating_add(3);
        }
        let label = format!(" {} ", tab_label(*panel, s));
        let width = label.chars().count() as u16;
        let style = if *panel == s.view.focus {
            theme::selected()
        } else {
            theme::dim()
        };
        g.tabs.push((
            *panel,
            crate::state::Area {
                x,
                y: tabs.y,
                width,
                height: 1,
            },
        ));
        x = x.saturating_add(width);
        spans.push(Span::styled(label, style));
    }
    spans.push(Span::styled("   Tab: next panel", theme::dim()));
    frame.render_widget(Line::from(spans), tabs);
    let rows = draw_panel(frame, s.view.focus, rest, s);
    g.panels.push(PanelArea {
        panel: s.view.focus,
        area: plain(rest),
        rows,
    });
}

fn tab_label(panel: Panel, s: &Screen) -> String {
    match panel {
        Panel::Threads => format!("Threads {}", s.view.thread_order.len()),
        Panel::Tree => format!("Tree {}", s.proc_count()),
        Panel::Tasks => match s.last_report() {
            Some((r, _)) => format!("Tasks {}", r.tasks_total),
            None => "Tasks".to_string(),
        },
        Panel::Timeline => "Teardown".to_string(),
    }
}

/// Draws one panel; returns where its selectable rows are.
fn draw_panel(
    frame: &mut Frame,
    panel: Panel,
    area: Rect,
    s: &Screen,
) -> Option<crate::state::Rows> {
    match panel {
        Panel::Threads => Some(widgets::threads::render(frame, area, s)),
        Panel::Tree => Some(widgets::tree::render(frame, area, s)),
        Panel::Timeline => widgets::phases::render(frame, area, s),
        Panel::Tasks if matches!(s.mode(), Mode::Launch { .. }) => {
            // Launch mode: the launched command's output goes under the tasks.
            let [tasks, log] =
                Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)])
                    .areas(area);
            widgets::log::render(frame, log, s);
            widgets::agent_panel::render(frame, tasks, s)
        }
        Panel::Tasks => widgets::agent_panel::render(frame, area, s),
    }
}

/// The stack pane over the panels: the kept snapshot being viewed, with its position.
/// Returns how many text rows the pane shows (its scroll page).
fn draw_stacks(frame: &mut Frame, area: Rect, s: &Screen) -> u16 {
    let Some(snap) = s.viewed_stacks() else {
        return 0;
    };
    let [hint, pane] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(ratatui::widgets::Clear, area);
    let stuck = s.stuck_since_previous();
    let compared = if s.view.stack_view == 0 {
        String::new()
    } else if stuck.is_empty() {
        "  ·  nothing stuck since the previous snapshot".to_string()
    } else {
        let tids: Vec<String> = stuck.iter().map(i32::to_string).collect();
        format!("  ·  stuck since the previous snapshot: {}", tids.join(" "))
    };
    frame.render_widget(
        Line::styled(
            format!(
                "snapshot {}/{}{compared}  ·  j/k scroll  [ ] older/newer  w write  Esc close",
                s.view.stack_view + 1,
                s.stacks().len()
            ),
            theme::warn(),
        ),
        hint,
    );
    widgets::stacks::render(frame, pane, snap, s.view.stack_scroll);
    pane.height.saturating_sub(2)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_layout;
