//! Unit tests of issue 13's behaviours: gone processes kept and cleared, `n` as the first
//! phase not yet run, aborts named, one-line status messages, the last agent report kept
//! after the target exited, the stack pane's scroll clamped, mouse selection.

use super::*;
use crate::model::{ExitStatus, ProcKey};
use crate::session::{AgentState, CoreEvent, plan_info};
use crate::state::fixture::{self, ev};
use crate::teardown::timeline::{Counts as PhaseCounts, Outcome, PhaseRecord, RunningPhase};
use crate::teardown::{PhaseEvent, Timeline};
use std::sync::Arc;

fn plan() -> Stamped {
    let p = crate::teardown::plan::load("python-asyncio").expect("built-in plan");
    ev(CoreEvent::Plan {
        plan: plan_info(&p),
    })
}

fn record(index: usize, name: &str, start: u64, end: u64, outcome: Outcome) -> PhaseRecord {
    PhaseRecord {
        index,
        name: name.into(),
        key: 'x',
        action: "test".into(),
        start_ms: start,
        end_ms: end,
        outcome,
        before: PhaseCounts::default(),
        after: PhaseCounts::default(),
        notes: vec![format!("note of {name}")],
        signals: vec![],
        exits: vec![],
        agent_result: None,
    }
}

fn timeline(records: Vec<PhaseRecord>, running: Option<RunningPhase>) -> Stamped {
    let mut t = Timeline::new("python-asyncio", 100, 0);
    t.phases = records;
    t.running = running;
    ev(CoreEvent::Timeline {
        timeline: Arc::new(t),
    })
}

/// The fixture's snapshot without its child 101 (the collector stopped listing it).
fn snapshot_without(pid: i32) -> Stamped {
    let mut snap = fixture::snapshot();
    snap.processes.retain(|p| p.key.pid != pid);
    ev(CoreEvent::Snapshot {
        snapshot: Arc::new(snap),
    })
}

fn key(pid: i32) -> ProcKey {
    fixture::snapshot()
        .processes
        .iter()
        .find(|p| p.key.pid == pid)
        .map(|p| p.key)
        .expect("fixture pid")
}

fn listed(d: &Dashboard) -> Vec<(i32, u32, bool)> {
    d.screen()
        .proc_rows(0..100)
        .iter()
        .map(|r| (r.info.key.pid, r.depth, r.exit.is_some()))
        .collect()
}

#[test]
fn a_gone_child_stays_under_its_parent_until_cleared() {
    let mut d = fixture::dashboard(None);
    // 101 (stubborn-worker, the parent of 102) is killed; its child 102 lives on.
    d.apply(&ev(CoreEvent::Exited {
        key: key(101),
        status: ExitStatus::Signal(9),
        at_unix_ms: 1_700_000_001_000,
    }));
    // Later snapshots no longer list it (the collector's linger ran out).
    d.apply(&snapshot_without(101));
    d.apply(&snapshot_without(101));
    let rows = listed(&d);
    assert_eq!(
        rows,
        vec![
            (100, 0, false),
            (101, 1, true),
            (102, 2, false),
            (104, 1, true),
            (103, 1, false)
        ],
        "gone 101 kept, its child under it"
    );
    let row = d.screen().proc_rows(1..2)[0];
    assert_eq!(row.exit.map(|e| e.status), Some(ExitStatus::Signal(9)));
    assert_eq!(row.info.name, "stubborn-worker", "last known facts kept");
    assert_eq!(d.screen().counts().exited, 2);
    // Del clears them; the collector listing 104 again does not bring it back.
    d.act(Action::ClearGone);
    d.apply(&ev(CoreEvent::Snapshot {
        snapshot: Arc::new(fixture::snapshot()),
    }));
    let pids: Vec<i32> = listed(&d).iter().map(|r| r.0).collect();
    assert_eq!(pids, vec![100, 102, 103]);
    assert_eq!(d.screen().counts().exited, 0);
    assert!(
        d.view
            .status
            .as_deref()
            .is_some_and(|s| s.contains("cleared 2"))
    );
}

