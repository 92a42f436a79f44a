//! Rendering tests: the whole dashboard drawn from fixed session events into a TestBackend.

use super::draw;
use crate::session::{AgentState, CoreEvent, plan_info};
use crate::state::{Action, Dashboard, fixture, fixture::ev};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;

fn render(d: &Dashboard, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| draw(f, &d.screen())).expect("draw");
    terminal.backend().clone()
}

fn agent(state: AgentState) -> crate::session::Stamped {
    ev(CoreEvent::AgentState { state })
}

fn attached() -> Dashboard {
    let mut d = fixture::dashboard(None);
    d.apply(&agent(AgentState::NotFound("no socket".into())));
    d
}

#[test]
fn dashboard_attached_without_agent() {
    insta::assert_snapshot!(render(&attached(), 140, 30));
}

#[test]
fn dashboard_with_agent_facts() {
    let mut d = attached();
    d.apply(&agent(AgentState::Connected("python 3.11".into())));
    d.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(fixture::agent_report()),
    }));
    assert_eq!(d.model.facts, Some(fixture::agent_facts()));
    insta::assert_snapshot!(render(&d, 140, 30));
}

#[test]
fn help_overlay() {
    let mut d = attached();
    d.act(Action::ToggleHelp);
    insta::assert_snapshot!(render(&d, 120, 30));
}

/// Draws like the app does: the frame's geometry goes back to the View (scroll limits).
fn render_measured(d: &mut Dashboard, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    let mut g = None;
    terminal
        .draw(|f| g = Some(super::draw_measured(f, &d.screen())))
        .expect("draw");
    if let Some(g) = g {
        d.set_geometry(g);
    }
    terminal.backend().clone()
}

