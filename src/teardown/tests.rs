//! Unit tests of the pure engine under a scripted clock with synthetic snapshots: escalation,
//! ordering, clean runs, abort/extend and the audit (real processes: tests/teardown.rs).
#![allow(clippy::unwrap_used)]

use super::Command;
use super::engine::{Effect, Engine, Input};
use super::plan;
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
    Input::Snapshot(std::sync::Arc::new(Snapshot {
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
    assert_eq!(finished(&fx), vec![Outcome::Aborted]);
    assert!(
        !Outcome::Aborted.is_clean(),
        "an aborted phase is not a clean one"
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