#[test]
fn the_gone_target_is_never_cleared() {
    let mut d = fixture::dashboard(None);
    d.apply(&ev(CoreEvent::Exited {
        key: key(100),
        status: ExitStatus::Code(0),
        at_unix_ms: 1_700_000_001_000,
    }));
    d.act(Action::ClearGone);
    assert_eq!(listed(&d)[0], (100, 0, true));
}

#[test]
fn n_runs_the_first_phase_not_yet_run() {
    let mut d = fixture::dashboard(None);
    d.apply(&plan());
    // Nothing ran yet: the engine's next is the first phase.
    assert_eq!(
        d.act(Action::NextPhase),
        vec![Command::Teardown(Action::NextPhase)]
    );
    // Phase 3 was run by its key: `n` is phase 1, not phase 4.
    d.apply(&timeline(
        vec![record(2, "shut down executors", 0, 10, Outcome::Ok)],
        None,
    ));
    assert_eq!(
        d.act(Action::NextPhase),
        vec![Command::Teardown(Action::RunPhase(0))]
    );
    d.apply(&timeline(
        vec![
            record(2, "shut down executors", 0, 10, Outcome::Ok),
            record(0, "cancel tasks", 10, 20, Outcome::Ok),
        ],
        Some(RunningPhase {
            index: 1,
            name: "terminate children".into(),
            start_ms: 20,
            deadline_ms: 3020,
            notes: vec![],
        }),
    ));
    assert_eq!(
        d.act(Action::NextPhase),
        vec![Command::Teardown(Action::RunPhase(3))],
        "the running phase counts as run"
    );
    let all: Vec<PhaseRecord> = (0..8)
        .map(|i| record(i, "p", i as u64, i as u64 + 1, Outcome::Ok))
        .collect();
    d.apply(&timeline(all, None));
    assert!(d.act(Action::NextPhase).is_empty());
    assert!(
        d.view
            .status
            .as_deref()
            .is_some_and(|s| s.contains("every phase has run"))
    );
}

#[test]
fn an_aborted_phase_is_named_aborted_in_one_status_line() {
    let mut d = fixture::dashboard(None);
    d.apply(&plan());
    let running = RunningPhase {
        index: 1,
        name: "terminate children".into(),
        start_ms: 40,
        deadline_ms: 3040,
        notes: vec![],
    };
    d.apply(&timeline(vec![], Some(running)));
    assert_eq!(
        d.act(Action::AbortPhase),
        vec![Command::Teardown(Action::AbortPhase)]
    );
    let rec = record(1, "terminate children", 40, 540, Outcome::Aborted);
    d.apply(&ev(CoreEvent::Phase {
        event: PhaseEvent::Finished(rec.clone()),
    }));
    let status = d.view.status.clone().unwrap_or_default();
    assert_eq!(
        status,
        "phase 2 terminate children: aborted after 0.5 s · note of terminate children"
    );
    assert_eq!(phase_outcome(&rec), "aborted");
    // The same events without the key press (a replay) name it the same way.
    let mut replayed = fixture::dashboard(None);
    replayed.apply(&plan());
    replayed.apply(&ev(CoreEvent::Phase {
        event: PhaseEvent::Finished(rec),
    }));
    assert_eq!(replayed.view.status, d.view.status);
}

#[test]
fn a_timeout_names_the_plans_timeout() {
    let mut d = fixture::dashboard(None);
    d.apply(&plan());
    // Phase 1 (cancel tasks) has a 5 s timeout.
    d.apply(&ev(CoreEvent::Phase {
        event: PhaseEvent::Finished(record(0, "cancel tasks", 0, 4500, Outcome::TimedOut)),
    }));
    let status = d.view.status.clone().unwrap_or_default();
    assert!(
        status.starts_with("phase 1 cancel tasks: timed out: its 5.0 s timeout ran out"),
        "{status}"
    );
    assert!(!status.contains("4.50"), "{status}");
}

