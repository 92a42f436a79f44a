//! The terminal UI: layout, theme, key map and one widget per panel. Widgets draw
//! borrowed [`crate::state::AppState`] and never do I/O, so every screen can be rendered
//! into a `TestBackend` in tests.

pub mod fmt;
pub mod keys;
pub mod theme;
pub mod widgets;

use crate::state::{AppState, Mode, Overlay};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, state: &AppState) {
    let area = frame.area();
    let [header, body, status] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(area);
    widgets::header::render(frame, header, state);
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    let [threads, tree] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    widgets::threads::render(frame, threads, state);
    widgets::tree::render(frame, tree, state);
    draw_bottom(frame, bottom, state);
    widgets::status::render(frame, status, state);
    match state.overlay {
        Overlay::Help => widgets::help::render(frame, area),
        Overlay::QuitPrompt => widgets::help::render_quit_prompt(frame, area, state),
        Overlay::Stacks => draw_stacks(frame, body, state),
        Overlay::None => {}
    }
}

/// The stack pane over the panels: the kept snapshot being viewed, with its position.
fn draw_stacks(frame: &mut Frame, area: Rect, state: &AppState) {
    let Some(snap) = state.stacks.get(state.stack_view) else {
        return;
    };
    let [hint, pane] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(ratatui::widgets::Clear, area);
    let stuck = state.stuck_since_previous();
    let compared = if state.stack_view == 0 {
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
                state.stack_view + 1,
                state.stacks.len()
            ),
            theme::warn(),
        ),
        hint,
    );
    widgets::stacks::render(frame, pane, snap, state.stack_scroll);
}

fn draw_bottom(frame: &mut Frame, area: Rect, state: &AppState) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    widgets::phases::render(frame, right, state);
    if matches!(state.mode, Mode::Launch { .. }) {
        // Launch mode: the launched command's output goes under the tasks.
        let [tasks, log] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(left);
        widgets::agent_panel::render(frame, tasks, state);
        widgets::log::render(frame, log, state);
    } else {
        widgets::agent_panel::render(frame, left, state);
    }
}

#[cfg(test)]
mod tests;
