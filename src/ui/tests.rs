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