#[test]
fn an_asked_capture_clears_its_capturing_message() {
    let mut d = fixture::dashboard(None);
    d.say("capturing stacks of 1 thread(s)");
    let snap = crate::stacks::StackSnapshot {
        pid: 100,
        taken_at_unix_ms: 1,
        capture_us: 2500,
        threads: vec![],
        errors: vec![],
        tasks: vec![],
    };
    d.apply(&ev(CoreEvent::Stacks {
        stacks: Arc::new(snap),
        reason: "asked".into(),
        asked: true,
    }));
    assert_eq!(
        d.view.status.as_deref(),
        Some("stacks of 0 thread(s) captured in 2.5 ms")
    );
}

#[test]
fn after_the_target_exited_the_last_report_stays_marked() {
    let mut d = fixture::dashboard(None);
    d.apply(&ev(CoreEvent::AgentState {
        state: AgentState::Connected("python".into()),
    }));
    d.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(fixture::agent_report()),
    }));
    assert!(
        d.screen()
            .last_report()
            .is_some_and(|(_, stale)| stale.is_none())
    );
    d.apply(&ev(CoreEvent::AgentState {
        state: AgentState::NotFound("no agent socket".into()),
    }));
    d.apply(&ev(CoreEvent::Exited {
        key: key(100),
        status: ExitStatus::Signal(9),
        at_unix_ms: 1_700_000_002_000,
    }));
    assert_eq!(d.screen().agent_status(), AgentStatus::TargetExited);
    let (report, stale) = d.screen().last_report().expect("kept");
    assert_eq!(report.tasks.len(), 3);
    let stale = stale.expect("marked").0;
    assert!(stale.starts_with("target exited · last report"), "{stale}");
    assert!(d.screen().report().is_none(), "nothing live to act on");
}

fn tall_stacks() -> crate::stacks::StackSnapshot {
    use crate::stacks::{Frame, SourceKind, SourceStack, ThreadStacks};
    let frames = (0..40)
        .map(|i| Frame {
            function: format!("f{i}"),
            ..Frame::default()
        })
        .collect();
    crate::stacks::StackSnapshot {
        pid: 100,
        taken_at_unix_ms: 1,
        capture_us: 1,
        errors: vec![],
        tasks: vec![],
        threads: vec![ThreadStacks {
            tid: 100,
            name: "main".into(),
            kernel: None,
            stacks: vec![SourceStack {
                source: SourceKind::Native,
                frames,
                note: None,
            }],
            errors: vec![],
        }],
    }
}

#[test]
fn the_stack_pane_scroll_is_clamped_to_its_text() {
    let mut d = fixture::dashboard(None);
    d.apply(&ev(CoreEvent::Stacks {
        stacks: Arc::new(tall_stacks()),
        reason: "asked".into(),
        asked: true,
    }));
    assert_eq!(stack_line_count(&tall_stacks()), 42);
    d.set_geometry(Geometry {
        stack_rows: 10,
        ..Geometry::default()
    });
    d.act(Action::Bottom);
    assert_eq!(d.view.stack_scroll, 32, "G shows the last full page");
    d.act(Action::Up);
    assert_eq!(d.view.stack_scroll, 31, "k moves at once after G");
    for _ in 0..150 {
        d.act(Action::Down);
    }
    for _ in 0..20 {
        d.act(Action::Up);
    }
    assert_eq!(
        d.view.stack_scroll, 12,
        "150 j then 20 k: text, never a blank pane"
    );
}

