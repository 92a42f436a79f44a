//! Unit tests of the dashboard: session events in, Model + View and commands out.

use super::*;
use crate::model::ExitStatus;
use crate::session::{AgentState, CoreEvent, plan_info};
use crate::state::fixture::{self, ev};
use std::sync::Arc;

fn state() -> Dashboard {
    fixture::dashboard(None)
}

fn snapshot_event() -> Stamped {
    ev(CoreEvent::Snapshot {
        snapshot: Arc::new(fixture::snapshot()),
    })
}

fn exited(key: crate::model::ProcKey, status: ExitStatus) -> Stamped {
    ev(CoreEvent::Exited {
        key,
        status,
        at_unix_ms: 5,
    })
}

fn agent(state: AgentState) -> Stamped {
    ev(CoreEvent::AgentState { state })
}

fn plan(name: &str) -> Stamped {
    let p = crate::teardown::plan::load(name).expect("built-in plan");
    ev(CoreEvent::Plan {
        plan: plan_info(&p),
    })
}

fn stacks(snap: crate::stacks::StackSnapshot, asked: bool) -> Stamped {
    ev(CoreEvent::Stacks {
        stacks: Arc::new(snap),
        reason: "test".into(),
        asked,
    })
}

#[test]
fn snapshot_selects_first_rows_and_counts() {
    let s = state();
    assert_eq!(s.view.selected_tid, Some(100));
    assert_eq!(s.view.selected_pid.map(|k| k.pid), Some(100));
    assert_eq!(
        s.screen().counts(),
        Counts {
            threads: 4,
            children: 2,
            orphans: 1,
            exited: 1
        }
    );
}

#[test]
fn selection_moves_and_clamps() {
    let mut s = state();
    s.act(Action::Down);
    assert_eq!(s.view.selected_tid, Some(105));
    s.act(Action::Bottom);
    assert_eq!(s.view.selected_tid, Some(107));
    s.act(Action::Down);
    assert_eq!(s.view.selected_tid, Some(107));
    s.act(Action::NextPanel);
    s.act(Action::Down);
    assert_eq!(s.view.selected_pid.map(|k| k.pid), Some(101));
    assert_eq!(
        s.view.selected_tid,
        Some(107),
        "other panel's selection is kept"
    );
}

#[test]
fn selection_follows_thread_across_sort() {
    let mut s = state();
    s.act(Action::Bottom); // tid 107, the busiest
    s.act(Action::CycleSort); // name
    s.act(Action::CycleSort); // state
    s.act(Action::CycleSort); // cpu
    assert_eq!(s.view.sort, SortKey::Cpu);
    assert_eq!(s.view.selected_tid, Some(107));
    assert_eq!(s.screen().selected_thread_index(), Some(0));
}

#[test]
fn attach_mode_quits_without_asking() {
    let mut s = state();
    assert_eq!(s.act(Action::Quit), vec![Command::Quit(None)]);
}

#[test]
fn launch_mode_asks_before_quitting_a_live_tree() {
    let mut s = fixture::dashboard(Some(false));
    assert!(s.act(Action::Quit).is_empty());
    assert_eq!(s.view.overlay, Overlay::QuitPrompt);
    assert!(s.act(Action::Down).is_empty(), "prompt swallows other keys");
    assert_eq!(
        s.act(Action::Choose(QuitChoice::Detach)),
        vec![Command::Quit(Some(QuitChoice::Detach))]
    );
}

#[test]
fn the_demo_cannot_be_detached() {
    // The demo is started to die with lifecycle-top: "keeps running" would be a lie.
    let mut s = fixture::dashboard(Some(true));
    assert!(s.act(Action::Quit).is_empty());
    assert!(s.act(Action::Choose(QuitChoice::Detach)).is_empty());
    assert_eq!(s.view.overlay, Overlay::QuitPrompt, "still asking");
    assert_eq!(
        s.act(Action::Choose(QuitChoice::KillTree)),
        vec![Command::Quit(Some(QuitChoice::KillTree))]
    );
}

#[test]
fn force_quit_never_leaves_the_demo_behind() {
    let mut s = Dashboard::new();
    s.apply(&fixture::attached(Some(true)));
    assert_eq!(
        s.act(Action::ForceQuit),
        vec![Command::Quit(Some(QuitChoice::KillTree))]
    );
}