fn screen_text(b: &TestBackend) -> String {
    let buf = b.buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The help at `w`x`h`: every binding on one page (no scroll), keys and descriptions.
fn help_showing_every_key(w: u16, h: u16) -> TestBackend {
    let mut d = attached();
    d.act(Action::ToggleHelp);
    let b = render_measured(&mut d, w, h);
    assert_eq!(d.view.geometry.help_max_scroll, 0, "every key fits {w}x{h}");
    let text = screen_text(&b);
    for (keys, what) in crate::ui::keys::BINDINGS {
        assert!(text.contains(keys) && text.contains(what), "{keys}: {what}");
    }
    b
}

#[test]
fn help_overlay_120x40_shows_every_key() {
    insta::assert_snapshot!(help_showing_every_key(120, 40));
}

#[test]
fn help_overlay_80x24_shows_every_dashboard_key() {
    insta::assert_snapshot!(help_showing_every_key(80, 24));
}

#[test]
fn replay_help_overlay_80x24_scrolls_to_every_key() {
    let mut d = attached();
    d.view.replay = Some(crate::state::ReplayBar {
        pos_ms: 0,
        start_ms: 0,
        end_ms: 10_000,
        speed: 1.0,
        paused: true,
        boundaries: vec![],
        event: 1,
        events: 10,
    });
    d.act(Action::ToggleHelp);
    let top = render_measured(&mut d, 80, 24);
    let max = d.view.geometry.help_max_scroll;
    assert!(
        max > 0,
        "24 rows cannot show the replay's keys and the dashboard's at once"
    );
    let top_text = screen_text(&top);
    assert!(top_text.contains("more below"), "{top_text}");
    insta::assert_snapshot!("replay_help_overlay_80x24_top", top);
    // Every line of the help is reachable, nothing is cut at the right edge.
    let mut seen = top_text;
    for _ in 0..max {
        d.act(Action::Down);
        seen.push_str(&screen_text(&render_measured(&mut d, 80, 24)));
    }
    let all = crate::ui::keys::REPLAY_BINDINGS
        .iter()
        .chain(crate::ui::keys::BINDINGS);
    for (keys, what) in all {
        assert!(seen.contains(keys) && seen.contains(what), "{keys}: {what}");
    }
    // Past the end, j does nothing, and k moves at once (the scroll is clamped).
    d.act(Action::Bottom);
    let bottom = render_measured(&mut d, 80, 24);
    assert_eq!(d.view.help_scroll, max);
    assert!(screen_text(&bottom).contains("more above"));
    insta::assert_snapshot!("replay_help_overlay_80x24_bottom", bottom);
    d.act(Action::Up);
    assert_eq!(d.view.help_scroll, max - 1);
}

#[test]
fn help_overlay_wide_and_short_uses_two_columns() {
    let mut d = attached();
    d.act(Action::ToggleHelp);
    d.view.replay = Some(crate::state::ReplayBar {
        pos_ms: 0,
        start_ms: 0,
        end_ms: 10_000,
        speed: 1.0,
        paused: true,
        boundaries: vec![],
        event: 1,
        events: 10,
    });
    let b = render_measured(&mut d, 200, 24);
    assert_eq!(d.view.geometry.help_max_scroll, 0, "two columns, no scroll");
    let text = screen_text(&b);
    for (keys, what) in crate::ui::keys::BINDINGS {
        assert!(text.contains(keys) && text.contains(what), "{keys}: {what}");
    }
}

#[test]
fn launch_mode_quit_prompt_and_log() {
    let mut d = fixture::dashboard(Some(true));
    d.set_log_tail(vec!["demo target pid 100 started 2 children".into()]);
    d.act(Action::Quit);
    insta::assert_snapshot!(render(&d, 140, 30));
}

#[test]
fn tiny_terminal_does_not_panic() {
    let d = attached();
    for (w, h) in [(1, 1), (10, 5), (40, 12)] {
        render(&d, w, h);
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
    let mut d = attached();
    let plan = crate::teardown::plan::load("python-asyncio").expect("built-in plan");
    d.apply(&ev(CoreEvent::Plan {
        plan: plan_info(&plan),
    }));
    d.apply(&ev(CoreEvent::Timeline {
        timeline: Arc::new(timeline_mid_run()),
    }));
    assert!(d.tick(1_700_000_000_000 + 3_300), "a running phase moves");
    d.view.focus = crate::state::Panel::Timeline;
    insta::assert_snapshot!(render(&d, 150, 40));
}

#[test]
fn target_exit_is_shown_with_its_age() {
    let mut d = attached();
    let key = fixture::snapshot().target;
    d.apply(&ev(CoreEvent::Exited {
        key,
        status: crate::model::ExitStatus::Signal(9),
        at_unix_ms: 1_700_000_000_000,
    }));
    d.tick(1_700_000_012_000);
    let text = format!("{:?}", render(&d, 140, 30));
    assert!(text.contains("target killed by SIGKILL 12s ago"), "{text}");
    assert!(text.contains("target has exited"), "{text}");
}

#[test]
fn stack_pane_shows_kept_snapshots() {
    let mut d = attached();
    let snap = |taken| crate::stacks::StackSnapshot {
        pid: 100,
        taken_at_unix_ms: taken,
        capture_us: 1500,
        threads: Vec::new(),
        errors: Vec::new(),
        tasks: Vec::new(),
    };
    for taken in [1, 2] {
        d.apply(&ev(CoreEvent::Stacks {
            stacks: Arc::new(snap(taken)),
            reason: "asked from the dashboard".into(),
            asked: true,
        }));
    }
    assert_eq!(d.view.stack_view, 1);
    d.act(Action::PrevStacks);
    let text = format!("{:?}", render(&d, 120, 30));
    assert!(text.contains("snapshot 1/2"), "{text}");
}

/// Causes as the demo's diagnosis words them (fixed, for the snapshots).
fn why_fixture() -> crate::state::WhyResult {
    crate::state::WhyResult {
        causes: vec![
            "exit blocked: the interpreter (pid 100) waits in threading._shutdown for \
             non-daemon thread \"packer\" (tid 104), which waits on an Event at demo.py:41 \
             that no thread is known to set; \"packer\" was started at demo.py:88."
                .into(),
            "exit blocked: pid 101 \"stubborn-worker\" is blocked in pause and ignores SIGTERM."
                .into(),
        ],
        unknowns: vec!["/proc/102/fdinfo: permission denied".into()],
        error: None,
        computed_at_unix_ms: 1_700_000_000_000,
        took_ms: 0,
    }
}

/// The dashboard 3 s after a diagnosis was delivered.
fn diagnosed() -> Dashboard {
    let mut d = attached();
    d.act(Action::ToggleWhy);
    assert!(d.take_why_request());
    d.apply_why(why_fixture());
    d.tick(1_700_000_003_000);
    d
}

#[test]
fn why_overlay_80x24() {
    insta::assert_snapshot!(render(&diagnosed(), 80, 24));
}

#[test]
fn why_overlay_120x40() {
    insta::assert_snapshot!(render(&diagnosed(), 120, 40));
}

#[test]
fn why_verdict_in_header_80x24() {
    let mut d = diagnosed();
    d.act(Action::Escape);
    insta::assert_snapshot!(render(&d, 80, 24));
}

#[test]
fn why_verdict_in_header_120x40() {
    let mut d = diagnosed();
    d.act(Action::Escape);
    insta::assert_snapshot!(render(&d, 120, 40));
}

#[test]
fn why_overlay_says_computing_and_keeps_the_last_result() {
    let mut d = attached();
    d.act(Action::ToggleWhy);
    assert!(d.take_why_request());
    let text = format!("{:?}", render(&d, 120, 40));
    assert!(text.contains("computing…"), "{text}");
    d.apply_why(why_fixture());
    d.tick(1_700_000_003_000);
    d.act(Action::ToggleWhy);
    d.act(Action::ToggleWhy);
    assert!(d.take_why_request(), "reopening refreshes");
    let text = format!("{:?}", render(&d, 120, 40));
    assert!(
        text.contains("2 causes · computed 3s ago · computing…"),
        "{text}"
    );
    assert!(text.contains("stubborn-worker"), "{text}");
}