fn geometry() -> Geometry {
    let area = |x, y, width, height| Area {
        x,
        y,
        width,
        height,
    };
    Geometry {
        panels: vec![
            PanelArea {
                panel: Panel::Threads,
                area: area(0, 4, 60, 12),
                rows: Some(Rows {
                    area: area(1, 6, 58, 9),
                    offset: 0,
                }),
            },
            PanelArea {
                panel: Panel::Timeline,
                area: area(60, 4, 60, 20),
                rows: Some(Rows {
                    area: area(61, 6, 58, 8),
                    offset: 0,
                }),
            },
        ],
        ..Geometry::default()
    }
}

#[test]
fn a_click_selects_a_row_and_a_phase_and_runs_nothing() {
    let mut d = fixture::dashboard(None);
    d.apply(&plan());
    d.set_geometry(geometry());
    d.view.focus = Panel::Tree;
    let click = |x, y| Action::Mouse {
        kind: MouseKind::Click,
        x,
        y,
    };
    assert!(d.act(click(10, 8)).is_empty());
    assert_eq!(d.view.focus, Panel::Threads);
    assert_eq!(d.view.selected_tid, Some(106), "third thread row");
    // A click past the last row keeps the selection.
    assert!(d.act(click(10, 14)).is_empty());
    assert_eq!(d.view.selected_tid, Some(106));
    // A click on phase 4 selects it; no teardown command.
    assert!(d.act(click(70, 9)).is_empty());
    assert_eq!(d.view.focus, Panel::Timeline);
    assert_eq!(d.view.selected_phase, 3);
    // Enter opens its notes; j moves to the next phase there.
    d.act(Action::Open);
    assert_eq!(d.view.overlay, Overlay::Phase);
    d.act(Action::Down);
    assert_eq!(d.view.selected_phase, 4);
}

#[test]
fn the_wheel_scrolls_the_panel_under_the_pointer() {
    let mut d = fixture::dashboard(None);
    d.set_geometry(geometry());
    let wheel = |kind| Action::Mouse { kind, x: 5, y: 7 };
    d.act(wheel(MouseKind::WheelDown));
    assert_eq!(d.view.focus, Panel::Threads);
    assert_eq!(d.view.selected_tid, Some(107), "3 rows down, clamped");
    d.act(wheel(MouseKind::WheelUp));
    assert_eq!(d.view.selected_tid, Some(100));
}

#[test]
fn o_reaches_the_daemon_sort() {
    let mut d = fixture::dashboard(None);
    d.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(fixture::agent_report()),
    }));
    for _ in 0..5 {
        d.act(Action::CycleSort);
    }
    assert_eq!(d.view.sort, SortKey::Daemon);
    d.act(Action::ReverseSort);
    assert_eq!(d.screen().ordered_tids(), vec![107, 106, 105, 100]);
}

#[test]
fn enter_on_a_task_asks_for_its_await_chain_and_big_s_includes_pending_tasks() {
    use crate::session::TaskWant;
    let mut d = fixture::dashboard(None);
    // No report yet: Enter on the tasks panel says why nothing happens.
    d.view.focus = Panel::Tasks;
    assert!(d.act(Action::Open).is_empty());
    assert!(
        d.view
            .status
            .as_deref()
            .is_some_and(|s| s.contains("no task"))
    );
    let before = d.act(Action::StackAll);
    assert!(
        matches!(&before[..], [Command::CaptureStacks(a)] if a.tasks == TaskWant::None),
        "{before:?}"
    );
    d.apply(&ev(CoreEvent::AgentState {
        state: AgentState::Connected("python".into()),
    }));
    d.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(fixture::agent_report()),
    }));
    d.act(Action::Down);
    assert_eq!(
        d.act(Action::Open),
        vec![Command::CaptureStacks(StackAsk {
            threads: None,
            tasks: TaskWant::Ids(vec![2]),
        })]
    );
    let all = d.act(Action::StackAll);
    assert!(
        matches!(&all[..], [Command::CaptureStacks(a)] if a.tasks == TaskWant::All && a.threads.is_some()),
        "{all:?}"
    );
    // The chain arrives: the pane opens, the status says what came.
    let snap = crate::stacks::StackSnapshot {
        pid: 100,
        taken_at_unix_ms: 1,
        capture_us: 900,
        threads: vec![],
        errors: vec![],
        tasks: vec![crate::stacks::tasks::TaskStack {
            id: 2,
            loop_id: 1,
            name: "track_backend_progress".into(),
            frames: vec![],
            awaiting: None,
            created_at: None,
        }],
    };
    d.apply(&ev(CoreEvent::Stacks {
        stacks: Arc::new(snap),
        reason: "asked from the dashboard".into(),
        asked: true,
    }));
    assert_eq!(d.view.overlay, Overlay::Stacks);
    assert_eq!(
        d.view.status.as_deref(),
        Some("await chain of task \"track_backend_progress\" captured")
    );
}

