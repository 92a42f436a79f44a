//! Unit tests of the pure parts: plan parsing/validation and the engine under a scripted
//! clock with synthetic snapshots (real processes are covered by tests/teardown.rs).
#![allow(clippy::unwrap_used)]

use super::Command;
use super::engine::{Effect, Engine, Input};
use super::plan::{self, Action, OnTimeout, SuccessRule};
use super::timeline::{LeftoverKind, Outcome};
use crate::model::*;

pub(super) fn key(pid: i32) -> ProcKey {
    ProcKey {
        pid,
        start_time: 1000 + pid as u64,
    }
}

pub(super) fn proc_(pid: i32, ppid: i32, depth: u32, name: &str) -> ProcInfo {
    ProcInfo {
        key: key(pid),
        ppid,
        pgid: 100,
        sid: 100,
        name: name.into(),
        cmdline: vec![name.into()],
        state: RunState::Sleeping,
        cpu_ticks: 0,
        cpu_percent: 0.0,
        rss_bytes: 0,
        num_threads: 1,
        age_secs: 1.0,
        depth,
        orphan: false,
        signals: SignalMasks::default(),
        exit: None,
    }
}

pub(super) fn snap(procs: Vec<ProcInfo>) -> Input {
    Input::Snapshot(Box::new(Snapshot {
        taken_at_unix_ms: 0,
        target: key(100),
        processes: procs,
        threads: vec![],
        system: SystemInfo::default(),
    }))
}

pub(super) fn native() -> Engine {
    Engine::new(plan::load("native").unwrap(), key(100), 0)
}

pub(super) fn signals(fx: &[Effect]) -> Vec<(i32, i32)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Signal { key, sig, .. } => Some((key.pid, *sig)),
            _ => None,
        })
        .collect()
}

pub(super) fn finished(fx: &[Effect]) -> Vec<Outcome> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::PhaseFinished(r) => Some(r.outcome.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn builtin_plans_parse() {
    let p = plan::load("python-asyncio").unwrap();
    assert_eq!(p.phases.len(), 8);
    assert!(matches!(
        p.phases[0].action,
        Action::Agent(plan::AgentRequest::CancelTasks)
    ));
    assert_eq!(p.phases[0].success, SuccessRule::NoPendingTasks);
    match &p.phases[6].action {
        Action::SignalTarget { signals } => {
            assert_eq!(signals, &vec![libc::SIGINT, libc::SIGTERM, libc::SIGKILL])
        }
        other => panic!("{other:?}"),
    }
    let n = plan::load("native").unwrap();
    assert_eq!(n.phases.len(), 3);
    assert_eq!(n.phases[0].on_timeout, OnTimeout::Escalate);
}

#[test]
fn a_phase_cannot_take_a_dashboard_key() {
    let text = "[[phase]]\nname = \"drain\"\nkey = \"s\"\naction = \"wait_exit\"\n";
    let e = plan::parse(text, "my.toml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("key"));
    assert!(e.to_string().contains("dashboard's own keys"), "{e}");
}

#[test]
fn plan_errors_name_file_phase_and_field() {
    let text = "[[phase]]\nname = \"drain\"\naction = \"signal_children\"\ntimeout = \"soon\"\n";
    let e = plan::parse(text, "my.toml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeout"));
    let msg = e.to_string();
    assert!(
        msg.contains("my.toml") && msg.contains("drain") && msg.contains("timeout"),
        "{msg}"
    );

    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"agent\"\nrequest = \"run_phase\"\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("app_phase"), "{e}");
    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"signal_target\"\nsignals = [\"SIGFOO\"]\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("signals"), "{e}");
    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"audit\"\nsucess = \"none\"\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("sucess"), "{e}");
    let e = plan::parse("phase = [", "broken.toml").unwrap_err();
    assert!(e.to_string().starts_with("broken.toml"), "{e}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    let ok = plan::parse(
        "name=\"p\"\n[[phase]]\nname = \"flush\"\naction = \"agent\"\nrequest = \"run_phase\"\napp_phase = \"flush-db\"\ntimeout = 1.5\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(ok.phases[0].timeout.as_millis(), 1500);
    assert_eq!(ok.phases[0].key, '1');
}

#[test]
fn term_ignoring_child_escalates_at_grace_deadline() {
    let mut e = native();
    let mut child = proc_(101, 100, 1, "worker.py");
    child.signals.ignored = 1 << (libc::SIGTERM - 1);
    e.step(0, snap(vec![proc_(100, 1, 0, "app"), child.clone()]));
    let fx = e.step(0, Input::Command(Command::RunNext));
    assert_eq!(signals(&fx), vec![(101, libc::SIGTERM)]);
    assert_eq!(e.next_deadline(), Some(5000));
    assert!(signals(&e.step(4999, Input::Tick)).is_empty());
    let fx = e.step(5000, Input::Tick);
    assert_eq!(signals(&fx), vec![(101, libc::SIGKILL)]);
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Signal {
            due_ms: Some(5000),
            ..
        }
    )));
    e.step(
        5001,
        Input::SignalResult {
            key: key(101),
            sig: libc::SIGKILL,
            result: Ok(()),
        },
    );
    let fx = e.step(
        5003,
        Input::Exited {
            key: key(101),
            status: ExitStatus::Signal(9),
        },
    );
    assert!(finished(&fx).is_empty(), "judged on a fresh snapshot");
    assert!(fx.contains(&Effect::RefreshNow));
    let fx = e.step(5010, snap(vec![proc_(100, 1, 0, "app")]));
    assert_eq!(finished(&fx), vec![Outcome::Escalated]);
    let rec = &e.timeline().phases[0];
    assert!(
        rec.notes
            .iter()
            .any(|n| n == "pid 101 (worker.py) ignored SIGTERM, killed after 5.0 s"),
        "{:?}",
        rec.notes
    );
    assert_eq!(rec.before.children, 1);
    assert_eq!(rec.after.children, 0);
    assert!(e.timeline().needed_sigkill());
}

