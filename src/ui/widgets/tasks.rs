//! Tasks panel: what the in-process agent sees of asyncio — one line per event loop (state,
//! lag, task counts, where it is blocked), the agent's own cost, and the task list (name,
//! state, coroutine, where it awaits, tracked or not). Draws a borrowed [`TasksView`];
//! only the visible rows are built, so 20,000 tasks cost what a screenful costs. A report
//! that is not live (the target exited, the agent was lost) stays shown, marked as such.
//! AWAITING AT is cut from the left so `file.py:line` survives.

use crate::agent::protocol::{LoopInfo, Report};
use crate::agent::view::TasksView;
use crate::state::Rows;
use crate::ui::columns::{self, Col};
use crate::ui::widgets::panel;
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

/// Most loop lines shown above the task list.
const MAX_LOOP_LINES: usize = 3;

/// `stale`: why the report shown is not live (it is then the last one received), or, with
/// no report, that the target exited (no advice to launch with the agent then).
pub fn render(
    frame: &mut Frame,
    area: Rect,
    view: &TasksView,
    state: &mut TableState,
    stale: Option<&str>,
    marker: &'static str,
) -> Option<Rows> {
    let title = match (view.report, stale) {
        (Some(r), Some(_)) => format!("Tasks {} · not live", r.tasks_total),
        (Some(r), None) => format!("Tasks {} · agent {}", r.tasks_total, view.status),
        (None, _) => format!("Tasks · agent {}", view.status),
    };
    let block = panel(title, view.focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(report) = view.report else {
        let hint = match stale {
            Some(why) => vec![Line::styled(
                format!("{why}: no agent report was received"),
                theme::dim(),
            )],
            None => vec![
                Line::styled("no agent report yet", theme::dim()),
                Line::styled(
                    "Python: `lifecycle-top -- python app.py`, or `import lifecycle_top_agent; lifecycle_top_agent.install()`",
                    theme::dim(),
                ),
            ],
        };
        frame.render_widget(
            Paragraph::new(hint).wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return None;
    };
    let mut head: Vec<Line> = report
        .loops
        .iter()
        .take(MAX_LOOP_LINES)
        .enumerate()
        .map(|(i, l)| loop_line(i, l))
        .collect();
    if report.loops.len() > MAX_LOOP_LINES {
        head.push(Line::styled(
            format!("… {} more loops", report.loops.len() - MAX_LOOP_LINES),
            theme::dim(),
        ));
    }
    if report.loops.is_empty() {
        head.push(Line::styled("no asyncio event loop", theme::dim()));
    }
    if let Some(why) = stale {
        head.insert(0, Line::styled(format!("not live: {why}"), theme::warn()));
    }
    head.push(summary_line(report));
    if let Some(line) = resources_line(report) {
        head.push(line);
    }
    let [top, table_area] = Layout::vertical([
        Constraint::Length(u16::try_from(head.len()).unwrap_or(u16::MAX)),
        Constraint::Fill(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(head), top);
    let offset = render_table(frame, table_area, view, state, marker);
    Some(Rows {
        area: crate::ui::widgets::area(Rect {
            y: table_area.y + 1,
            height: table_area.height.saturating_sub(1),
            ..table_area
        }),
        offset,
    })
}

fn loop_line(i: usize, l: &LoopInfo) -> Line<'static> {
    let (state, style) = if l.closed {
        ("closed", theme::dim())
    } else if l.blocked {
        ("BLOCKED", theme::bad())
    } else if l.running {
        ("running", theme::ok())
    } else {
        ("stopped", theme::warn())
    };
    let mut spans = vec![
        Span::raw(format!("loop {} ", i + 1)),
        Span::styled(state, style),
        Span::raw(format!(
            " tid {}{}",
            l.native_id.map_or_else(|| "-".into(), |t| t.to_string()),
            if l.main { " (main)" } else { "" }
        )),
    ];
    if let Some(lag) = l.lag_ms {
        let style = if lag > 100.0 {
            theme::bad()
        } else if lag > 10.0 {
            theme::warn()
        } else {
            Default::default()
        };
        spans.push(Span::raw("  lag "));
        spans.push(Span::styled(format_ms(lag), style));
    }
    let counts: Vec<String> = l.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    spans.push(Span::raw(format!(
        "  tasks {}{}",
        l.tasks_total,
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        }
    )));
    if let Some(at) = &l.blocked_at {
        spans.push(Span::styled(format!("  blocked at {at}"), theme::bad()));
    }
    Line::from(spans)
}

fn summary_line(r: &Report) -> Line<'static> {
    let mut spans = Vec::new();
    if r.tracking {
        let untracked = r.tasks.iter().filter(|t| t.tracked == Some(false)).count();
        spans.push(Span::raw(format!(
            "tracked {} · ",
            r.tasks.len() - untracked
        )));
        spans.push(Span::styled(
            format!("untracked {untracked}"),
            if untracked > 0 {
                theme::warn()
            } else {
                Default::default()
            },
        ));
    } else {
        spans.push(Span::styled("app registered no task list", theme::dim()));
    }
    if r.tasks_listed < r.tasks_total {
        spans.push(Span::raw(format!(
            " · listing {} of {}",
            r.tasks_listed, r.tasks_total
        )));
    }
    let c = &r.cost;
    spans.push(Span::styled(
        format!(
            "   agent cost: cpu {} · sent {} · report {}",
            format_ms(c.cpu_ms),
            format_bytes(c.bytes_sent),
            c.last_report_ms.map_or_else(|| "-".into(), format_ms)
        ),
        theme::dim(),
    ));
    Line::from(spans)
}

/// Executors and subprocesses the agent saw created: what else can keep the process alive.
fn resources_line(r: &Report) -> Option<Line<'static>> {
    if r.executors.is_empty() && r.subprocesses.is_empty() {
        return None;
    }
    let mut spans = Vec::new();
    for e in r
        .executors
        .iter()
        .filter(|e| e.workers.iter().any(|w| w.alive))
    {
        let alive = e.workers.iter().filter(|w| w.alive).count();
        let style = if e.shutdown {
            theme::warn()
        } else {
            Default::default()
        };
        spans.push(Span::styled(
            format!(
                "{} {alive} worker{}{} · ",
                e.kind,
                if alive == 1 { "" } else { "s" },
                if e.shutdown { " (shut down)" } else { "" }
            ),
            style,
        ));
    }
    let alive: Vec<_> = r.subprocesses.iter().filter(|p| p.alive).collect();
    spans.push(Span::raw(format!("subprocesses {} alive", alive.len())));
    if let Some(p) = alive.first() {
        spans.push(Span::styled(
            format!(
                "  (pid {} from {})",
                p.pid,
                p.site.clone().map_or_else(|| "?".into(), shorten_path)
            ),
            theme::dim(),
        ));
    }
    Some(Line::from(spans))
}