#[test]
fn under_churn_the_gone_book_and_the_models_exits_stay_bounded() {
    use crate::model::ProcKey;
    let mut d = fixture::dashboard(None);
    let n = (crate::session::MAX_EXITS + 10) as i32;
    for pid in 1000..1000 + n {
        d.apply(&ev(CoreEvent::Exited {
            key: ProcKey { pid, start_time: 7 },
            status: ExitStatus::Code(0),
            at_unix_ms: 1_700_000_000_000 + pid as u64,
        }));
    }
    assert_eq!(d.model.exits.len(), crate::session::MAX_EXITS);
    assert_eq!(d.model.exits_dropped, 10);
    // The oldest went first.
    assert!(!d.model.exits.keys().any(|k| k.pid < 1010));
}

#[test]
fn the_gone_book_keeps_the_last_exits_and_counts_the_rest() {
    let mut d = fixture::dashboard(None);
    let mut snap = fixture::snapshot();
    let n = super::procs::MAX_GONE as i32 + 5;
    for pid in 2000..2000 + n {
        let mut p = fixture::process(pid, 100, "churn", 1);
        p.exit = Some(crate::model::ExitInfo {
            status: ExitStatus::Code(0),
            at_unix_ms: 1_700_000_000_000 + pid as u64,
        });
        snap.processes.push(p);
    }
    d.apply(&ev(CoreEvent::Snapshot {
        snapshot: Arc::new(snap),
    }));
    assert_eq!(d.view.gone.len(), super::procs::MAX_GONE);
    // The fixture's own exited "sh" (pid 104) exited first of all: it went, with 5 more.
    assert_eq!(d.view.gone_dropped, 6);
    assert!(
        !d.view
            .gone
            .keys()
            .any(|k| k.pid == 104 || (2000..2005).contains(&k.pid))
    );
}

#[test]
fn the_threads_shown_are_the_rows_drawn_with_a_margin() {
    let mut d = fixture::dashboard(None);
    let mut snap = fixture::snapshot();
    let model = snap.threads[0].clone();
    for tid in 0..30 {
        let mut t = model.clone();
        t.tid = 50_000 + tid;
        snap.threads.push(t);
    }
    d.apply(&ev(CoreEvent::Snapshot {
        snapshot: Arc::new(snap),
    }));
    assert_eq!(d.screen().thread_tids_drawn(5), None, "no frame yet");
    let g = geometry();
    d.set_geometry(g.clone());
    let order = d.screen().ordered_tids();
    let drawn = d
        .screen()
        .thread_tids_drawn(0)
        .expect("a Threads panel was drawn");
    assert_eq!(drawn, order.iter().copied().take(9).collect::<Vec<_>>());
    let with_margin = d
        .screen()
        .thread_tids_drawn(5)
        .expect("a Threads panel was drawn");
    assert_eq!(
        with_margin,
        order.iter().copied().take(14).collect::<Vec<_>>()
    );
    let mut narrow = g;
    narrow.panels.retain(|p| p.panel != Panel::Threads);
    d.set_geometry(narrow);
    assert_eq!(
        d.screen().thread_tids_drawn(5),
        None,
        "no Threads panel drawn"
    );
}
