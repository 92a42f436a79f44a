//! Threads panel: tid, name (OS and Python), state, wait point, CPU, daemon flag.

use crate::state::{Panel, Screen, page_offset};
use crate::ui::widgets::panel;
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    // Only the rows on screen are built: a 1,000-thread target costs what a screenful costs.
    let visible = area.height.saturating_sub(3) as usize;
    let total = s.view.thread_order.len();
    let selected = s.selected_thread_index();
    let offset = page_offset(selected, visible);
    let rows = s.thread_rows(offset..offset + visible);
    let focused = s.view.focus == Panel::Threads;
    let order = if s.view.sort_reverse { "↑" } else { "↓" };
    let title = format!("Threads ({total})  sort: {}{order}", s.view.sort.label());
    let header = Row::new(["TID", "NAME", "S", "WAITING ON", "CPU%", "TIME", "DAEMON"])
        .style(theme::table_header());
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let t = r.thread;
            let name = match r.agent {
                Some(a) if a.name != t.name => format!("{} ({})", t.name, a.name),
                _ => t.name.clone(),
            };
            let wait = match (&t.wait.syscall, &t.wait.wchan) {
                (Some(sc), Some(w)) => format!("{sc} · {w}"),
                (Some(sc), None) => sc.clone(),
                (None, Some(w)) => w.clone(),
                (None, None) if t.state.as_char() == 'R' => "running".into(),
                (None, None) => "-".into(),
            };
            let (daemon, style) = match r.daemon() {
                Some(true) => ("yes", Default::default()),
                Some(false) => ("NO", theme::non_daemon()),
                None => ("?", theme::dim()),
            };
            Row::new(vec![
                Cell::from(t.tid.to_string()),
                Cell::from(name),
                Cell::from(t.state.as_char().to_string()),
                Cell::from(wait),
                Cell::from(format!("{:.1}", t.cpu_percent)),
                Cell::from(fmt::cpu_time(t.cpu_ticks)),
                Cell::from(Span::styled(daemon, style)),
            ])
            .style(style)
        })
        .collect();
    let empty = body.is_empty();
    let table = Table::new(
        body,
        [
            Constraint::Length(7),
            Constraint::Fill(2),
            Constraint::Length(1),
            Constraint::Fill(3),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(panel(title, focused));
    let mut ts = TableState::default().with_selected(selected.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut ts);
    if empty && s.target_exit().is_some() {
        let msg = Span::styled("target has exited: no threads left", theme::dim());
        let inner = Rect {
            x: area.x + 2,
            y: area.y + 2,
            width: area.width.saturating_sub(4),
            height: 1.min(area.height.saturating_sub(3)),
        };
        frame.render_widget(msg, inner);
    }
}
