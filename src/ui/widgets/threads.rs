//! Threads panel: tid, name (OS and Python), state, wait point, CPU, daemon flag. Columns
//! by priority: names and WAITING ON get the room, numeric columns go first when narrow.

use crate::state::{Panel, Rows, Screen, page_offset};
use crate::ui::columns::{self, Col};
use crate::ui::widgets::{panel, rows_area};
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) -> Rows {
    // Only the rows on screen are built: a 1,000-thread target costs what a screenful costs.
    let visible = area.height.saturating_sub(3) as usize;
    let total = s.view.thread_order.len();
    let selected = s.selected_thread_index();
    let offset = page_offset(selected, visible);
    let rows = s.thread_rows(offset..offset + visible);
    let focused = s.view.focus == Panel::Threads;
    let order = if s.view.sort_reverse { "↑" } else { "↓" };
    let title = format!("Threads ({total})  sort: {}{order}", s.view.sort.label());
    let text: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let t = r.thread;
            let name = match r.agent {
                Some(a) if a.name != t.name => format!("{} ({})", t.name, a.name),
                _ => t.name.to_string(),
            };
            let wait = match (&t.wait.syscall, &t.wait.wchan) {
                (Some(sc), Some(w)) => format!("{sc} · {w}"),
                (Some(sc), None) => sc.clone(),
                (None, Some(w)) => w.clone(),
                (None, None) if t.state.as_char() == 'R' => "running".into(),
                (None, None) => "-".into(),
            };
            (t.tid.to_string(), name, wait)
        })
        .collect();
    let widest = |f: fn(&(String, String, String)) -> &String| {
        text.iter().map(|x| f(x).chars().count()).max().unwrap_or(0)
    };
    let cols = [
        Col::fixed("TID", widest(|x| &x.0).max(5) as u16, 0),
        Col::flex("NAME", 16, widest(|x| &x.1), 0),
        Col::fixed("S", 1, 2),
        Col::flex("WAITING ON", 20, widest(|x| &x.2), 0),
        Col::fixed("CPU%", 5, 4),
        Col::fixed("TIME", 8, 5),
        Col::fixed("DAEMON", 6, 3),
    ];
    let inner = area.width.saturating_sub(2 + theme::marker_width(s));
    let widths = columns::fit(inner, &cols);
    let w = |i: usize| widths[i].unwrap_or(0);
    let header = Row::new(columns::pick(
        &widths,
        cols.iter().map(|c| c.header).collect(),
    ))
    .style(theme::table_header());
    let body: Vec<Row> = rows
        .iter()
        .zip(text)
        .map(|(r, (tid, name, wait))| {
            let t = r.thread;
            let (daemon, style) = match r.daemon() {
                Some(true) => ("yes", Default::default()),
                Some(false) => ("NO", theme::non_daemon()),
                None => ("?", theme::dim()),
            };
            let cells = vec![
                Cell::from(tid),
                Cell::from(fmt::cut(&name, w(1))),
                Cell::from(t.state.as_char().to_string()),
                Cell::from(fmt::cut(&wait, w(3))),
                Cell::from(format!("{:.1}", t.cpu_percent)),
                Cell::from(fmt::cpu_time(t.cpu_ticks)),
                Cell::from(Span::styled(daemon, style)),
            ];
            Row::new(columns::pick(&widths, cells)).style(style)
        })
        .collect();
    let empty = body.is_empty();
    let table = Table::new(body, columns::constraints(&widths))
        .header(header)
        .column_spacing(columns::SPACING)
        .row_highlight_style(theme::selected())
        .highlight_symbol(theme::marker(s))
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
    Rows {
        area: rows_area(area, 1),
        offset,
    }
}
