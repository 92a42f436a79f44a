//! Engine unit tests of agent phases: skipped without an agent, judged by what the agent
//! answered (not merely that it answered), replies matched to the run that asked.
#![allow(clippy::unwrap_used)]

use super::Command;
use super::engine::{Effect, Engine, Input};
use super::plan;
use super::tests::{finished, key, proc_, snap};
use super::timeline::{LeftoverKind, Outcome};
use crate::model::*;
use serde_json::json;

#[test]
fn agent_phases_skip_without_agent_and_never_fail_the_run() {
    let mut e = Engine::new(plan::load("python-asyncio").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    let fx = e.step(0, Input::Command(Command::RunNext));
    assert!(
        matches!(&finished(&fx)[0], Outcome::Skipped { reason } if reason.contains("no agent"))
    );
    assert!(e.timeline().is_clean());
}

#[test]
fn agent_phase_ok_after_reply_and_no_pending_tasks() {
    let mut e = Engine::new(plan::load("python-asyncio").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    let facts = |n| AgentFacts {
        pending_tasks: n,
        loops: 1,
        ..AgentFacts::default()
    };
    e.step(0, Input::Agent(Some(facts(3))));
    let fx = e.step(0, Input::Command(Command::RunNext));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::AgentRequest { method, .. } if method == "cancel_tasks"))
    );
    assert!(
        finished(&e.step(
            5,
            Input::AgentReply {
                run: 1,
                result: Ok(serde_json::json!({"results": [{"name": "t", "result": "cancelled"}]}))
            }
        ))
        .is_empty()
    );
    let fx = e.step(9, Input::Agent(Some(facts(0))));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    let r = &e.timeline().phases[0];
    assert_eq!(
        (r.before.pending_tasks, r.after.pending_tasks),
        (Some(3), Some(0))
    );
}

#[test]
fn agent_timeout_snapshots_and_agent_error_fails() {
    let mut e = Engine::new(plan::load("python-asyncio").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    let t = AgentThreadFact {
        native_id: 105,
        name: "worker".into(),
        daemon: false,
        alive: true,
        main: false,
        hook: false,
    };
    e.step(
        0,
        Input::Agent(Some(AgentFacts {
            threads: vec![t],
            pending_tasks: 1,
            loops: 1,
            pid: Some(100),
            exiting: false,
            jvm_shutdown: false,
        })),
    );
    e.step(0, Input::Command(Command::RunNext));
    let fx = e.step(5000, Input::Tick);
    assert_eq!(finished(&fx), vec![Outcome::TimedOut]);
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::SnapshotStacks { tids, .. } if tids == &vec![105]))
    );
    e.step(5000, Input::Command(Command::RunPhase(2)));
    let fx = e.step(
        5001,
        Input::AgentReply {
            run: 2,
            result: Err("no executors".into()),
        },
    );
    assert_eq!(
        finished(&fx),
        vec![Outcome::Failed {
            reason: "no executors".into()
        }]
    );
}

#[test]
fn target_dying_mid_phase_ends_agent_phase_and_skips_later_ones() {
    let mut e = Engine::new(plan::load("python-asyncio").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e.step(0, Input::Command(Command::RunAll));
    let fx = e.step(
        3,
        Input::Exited {
            key: key(100),
            status: ExitStatus::Code(0),
        },
    );
    let mut out = finished(&fx);
    assert_eq!(out[0], Outcome::TargetExited);
    // The thread audit waits for a fresh snapshot; the runner asks for one at each phase start.
    for t in 4..7 {
        out.extend(finished(
            &e.step(t, snap(vec![proc_(100, 1, 0, "python3")])),
        ));
    }

    assert!(matches!(&out[2], Outcome::Skipped { reason } if reason.contains("exited")));
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Skipped { reason } if reason.contains("already exited")))
    );
}

