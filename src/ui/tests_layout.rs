//! Rendering tests of the adaptive layout (issue 13): one busy dashboard at 80x24, 120x40
//! and 200x50, under NO_COLOR, too small, after the target exited, and the phase overlay.

use super::{draw, draw_measured};
use crate::model::ExitStatus;
use crate::session::{AgentState, CoreEvent, plan_info};
use crate::state::{Action, Dashboard, Panel, fixture, fixture::ev};
use crate::teardown::timeline::{
    Counts, Leftover, LeftoverKind, Outcome, PhaseRecord, RunningPhase,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
/// Where the demo's tasks await, as a real run names it (a long cache path).
const DEEP: &str = "/home/user/.cache/lifecycle-top/demo-77c6b8e43feef66a/demo_async.py";

fn render(d: &Dashboard, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| draw(f, &d.screen())).expect("draw");
    terminal.backend().clone()
}

fn text(b: &TestBackend) -> String {
    format!("{b}")
}

fn report() -> crate::agent::protocol::Report {
    let mut r = fixture::agent_report();
    for (t, line) in r.tasks.iter_mut().zip([31, 40, 52]) {
        t.where_ = Some(format!("{DEEP}:{line}"));
    }
    r
}

fn counts(children: usize) -> Counts {
    Counts {
        threads: 4,
        non_daemon_threads: Some(1),
        children,
        pending_tasks: Some(3),
    }
}

fn rec(
    index: usize,
    name: &str,
    key: char,
    span: (u64, u64),
    outcome: Outcome,
    notes: &[&str],
) -> PhaseRecord {
    PhaseRecord {
        index,
        name: name.into(),
        key,
        action: "test".into(),
        start_ms: span.0,
        end_ms: span.1,
        outcome,
        before: counts(3),
        after: counts(2),
        notes: notes.iter().map(|n| n.to_string()).collect(),
        signals: vec![],
        exits: vec![],
        agent_result: None,
    }
}

/// The demo mid-teardown: agent connected, a child killed (gone), the threads audit done
/// with a finding, "signal target" running.
fn busy() -> Dashboard {
    let mut d = fixture::dashboard(None);
    let hello: crate::agent::Hello = serde_json::from_value(serde_json::json!({
        "protocol": 1,
        "agent": {"kind": "python", "version": "0.1.0", "instance": "x"},
        "runtime": {"name": "cpython", "version": "3.12"},
        "target": {"pid": 100, "start_time": 1100},
        "capabilities": ["cancel_tasks", "shutdown_executors", "stop_loop", "close_loop"]
    }))
    .expect("hello");
    d.apply(&ev(CoreEvent::AgentHello {
        hello: Box::new(hello),
    }));
    d.apply(&ev(CoreEvent::AgentState {
        state: AgentState::Connected("python 3.12".into()),
    }));
    d.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(report()),
    }));
    let plan = crate::teardown::plan::load("python-asyncio").expect("built-in plan");
    d.apply(&ev(CoreEvent::Plan {
        plan: plan_info(&plan),
    }));
    let stubborn = fixture::snapshot().processes[1].key;
    d.apply(&ev(CoreEvent::Exited {
        key: stubborn,
        status: ExitStatus::Signal(9),
        at_unix_ms: T0 + 3_000,
    }));
    let mut t = crate::teardown::Timeline::new("python-asyncio", 100, T0);
    t.phases = vec![
        rec(
            0,
            "cancel tasks",
            'c',
            (0, 5000),
            Outcome::TimedOut,
            &["1 task ignored its cancellation: stubborn-task"],
        ),
        rec(
            1,
            "terminate children",
            't',
            (5000, 8000),
            Outcome::Escalated,
            &["pid 101 (stubborn-worker) ignored SIGTERM, killed after 3.0 s"],
        ),
        rec(
            5,
            "audit threads",
            'h',
            (8000, 8200),
            Outcome::Ok,
            &["1 non-daemon thread left"],
        ),
    ];
    t.leftovers = vec![Leftover {
        pid: 105,
        name: "asyncio_1".into(),
        kind: LeftoverKind::NonDaemonThread,
        reason: "non-daemon thread: threading._shutdown waits for it".into(),
    }];
    t.running = Some(RunningPhase {
        index: 6,
        name: "signal target".into(),
        start_ms: 8300,
        deadline_ms: 13_300,
        notes: vec!["pid 100 (python3) handles SIGINT".into()],
    });
    d.apply(&ev(CoreEvent::Timeline {
        timeline: Arc::new(t),
    }));
    d.apply(&ev(CoreEvent::Phase {
        event: crate::teardown::PhaseEvent::Started {
            index: 6,
            name: "signal target".into(),
        },
    }));
    d.tick(T0 + 9_000);
    d
}

#[test]
fn busy_dashboard_80x24() {
    let d = busy();
    let t = text(&render(&d, 80, 24));
    assert!(
        t.contains("Threads 4"),
        "one panel at a time, with tabs:\n{t}"
    );
    insta::assert_snapshot!(t);
}

#[test]
fn busy_dashboard_80x24_each_panel() {
    let mut d = busy();
    let mut all = String::new();
    for panel in Panel::ALL {
        d.view.focus = panel;
        all.push_str(&text(&render(&d, 80, 24)));
        all.push('\n');
    }
    // The columns that matter keep their room, paths keep file:line, notes are whole.
    assert!(all.contains("stubborn-worker"), "{all}");
    assert!(all.contains("killed by SIGKILL"), "{all}");
    assert!(all.contains("demo_async.py:52"), "{all}");
    assert!(all.contains("audit (6 audit threads): 1 left"), "{all}");
    insta::assert_snapshot!(all);
}

