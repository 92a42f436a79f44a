//! Overlays: the `?` help (generated from the key map and the config file's extra keys,
//! sized to the terminal: one column, two, or scrolled with a hint) and the quit prompt of
//! launch mode.

use crate::state::{Mode, Screen};
use crate::ui::keys::{BINDINGS, REPLAY_BINDINGS};
use crate::ui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

/// Width of the key column (the longest keys are 16 characters).
const KEYS: usize = 16;

/// The help's entries: a replay's own keys first, then the dashboard's.
pub fn entries(replay: bool) -> Vec<(&'static str, &'static str)> {
    let extra: &[(&str, &str)] = if replay { REPLAY_BINDINGS } else { &[] };
    // The config file's extra keys last, each with its action.
    extra
        .iter()
        .chain(BINDINGS)
        .chain(crate::ui::keys::alias_entries())
        .copied()
        .collect()
}

fn entry_line(keys: &str, what: &str, width: usize) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{keys:>KEYS$}  "), theme::table_header()),
        Span::raw(format!("{what:<width$}")),
    ])
}

/// The `?` overlay, sized to the terminal: one column when every key fits, two side by side
/// when the terminal is wide enough for them, else the rows that fit from `scroll` on with a
/// last line saying what is above and below (j/k scroll). Returns the largest useful scroll
/// (0 when everything is shown), for the View to clamp to.
pub fn render(frame: &mut Frame, area: Rect, replay: bool, scroll: u16) -> u16 {
    let entries = entries(replay);
    let what_w = entries
        .iter()
        .map(|(_, w)| w.chars().count())
        .max()
        .unwrap_or(0);
    let col = KEYS + 2 + what_w;
    let rows_fit = usize::from(area.height.saturating_sub(2));
    let n = entries.len();
    let half = n.div_ceil(2);
    let (lines, max_scroll): (Vec<Line>, usize) = if n <= rows_fit {
        let lines = entries
            .iter()
            .map(|(k, w)| entry_line(k, w, what_w))
            .collect();
        (lines, 0)
    } else if half <= rows_fit && usize::from(area.width) >= 2 * col + 5 {
        let lines = (0..half)
            .map(|r| {
                let mut l = entry_line(entries[r].0, entries[r].1, what_w);
                if let Some((k, w)) = entries.get(r + half) {
                    l.spans.push(Span::raw(" │ "));
                    l.spans.extend(entry_line(k, w, what_w).spans);
                }
                l
            })
            .collect();
        (lines, 0)
    } else {
        // The last row says where the view is; the rest show entries.
        let shown = rows_fit.saturating_sub(1).max(1);
        let max = n.saturating_sub(shown);
        let from = usize::from(scroll).min(max);
        let mut lines: Vec<Line> = entries[from..(from + shown).min(n)]
            .iter()
            .map(|(k, w)| entry_line(k, w, what_w))
            .collect();
        let below = n - (from + shown).min(n);
        let hint = match (from, below) {
            (0, b) => format!("j/k scroll · {b} more below"),
            (a, 0) => format!("j/k scroll · {a} more above"),
            (a, b) => format!("j/k scroll · {a} above, {b} below"),
        };
        lines.push(Line::styled(format!("{:>w$}", hint, w = col), theme::dim()));
        (lines, max)
    };
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 2;
    let popup = centered(area, width as u16, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Span::styled(" Keys (Esc closes) ", theme::title())),
        ),
        popup,
    );
    u16::try_from(max_scroll).unwrap_or(u16::MAX)
}

pub fn render_quit_prompt(frame: &mut Frame, area: Rect, s: &Screen) {
    let demo = s.mode() == (Mode::Launch { demo: true });
    let what = if demo {
        "the demo tree"
    } else {
        "the launched tree"
    };
    let lines = vec![
        Line::raw(format!("{what} is still running. What now?")),
        Line::raw(""),
        Line::from(vec![
            Span::styled("  p ", theme::table_header()),
            Span::raw("run the remaining teardown phases, then quit"),
        ]),
        Line::from(vec![
            Span::styled("  k ", theme::table_header()),
            Span::raw("kill the whole tree (SIGKILL through pidfds) and quit"),
        ]),
        if demo {
            // The demo is started to die with lifecycle-top: detaching it would be a lie.
            Line::styled(
                "    (the demo dies with lifecycle-top: no detach)",
                theme::dim(),
            )
        } else {
            Line::from(vec![
                Span::styled("  d ", theme::table_header()),
                Span::raw("detach: leave it running and print its pid"),
            ])
        },
        Line::from(vec![
            Span::styled("Esc ", theme::table_header()),
            Span::raw("back to the dashboard"),
        ]),
    ];
    let popup = centered(area, 64, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Span::styled(" Quit ", theme::title())),
        ),
        popup,
    );
}