fn asyncio_with_agent() -> Engine {
    let mut e = Engine::new(plan::load("python-asyncio").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(
        0,
        Input::Agent(Some(AgentFacts {
            pending_tasks: 1,
            loops: 1,
            ..AgentFacts::default()
        })),
    );
    e
}

fn reply(e: &mut Engine, now: u64, run: u64, v: serde_json::Value) -> Vec<Outcome> {
    finished(&e.step(now, Input::AgentReply { run, result: Ok(v) }))
}

#[test]
fn agent_answers_that_say_not_done_end_the_phase_unclean() {
    let mut e = asyncio_with_agent();
    e.step(0, Input::Command(Command::RunPhase(0)));
    let swallowed = json!({"results": [
        {"name": "stubborn-consumer", "result": "swallowed", "detail": "caught CancelledError"}],
        "counts": {"swallowed": 1}, "blocked": []});
    let reason = "1 swallowed the cancellation: \"stubborn-consumer\"";
    assert_eq!(
        reply(&mut e, 600, 1, swallowed),
        vec![Outcome::Failed {
            reason: reason.into()
        }],
        "ends at the reply, not at the 5 s deadline"
    );
    assert!(
        e.timeline().phases[0]
            .notes
            .iter()
            .any(|n| n.contains(reason))
    );

    // stop_loop answering still_running: the agent waited its budget, so timed out now.
    e.step(600, Input::Command(Command::RunPhase(3)));
    let still = json!({"loops": [{"loop": 1, "running": true, "closed": false, "result": "still_running"}]});
    assert_eq!(reply(&mut e, 900, 2, still), vec![Outcome::TimedOut]);
    let notes = &e.timeline().phases[1].notes;
    assert!(
        notes.iter().any(|n| n.contains("loop 1 still running")),
        "{notes:?}"
    );

    // shutdown_executors with a busy worker, close_loop on a running loop.
    e.step(900, Input::Command(Command::RunPhase(2)));
    let busy = json!({"executors": [{"id": 1, "kind": "ThreadPoolExecutor", "workers_before": 1,
        "workers_alive": 1, "result": "workers_still_running", "busy": [{"name": "pool_0"}]}]});
    assert_eq!(reply(&mut e, 950, 3, busy), vec![Outcome::TimedOut]);
    e.step(950, Input::Command(Command::RunPhase(4)));
    let running = json!({"loops": [{"loop": 1, "result": "running", "detail": "stop the loop first (stop_loop)"}]});
    assert!(matches!(&reply(&mut e, 960, 4, running)[0],
        Outcome::Failed { reason } if reason.contains("running")));
    assert!(!e.timeline().is_clean());
}

#[test]
fn agent_answers_that_say_done_end_the_phase_ok() {
    let mut e = asyncio_with_agent();
    e.step(0, Input::Command(Command::RunPhase(3)));
    let stopped =
        json!({"loops": [{"loop": 1, "running": false, "closed": false, "result": "stopped"}]});
    assert_eq!(reply(&mut e, 10, 1, stopped), vec![Outcome::Ok]);
}

#[test]
fn a_late_reply_for_an_earlier_run_is_ignored() {
    let mut e = asyncio_with_agent();
    e.step(0, Input::Command(Command::RunPhase(3)));
    e.step(10, Input::Command(Command::Abort));
    let fx = e.step(20, Input::Command(Command::RunPhase(3)));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::AgentRequest { run: 2, .. }))
    );
    // The first run's answer arrives now: it must not end the second run.
    let stopped = json!({"loops": [{"loop": 1, "running": false, "result": "stopped"}]});
    assert!(reply(&mut e, 30, 1, stopped.clone()).is_empty());
    assert_eq!(e.running(), Some(3));
    assert!(e.timeline().running.as_ref().unwrap().notes.is_empty());
    assert_eq!(reply(&mut e, 40, 2, stopped), vec![Outcome::Ok]);
}

#[test]
fn agent_in_a_descendant_main_thread_is_no_leftover_and_stacks_use_its_process() {
    // `lifecycle-top -- sh -c "python app.py"`: the agent runs in the child 101.
    let text = "[[phase]]\nname = \"audit\"\naction = \"audit\"\n";
    let mut e = Engine::new(plan::parse(text, "a.toml").unwrap(), key(100), 0);
    let tree = || snap(vec![proc_(100, 1, 0, "sh"), proc_(101, 100, 1, "python3")]);
    e.step(0, tree());
    let t = |tid, name: &str, main| AgentThreadFact {
        native_id: tid,
        name: name.into(),
        daemon: false,
        alive: true,
        main,
        hook: false,
    };
    e.step(
        0,
        Input::Agent(Some(AgentFacts {
            threads: vec![t(101, "MainThread", true), t(105, "worker", false)],
            pending_tasks: 2,
            loops: 1,
            pid: Some(101),
            exiting: false,
            jvm_shutdown: false,
        })),
    );
    assert_eq!(e.world().agent_process(), Some(key(101)));
    e.step(0, Input::Command(Command::RunNext));
    let fx = e.step(1, tree());
    assert!(matches!(&finished(&fx)[0], Outcome::Failed { .. }));
    let left: Vec<(LeftoverKind, i32)> = e
        .timeline()
        .leftovers
        .iter()
        .map(|l| (l.kind, l.pid))
        .collect();
    assert_eq!(
        left,
        vec![
            (LeftoverKind::Alive, 101),
            (LeftoverKind::NonDaemonThread, 105),
            (LeftoverKind::PendingTasks, 101),
        ],
        "MainThread is no left-over; the pending tasks are the child's"
    );
    let stacks: Vec<_> = fx
        .iter()
        .filter_map(|f| match f {
            Effect::SnapshotStacks { key, tids, .. } => Some((*key, tids.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(stacks, vec![(key(101), vec![105])]);
}
