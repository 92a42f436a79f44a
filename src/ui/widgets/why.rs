//! The Why overlay (`y`): the last diagnosis's causes, one wrapped line each, root cause
//! first, with when it was computed; and the header's one-line verdict.

use crate::state::{Screen, WhyResult};
use crate::ui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

/// How long ago a diagnosis was computed: `4s ago`, `2m05s ago`.
pub fn age(s: &Screen, r: &WhyResult) -> String {
    let ms = s.view.now_unix_ms.saturating_sub(r.computed_at_unix_ms);
    if ms < 60_000 {
        format!("{}s ago", ms / 1000)
    } else {
        format!("{} ago", crate::ui::fmt::duration_secs(ms as f64 / 1000.0))
    }
}

/// The header's verdict line, once a diagnosis was asked for (cut to `width` with `…`).
pub fn verdict_line(s: &Screen, width: u16) -> Option<Line<'static>> {
    let w = &s.view.why;
    let (age, verdict, style) = match &w.result {
        Some(r) => {
            let style = if r.error.is_some() || !r.causes.is_empty() {
                theme::warn()
            } else {
                theme::ok()
            };
            (format!("({}) ", age(s, r)), r.verdict(), style)
        }
        None if w.computing => (String::new(), "computing…".to_string(), theme::dim()),
        None => return None,
    };
    let head = "why ";
    let room = usize::from(width).saturating_sub(head.len() + age.chars().count());
    let verdict = if verdict.chars().count() > room {
        let mut cut: String = verdict.chars().take(room.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        verdict
    };
    Some(Line::from(vec![
        Span::styled(head, theme::header_key()),
        Span::styled(age, theme::dim()),
        Span::styled(verdict, style),
    ]))
}

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let w = &s.view.why;
    let mut title = " Why it won't exit".to_string();
    if let Some(r) = &w.result {
        let n = r.causes.len();
        title.push_str(&format!(
            " · {n} cause{} · computed {}",
            if n == 1 { "" } else { "s" },
            age(s, r)
        ));
    }
    if w.computing {
        title.push_str(" · computing…");
    }
    title.push(' ');
    let mut lines: Vec<Line> = Vec::new();
    match &w.result {
        _ if s.view.replay.is_some() => lines.push(Line::styled(
            "not in a replay: the diagnosis reads the live /proc (lifecycle-top why --pid N)",
            theme::dim(),
        )),
        None => lines.push(Line::styled("computing…", theme::dim())),
        Some(r) => {
            if let Some(e) = &r.error {
                lines.push(Line::styled(format!("cannot diagnose: {e}"), theme::bad()));
            } else if r.causes.is_empty() {
                lines.push(Line::styled(
                    "nothing found that blocks the exit",
                    theme::ok(),
                ));
            }
            for (i, c) in r.causes.iter().enumerate() {
                lines.push(Line::from(vec![
                    Span::styled(format!("{}. ", i + 1), theme::table_header()),
                    Span::raw(c.clone()),
                ]));
            }
            for u in &r.unknowns {
                lines.push(Line::styled(format!("unknown: {u}"), theme::dim()));
            }
        }
    }
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((w.scroll, 0))
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, theme::title()))
                    .title_bottom(Span::styled(" j/k scroll · y or Esc close ", theme::dim())),
            ),
        area,
    );
}
