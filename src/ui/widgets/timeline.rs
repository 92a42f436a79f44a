//! Teardown timeline panel and phase list. Both draw borrowed [`Timeline`] and [`Plan`] only
//! (no I/O, no state of their own) into the area they are given; the caller draws the panel
//! frame around them. Bars are scaled to the run's span so long phases stand out.

use crate::teardown::plan::{OnTimeout, Plan};
use crate::teardown::timeline::{Outcome, Timeline};
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

const LABEL: usize = 24;
const RIGHT: usize = 22;

fn outcome_style(o: &Outcome) -> Style {
    match o {
        Outcome::Ok => theme::ok(),
        Outcome::Skipped { .. } | Outcome::TargetExited => theme::dim(),
        Outcome::Escalated | Outcome::TimedOut => theme::warn(),
        Outcome::Failed { .. } => theme::bad(),
    }
}

fn secs(ms: u64) -> String {
    fmt::duration_secs(ms as f64 / 1000.0)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        format!("{s:<n$}")
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One row per plan phase: key, name, a bar from its start to its end (or to `now_ms` while
/// running) on a shared time axis, then outcome and duration. Notes of the running (or last)
/// phase fill the rows below.
pub fn render(frame: &mut Frame, area: Rect, timeline: &Timeline, plan: &Plan, now_ms: u64) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let bar_w = (area.width as usize)
        .saturating_sub(LABEL + RIGHT + 2)
        .max(1);
    let span_end = timeline
        .phases
        .iter()
        .map(|p| p.end_ms)
        .chain(timeline.running.as_ref().map(|_| now_ms))
        .max()
        .unwrap_or(0)
        .max(1);
    let col =
        |ms: u64| ((ms.min(span_end) as f64 / span_end as f64) * bar_w as f64).round() as usize;
    let mut lines = Vec::new();
    for (i, phase) in plan.phases.iter().enumerate() {
        let label = truncate(&format!("{} {} {}", i + 1, phase.key, phase.name), LABEL);
        let running = timeline.running.as_ref().filter(|r| r.index == i);
        let (start, end, style, right) = if let Some(r) = running {
            let elapsed = now_ms.saturating_sub(r.start_ms);
            let limit = r.deadline_ms.saturating_sub(r.start_ms);
            (
                r.start_ms,
                now_ms,
                Style::new().fg(Color::Cyan),
                format!("running {} / {}", secs(elapsed), secs(limit)),
            )
        } else if let Some(rec) = timeline.record(i) {
            (
                rec.start_ms,
                rec.end_ms,
                outcome_style(&rec.outcome),
                format!("{} {}", rec.outcome.label(), secs(rec.duration_ms())),
            )
        } else {
            lines.push(Line::from(vec![
                Span::raw(label),
                Span::raw(" ".repeat(bar_w + 1)),
                Span::styled("pending", theme::dim()),
            ]));
            continue;
        };
        let a = col(start).min(bar_w - 1);
        let b = col(end).clamp(a + 1, bar_w);
        let bar = format!(
            "{}{}{}",
            " ".repeat(a),
            "█".repeat(b - a),
            " ".repeat(bar_w.saturating_sub(b))
        );
        lines.push(Line::from(vec![
            Span::raw(label),
            Span::styled(bar, style),
            Span::raw(" "),
            Span::styled(truncate(&right, RIGHT), style),
        ]));
    }
    let notes: Vec<&String> = match (&timeline.running, timeline.phases.last()) {
        (Some(r), _) => r.notes.iter().collect(),
        (None, Some(rec)) => {
            let mut v: Vec<&String> = rec.notes.iter().collect();
            if let Outcome::Failed { reason } | Outcome::Skipped { reason } = &rec.outcome {
                v.insert(0, reason);
            }
            v
        }
        (None, None) => Vec::new(),
    };
    let room = (area.height as usize).saturating_sub(lines.len());
    let skip = notes.len().saturating_sub(room);
    for n in notes.into_iter().skip(skip) {
        lines.push(Line::styled(format!("  {n}"), theme::dim()));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// Which key runs which phase, with its action, timeout and timeout policy.
pub fn render_phase_list(frame: &mut Frame, area: Rect, plan: &Plan, timeline: &Timeline) {
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("plan {}", plan.name), theme::title()),
        Span::styled("   n next · a all · x abort · + extend", theme::dim()),
    ])];
    for (i, p) in plan.phases.iter().enumerate() {
        let policy = match p.on_timeout {
            OnTimeout::Escalate => "escalate",
            OnTimeout::Snapshot => "snapshot",
            OnTimeout::Continue => "continue",
        };
        let state = match (&timeline.running, timeline.record(i)) {
            (Some(r), _) if r.index == i => Span::styled("running", Style::new().fg(Color::Cyan)),
            (_, Some(rec)) => Span::styled(rec.outcome.label(), outcome_style(&rec.outcome)),
            _ => Span::styled("", theme::dim()),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("[{}|{}] ", i + 1, p.key), theme::header_key()),
            Span::raw(truncate(&p.name, 22)),
            Span::styled(
                truncate(
                    &format!(
                        " {} · {} · {policy} ",
                        p.action.describe(),
                        secs(p.timeout.as_millis() as u64)
                    ),
                    46,
                ),
                theme::dim(),
            ),
            state,
        ]));
    }
    let [top] = Layout::vertical([Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(lines), top);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::ExitStatus;
    use crate::teardown::timeline::{Counts, ExitEvent, PhaseRecord, RunningPhase};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn record(
        index: usize,
        plan: &Plan,
        start: u64,
        end: u64,
        outcome: Outcome,
        notes: &[&str],
    ) -> PhaseRecord {
        let p = &plan.phases[index];
        PhaseRecord {
            index,
            name: p.name.clone(),
            key: p.key,
            action: p.action.describe(),
            start_ms: start,
            end_ms: end,
            outcome,
            before: Counts::default(),
            after: Counts::default(),
            notes: notes.iter().map(|s| s.to_string()).collect(),
            signals: vec![],
            exits: vec![ExitEvent {
                at_ms: end,
                pid: 4711,
                name: "worker.py".into(),
                status: ExitStatus::Signal(9),
            }],
            agent_result: None,
        }
    }

    fn sample() -> (Plan, Timeline) {
        let plan = crate::teardown::plan::load("python-asyncio").unwrap();
        let mut t = Timeline::new(&plan.name, 4242, 0);
        t.phases.push(record(
            0,
            &plan,
            0,
            5,
            Outcome::Skipped {
                reason: "no agent connected".into(),
            },
            &[],
        ));
        t.phases.push(record(
            1,
            &plan,
            5,
            3020,
            Outcome::Escalated,
            &["pid 4711 (worker.py) ignored SIGTERM, killed after 3.0 s"],
        ));
        t.phases.push(record(
            2,
            &plan,
            3020,
            3030,
            Outcome::Skipped {
                reason: "no agent connected".into(),
            },
            &[],
        ));
        t.running = Some(RunningPhase {
            index: 6,
            name: plan.phases[6].name.clone(),
            start_ms: 3100,
            deadline_ms: 8100,
            notes: vec!["pid 4242 (python3) handles SIGINT".into()],
        });
        (plan, t)
    }

    fn draw(w: u16, h: u16, f: impl Fn(&mut Frame)) -> TestBackend {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|fr| f(fr)).unwrap();
        term.backend().clone()
    }

    #[test]
    fn timeline_with_running_phase() {
        let (plan, t) = sample();
        insta::assert_snapshot!(draw(100, 12, |f| render(f, f.area(), &t, &plan, 4600)));
    }

    #[test]
    fn timeline_finished_shows_last_notes() {
        let (plan, mut t) = sample();
        t.running = None;
        insta::assert_snapshot!(draw(90, 11, |f| render(f, f.area(), &t, &plan, 4600)));
    }

    #[test]
    fn phase_list() {
        let (plan, t) = sample();
        insta::assert_snapshot!(draw(100, 10, |f| render_phase_list(f, f.area(), &plan, &t)));
    }

    #[test]
    fn tiny_areas_do_not_panic() {
        let (plan, t) = sample();
        for (w, h) in [(1, 1), (10, 3), (30, 5)] {
            draw(w, h, |f| render(f, f.area(), &t, &plan, 4600));
            draw(w, h, |f| render_phase_list(f, f.area(), &plan, &t));
        }
    }
}
