//! The phase overlay (Enter on a phase in the teardown panel): one phase's record in full —
//! what it does, its outcome against its timeout, counts before and after, the signals it
//! sent, the exits it saw and every note. j/k move to the previous / next phase.

use crate::state::{Screen, outcome_text};
use crate::teardown::plan::OnTimeout;
use crate::teardown::timeline::Counts;
use crate::ui::widgets::timeline::record_notes;
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

fn counts(c: &Counts) -> String {
    let opt = |v: Option<usize>| v.map_or_else(|| "?".to_string(), |n| n.to_string());
    format!(
        "threads {} (non-daemon {}) · children {} · pending tasks {}",
        c.threads,
        opt(c.non_daemon_threads),
        c.children,
        opt(c.pending_tasks)
    )
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

pub fn render(frame: &mut Frame, area: Rect, s: &Screen) {
    let Some(plan) = s.plan() else {
        return;
    };
    let i = s
        .view
        .selected_phase
        .min(plan.phases.len().saturating_sub(1));
    let Some(phase) = plan.phases.get(i) else {
        return;
    };
    let key = |k: &str| Span::styled(k.to_string(), theme::header_key());
    let mut lines = vec![Line::from(vec![
        key("does "),
        Span::raw(format!(
            "{} · timeout {} · on timeout {}",
            phase.action.describe(),
            secs(phase.timeout.as_millis() as u64),
            match phase.on_timeout {
                OnTimeout::Escalate => "escalate",
                OnTimeout::Snapshot => "snapshot stacks",
                OnTimeout::Continue => "continue",
            }
        )),
    ])];
    let tl = s.timeline();
    let running = tl.and_then(|t| t.running.as_ref()).filter(|r| r.index == i);
    let record = tl.and_then(|t| t.record(i));
    if let Some(r) = running {
        let now = s
            .view
            .now_unix_ms
            .saturating_sub(tl.map_or(0, |t| t.started_unix_ms));
        lines.push(Line::from(vec![
            key("state "),
            Span::styled(
                format!(
                    "running {} of {}",
                    secs(now.saturating_sub(r.start_ms)),
                    secs(r.deadline_ms.saturating_sub(r.start_ms))
                ),
                theme::warn(),
            ),
        ]));
        lines.push(Line::styled("notes", theme::table_header()));
        lines.extend(r.notes.iter().map(|n| Line::raw(format!("  {n}"))));
    } else if let Some(rec) = record {
        lines.push(Line::from(vec![
            key("outcome "),
            Span::raw(outcome_text(rec, Some(phase.timeout))),
        ]));
        lines.push(Line::from(vec![
            key("before  "),
            Span::raw(counts(&rec.before)),
        ]));
        lines.push(Line::from(vec![
            key("after   "),
            Span::raw(counts(&rec.after)),
        ]));
        if !rec.signals.is_empty() {
            lines.push(Line::styled("signals", theme::table_header()));
            for sig in &rec.signals {
                let err = sig
                    .error
                    .as_deref()
                    .map(|e| format!(" (not sent: {e})"))
                    .unwrap_or_default();
                lines.push(Line::raw(format!(
                    "  +{} {} to pid {} ({}){err}",
                    secs(sig.at_ms.saturating_sub(rec.start_ms)),
                    sig.signal,
                    sig.pid,
                    sig.name
                )));
            }
        }
        if !rec.exits.is_empty() {
            lines.push(Line::styled("exits", theme::table_header()));
            for e in &rec.exits {
                lines.push(Line::raw(format!(
                    "  +{} pid {} ({}) {}",
                    secs(e.at_ms.saturating_sub(rec.start_ms)),
                    e.pid,
                    e.name,
                    fmt::exit(e.status)
                )));
            }
        }
        let notes = record_notes(rec);
        lines.push(Line::styled(
            if notes.is_empty() {
                "notes: none"
            } else {
                "notes"
            },
            theme::table_header(),
        ));
        lines.extend(notes.iter().map(|n| Line::raw(format!("  {n}"))));
    } else {
        lines.push(Line::styled(
            format!("not run yet: {} or {} runs it", i + 1, phase.key),
            theme::dim(),
        ));
    }
    let title = format!(
        " Phase {}/{} · {} ({}) ",
        i + 1,
        plan.phases.len(),
        phase.name,
        phase.key
    );
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Span::styled(title, theme::title()))
                .title_bottom(Span::styled(
                    " j/k previous/next phase · Enter or Esc close ",
                    theme::dim(),
                )),
        ),
        area,
    );
}
