//! More engine unit tests: group scope ordering, processes still around after SIGKILL, and
//! the policies that stop a signal phase before escalating.
#![allow(clippy::unwrap_used)]

use super::Command;
use super::engine::{Effect, Engine, Input};
use super::plan;
use super::tests::{finished, key, native, proc_, signals, snap};
use super::timeline::{LeftoverKind, Outcome};
use crate::model::*;

#[test]
fn group_scope_signals_whole_groups_deepest_group_first() {
    let text = "[[phase]]\nname = \"kids\"\naction = \"signal_children\"\nscope = \"group\"\n";
    let mut e = Engine::new(plan::parse(text, "g.toml").unwrap(), key(100), 0);
    let mut a = proc_(101, 100, 1, "a"); // group 200, shallow
    a.pgid = 200;
    let mut b = proc_(102, 100, 1, "b"); // group 300 holds the deepest process
    b.pgid = 300;
    let mut c = proc_(103, 102, 2, "c");
    c.pgid = 300;
    let mut d = proc_(104, 101, 1, "d");
    d.pgid = 200;
    e.step(0, snap(vec![proc_(100, 1, 0, "app"), a, b, c, d]));
    let fx = e.step(0, Input::Command(Command::RunNext));
    let order: Vec<i32> = signals(&fx).into_iter().map(|s| s.0).collect();
    assert_eq!(order, vec![103, 102, 101, 104]);
}

#[test]
fn still_around_after_sigkill_in_d_state() {
    let mut e = native();
    let mut stuck = proc_(101, 100, 1, "nfs-writer");
    stuck.state = RunState::DiskSleep;
    e.step(0, snap(vec![proc_(100, 1, 0, "app"), stuck.clone()]));
    e.step(0, Input::Command(Command::RunNext));
    let fx = e.step(5000, Input::Tick);
    assert_eq!(signals(&fx), vec![(101, libc::SIGKILL)]);
    e.step(
        5000,
        Input::SignalResult {
            key: key(101),
            sig: libc::SIGKILL,
            result: Ok(()),
        },
    );
    let fx = e.step(10_000, Input::Tick);
    assert_eq!(finished(&fx), vec![Outcome::TimedOut]);
    let rec = &e.timeline().phases[0];
    assert!(
        rec.notes
            .iter()
            .any(|n| n
                == "pid 101 (nfs-writer) still around after SIGKILL in D state (uninterruptible)"),
        "{:?}",
        rec.notes
    );
    assert!(
        rec.notes
            .iter()
            .any(|n| n.contains("did not exit on SIGTERM (in D state), killed after 5.0 s"))
    );
    // The audit names it "still around after SIGKILL", with the time since the SIGKILL.
    e.step(10_000, Input::Command(Command::RunPhase(2)));
    e.step(10_500, snap(vec![proc_(100, 1, 0, "app"), stuck]));
    let l = &e.timeline().leftovers;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].kind, LeftoverKind::Unkillable);
    assert!(
        l[0].reason
            .starts_with("still around 5.5 s after SIGKILL: in D state"),
        "{}",
        l[0].reason
    );
}

#[test]
fn continue_policy_never_escalates() {
    let text = "[[phase]]\nname = \"polite\"\naction = \"signal_target\"\ntimeout = \"1s\"\non_timeout = \"continue\"\n";
    let mut e = Engine::new(plan::parse(text, "p.toml").unwrap(), key(100), 0);
    e.step(0, snap(vec![proc_(100, 1, 0, "app")]));
    let fx = e.step(0, Input::Command(Command::RunAll));
    assert_eq!(signals(&fx), vec![(100, libc::SIGTERM)]);
    let fx = e.step(1000, Input::Tick);
    assert!(
        signals(&fx).is_empty(),
        "no SIGKILL under on_timeout = continue"
    );
    assert_eq!(finished(&fx), vec![Outcome::TimedOut]);
    assert!(fx.contains(&Effect::AllDone));
}

