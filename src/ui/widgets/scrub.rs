//! The replay's scrub bar: one line with the position, the span, the speed and the phase
//! boundaries along the recorded timeline (`|` a phase started or ended, `●` now).

use crate::state::ReplayBar;
use crate::ui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

/// Session time as the header and the bar show it: `12.5s`, `3m04.0s`.
pub fn clock(ms: u64) -> String {
    let secs = ms as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:04.1}s", (secs / 60.0).floor(), secs % 60.0)
    }
}

/// `0.25`, `1`, `16`.
pub fn speed(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The bar's cells: `━` played, `─` to come, `|` a phase boundary, `●` the position.
pub fn cells(bar: &ReplayBar, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let span = bar.end_ms.saturating_sub(bar.start_ms).max(1) as f64;
    let cell_of = |ms: u64| {
        let f = ms.saturating_sub(bar.start_ms) as f64 / span;
        ((f * (width - 1) as f64).round() as usize).min(width - 1)
    };
    let pos = cell_of(bar.pos_ms);
    let mut out: Vec<char> = (0..width)
        .map(|i| if i < pos { '━' } else { '─' })
        .collect();
    for b in &bar.boundaries {
        out[cell_of(*b)] = '|';
    }
    out[pos] = '●';
    out.into_iter().collect()
}

pub fn render(frame: &mut Frame, area: Rect, bar: &ReplayBar) {
    let left = format!(
        " {} {}/{} {}x ",
        if bar.paused { "⏸" } else { "▶" },
        clock(bar.pos_ms),
        clock(bar.end_ms),
        speed(bar.speed)
    );
    let right = format!(" event {}/{} ", bar.event, bar.events);
    let width = (area.width as usize).saturating_sub(left.chars().count() + right.chars().count());
    let line = Line::from(vec![
        Span::styled(left, theme::bad()),
        Span::styled(cells(bar, width), theme::warn()),
        Span::styled(right, theme::dim()),
    ]);
    frame.render_widget(line, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_marks_position_and_boundaries() {
        let bar = ReplayBar {
            pos_ms: 5_000,
            start_ms: 0,
            end_ms: 10_000,
            boundaries: vec![2_000, 8_000],
            ..ReplayBar::default()
        };
        let c = cells(&bar, 11);
        assert_eq!(c, "━━|━━●──|──");
        assert_eq!(clock(12_500), "12.5s");
        assert_eq!(clock(184_000), "3m04.0s");
        assert_eq!(speed(0.25), "0.25");
        assert_eq!(speed(16.0), "16");
    }
}