#[test]
fn exit_event_marks_process_and_survives_next_snapshot() {
    let mut s = state();
    let key = fixture::snapshot().processes[1].key;
    s.apply(&exited(key, ExitStatus::Signal(9)));
    s.apply(&snapshot_event());
    let screen = s.screen();
    let p = &screen.processes()[1];
    assert_eq!(
        screen.exit_of(p).map(|e| e.status),
        Some(ExitStatus::Signal(9))
    );
    assert!(screen.target_exit().is_none());
}

#[test]
fn target_exit_is_recorded() {
    let mut s = state();
    let key = fixture::snapshot().target;
    s.apply(&exited(key, ExitStatus::Code(0)));
    assert_eq!(
        s.screen().target_exit().map(|e| e.status),
        Some(ExitStatus::Code(0))
    );
    assert!(s.screen().threads().is_empty());
    assert!(s.view.thread_order.is_empty());
}

#[test]
fn agent_facts_fill_daemon_and_pick_threads_to_snapshot() {
    let mut s = state();
    assert_eq!(s.screen().thread_rows(0..10)[1].daemon(), None);
    s.apply(&agent(AgentState::Connected("python 3.11".into())));
    s.apply(&ev(CoreEvent::AgentReport {
        report: Arc::new(fixture::agent_report()),
    }));
    assert_eq!(s.model.facts, Some(fixture::agent_facts()));
    assert_eq!(s.screen().thread_rows(0..10)[1].daemon(), Some(false));
    assert_eq!(s.screen().thread_rows(0..10)[2].daemon(), Some(true));
    assert_eq!(s.screen().threads_to_snapshot(), vec![100, 105]);
    s.apply(&agent(AgentState::Lost("eof".into())));
    assert!(s.model.facts.is_none());
    assert!(s.screen().report().is_none(), "a lost agent's tasks go");
}

#[test]
fn keys_for_engine_become_commands() {
    let mut s = state();
    assert_eq!(
        s.act(Action::RunPhase(2)),
        vec![Command::Teardown(Action::RunPhase(2))]
    );
    assert_eq!(
        s.act(Action::StackSelected),
        vec![Command::CaptureStacks(crate::state::StackAsk::threads(
            vec![100]
        ))]
    );
}

#[test]
fn phase_letter_keys_run_their_phase() {
    let mut s = state();
    assert!(s.act(Action::PhaseKey('t')).is_empty(), "no plan yet");
    s.apply(&plan("native"));
    let (i, key) = s
        .view
        .plan
        .as_ref()
        .expect("plan parsed")
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.key))
        .next_back()
        .expect("phases");
    assert_eq!(
        s.act(Action::PhaseKey(key)),
        vec![Command::Teardown(Action::RunPhase(i))]
    );
    assert!(s.act(Action::PhaseKey('Z')).is_empty());
}

#[test]
fn ctrl_c_in_the_quit_prompt_still_kills_the_demo() {
    let mut s = fixture::dashboard(Some(true));
    s.act(Action::Quit);
    assert_eq!(
        s.act(Action::ForceQuit),
        vec![Command::Quit(Some(QuitChoice::KillTree))]
    );
}

#[test]
fn the_plan_run_from_the_quit_prompt_quits_when_done() {
    let mut s = fixture::dashboard(Some(true));
    s.act(Action::Quit);
    assert_eq!(
        s.act(Action::Choose(QuitChoice::RunPlan)),
        vec![Command::Teardown(Action::RunAll)]
    );
    assert_eq!(s.view.overlay, Overlay::None);
    let timeline = Arc::new(crate::teardown::Timeline::new("native", 100, 0));
    assert_eq!(
        s.apply(&ev(CoreEvent::PlanDone { timeline })),
        vec![Command::Quit(Some(QuitChoice::KillTree))]
    );
}

