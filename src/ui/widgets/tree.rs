//! Process-tree panel: every descendant indented by depth, with orphans and exited
//! processes kept and marked, and TERM disposition badges.

use crate::state::{Panel, Screen, page_offset};
use crate::ui::widgets::panel;
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Row, Table, TableState};

const SIGTERM: i32 = 15;

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let procs = s.processes();
    let header = Row::new(["PID", "PPID", "NAME", "S", "AGE", "CPU%", "RSS", "NOTE"])
        .style(theme::table_header());
    let visible = area.height.saturating_sub(3) as usize;
    let selected = s.selected_process_index();
    let offset = page_offset(selected, visible);
    let rows: Vec<Row> = procs
        .iter()
        .skip(offset)
        .take(visible)
        .map(|p| {
            let indent = "  ".repeat(p.depth as usize);
            let branch = if p.depth > 0 { "└ " } else { "" };
            let (note, style): (String, Style) = if let Some(exit) = s.exit_of(p) {
                (fmt::exit(exit.status), theme::dim())
            } else if p.orphan {
                (format!("orphan (ppid {})", p.ppid), theme::orphan())
            } else if p.signals.ignores(SIGTERM) {
                ("ignores TERM".into(), theme::warn())
            } else if p.signals.catches(SIGTERM) {
                ("handles TERM".into(), Style::default())
            } else {
                (String::new(), Style::default())
            };
            Row::new(vec![
                p.key.pid.to_string(),
                p.ppid.to_string(),
                format!("{indent}{branch}{}", p.name),
                p.state.as_char().to_string(),
                fmt::duration_secs(p.age_secs),
                format!("{:.1}", p.cpu_percent),
                fmt::bytes(p.rss_bytes),
                note,
            ])
            .style(style)
        })
        .collect();
    let live = procs.iter().filter(|p| s.exit_of(p).is_none()).count();
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(14),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(panel(
        format!("Process tree ({live} alive, {} listed)", procs.len()),
        s.view.focus == Panel::Tree,
    ));
    let mut ts = TableState::default().with_selected(selected.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut ts);
}