#[test]
fn busy_dashboard_120x40() {
    let d = busy();
    let t = text(&render(&d, 120, 40));
    assert!(t.contains("└ stubborn-worker"), "{t}");
    assert!(t.contains("demo_async.py:31"), "{t}");
    insta::assert_snapshot!(t);
}

#[test]
fn busy_dashboard_200x50() {
    let d = busy();
    let t = text(&render(&d, 200, 50));
    assert!(t.contains("/demo_async.py:40 "), "{t}");
    assert!(t.contains("running 0.7s / 5.0s"), "{t}");
    assert!(
        t.contains("pid 100 (python3) handles SIGINT"),
        "the running phase's notes: {t}"
    );
    insta::assert_snapshot!(t);
}

/// Each cell as text, with the reversed ones in brackets (a text snapshot shows no styles).
fn styled(b: &TestBackend) -> String {
    let buf = b.buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut inverse = false;
        for x in 0..buf.area.width {
            let cell = &buf[(x, y)];
            let r = cell.modifier.contains(Modifier::REVERSED);
            if r != inverse {
                out.push(if r { '[' } else { ']' });
                inverse = r;
            }
            out.push_str(cell.symbol());
        }
        if inverse {
            out.push(']');
        }
        out.push('\n');
    }
    out
}

#[test]
fn no_color_keeps_the_selection_visible() {
    let mut d = busy();
    d.view.no_color = true;
    d.act(Action::Down);
    let b = render(&d, 120, 40);
    let buf = b.buffer();
    assert!(
        buf.content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "no colour at all under NO_COLOR"
    );
    let t = styled(&b);
    assert!(
        t.contains("[▶105"),
        "the selected row is reversed and marked:\n{t}"
    );
    insta::assert_snapshot!(t);
}

#[test]
fn too_small_says_what_it_needs() {
    let d = busy();
    let mut terminal = Terminal::new(TestBackend::new(40, 10)).expect("test terminal");
    let mut g = None;
    terminal
        .draw(|f| g = Some(draw_measured(f, &d.screen())))
        .expect("draw");
    let t = text(terminal.backend());
    assert!(t.contains("terminal too small"), "{t}");
    assert!(t.contains("60x16"), "{t}");
    assert!(g.is_some_and(|g| g.too_small));
    insta::assert_snapshot!(t);
}

#[test]
fn after_the_target_exited_its_last_tasks_stay_marked() {
    let mut d = busy();
    d.apply(&ev(CoreEvent::AgentState {
        state: AgentState::NotFound("no agent socket".into()),
    }));
    d.apply(&ev(CoreEvent::Exited {
        key: fixture::snapshot().target,
        status: ExitStatus::Signal(9),
        at_unix_ms: T0 + 9_500,
    }));
    d.tick(T0 + 12_000);
    let t = text(&render(&d, 120, 40));
    assert!(t.contains("agent: target exited"), "{t}");
    assert!(!t.contains("not found"), "{t}");
    assert!(t.contains("target exited · last report"), "{t}");
    assert!(t.contains("poll-backend"), "the last tasks stay: {t}");
    insta::assert_snapshot!(t);
}

#[test]
fn phase_overlay_shows_every_note_of_the_selected_phase() {
    let mut d = busy();
    d.view.focus = Panel::Timeline;
    d.act(Action::Top);
    d.act(Action::Down);
    d.act(Action::Open);
    let t = text(&render(&d, 120, 40));
    assert!(t.contains("Phase 2/8 · terminate children (t)"), "{t}");
    assert!(t.contains("ignored SIGTERM, killed after 3.0 s"), "{t}");
    insta::assert_snapshot!(t);
}

#[test]
fn geometry_matches_what_is_drawn() {
    let d = busy();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("test terminal");
    let mut g = None;
    terminal
        .draw(|f| g = Some(draw_measured(f, &d.screen())))
        .expect("draw");
    let g = g.expect("drawn");
    let threads = g
        .panels
        .iter()
        .find(|p| p.panel == Panel::Threads)
        .expect("threads");
    let rows = threads.rows.expect("rows");
    // The first list row shows the first thread.
    let buf = terminal.backend().buffer();
    let line: String = (rows.area.x..rows.area.x + rows.area.width)
        .map(|x| buf[(x, rows.area.y)].symbol().to_string())
        .collect();
    assert!(line.starts_with("100 "), "{line:?}");
    let phases = g
        .panels
        .iter()
        .find(|p| p.panel == Panel::Timeline)
        .expect("teardown");
    let rows = phases.rows.expect("phase rows");
    let line: String = (rows.area.x..rows.area.x + rows.area.width)
        .map(|x| buf[(x, rows.area.y + 2)].symbol().to_string())
        .collect();
    assert!(line.starts_with("[3|e] shut down executors"), "{line:?}");
}

#[test]
fn the_stack_line_count_is_what_the_pane_draws() {
    let snap = crate::stacks::StackSnapshot {
        pid: 1,
        taken_at_unix_ms: 0,
        capture_us: 0,
        errors: vec![crate::stacks::SourceError {
            source: crate::stacks::SourceKind::PySpyPython,
            message: "x".into(),
        }],
        threads: vec![],
        tasks: vec![],
    };
    assert_eq!(
        crate::state::stack_line_count(&snap),
        super::widgets::stacks::lines(&snap).len()
    );
}
