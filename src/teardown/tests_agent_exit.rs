//! Engine unit tests of agent phases racing the target's own exit: the outcome follows from
//! what happened (the target exited, or its agent went away while it kept running), never
//! from which message arrived first. Also: lifecycle-top's own zombie children are not
//! left-overs, and what cannot be known without the agent is said as unknown.
#![allow(clippy::unwrap_used)]

use super::engine::{Effect, Engine, GONE_CONFIRM_MS, Input};
use super::tests::{finished, key, proc_, snap};
use super::timeline::Outcome;
use super::{AgentPortError, Command, plan};
use crate::model::*;
use serde_json::json;

const ONE_AGENT_PHASE: &str = "[[phase]]\nname = \"shut down executors\"\naction = \"agent\"\n\
                               request = \"shutdown_executors\"\ntimeout = \"5s\"\n";

fn lost() -> AgentPortError {
    AgentPortError::classify(
        "agent connection lost before `shutdown_executors` was answered: eof".into(),
    )
}

/// An engine running its single agent phase (`run` 1) against a live target 100.
fn started(plan_text: &str) -> Engine {
    let mut e = Engine::new(plan::parse(plan_text, "t.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    let fx = e.step(0, Input::Command(Command::RunNext));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::AgentRequest { run: 1, .. }))
    );
    e
}

fn gone_snapshot() -> Input {
    let mut p = proc_(100, 1, 0, "python3");
    p.exit = Some(ExitInfo {
        status: ExitStatus::Code(0),
        at_unix_ms: 1,
    });
    snap(vec![p])
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    ReplyOk,
    Lost,
    NotConnected,
    Exit,
    SnapGone,
    SnapAlive,
    AgentNone,
    Exiting,
}

fn input(ev: Ev) -> Input {
    match ev {
        Ev::ReplyOk => Input::AgentReply {
            run: 1,
            result: Ok(json!({"executors": [{"id": 1, "kind": "ThreadPoolExecutor",
                "workers_before": 2, "workers_alive": 0, "result": "stopped", "busy": []}]})),
        },
        Ev::Lost => Input::AgentReply {
            run: 1,
            result: Err(lost()),
        },
        Ev::NotConnected => Input::AgentReply {
            run: 1,
            result: Err("agent not connected (connection refused)".into()),
        },
        Ev::Exit => Input::Exited {
            key: key(100),
            status: ExitStatus::Code(0),
        },
        Ev::SnapGone => gone_snapshot(),
        Ev::SnapAlive => snap(vec![proc_(100, 1, 0, "python3")]),
        Ev::AgentNone => Input::Agent(None),
        Ev::Exiting => Input::AgentExiting,
    }
}

/// Feeds `evs` at 10 ms steps; returns the outcome of the first phase once it ended.
fn run(mut e: Engine, evs: &[Ev]) -> Option<Outcome> {
    for (i, ev) in evs.iter().enumerate() {
        e.step(10 * (i as u64 + 1), input(*ev));
    }
    e.timeline().phases.first().map(|r| r.outcome.clone())
}

fn permutations(v: &[Ev]) -> Vec<Vec<Ev>> {
    if v.len() <= 1 {
        return vec![v.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..v.len() {
        let mut rest = v.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

#[test]
fn reply_then_exit_is_ok_and_keeps_the_result() {
    let mut e = started(ONE_AGENT_PHASE);
    let fx = e.step(10, input(Ev::ReplyOk));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    e.step(20, input(Ev::Exit));
    let r = &e.timeline().phases[0];
    assert_eq!(
        r.notes,
        vec!["shut down 1 executor (ThreadPoolExecutor, 2 workers)"]
    );
    assert!(r.agent_result.as_ref().unwrap()["executors"].is_array());
    assert!(e.timeline().is_clean());
}

#[test]
fn exit_then_reply_is_target_exited() {
    let mut e = started(ONE_AGENT_PHASE);
    let fx = e.step(10, input(Ev::Exit));
    assert_eq!(finished(&fx), vec![Outcome::TargetExited]);
    assert!(finished(&e.step(20, input(Ev::ReplyOk))).is_empty());
    assert_eq!(e.timeline().phases.len(), 1);
    assert_eq!(Outcome::TargetExited.label(), "target exited");
    assert!(e.timeline().is_clean());
}

#[test]
fn lost_then_exit_within_the_window_is_target_exited() {
    for exit in [Ev::Exit, Ev::SnapGone] {
        let mut e = started(ONE_AGENT_PHASE);
        let fx = e.step(10, input(Ev::Lost));
        assert!(finished(&fx).is_empty(), "not judged at once");
        assert!(fx.contains(&Effect::RefreshNow), "asks for a fresh look");
        assert_eq!(e.next_deadline(), Some(10 + GONE_CONFIRM_MS));
        e.step(400, input(Ev::SnapAlive));
        let fx = e.step(900, input(exit));
        assert_eq!(finished(&fx), vec![Outcome::TargetExited], "{exit:?}");
        assert!(e.timeline().is_clean());
    }
}

#[test]
fn lost_and_alive_fails_after_the_confirmation_with_a_plain_reason() {
    let mut e = started(ONE_AGENT_PHASE);
    e.step(10, input(Ev::Lost));
    assert!(finished(&e.step(300, input(Ev::SnapAlive))).is_empty());
    assert!(finished(&e.step(1509, Input::Tick)).is_empty());
    let fx = e.step(1510, Input::Tick);
    assert_eq!(
        finished(&fx),
        vec![Outcome::Failed {
            reason: "agent connection lost before `shutdown_executors` was answered: eof; \
                     the target is still running 1.5 s later"
                .into()
        }]
    );
    assert!(!e.timeline().is_clean());
}

#[test]
fn lost_and_alive_needs_a_snapshot_newer_than_the_error() {
    let mut e = started(ONE_AGENT_PHASE);
    e.step(10, input(Ev::Lost));
    let fx = e.step(1510, Input::Tick);
    assert!(finished(&fx).is_empty(), "no fresh look yet");
    assert!(fx.contains(&Effect::RefreshNow));
    assert_eq!(
        e.next_deadline(),
        Some(5000),
        "no busy wake-ups until a snapshot"
    );
    let fx = e.step(1700, input(Ev::SnapAlive));
    assert!(matches!(&finished(&fx)[..], [Outcome::Failed { reason }] if reason.contains("1.7 s")));
    // With no snapshot at all, the phase deadline ends it.
    let mut e = started(ONE_AGENT_PHASE);
    e.step(10, input(Ev::Lost));
    assert!(finished(&e.step(4999, Input::Tick)).is_empty());
    assert!(matches!(
        &finished(&e.step(5000, Input::Tick))[..],
        [Outcome::Failed { .. }]
    ));
}

#[test]
fn the_confirmation_never_outlasts_the_phase_deadline() {
    let text = ONE_AGENT_PHASE.replace("5s", "1s");
    let mut e = started(&text);
    e.step(700, input(Ev::Lost));
    assert_eq!(e.next_deadline(), Some(1000));
    e.step(800, input(Ev::SnapAlive));
    assert!(matches!(
        &finished(&e.step(1000, Input::Tick))[..],
        [Outcome::Failed { .. }]
    ));
}

#[test]
fn not_connected_is_the_same_connection_class() {
    let mut e = started(ONE_AGENT_PHASE);
    assert!(finished(&e.step(10, input(Ev::NotConnected))).is_empty());
    assert_eq!(
        finished(&e.step(20, input(Ev::Exit))),
        vec![Outcome::TargetExited]
    );
}

#[test]
fn exit_before_the_phase_starts_skips_it() {
    let mut e = Engine::new(plan::parse(ONE_AGENT_PHASE, "t.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e.step(5, input(Ev::Exit));
    let fx = e.step(10, Input::Command(Command::RunNext));
    assert!(!fx.iter().any(|f| matches!(f, Effect::AgentRequest { .. })));
    assert_eq!(
        finished(&fx),
        vec![Outcome::Skipped {
            reason: "the target has exited".into()
        }]
    );
}

#[test]
fn an_agent_that_said_exiting_then_went_is_target_exited_at_once() {
    let mut e = started(ONE_AGENT_PHASE);
    e.step(5, Input::AgentExiting);
    let fx = e.step(10, input(Ev::Lost));
    assert_eq!(finished(&fx), vec![Outcome::TargetExited]);
    // Said before the phase started: nothing to ask.
    let mut e = Engine::new(plan::parse(ONE_AGENT_PHASE, "t.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e.step(1, Input::AgentExiting);
    let fx = e.step(2, Input::Command(Command::RunNext));
    assert!(!fx.iter().any(|f| matches!(f, Effect::AgentRequest { .. })));
    // It waits for the announced exit: the same outcome as when "exiting" came just after
    // the request went out (the Node.js child case varied between the two).
    assert!(finished(&fx).is_empty());
    assert_eq!(
        finished(&e.step(300, input(Ev::Exit))),
        vec![Outcome::TargetExited]
    );
    // No exit within the confirmation time: skipped, as before.
    let mut e = Engine::new(plan::parse(ONE_AGENT_PHASE, "t.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e.step(1, Input::AgentExiting);
    assert!(finished(&e.step(2, Input::Command(Command::RunNext))).is_empty());
    let late = 2 + crate::teardown::engine::GONE_CONFIRM_MS;
    assert!(
        matches!(&finished(&e.step(late, snap(vec![proc_(100, 1, 0, "python3")])))[..],
            [Outcome::Skipped { reason }] if reason.contains("exiting"))
    );
    // A report from the same interpreter after it said so does not clear it; another
    // process's agent does.
    let mut e = started(ONE_AGENT_PHASE);
    e.step(5, Input::AgentExiting);
    e.step(6, Input::Agent(Some(AgentFacts::default())));
    assert_eq!(
        finished(&e.step(10, input(Ev::Lost))),
        vec![Outcome::TargetExited]
    );
    let mut e = started(ONE_AGENT_PHASE);
    e.step(5, Input::AgentExiting);
    let child = AgentFacts {
        pid: Some(101),
        ..AgentFacts::default()
    };
    e.step(6, Input::Agent(Some(child)));
    assert!(finished(&e.step(10, input(Ev::Lost))).is_empty());
}

#[test]
fn same_facts_in_any_order_give_the_same_outcome() {
    // The agent's connection ends with the exiting target: "target exited" every time.
    for evs in [
        vec![Ev::Lost, Ev::Exit, Ev::AgentNone, Ev::SnapGone],
        vec![Ev::NotConnected, Ev::SnapGone, Ev::AgentNone],
        vec![Ev::Lost, Ev::Exiting, Ev::AgentNone],
    ] {
        for p in permutations(&evs) {
            assert_eq!(
                run(started(ONE_AGENT_PHASE), &p),
                Some(Outcome::TargetExited),
                "{p:?}"
            );
        }
    }
    // The agent answered and the target exited: ok or target exited, clean either way.
    for p in permutations(&[Ev::ReplyOk, Ev::Exit, Ev::AgentNone, Ev::SnapGone]) {
        let o = run(started(ONE_AGENT_PHASE), &p).unwrap();
        assert!(
            matches!(o, Outcome::Ok | Outcome::TargetExited) && o.is_clean(),
            "{p:?}: {o:?}"
        );
    }
    // The agent went and the target stays: failed every time, after the confirmation.
    for p in permutations(&[Ev::Lost, Ev::AgentNone, Ev::SnapAlive]) {
        let mut e = started(ONE_AGENT_PHASE);
        for (i, ev) in p.iter().enumerate() {
            assert!(finished(&e.step(10 * (i as u64 + 1), input(*ev))).is_empty());
        }
        e.step(2000, input(Ev::SnapAlive));
        assert!(
            matches!(&e.timeline().phases[0].outcome, Outcome::Failed { reason }
                if reason.contains("still running")),
            "{p:?}"
        );
    }
}

#[test]
fn timeouts_and_refusals_are_not_the_connection_class() {
    let mut e = started(ONE_AGENT_PHASE);
    let timeout =
        AgentPortError::classify("agent did not answer `shutdown_executors` within 5000 ms".into());
    assert!(matches!(timeout, AgentPortError::Timeout(_)));
    let fx = e.step(
        5000,
        Input::AgentReply {
            run: 1,
            result: Err(timeout),
        },
    );
    assert_eq!(finished(&fx), vec![Outcome::TimedOut]);

    let refused =
        AgentPortError::classify("agent refused `run_phase`: not_found: no phase 'x'".into());
    assert_eq!(
        refused,
        AgentPortError::Refused {
            code: "not_found".into(),
            message: "no phase 'x'".into()
        }
    );
    let mut e = started(ONE_AGENT_PHASE);
    let fx = e.step(
        10,
        Input::AgentReply {
            run: 1,
            result: Err(refused),
        },
    );
    assert_eq!(
        finished(&fx),
        vec![Outcome::Failed {
            reason: "the agent refused: not_found: no phase 'x'".into()
        }]
    );
    let unavailable = AgentPortError::classify(
        "agent refused `cancel_tasks`: unavailable: interpreter shutting down".into(),
    );
    assert!(unavailable.is_gone());
    assert!(AgentPortError::classify("agent client stopped".into()).is_gone());
}

const AUDIT: &str = "[[phase]]\nname = \"left-over audit\"\naction = \"audit\"\n";

#[test]
fn our_own_zombie_child_is_no_leftover() {
    // lifecycle-top is pid 50 and launched the target 100 (SIGKILLed, not reaped yet); 101
    // is a zombie child of the target: that one is the target's to reap.
    let mut e = Engine::new(plan::parse(AUDIT, "a.toml").unwrap(), key(100), 0);
    e.set_own_pid(50);
    let mut target = proc_(100, 50, 0, "python3");
    target.state = RunState::Zombie;
    let mut ours = proc_(102, 50, 1, "reparented");
    ours.state = RunState::Zombie;
    let mut theirs = proc_(101, 100, 1, "worker");
    theirs.state = RunState::Zombie;
    e.step(0, snap(vec![target.clone(), theirs.clone(), ours.clone()]));
    e.step(0, Input::Command(Command::RunNext));
    e.step(1, snap(vec![target, theirs, ours]));
    let left: Vec<i32> = e.timeline().leftovers.iter().map(|l| l.pid).collect();
    assert_eq!(left, vec![101]);
    // Without our pid (the engine alone), a zombie target child of 50 is still listed.
    let mut e = Engine::new(plan::parse(AUDIT, "a.toml").unwrap(), key(100), 0);
    let mut z = proc_(102, 50, 1, "reparented");
    z.state = RunState::Zombie;
    e.step(0, snap(vec![proc_(100, 1, 0, "app"), z.clone()]));
    e.step(0, Input::Command(Command::RunNext));
    e.step(1, snap(vec![proc_(100, 1, 0, "app"), z]));
    assert_eq!(e.timeline().leftovers.len(), 1);
}

fn thread(tid: i32) -> ThreadInfo {
    ThreadInfo {
        tid,
        name: format!("t{tid}").into(),
        state: RunState::Sleeping,
        wait: Default::default(),
        cpu_ticks: 0,
        cpu_percent: 0.0,
        voluntary_ctxt_switches: None,
        nonvoluntary_ctxt_switches: None,
    }
}

fn snap_with_threads(tids: &[i32]) -> Input {
    let Input::Snapshot(mut s) = snap(vec![proc_(100, 1, 0, "python3")]) else {
        unreachable!()
    };
    std::sync::Arc::make_mut(&mut s).threads = tids.iter().map(|t| thread(*t)).collect();
    Input::Snapshot(s)
}

#[test]
fn without_the_agent_threads_are_unknown_never_nothing_left() {
    let mut e = Engine::new(plan::parse(AUDIT, "a.toml").unwrap(), key(100), 0);
    e.step(0, snap_with_threads(&[100, 101, 102, 103]));
    e.step(0, Input::Command(Command::RunNext));
    let fx = e.step(1, snap_with_threads(&[100, 101, 102, 103]));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    let t = e.timeline();
    let unknown = "3 threads besides the main thread; daemon flags unknown without the agent; \
                   run with the agent to know which block exit";
    assert_eq!(t.unknowns, vec![unknown.to_string()]);
    assert!(t.phases[0].notes.iter().all(|n| n != "nothing left"));
    assert!(t.phases[0].notes.iter().any(|n| n == unknown));
    assert!(t.is_clean(), "unknown is not unclean by itself");

    // With the agent (threads classified) or a single-threaded target: nothing unknown.
    let mut e = Engine::new(plan::parse(AUDIT, "a.toml").unwrap(), key(100), 0);
    e.step(0, snap_with_threads(&[100]));
    e.step(0, Input::Command(Command::RunNext));
    e.step(1, snap_with_threads(&[100]));
    assert!(e.timeline().unknowns.is_empty());
    assert_eq!(e.timeline().phases[0].notes, vec!["nothing left"]);
    let mut e = Engine::new(plan::parse(AUDIT, "a.toml").unwrap(), key(100), 0);
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e.step(0, snap_with_threads(&[100, 101]));
    e.step(0, Input::Command(Command::RunNext));
    e.step(1, snap_with_threads(&[100, 101]));
    assert!(e.timeline().unknowns.is_empty());
}

const SIGNAL_TARGET: &str = "[[phase]]\nname = \"signal target\"\naction = \"signal_target\"\n\
                             signals = [\"SIGINT\", \"SIGKILL\"]\ntimeout = \"5s\"\n\
                             success = \"target_exited\"\n";

fn signal_engine() -> Engine {
    let mut e = Engine::new(plan::parse(SIGNAL_TARGET, "t.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
    e.step(0, Input::Agent(Some(AgentFacts::default())));
    e
}

fn signals_sent(fx: &[Effect]) -> Vec<i32> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Signal { sig, .. } => Some(*sig),
            _ => None,
        })
        .collect()
}

#[test]
fn a_target_exiting_on_its_own_is_not_signalled_during_its_cleanup() {
    // It exits within the phase's timeout: no signal at all, the phase is ok.
    let mut e = signal_engine();
    e.step(1, Input::AgentExiting);
    let fx = e.step(2, Input::Command(Command::RunNext));
    assert!(signals_sent(&fx).is_empty(), "{fx:?}");
    let fx = e.step(
        300,
        Input::Exited {
            key: key(100),
            status: ExitStatus::Code(0),
        },
    );
    assert!(signals_sent(&fx).is_empty());
    assert_eq!(finished(&fx), vec![Outcome::Ok]);

    // It does not: the escalation starts when the grace ends, SIGINT first.
    let mut e = signal_engine();
    e.step(1, Input::AgentExiting);
    e.step(2, Input::Command(Command::RunNext));
    assert!(signals_sent(&e.step(4_000, Input::Tick)).is_empty());
    let fx = e.step(e.next_deadline().unwrap(), Input::Tick);
    assert_eq!(signals_sent(&fx), vec![libc::SIGINT]);

    // Without the agent's word the signal goes at once, as before.
    let mut e = signal_engine();
    let fx = e.step(2, Input::Command(Command::RunNext));
    assert_eq!(signals_sent(&fx), vec![libc::SIGINT]);
}

#[test]
fn a_main_task_woken_by_the_cancel_gets_time_before_the_signal() {
    let plan_text = "[[phase]]\nname = \"cancel tasks\"\naction = \"agent\"\n\
                     request = \"cancel_tasks\"\ntimeout = \"5s\"\n"
        .to_string()
        + SIGNAL_TARGET;
    let reply = |resumes: bool| Input::AgentReply {
        run: 1,
        result: Ok(json!({"results": [{"id": 1, "loop": 1, "name": "worker",
            "result": "cancelled"}], "counts": {"cancelled": 1}, "blocked": [],
            "spared": [{"id": 2, "loop": 1, "name": "Task-1", "reason": "main_task",
                        "resumes": resumes, "awaited": ["worker"]}]})),
    };
    for resumes in [true, false] {
        let mut e = started(&plan_text);
        e.step(5, reply(resumes));
        let fx = e.step(6, Input::Command(Command::RunNext));
        if !resumes {
            assert_eq!(signals_sent(&fx), vec![libc::SIGINT], "{fx:?}");
            continue;
        }
        assert!(signals_sent(&fx).is_empty(), "{fx:?}");
        let fx = e.step(
            80,
            Input::Exited {
                key: key(100),
                status: ExitStatus::Code(0),
            },
        );
        assert!(signals_sent(&fx).is_empty());
        assert_eq!(finished(&fx), vec![Outcome::Ok]);
    }
}

/// "Run all" does not start the next phase (here: one that kills what is being captured)
/// before the stacks an audit asked for were taken, or `CAPTURE_WAIT_MS` passed.
#[test]
fn run_all_waits_for_the_audits_stacks_before_the_next_phase() {
    use super::engine::CAPTURE_WAIT_MS;
    let plan_text = "[[phase]]\nname = \"audit threads\"\naction = \"audit\"\nstacks = true\n\
                     timeout = \"3s\"\n[[phase]]\nname = \"kill children\"\n\
                     action = \"signal_children\"\nsignals = [\"SIGKILL\"]\ntimeout = \"3s\"\n";
    let started = |e: &[Effect]| {
        e.iter()
            .any(|f| matches!(f, Effect::PhaseStarted { index: 1, .. }))
    };
    for capture_ends in [true, false] {
        let mut e = Engine::new(plan::parse(plan_text, "t.toml").unwrap(), key(100), 0);
        e.step(0, snap(vec![proc_(100, 1, 0, "python3")]));
        let worker = AgentThreadFact {
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
                threads: vec![worker],
                pid: Some(100),
                ..AgentFacts::default()
            })),
        );
        let mut fx = e.step(1, Input::Command(Command::RunAll));
        // The audit ends on a snapshot newer than its start.
        fx.extend(e.step(2, snap(vec![proc_(100, 1, 0, "python3")])));
        assert!(
            fx.iter()
                .any(|f| matches!(f, Effect::SnapshotStacks { tids, .. } if tids == &vec![105])),
            "{fx:?}"
        );
        assert!(!started(&fx), "the kill waits for the stacks: {fx:?}");
        assert!(!started(&e.step(100, Input::Tick)));
        if capture_ends {
            assert!(started(&e.step(300, Input::CaptureDone)));
        } else {
            assert_eq!(e.next_deadline(), Some(2 + CAPTURE_WAIT_MS));
            assert!(started(&e.step(2 + CAPTURE_WAIT_MS, Input::Tick)));
        }
    }
}