fn stack_snapshot(taken: u64, threads: &[(i32, u64, u64)]) -> crate::stacks::StackSnapshot {
    let threads: Vec<serde_json::Value> = threads
        .iter()
        .map(|&(tid, cpu, vcsw)| {
            serde_json::json!({
                "tid": tid, "name": format!("t{tid}"), "stacks": [],
                "kernel": {
                    "state": "Sleeping",
                    "wait": {"wchan": "futex_wait_queue", "syscall_nr": 202,
                             "syscall": "futex", "syscall_args": [4096, 0, 0, 0, 0, 0]},
                    "cpu_ticks": cpu, "voluntary_ctxt_switches": vcsw,
                    "nonvoluntary_ctxt_switches": 0, "tracer_pid": 0
                }
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "pid": 100, "taken_at_unix_ms": taken, "capture_us": 10, "threads": threads
    }))
    .expect("stack snapshot fixture")
}

#[test]
fn stuck_threads_are_found_between_two_kept_snapshots() {
    let mut s = state();
    s.apply(&stacks(
        stack_snapshot(1, &[(105, 7, 3), (107, 10, 5)]),
        true,
    ));
    assert!(
        s.screen().stuck_since_previous().is_empty(),
        "one snapshot: nothing to compare"
    );
    // 105 did not move; 107 ran and was woken.
    s.apply(&stacks(
        stack_snapshot(2, &[(105, 7, 3), (107, 30, 9)]),
        true,
    ));
    assert_eq!(s.screen().stuck_since_previous(), vec![105]);
}

#[test]
fn stacks_the_engine_took_are_kept_without_opening_the_pane() {
    let mut s = state();
    s.apply(&stacks(stack_snapshot(1, &[(105, 7, 3)]), false));
    assert_eq!(s.view.overlay, Overlay::None);
    assert_eq!(s.model.stacks.len(), 1);
    assert!(
        s.view
            .status
            .as_deref()
            .is_some_and(|m| m.contains("[ to view"))
    );
    s.act(Action::PrevStacks);
    assert_eq!(s.view.overlay, Overlay::Stacks);
}

#[test]
fn agent_phases_without_an_agent_are_named() {
    let mut s = state();
    s.apply(&plan("python-asyncio"));
    let gaps = s.screen().agent_phase_gaps();
    let names: Vec<&str> = gaps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cancel tasks",
            "shut down executors",
            "stop loop",
            "close loop"
        ],
        "{gaps:?}"
    );
    assert_eq!(
        s.screen().agent_phase_gaps_line().as_deref(),
        Some("cannot act now (no agent): cancel tasks, shut down executors, stop loop, close loop")
    );
    assert!(gaps.iter().all(|(_, why)| why == "no agent"));
    let hello: crate::agent::Hello = serde_json::from_value(serde_json::json!({
        "protocol": 1,
        "agent": {"kind": "python", "version": "0.1.0", "instance": "x"},
        "runtime": {"name": "cpython", "version": "3.11"},
        "target": {"pid": 100, "start_time": 1100},
        "capabilities": ["cancel_tasks", "stop_loop", "close_loop"]
    }))
    .expect("hello");
    // As the session sends them: the hello, then the state it implies.
    s.apply(&ev(CoreEvent::AgentHello {
        hello: Box::new(hello),
    }));
    s.apply(&agent(AgentState::Connected("cpython 3.11".into())));
    let gaps = s.screen().agent_phase_gaps();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].0, "shut down executors");
    assert!(gaps[0].1.contains("shutdown_executors"), "{gaps:?}");
    assert!(
        matches!(s.screen().agent_status(), AgentStatus::Connected(w) if w == "cpython 3.11 agent 0.1.0")
    );
}

#[test]
fn redraws_skip_events_that_show_nothing() {
    assert!(!shows(&CoreEvent::Phase {
        event: PhaseEvent::RefreshNow
    }));
    assert!(shows(&snapshot_event().event));
}

fn why_result() -> WhyResult {
    WhyResult {
        causes: vec![
            "exit blocked: pid 101 \"stubborn-worker\" is blocked in pause and ignores SIGTERM."
                .into(),
            "exit blocked: pid 103 \"sleep\" is blocked in clock_nanosleep.".into(),
        ],
        unknowns: Vec::new(),
        error: None,
        computed_at_unix_ms: 1_000,
        took_ms: 0,
    }
}

#[test]
fn y_opens_the_why_overlay_and_asks_once() {
    let mut s = state();
    assert!(s.act(Action::ToggleWhy).is_empty());
    assert_eq!(s.view.overlay, Overlay::Why);
    assert!(s.take_why_request(), "opening asks for a diagnosis");
    assert!(!s.take_why_request(), "asked once");
    assert!(s.view.why.computing);
    // Closing and reopening while it runs asks nothing more.
    s.act(Action::ToggleWhy);
    assert_eq!(s.view.overlay, Overlay::None);
    s.act(Action::ToggleWhy);
    assert!(!s.take_why_request());
}

#[test]
fn plans_cannot_take_the_why_key() {
    let text = "[[phase]]\nname = \"x\"\nkey = \"y\"\naction = \"wait_exit\"\ntimeout = \"1s\"\n";
    assert!(crate::teardown::plan::parse(text, "t.toml").is_err());
    // The same phase with a free key is a valid plan: the key is what is refused.
    assert!(crate::teardown::plan::parse(&text.replace("\"y\"", "\"z\""), "t.toml").is_ok());
}

