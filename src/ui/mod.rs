//! The terminal UI: layout, theme, key map and one widget per panel. Widgets draw a
//! borrowed [`Screen`] (the session's Model and the TUI's View) and never do I/O, so every
//! screen can be rendered into a `TestBackend` in tests.

pub mod fmt;
pub mod keys;
pub mod theme;
pub mod widgets;

use crate::state::{Mode, Overlay, Screen};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, s: &Screen) {
    let area = frame.area();
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
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    let [threads, tree] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    widgets::threads::render(frame, threads, s);
    widgets::tree::render(frame, tree, s);
    draw_bottom(frame, bottom, s);
    widgets::status::render(frame, status, s);
    match s.view.overlay {
        Overlay::Help => widgets::help::render(frame, area, replay),
        Overlay::QuitPrompt => widgets::help::render_quit_prompt(frame, area, s),
        Overlay::Stacks => draw_stacks(frame, body, s),
        Overlay::Why => widgets::why::render(frame, body, s),
        Overlay::None => {}
    }
}

/// The stack pane over the panels: the kept snapshot being viewed, with its position.
fn draw_stacks(frame: &mut Frame, area: Rect, s: &Screen) {
    let Some(snap) = s.viewed_stacks() else {
        return;
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
        ratatui::text::Line::styled(
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
}

fn draw_bottom(frame: &mut Frame, area: Rect, s: &Screen) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    widgets::phases::render(frame, right, s);
    if matches!(s.mode(), Mode::Launch { .. }) {
        // Launch mode: the launched command's output goes under the tasks.
        let [tasks, log] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(left);
        widgets::agent_panel::render(frame, tasks, s);
        widgets::log::render(frame, log, s);
    } else {
        widgets::agent_panel::render(frame, left, s);
    }
}

#[cfg(test)]
mod tests;
