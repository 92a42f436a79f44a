//! Teardown panel: which key runs which phase (top) and the per-phase timeline (below),
//! drawn by the timeline widgets inside one panel frame.

use crate::state::{Panel, Screen};
use crate::teardown::Timeline;
use crate::ui::theme;
use crate::ui::widgets::{panel, timeline};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let focused = s.view.focus == Panel::Timeline;
    let Some(plan) = s.plan() else {
        frame.render_widget(
            Paragraph::new(Line::styled("loading the teardown plan…", theme::dim()))
                .block(panel("Teardown".into(), focused)),
            area,
        );
        return;
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
    let gaps = s.agent_phase_gaps();
    let gap_height = u16::from(!gaps.is_empty());
    let list_height = (plan.phases.len() as u16 + 1).min(inner.height / 2);
    let [gap_line, list, bars] = Layout::vertical([
        Constraint::Length(gap_height),
        Constraint::Length(list_height),
        Constraint::Min(0),
    ])
    .areas(inner);
    if !gaps.is_empty() {
        // One line: which phase keys will be skipped or fail, and the first reason.
        let keys: String = gaps.iter().map(|(k, _)| *k).collect();
        let why = &gaps[0].1;
        frame.render_widget(
            Line::styled(
                format!("agent phases {keys} cannot act now: {why}"),
                theme::dim(),
            ),
            gap_line,
        );
    }
    timeline::render_phase_list(frame, list, plan, tl);
    let now_ms = s.view.now_unix_ms.saturating_sub(tl.started_unix_ms);
    timeline::render(frame, bars, tl, plan, now_ms);
}
