//! Process-tree panel: every process under its parent, indented by depth; orphans marked;
//! gone processes kept, with `X` as their state and their full exit ("killed by SIGKILL"),
//! until `Del` clears them. Columns by priority: NAME and NOTE get the room.

use crate::state::{Panel, Rows, Screen, page_offset};
use crate::ui::columns::{self, Col};
use crate::ui::widgets::{panel, rows_area};
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::widgets::{Row, Table, TableState};

const SIGTERM: i32 = 15;
/// Deeper levels are not indented further (the name keeps its room).
const MAX_INDENT: u32 = 6;

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) -> Rows {
    let visible = area.height.saturating_sub(3) as usize;
    let selected = s.selected_process_index();
    let offset = page_offset(selected, visible);
    let rows = s.proc_rows(offset..offset + visible);
    struct Text {
        pid: String,
        ppid: String,
        name: String,
        state: String,
        note: String,
        style: Style,
    }
    let text: Vec<Text> = rows
        .iter()
        .map(|r| {
            let p = r.info;
            let indent = "  ".repeat(r.depth.min(MAX_INDENT) as usize);
            let branch = if r.depth > 0 { "└ " } else { "" };
            let (note, style): (String, Style) = if let Some(exit) = r.exit {
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
            // `X` (as ps says of a dead process): a gone process has no live state.
            let state = if r.exit.is_some() {
                "X".to_string()
            } else {
                p.state.as_char().to_string()
            };
            Text {
                pid: p.key.pid.to_string(),
                ppid: p.ppid.to_string(),
                name: format!("{indent}{branch}{}", p.name),
                state,
                note,
                style,
            }
        })
        .collect();
    let widest =
        |f: fn(&Text) -> &String| text.iter().map(|x| f(x).chars().count()).max().unwrap_or(0);
    let cols = [
        Col::fixed("PID", widest(|x| &x.pid).max(5) as u16, 0),
        Col::fixed("PPID", widest(|x| &x.ppid).max(5) as u16, 5),
        Col::flex("NAME", 18, widest(|x| &x.name), 0),
        Col::fixed("S", 1, 2),
        Col::fixed("AGE", 6, 4),
        Col::fixed("CPU%", 5, 6),
        Col::fixed("RSS", 5, 3),
        Col::flex("NOTE", 17, widest(|x| &x.note), 0),
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
        .map(|(r, t)| {
            let p = r.info;
            let (age, cpu) = match r.exit {
                Some(_) => ("-".to_string(), "-".to_string()),
                None => (
                    fmt::duration_secs(p.age_secs),
                    format!("{:.1}", p.cpu_percent),
                ),
            };
            let rss = if r.exit.is_some() {
                "-".to_string()
            } else {
                fmt::bytes(p.rss_bytes)
            };
            let cells = vec![
                t.pid,
                t.ppid,
                fmt::cut(&t.name, w(2)),
                t.state,
                age,
                cpu,
                rss,
                fmt::cut(&t.note, w(7)),
            ];
            Row::new(columns::pick(&widths, cells)).style(t.style)
        })
        .collect();
    let live = s.proc_count().saturating_sub(s.view.gone.len());
    let gone = s.gone_count();
    let clear = if gone > 0 { " · Del clears gone" } else { "" };
    let dropped = match s.view.gone_dropped {
        0 => String::new(),
        n => format!(", {n} older not kept"),
    };
    let table = Table::new(body, columns::constraints(&widths))
        .header(header)
        .column_spacing(columns::SPACING)
        .row_highlight_style(theme::selected())
        .highlight_symbol(theme::marker(s))
        .block(panel(
            format!("Process tree ({live} alive, {gone} gone{dropped}{clear})"),
            s.view.focus == Panel::Tree,
        ));
    let mut ts = TableState::default().with_selected(selected.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut ts);
    Rows {
        area: rows_area(area, 1),
        offset,
    }
}