#[test]
fn leaves_first_and_sigcont_for_stopped() {
    let mut e = native();
    let mut stopped = proc_(102, 101, 2, "leaf");
    stopped.state = RunState::Stopped;
    e.step(
        0,
        snap(vec![
            proc_(100, 1, 0, "app"),
            proc_(101, 100, 1, "mid"),
            stopped,
        ]),
    );
    let fx = e.step(0, Input::Command(Command::RunNext));
    assert_eq!(
        signals(&fx),
        vec![
            (102, libc::SIGTERM),
            (102, libc::SIGCONT),
            (101, libc::SIGTERM)
        ]
    );
}

#[test]
fn clean_run_of_native_plan() {
    let mut e = native();
    e.step(0, snap(vec![proc_(100, 1, 0, "app")]));
    e.step(0, Input::Command(Command::RunAll));
    // No children (confirmed by the next snapshot): phase 1 ok; phase 2 signals the target.
    let fx = e.step(5, snap(vec![proc_(100, 1, 0, "app")]));

    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    assert_eq!(signals(&fx), vec![(100, libc::SIGTERM)]);
    let fx = e.step(
        10,
        Input::Exited {
            key: key(100),
            status: ExitStatus::Code(0),
        },
    );
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    // The audit waits for a fresh snapshot.
    let mut gone = proc_(100, 1, 0, "app");
    gone.exit = Some(ExitInfo {
        status: ExitStatus::Code(0),
        at_unix_ms: 1,
    });
    let fx = e.step(20, snap(vec![gone]));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    assert!(fx.contains(&Effect::AllDone));
    assert!(e.timeline().is_clean());
}

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
        threads: vec![],
        pending_tasks: n,
        loops: 1,
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
                phase: 0,
                result: Ok(serde_json::json!({"cancelled": 3}))
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
    };
    e.step(
        0,
        Input::Agent(Some(AgentFacts {
            threads: vec![t],
            pending_tasks: 1,
            loops: 1,
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
            phase: 2,
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
    assert_eq!(out[0], Outcome::Ok);
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

#[test]
fn abort_and_extend() {
    let mut e = native();
    e.step(
        0,
        snap(vec![proc_(100, 1, 0, "app"), proc_(101, 100, 1, "w")]),
    );
    e.step(0, Input::Command(Command::RunAll));
    e.step(
        10,
        Input::Command(Command::ExtendTimeout(std::time::Duration::from_secs(2))),
    );
    assert_eq!(e.next_deadline(), Some(7000));
    let fx = e.step(20, Input::Command(Command::Abort));
    assert_eq!(
        finished(&fx),
        vec![Outcome::Failed {
            reason: "aborted by the user".into()
        }]
    );
    assert!(e.is_idle(), "abort stops run-all");
    assert!(signals(&e.step(8000, Input::Tick)).is_empty());
}

#[test]
fn audit_lists_leftovers_with_reasons() {
    let mut e = native();
    let mut zombie = proc_(101, 100, 1, "z");
    zombie.state = RunState::Zombie;
    let mut orphan = proc_(102, 1, 1, "daemonized");
    orphan.orphan = true;
    e.step(
        0,
        snap(vec![
            proc_(100, 1, 0, "app"),
            zombie.clone(),
            orphan.clone(),
        ]),
    );
    e.step(0, Input::Command(Command::RunPhase(2)));
    let fx = e.step(1, snap(vec![proc_(100, 1, 0, "app"), zombie, orphan]));
    assert!(matches!(&finished(&fx)[0], Outcome::Failed { .. }));
    let kinds: Vec<_> = e.timeline().leftovers.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, vec![LeftoverKind::Zombie, LeftoverKind::Orphan]);
    assert!(e.timeline().leftovers[0].reason.contains("not reaped"));
}
