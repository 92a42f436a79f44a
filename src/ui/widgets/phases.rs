//! Teardown panel: which key runs which phase (top, the selected phase highlighted), the
//! per-phase timeline with the selected phase's notes, and the last audit's findings,
//! drawn by the timeline widgets inside one panel frame.

use crate::state::{Panel, Rows, Screen};
use crate::teardown::Timeline;
use crate::ui::theme;
use crate::ui::widgets::{area as plain, panel, timeline};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

/// Draws the panel; returns where its phase rows are (a click selects a phase).
pub fn render(frame: &mut Frame, area: Rect, s: &Screen) -> Option<Rows> {
    let focused = s.view.focus == Panel::Timeline;
    let Some(plan) = s.plan() else {
        frame.render_widget(
            Paragraph::new(Line::styled("loading the teardown plan…", theme::dim()))
                .block(panel("Teardown".into(), focused)),
            area,
        );
        return None;
    };
    let block = panel(format!("Teardown · plan {}", plan.name), focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let empty;
    let tl = match s.timeline() {
        Some(t) => t,
        None => {
            empty = Timeline::new(&plan.name, s.target_pid(), s.view.now_unix_ms);
            &empty
        }
    };
    let gaps = s.agent_phase_gaps_line();
    let gap_height = u16::from(gaps.is_some());
    // The phase list comes first; the bars only when they fit with it (each phase is one
    // row in both), else the notes alone under the list.
    let want = plan.phases.len() as u16 + 1;
    let with_bars = inner.height > gap_height + 2 * want;
    let list_height = if with_bars {
        want
    } else {
        want.min(inner.height.saturating_sub(gap_height + 3))
    };
    let [gap_line, list, bars] = Layout::vertical([
        Constraint::Length(gap_height),
        Constraint::Length(list_height),
        Constraint::Min(0),
    ])
    .areas(inner);
    if let Some(line) = gaps {
        // Which phases will be skipped or fail, by name, and why.
        frame.render_widget(Line::styled(line, theme::dim()), gap_line);
    }
    let marks = timeline::Marks {
        selected: Some(s.view.selected_phase),
    };
    timeline::render_phase_list(frame, list, plan, tl, marks);
    let now_ms = s.view.now_unix_ms.saturating_sub(tl.started_unix_ms);
    if with_bars {
        timeline::render(frame, bars, tl, plan, now_ms, marks);
    } else {
        timeline::render_notes(frame, bars, tl, plan, marks);
    }
    Some(Rows {
        area: plain(Rect {
            y: list.y + 1,
            height: list.height.saturating_sub(1),
            ..list
        }),
        offset: 0,
    })
}