#[test]
fn applying_a_diagnosis_shows_its_verdict() {
    let mut s = state();
    s.act(Action::ToggleWhy);
    assert!(s.take_why_request());
    s.apply_why(why_result());
    assert!(!s.view.why.computing);
    let r = s.view.why.result.as_ref().expect("applied");
    assert_eq!(
        r.verdict(),
        "exit blocked by 2: pid 101 \"stubborn-worker\" is blocked in pause and ignores SIGTERM."
    );
    let none = WhyResult::default();
    assert_eq!(none.verdict(), "nothing found that blocks the exit");
    // The fold stops at its cap: the header does not claim an exact count then.
    let capped = WhyResult {
        causes: vec![
            "exit blocked: pid 7 \"sleep\" is alive.".to_string();
            crate::diagnose::fold::MAX_CAUSES
        ],
        ..WhyResult::default()
    };
    assert_eq!(
        capped.verdict(),
        format!(
            "exit blocked by {} or more: pid 7 \"sleep\" is alive.",
            crate::diagnose::fold::MAX_CAUSES
        )
    );
    let failed = WhyResult {
        error: Some("no snapshot yet".into()),
        ..WhyResult::default()
    };
    assert_eq!(failed.verdict(), "cannot diagnose: no snapshot yet");
}

#[test]
fn the_verdict_refreshes_on_its_own_every_few_seconds_only() {
    let mut s = state();
    s.tick(10_000);
    assert!(s.take_why_request(), "the first tick with a snapshot asks");
    s.tick(10_500);
    assert!(!s.take_why_request(), "not while it runs");
    s.apply_why(why_result());
    assert!(s.tick(11_000), "the verdict's age moves");
    assert!(!s.take_why_request(), "not before WHY_EVERY_MS");
    s.tick(10_000 + WHY_EVERY_MS);
    assert!(s.take_why_request());
    // A diagnosis that took 1 s is repeated only after 20 s (its cost stays under 5 %).
    s.apply_why(WhyResult {
        took_ms: 1_000,
        ..why_result()
    });
    s.tick(10_000 + 2 * WHY_EVERY_MS + 100);
    assert!(
        !s.take_why_request(),
        "a slow diagnosis is repeated less often"
    );
    s.tick(10_000 + WHY_EVERY_MS + 20_000);
    assert!(s.take_why_request());
    s.apply_why(why_result());
    // Never once the target has exited, nor in a replay.
    s.apply(&exited(fixture::snapshot().target, ExitStatus::Code(0)));
    s.tick(100_000);
    assert!(!s.take_why_request());
    let mut r = state();
    r.view.replay = Some(ReplayBar::default());
    r.tick(10_000);
    r.act(Action::ToggleWhy);
    assert!(!r.take_why_request());
    assert_eq!(r.view.overlay, Overlay::Why);
}

/// The same verdict again and again, nothing changing in the tree: each repeat waits twice
/// as long (5, 10, 20, then 30 s at most); a process more, or the overlay open, goes back
/// to every 5 s.
#[test]
fn the_verdicts_refresh_backs_off_while_it_says_the_same() {
    let mut s = state();
    let mut now = 10_000;
    s.tick(now);
    assert!(s.take_why_request());
    s.apply_why(why_result());
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let asked = now;
        loop {
            now += 500;
            s.tick(now);
            if s.take_why_request() {
                break;
            }
            assert!(now - asked <= WHY_MAX_EVERY_MS, "never asked again");
        }
        gaps.push(now - asked);
        s.apply_why(why_result());
    }
    assert_eq!(gaps, [5_000, 10_000, 20_000, 30_000, 30_000]);
    // The tree changes (one more process): the next ask comes after WHY_EVERY_MS.
    let mut snap = fixture::snapshot();
    snap.processes
        .push(fixture::process(999, snap.target.pid, "new", 1));
    s.apply(&ev(CoreEvent::Snapshot {
        snapshot: Arc::new(snap),
    }));
    s.tick(now + WHY_EVERY_MS);
    assert!(
        s.take_why_request(),
        "a changed tree is diagnosed at the 5 s pace"
    );
    // A different verdict resets the backoff too.
    s.apply_why(WhyResult {
        causes: vec!["something else".into()],
        ..why_result()
    });
    s.tick(now + 2 * WHY_EVERY_MS);
    assert!(
        s.take_why_request(),
        "a new verdict is checked again at the 5 s pace"
    );
}