#[test]
fn respawned_children_get_the_signal_too() {
    let mut e = native();
    e.step(
        0,
        snap(vec![proc_(100, 1, 0, "app"), proc_(101, 100, 1, "w1")]),
    );
    e.step(0, Input::Command(Command::RunNext));
    e.step(
        5,
        Input::Exited {
            key: key(101),
            status: ExitStatus::Signal(15),
        },
    );
    // The parent re-spawned a worker: the phase is not done, the newcomer gets SIGTERM.
    let fx = e.step(
        6,
        snap(vec![proc_(100, 1, 0, "app"), proc_(102, 100, 1, "w2")]),
    );
    assert_eq!(signals(&fx), vec![(102, libc::SIGTERM)]);
    assert!(finished(&fx).is_empty());
    let fx = e.step(
        9,
        Input::Exited {
            key: key(102),
            status: ExitStatus::Signal(15),
        },
    );
    assert!(finished(&fx).is_empty());
    let fx = e.step(10, snap(vec![proc_(100, 1, 0, "app")]));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
}

#[test]
fn an_exit_first_seen_in_a_snapshot_is_recorded_once() {
    let mut e = native();
    e.step(
        0,
        snap(vec![proc_(100, 1, 0, "app"), proc_(101, 100, 1, "w")]),
    );
    e.step(0, Input::Command(Command::RunNext));
    let mut gone = proc_(101, 100, 1, "w");
    gone.exit = Some(ExitInfo {
        status: ExitStatus::Signal(15),
        at_unix_ms: 1,
    });
    e.step(3, snap(vec![proc_(100, 1, 0, "app"), gone]));
    // The pidfd event arriving later does not duplicate it.
    e.step(
        4,
        Input::Exited {
            key: key(101),
            status: ExitStatus::Signal(15),
        },
    );
    let fx = e.step(5, snap(vec![proc_(100, 1, 0, "app")]));
    assert_eq!(finished(&fx), vec![Outcome::Ok]);
    let exits = &e.timeline().phases[0].exits;
    assert_eq!(exits.len(), 1);
    assert_eq!((exits[0].pid, exits[0].at_ms), (101, 3));
}

#[test]
fn an_unkillable_target_is_listed_with_its_wchan() {
    let text = "[[phase]]\nname = \"t\"\naction = \"signal_target\"\nsignals = [\"SIGKILL\"]\n\
                [[phase]]\nname = \"audit\"\naction = \"audit\"\n";
    let mut e = Engine::new(plan::parse(text, "u.toml").unwrap(), key(100), 0);
    let mut app = proc_(100, 1, 0, "app");
    app.state = RunState::DiskSleep;
    let stuck = || {
        let Input::Snapshot(mut s) = snap(vec![app.clone()]) else {
            unreachable!()
        };
        std::sync::Arc::make_mut(&mut s).threads.push(ThreadInfo {
            tid: 100,
            name: "app".into(),
            state: RunState::DiskSleep,
            wait: WaitPoint {
                wchan: Some("nfs_wait_bit_killable".into()),
                ..WaitPoint::default()
            }
            .into(),
            cpu_ticks: 0,
            cpu_percent: 0.0,
            voluntary_ctxt_switches: None,
            nonvoluntary_ctxt_switches: None,
        });
        Input::Snapshot(s)
    };
    e.step(0, stuck());
    e.step(0, Input::Command(Command::RunNext));
    e.step(
        1,
        Input::SignalResult {
            key: key(100),
            sig: libc::SIGKILL,
            result: Ok(()),
        },
    );
    e.step(5000, Input::Tick);
    e.step(5000, Input::Command(Command::RunNext));
    e.step(5001, stuck());
    let l = &e.timeline().leftovers;
    assert_eq!(l[0].kind, LeftoverKind::Unkillable);
    assert!(
        l[0].reason.ends_with("in D state (uninterruptible sleep, usually I/O or a driver), waiting in nfs_wait_bit_killable"),
        "{}",
        l[0].reason
    );
}

#[test]
fn exits_outside_any_phase_are_bounded_and_the_targets_is_kept() {
    use super::engine::MAX_EXITS_OUTSIDE;
    let mut e = native();
    e.step(0, snap(vec![proc_(100, 1, 0, "app")]));
    let n = MAX_EXITS_OUTSIDE as i32 + 40;
    for pid in 1000..1000 + n {
        e.step(
            1,
            Input::Exited {
                key: key(pid),
                status: ExitStatus::Code(0),
            },
        );
        if pid == 1000 + 10 {
            e.step(
                2,
                Input::Exited {
                    key: key(100),
                    status: ExitStatus::Signal(9),
                },
            );
        }
    }
    let t = e.timeline();
    assert_eq!(t.exits_outside.len(), MAX_EXITS_OUTSIDE);
    assert_eq!(t.exits_outside_dropped, 41);
    assert!(
        t.exits_outside.iter().any(|x| x.pid == 100),
        "the target's exit is kept"
    );
}