/// Draws the visible window of the task list; returns the index of its first row.
fn render_table(
    frame: &mut Frame,
    area: Rect,
    view: &TasksView,
    state: &mut TableState,
    marker: &'static str,
) -> usize {
    let tasks = view.tasks();
    let visible = usize::from(area.height.saturating_sub(1)).max(1);
    let selected = state
        .selected()
        .map(|s| s.min(tasks.len().saturating_sub(1)));
    state.select(if tasks.is_empty() { None } else { selected });
    // Window around the selection: only these rows are built.
    let start = selected.map_or(0, |s| s.saturating_sub(visible - 1));
    struct Text {
        name: String,
        state: String,
        coro: String,
        at: String,
        created: Option<String>,
        tracked: (&'static str, ratatui::style::Style),
        state_style: ratatui::style::Style,
        lp: String,
    }
    let text: Vec<Text> = tasks
        .iter()
        .skip(start)
        .take(visible)
        .map(|t| Text {
            name: t.name.clone(),
            state: t.state.clone(),
            coro: t.coro.clone().unwrap_or_else(|| "?".into()),
            at: t.where_.clone().unwrap_or_else(|| "?".into()),
            created: t.created_at.clone(),
            tracked: match t.tracked {
                Some(true) => ("yes", Default::default()),
                Some(false) => ("NO", theme::warn()),
                None => ("?", theme::dim()),
            },
            state_style: match t.state.as_str() {
                "running" => theme::bad(),
                "cancelling" => theme::warn(),
                _ => Default::default(),
            },
            lp: view
                .loop_index(t.loop_id)
                .map_or_else(|| "?".into(), |i| (i + 1).to_string()),
        })
        .collect();
    let widest =
        |f: fn(&Text) -> &str| text.iter().map(|x| f(x).chars().count()).max().unwrap_or(0);
    // Where each task was created: only when the agent says (older agents do not).
    let created = text.iter().any(|x| x.created.is_some());
    let mut cols = vec![
        Col::flex("NAME", 12, widest(|x| &x.name), 0),
        Col::fixed("STATE", 10, 2),
        Col::flex("COROUTINE", 12, widest(|x| &x.coro), 4),
        Col::flex("AWAITING AT", 20, widest(|x| &x.at), 0),
    ];
    if created {
        let want = text
            .iter()
            .map(|x| x.created.as_deref().map_or(1, |c| c.chars().count()))
            .max()
            .unwrap_or(0);
        cols.push(Col::flex("CREATED AT", 14, want, 6));
    }
    cols.extend([Col::fixed("TRACKED", 7, 3), Col::fixed("LOOP", 4, 5)]);
    let widths = columns::fit(
        area.width.saturating_sub(u16::from(!marker.is_empty())),
        &cols,
    );
    let w = |i: usize| widths[i].unwrap_or(0);
    let rows: Vec<Row> = text
        .into_iter()
        .map(|t| {
            let mut cells = vec![
                Cell::from(fmt::cut(&t.name, w(0))),
                Cell::from(Span::styled(t.state, t.state_style)),
                Cell::from(fmt::cut(&t.coro, w(2))),
                Cell::from(fmt::cut_left_path(&t.at, w(3))),
            ];
            if created {
                // Cut from the left: the file name and line survive.
                cells.push(Cell::from(fmt::cut_left_path(
                    t.created.as_deref().unwrap_or("?"),
                    w(4),
                )));
            }
            cells.push(Cell::from(Span::styled(t.tracked.0, t.tracked.1)));
            cells.push(Cell::from(t.lp));
            Row::new(columns::pick(&widths, cells))
        })
        .collect();
    let header = Row::new(columns::pick(
        &widths,
        cols.iter().map(|c| c.header).collect(),
    ))
    .style(theme::table_header());
    let table = Table::new(rows, columns::constraints(&widths))
        .header(header)
        .column_spacing(columns::SPACING)
        .highlight_symbol(marker)
        .row_highlight_style(theme::selected());
    let mut window = TableState::default().with_selected(selected.map(|s| s - start));
    frame.render_stateful_widget(table, area, &mut window);
    start
}

/// `…/pkg/module.py:12` keeps the useful end of a long path (for the lines above the table,
/// which are not cut to a column).
fn shorten_path(w: String) -> String {
    let parts: Vec<&str> = w.rsplitn(3, '/').collect();
    if parts.len() == 3 {
        format!("…/{}/{}", parts[1], parts[0])
    } else {
        w
    }
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn format_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::{AgentCost, ExecutorInfo, SubprocessInfo, TaskInfo, WorkerInfo};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn report() -> Report {
        let task = |id: u64, name: &str, state: &str, tracked: Option<bool>| TaskInfo {
            id,
            loop_id: 7,
            name: name.into(),
            state: state.into(),
            coro: Some("Service.worker".into()),
            where_: Some("/srv/app/service/worker.py:42".into()),
            tracked,
            created_at: None,
        };
        Report {
            loops: vec![LoopInfo {
                id: 7,
                class: "_UnixSelectorEventLoop".into(),
                native_id: Some(4242),
                running: true,
                blocked: true,
                lag_ms: Some(1530.0),
                counts: [("pending".to_string(), 3), ("running".to_string(), 1)].into(),
                tasks_total: 4,
                main: true,
                blocked_at: Some("service/worker.py:57".into()),
                ..LoopInfo::default()
            }],
            tasks: vec![
                task(1, "tracked-0", "pending", Some(true)),
                task(2, "tracked-1", "cancelling", Some(true)),
                task(3, "progress", "pending", Some(false)),
                task(4, "stuck", "running", Some(false)),
            ],
            tasks_total: 4,
            tasks_listed: 4,
            tracking: true,
            executors: vec![ExecutorInfo {
                kind: "ThreadPoolExecutor".into(),
                workers: vec![WorkerInfo {
                    name: "asyncio_0".into(),
                    native_id: Some(4250),
                    alive: true,
                    ..WorkerInfo::default()
                }],
                ..ExecutorInfo::default()
            }],
            subprocesses: vec![SubprocessInfo {
                pid: 4300,
                site: Some("/srv/app/service/spawn.py:40 (start)".into()),
                via: "asyncio".into(),
                alive: true,
                ..SubprocessInfo::default()
            }],
            cost: AgentCost {
                cpu_ms: 12.5,
                bytes_sent: 48_500,
                last_report_ms: Some(1.2),
                ..AgentCost::default()
            },
            ..Report::default()
        }
    }

    fn draw(view: &TasksView, state: &mut TableState, w: u16, h: u16) -> TestBackend {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        terminal
            .draw(|f| {
                render(f, f.area(), view, state, None, "");
            })
            .expect("draw");
        terminal.backend().clone()
    }

    #[test]
    fn tasks_panel_with_blocked_loop() {
        let r = report();
        let mut state = TableState::default().with_selected(Some(3));
        let view = TasksView::new("connected", Some(&r));
        insta::assert_snapshot!(draw(&view, &mut state, 110, 12));
        assert_eq!(state.selected(), Some(3));
    }

    #[test]
    fn tasks_panel_shows_where_tasks_were_created() {
        let mut r = report();
        for (i, t) in r.tasks.iter_mut().enumerate() {
            t.created_at = (i != 2).then(|| format!("/srv/app/service/supervisor.py:{}", 10 + i));
        }
        let mut state = TableState::default().with_selected(Some(0));
        let view = TasksView::new("connected", Some(&r));
        insta::assert_snapshot!(draw(&view, &mut state, 120, 12));
        // Narrow: the path is cut from the left, the file name and line kept.
        let narrow = format!("{:?}", draw(&view, &mut state, 96, 12));
        assert!(narrow.contains("supervisor.py:10"), "{narrow}");
    }

    #[test]
    fn tasks_panel_without_agent() {
        let mut state = TableState::default();
        let view = TasksView::new("not found (no agent socket)", None);
        insta::assert_snapshot!(draw(&view, &mut state, 90, 5));
    }

    #[test]
    fn selection_is_clamped_and_window_follows_it() {
        let mut r = report();
        r.tasks = (0..1000)
            .map(|i| TaskInfo {
                id: i,
                loop_id: 7,
                name: format!("t{i}"),
                state: "pending".into(),
                ..TaskInfo::default()
            })
            .collect();
        let mut state = TableState::default().with_selected(Some(5000));
        let view = TasksView::new("connected", Some(&r));
        let backend = draw(&view, &mut state, 80, 12);
        assert_eq!(state.selected(), Some(999));
        assert!(format!("{backend:?}").contains("t999"));
    }
}
