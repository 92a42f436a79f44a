//! Teardown timeline panel and phase list. Both draw borrowed [`Timeline`] and [`Plan`] only
//! (no I/O, no state of their own) into the area they are given; the caller draws the panel
//! frame around them. Bars are scaled to the run's span so long phases stand out. The notes
//! shown are the selected phase's (every phase's notes stay browsable), and the last audit's
//! findings stay on the panel's last line.

use crate::teardown::plan::{Action, OnTimeout, Plan};
use crate::teardown::timeline::{Outcome, PhaseRecord, Timeline};
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

const LABEL: usize = 24;
const RIGHT: usize = 22;

/// What the dashboard adds to the timeline: the phase selected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    pub selected: Option<usize>,
}

impl Marks {
    fn outcome(&self, rec: &PhaseRecord) -> &'static str {
        crate::state::phase_outcome(rec)
    }
}

fn outcome_style(o: &Outcome) -> Style {
    match o {
        Outcome::Ok => theme::ok(),
        Outcome::Skipped { .. } | Outcome::TargetExited => theme::dim(),
        Outcome::Escalated | Outcome::TimedOut => theme::warn(),
        Outcome::Failed { .. } | Outcome::Aborted => theme::bad(),
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
/// running) on a shared time axis, then outcome and duration. Notes of the selected phase
/// (else the running or last one) fill the rows below; the last audit's findings stay on the
/// last row.
pub fn render(
    frame: &mut Frame,
    area: Rect,
    timeline: &Timeline,
    plan: &Plan,
    now_ms: u64,
    marks: Marks,
) {
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
                match rec.outcome {
                    // The limit it hit, not the time it was seen (the same figure or close).
                    Outcome::TimedOut => {
                        format!("timed out {}", secs(phase.timeout.as_millis() as u64))
                    }
                    _ => format!("{} {}", marks.outcome(rec), secs(rec.duration_ms())),
                },
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
    push_notes(&mut lines, area.height, timeline, plan, marks);
    frame.render_widget(Paragraph::new(lines), area);
}

/// Only the selected phase's notes and the last audit's findings (no bars): for a panel
/// too short for both the phase list and the bars.
pub fn render_notes(frame: &mut Frame, area: Rect, timeline: &Timeline, plan: &Plan, marks: Marks) {
    let mut lines = Vec::new();
    push_notes(&mut lines, area.height, timeline, plan, marks);
    frame.render_widget(Paragraph::new(lines), area);
}

/// Fills `lines` up to `height` with the notes of the selected phase (else the running or
/// last one), the newest that fit, and the last audit's findings on the last row.
fn push_notes(
    lines: &mut Vec<Line<'static>>,
    height: u16,
    timeline: &Timeline,
    plan: &Plan,
    marks: Marks,
) {
    let running = timeline.running.as_ref();
    let chosen = marks
        .selected
        .filter(|&i| running.is_some_and(|r| r.index == i) || timeline.record(i).is_some());
    let notes: Vec<&str> = match (chosen, running, timeline.phases.last()) {
        (Some(i), Some(r), _) if r.index == i => r.notes.iter().map(String::as_str).collect(),
        (Some(i), _, _) => timeline
            .record(i)
            .map(|r| record_notes(r).into_iter().map(String::as_str).collect())
            .unwrap_or_default(),
        (None, Some(r), _) => r.notes.iter().map(String::as_str).collect(),
        (None, None, Some(rec)) => record_notes(rec).into_iter().map(String::as_str).collect(),
        (None, None, None) => Vec::new(),
    };
    let audit = audit_line(timeline, plan);
    let room = (height as usize)
        .saturating_sub(lines.len())
        .saturating_sub(usize::from(audit.is_some()));
    let skip = notes.len().saturating_sub(room);
    if skip > 0 && room > 0 {
        // The newest notes fit; say how to see them all.
        lines.push(Line::styled(
            format!("  … {} earlier note(s): Enter shows them all", skip + 1),
            theme::dim(),
        ));
    }
    let skip = if skip > 0 { skip + 1 } else { 0 };
    for n in notes.into_iter().skip(skip) {
        lines.push(Line::styled(format!("  {n}"), theme::dim()));
    }
    if let Some(a) = audit {
        let pad = (height as usize).saturating_sub(lines.len() + 1);
        lines.extend(std::iter::repeat_n(Line::raw(""), pad));
        lines.push(a);
    }
}

/// A finished phase's notes, its failure or skip reason first.
pub fn record_notes(rec: &PhaseRecord) -> Vec<&String> {
    let mut v: Vec<&String> = rec.notes.iter().collect();
    if let Outcome::Failed { reason } | Outcome::Skipped { reason } = &rec.outcome {
        v.insert(0, reason);
    }
    v
}

/// What the last audit found (it stays while later phases run): `audit (8 left-over audit):
/// 2 left · tid 105 asyncio_1: non-daemon thread · …`, or that nothing was left.
pub fn audit_line(timeline: &Timeline, plan: &Plan) -> Option<Line<'static>> {
    let rec = timeline.phases.iter().rev().find(|r| {
        plan.phases
            .get(r.index)
            .is_some_and(|p| matches!(p.action, Action::Audit { .. }))
    })?;
    let head = format!("audit ({} {}): ", rec.index + 1, rec.name);
    if timeline.leftovers.is_empty() {
        return Some(Line::from(vec![
            Span::styled(head, theme::header_key()),
            Span::styled("nothing left", theme::ok()),
        ]));
    }
    let items: Vec<String> = timeline
        .leftovers
        .iter()
        .map(|l| format!("{} {}: {}", l.pid, l.name, l.reason))
        .collect();
    Some(Line::from(vec![
        Span::styled(head, theme::header_key()),
        Span::styled(
            format!("{} left · {}", items.len(), items.join(" · ")),
            theme::warn(),
        ),
    ]))
}

/// Which key runs which phase, with its action, timeout and timeout policy; the selected
/// phase is highlighted (Enter shows its notes).
pub fn render_phase_list(
    frame: &mut Frame,
    area: Rect,
    plan: &Plan,
    timeline: &Timeline,
    marks: Marks,
) {
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("plan {}", plan.name), theme::title()),
        Span::styled(
            "   n first not run · a all · x abort · + extend · Enter notes",
            theme::dim(),
        ),
    ])];
    // Narrow panels drop the action text first: the name and the state matter more.
    let describe = usize::from(area.width).saturating_sub(6 + 22 + 10).min(46);
    for (i, p) in plan.phases.iter().enumerate() {
        let policy = match p.on_timeout {
            OnTimeout::Escalate => "escalate",
            OnTimeout::Snapshot => "snapshot",
            OnTimeout::Continue => "continue",
        };
        let state = match (&timeline.running, timeline.record(i)) {
            (Some(r), _) if r.index == i => Span::styled("running", Style::new().fg(Color::Cyan)),
            (_, Some(rec)) => Span::styled(marks.outcome(rec), outcome_style(&rec.outcome)),
            _ => Span::styled("", theme::dim()),
        };
        let line = Line::from(vec![
            Span::styled(format!("[{}|{}] ", i + 1, p.key), theme::header_key()),
            Span::raw(truncate(&p.name, 22)),
            Span::styled(
                if describe > 1 {
                    truncate(
                        &format!(
                            " {} · {} · {policy} ",
                            p.action.describe(),
                            secs(p.timeout.as_millis() as u64)
                        ),
                        describe - 1,
                    ) + " "
                } else {
                    " ".to_string()
                },
                theme::dim(),
            ),
            state,
        ]);
        lines.push(if marks.selected == Some(i) {
            line.style(theme::selected())
        } else {
            line
        });
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
        insta::assert_snapshot!(draw(100, 12, |f| render(
            f,
            f.area(),
            &t,
            &plan,
            4600,
            Marks::default()
        )));
    }

    #[test]
    fn timeline_finished_shows_last_notes() {
        let (plan, mut t) = sample();
        t.running = None;
        insta::assert_snapshot!(draw(90, 11, |f| render(
            f,
            f.area(),
            &t,
            &plan,
            4600,
            Marks::default()
        )));
    }

    #[test]
    fn phase_list() {
        let (plan, t) = sample();
        insta::assert_snapshot!(draw(100, 10, |f| render_phase_list(
            f,
            f.area(),
            &plan,
            &t,
            Marks::default()
        )));
    }

    #[test]
    fn tiny_areas_do_not_panic() {
        let (plan, t) = sample();
        for (w, h) in [(1, 1), (10, 3), (30, 5)] {
            draw(w, h, |f| {
                render(f, f.area(), &t, &plan, 4600, Marks::default())
            });
            draw(w, h, |f| {
                render_phase_list(f, f.area(), &plan, &t, Marks::default())
            });
        }
    }
}
