//! Overlays: the `?` help (generated from the key map) and the quit prompt of launch mode.

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

pub fn render(frame: &mut Frame, area: Rect, replay: bool) {
    let extra: &[(&str, &str)] = if replay { REPLAY_BINDINGS } else { &[] };
    let lines: Vec<Line> = extra
        .iter()
        .chain(BINDINGS)
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:>16}  "), theme::table_header()),
                Span::raw(*what),
            ])
        })
        .collect();
    let popup = centered(area, 84, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Span::styled(" Keys (Esc closes) ", theme::title())),
        ),
        popup,
    );
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
