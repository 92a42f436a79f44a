//! Unit tests of the app model: events in, state and commands out.

use super::*;
use crate::state::fixture;

fn state() -> AppState {
    let mut s = AppState::new(Mode::Attach, 100);
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    s
}

#[test]
fn snapshot_selects_first_rows_and_counts() {
    let s = state();
    assert_eq!(s.selected_tid, Some(100));
    assert_eq!(s.selected_pid.map(|k| k.pid), Some(100));
    assert_eq!(
        s.counts(),
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
    assert_eq!(s.selected_tid, Some(105));
    s.act(Action::Bottom);
    assert_eq!(s.selected_tid, Some(107));
    s.act(Action::Down);
    assert_eq!(s.selected_tid, Some(107));
    s.act(Action::NextPanel);
    s.act(Action::Down);
    assert_eq!(s.selected_pid.map(|k| k.pid), Some(101));
    assert_eq!(s.selected_tid, Some(107), "other panel's selection is kept");
}

#[test]
fn selection_follows_thread_across_sort() {
    let mut s = state();
    s.act(Action::Bottom); // tid 107, the busiest
    s.act(Action::CycleSort); // name
    s.act(Action::CycleSort); // state
    s.act(Action::CycleSort); // cpu
    assert_eq!(s.sort, SortKey::Cpu);
    assert_eq!(s.selected_tid, Some(107));
    assert_eq!(s.selected_thread_index(), Some(0));
}

#[test]
fn attach_mode_quits_without_asking() {
    let mut s = state();
    assert_eq!(s.act(Action::Quit), vec![Command::Quit(None)]);
}

#[test]
fn launch_mode_asks_before_quitting_a_live_tree() {
    let mut s = AppState::new(Mode::Launch { demo: true }, 100);
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    assert!(s.act(Action::Quit).is_empty());
    assert_eq!(s.overlay, Overlay::QuitPrompt);
    assert!(s.act(Action::Down).is_empty(), "prompt swallows other keys");
    assert_eq!(
        s.act(Action::Choose(QuitChoice::Detach)),
        vec![Command::Quit(Some(QuitChoice::Detach))]
    );
}

#[test]
fn force_quit_never_leaves_the_demo_behind() {
    let mut s = AppState::new(Mode::Launch { demo: true }, 100);
    assert_eq!(
        s.act(Action::ForceQuit),
        vec![Command::Quit(Some(QuitChoice::KillTree))]
    );
}

#[test]
fn exit_event_marks_process_and_survives_next_snapshot() {
    let mut s = state();
    let key = fixture::snapshot().processes[1].key;
    s.apply(Event::Exited {
        key,
        status: ExitStatus::Signal(9),
        at_unix_ms: 5,
    });
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    let p = &s.snapshot.as_ref().expect("snapshot").processes[1];
    assert_eq!(p.exit.map(|e| e.status), Some(ExitStatus::Signal(9)));
    assert!(s.target_exit.is_none());
}

#[test]
fn target_exit_is_recorded() {
    let mut s = state();
    let key = fixture::snapshot().target;
    s.apply(Event::Exited {
        key,
        status: ExitStatus::Code(0),
        at_unix_ms: 5,
    });
    assert_eq!(s.target_exit.map(|e| e.status), Some(ExitStatus::Code(0)));
    assert!(s.snapshot.as_ref().expect("snapshot").threads.is_empty());
}

#[test]
fn agent_facts_fill_daemon_and_pick_threads_to_snapshot() {
    let mut s = state();
    assert_eq!(s.thread_rows(0..10)[1].daemon(), None);
    s.apply(Event::Agent(AgentStatus::Connected("python 3.11".into())));
    s.agent_facts = Some(fixture::agent_facts());
    assert_eq!(s.thread_rows(0..10)[1].daemon(), Some(false));
    assert_eq!(s.thread_rows(0..10)[2].daemon(), Some(true));
    assert_eq!(s.threads_to_snapshot(), vec![100, 105]);
    s.apply(Event::Agent(AgentStatus::Lost("eof".into())));
    assert!(s.agent_facts.is_none());
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
        vec![Command::CaptureStacks(vec![100])]
    );
}

#[test]
fn phase_letter_keys_run_their_phase() {
    let mut s = state();
    assert!(s.act(Action::PhaseKey('t')).is_empty(), "no plan yet");
    let plan = crate::teardown::plan::load("native").expect("built-in plan");
    let (i, key) = plan
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.key))
        .next_back()
        .expect("phases");
    s.apply(Event::Plan(Box::new(plan)));
    assert_eq!(
        s.act(Action::PhaseKey(key)),
        vec![Command::Teardown(Action::RunPhase(i))]
    );
    assert!(s.act(Action::PhaseKey('Z')).is_empty());
}

#[test]
fn ctrl_c_in_the_quit_prompt_still_kills_the_demo() {
    let mut s = AppState::new(Mode::Launch { demo: true }, 100);
    s.apply(Event::Snapshot(Box::new(fixture::snapshot())));
    s.act(Action::Quit);
    assert_eq!(
        s.act(Action::ForceQuit),
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
    s.apply(Event::Stacks {
        snap: Box::new(stack_snapshot(1, &[(105, 7, 3), (107, 10, 5)])),
        asked: true,
    });
    assert!(
        s.stuck_since_previous().is_empty(),
        "one snapshot: nothing to compare"
    );
    // 105 did not move; 107 ran and was woken.
    s.apply(Event::Stacks {
        snap: Box::new(stack_snapshot(2, &[(105, 7, 3), (107, 30, 9)])),
        asked: true,
    });
    assert_eq!(s.stuck_since_previous(), vec![105]);
}

#[test]
fn stacks_the_engine_took_are_kept_without_opening_the_pane() {
    let mut s = state();
    s.apply(Event::Stacks {
        snap: Box::new(stack_snapshot(1, &[(105, 7, 3)])),
        asked: false,
    });
    assert_eq!(s.overlay, Overlay::None);
    assert_eq!(s.stacks.len(), 1);
    assert!(s.status.as_deref().is_some_and(|m| m.contains("[ to view")));
    s.act(Action::PrevStacks);
    assert_eq!(s.overlay, Overlay::Stacks);
}

#[test]
fn agent_phases_without_an_agent_are_named() {
    let mut s = state();
    s.apply(Event::Plan(Box::new(
        crate::teardown::plan::load("python-asyncio").expect("built-in plan"),
    )));
    let gaps = s.agent_phase_gaps();
    let keys: String = gaps.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, "cepl", "{gaps:?}");
    assert!(gaps.iter().all(|(_, why)| why == "no agent"));
    let hello: crate::agent::Hello = serde_json::from_value(serde_json::json!({
        "protocol": 1,
        "agent": {"kind": "python", "version": "0.1.0", "instance": "x"},
        "runtime": {"name": "cpython", "version": "3.11"},
        "target": {"pid": 100, "start_time": 1100},
        "capabilities": ["cancel_tasks", "stop_loop", "close_loop"]
    }))
    .expect("hello");
    s.apply(Event::AgentHello(Box::new(hello)));
    let gaps = s.agent_phase_gaps();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].0, 'e');
    assert!(gaps[0].1.contains("shutdown_executors"), "{gaps:?}");
}
