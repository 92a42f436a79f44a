//! Rendering tests: the whole dashboard drawn from fixed state into a TestBackend.

use super::draw;
use crate::state::{Action, AgentStatus, AppState, Event, Mode, fixture};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(state: &AppState, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| draw(f, state)).expect("draw");
    terminal.backend().clone()
}

fn attached() -> AppState {
    let mut s = AppState::new(Mode::Attach, 100);
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    s.agent = AgentStatus::NotFound("no socket".into());
    s
}

#[test]
fn dashboard_attached_without_agent() {
    insta::assert_snapshot!(render(&attached(), 140, 30));
}

#[test]
fn dashboard_with_agent_facts() {
    let mut s = attached();
    s.apply(Event::Agent(AgentStatus::Connected("python 3.11".into())));
    s.apply(Event::AgentReport(Box::new(fixture::agent_report())));
    assert_eq!(s.agent_facts, Some(fixture::agent_facts()));
    insta::assert_snapshot!(render(&s, 140, 30));
}

#[test]
fn help_overlay() {
    let mut s = attached();
    s.act(Action::ToggleHelp);
    insta::assert_snapshot!(render(&s, 120, 30));
}

#[test]
fn launch_mode_quit_prompt_and_log() {
    let mut s = AppState::new(Mode::Launch { demo: true }, 100);
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    s.apply(Event::LogTail(vec![
        "demo target pid 100 started 2 children".into(),
    ]));
    s.act(Action::Quit);
    insta::assert_snapshot!(render(&s, 140, 30));
}

#[test]
fn tiny_terminal_does_not_panic() {
    let s = attached();
    for (w, h) in [(1, 1), (10, 5), (40, 12)] {
        render(&s, w, h);
    }
}

fn timeline_mid_run() -> crate::teardown::Timeline {
    use crate::teardown::timeline::{Counts, Outcome, PhaseRecord, RunningPhase};
    let mut t = crate::teardown::Timeline::new("python-asyncio", 100, 1_700_000_000_000);
    let counts = |children, tasks| Counts {
        threads: 4,
        non_daemon_threads: Some(1),
        children,
        pending_tasks: Some(tasks),
    };
    t.phases.push(PhaseRecord {
        index: 0,
        name: "cancel tasks".into(),
        key: 'c',
        action: "agent cancel_tasks".into(),
        start_ms: 0,
        end_ms: 1200,
        outcome: Outcome::Ok,
        before: counts(3, 3),
        after: counts(3, 0),
        notes: vec!["3 cancelled, 0 still pending".into()],
        signals: Vec::new(),
        exits: Vec::new(),
        agent_result: None,
    });
    t.running = Some(RunningPhase {
        index: 1,
        name: "terminate children".into(),
        start_ms: 1300,
        deadline_ms: 6300,
        notes: vec!["pid 101 (stubborn-worker) ignores SIGTERM (SigIgn)".into()],
    });
    t
}

#[test]
fn dashboard_with_teardown_running() {
    let mut s = attached();
    let plan = crate::teardown::plan::load("python-asyncio").expect("built-in plan");
    s.apply(Event::Plan(Box::new(plan)));
    s.apply(Event::Timeline(Box::new(timeline_mid_run())));
    s.apply(Event::Now(1_700_000_000_000 + 3_300));
    s.focus = crate::state::Panel::Timeline;
    insta::assert_snapshot!(render(&s, 150, 40));
}

#[test]
fn target_exit_is_shown_with_its_age() {
    let mut s = attached();
    let key = fixture::snapshot().target;
    s.apply(Event::Exited {
        key,
        status: crate::model::ExitStatus::Signal(9),
        at_unix_ms: 1_700_000_000_000,
    });
    s.apply(Event::Now(1_700_000_012_000));
    let text = format!("{:?}", render(&s, 140, 30));
    assert!(text.contains("target killed by SIGKILL 12s ago"), "{text}");
    assert!(text.contains("target has exited"), "{text}");
}

#[test]
fn stack_pane_shows_kept_snapshots() {
    let mut s = attached();
    let snap = |taken| crate::stacks::StackSnapshot {
        pid: 100,
        taken_at_unix_ms: taken,
        capture_us: 1500,
        threads: Vec::new(),
        errors: Vec::new(),
    };
    s.apply(Event::Stacks {
        snap: Box::new(snap(1)),
        asked: true,
    });
    s.apply(Event::Stacks {
        snap: Box::new(snap(2)),
        asked: true,
    });
    assert_eq!(s.stack_view, 1);
    s.act(Action::PrevStacks);
    let text = format!("{:?}", render(&s, 120, 30));
    assert!(text.contains("snapshot 1/2"), "{text}");
}
