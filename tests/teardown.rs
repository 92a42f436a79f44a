//! Teardown against real process trees: the collector feeds a real Runner, which signals
//! through pidfds. Tests wait on events (never on sleeps) and assert outcomes, not timings.
//! Every tree is spawned in its own process group and killed by the guard on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod teardown_support;

use lifecycle_top::model::RunState;
use lifecycle_top::teardown::timeline::Outcome;
use lifecycle_top::teardown::{Command, PhaseEvent};
use std::path::Path;
use teardown_support::{Harness, Tree, alive};

const SHORT_NATIVE: &str = r#"
name = "short"
[[phase]]
name = "terminate children"
action = "signal_children"
timeout = "400ms"
[[phase]]
name = "signal target"
action = "signal_target"
timeout = "400ms"
[[phase]]
name = "audit"
action = "audit"
"#;

fn touch(p: &Path) {
    std::fs::write(p, b"").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_exit_is_ok_without_escalation() {
    let tree = Tree::spawn("sleep 1000 & exec sleep 1001");
    let mut h = Harness::attach(tree.pid(), SHORT_NATIVE, 2).await;
    let t = h.run_all().await;
    let outcomes: Vec<_> = t.phases.iter().map(|p| p.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![Outcome::Ok, Outcome::Ok, Outcome::Ok],
        "{t:#?}"
    );
    assert_eq!(t.phases[0].before.children, 1);
    assert_eq!(t.phases[0].after.children, 0);
    assert!(t.is_clean(), "{t:#?}");
    assert!(!alive(tree.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_ignoring_child_is_killed_at_the_grace_deadline() {
    let tree = Tree::spawn("(trap '' TERM; exec sleep 1000) & sleep 1000 & wait");
    let mut h = Harness::attach_ignoring(tree.pid(), SHORT_NATIVE, 3, 1).await;
    let t = h.run_all().await;
    let p = &t.phases[0];
    assert_eq!(p.outcome, Outcome::Escalated, "{p:#?}");
    let kills: Vec<_> = p.signals.iter().filter(|s| s.signal == "SIGKILL").collect();
    assert_eq!(
        kills.len(),
        1,
        "only the TERM-ignoring sleep needs SIGKILL: {p:#?}"
    );
    let note = format!("pid {} (sleep) ignored SIGTERM, killed after", kills[0].pid);
    assert!(
        p.notes.iter().any(|n| n.starts_with(&note)),
        "{:?}",
        p.notes
    );
    assert!(!alive(kills[0].pid));
    assert!(t.needed_sigkill() && !t.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_grandchild_is_still_killed() {
    // The middle shell leaves once told to: its sleep is reparented out of the tree.
    let tree = Tree::spawn(
        "sh -c 'sleep 1000 & while [ ! -e go ]; do sleep 0.02; done' & sleep 1000 & wait",
    );
    let mut h = Harness::attach(tree.pid(), SHORT_NATIVE, 4).await;
    touch(&tree.go());
    // Wait until the collector lists the grandchild as an orphan (reparented out of the tree).
    let snap = h
        .until_snapshot(|s| s.processes.iter().any(|p| p.orphan && p.exit.is_none()))
        .await;
    let orphan = snap
        .processes
        .iter()
        .find(|p| p.orphan)
        .expect("orphan")
        .key
        .pid;
    let t = h.run_all().await;
    let p = &t.phases[0];
    assert!(p.outcome.is_clean(), "{p:#?}");
    assert_eq!(p.after.children, 0);
    assert!(
        p.signals
            .iter()
            .any(|s| s.signal == "SIGTERM" && s.pid == orphan && s.error.is_none()),
        "{p:#?}"
    );
    assert!(!alive(orphan));
    assert!(t.leftovers.is_empty(), "{:#?}", t.leftovers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_dying_in_the_middle_of_phases() {
    let plan = r#"
[[phase]]
name = "children"
action = "signal_children"
timeout = "1s"
[[phase]]
name = "wait"
action = "wait_exit"
timeout = "60s"
[[phase]]
name = "target"
action = "signal_target"
[[phase]]
name = "audit"
action = "audit"
"#;
    // The target leaves on its own when told; its TERM-ignoring child stays until SIGKILL.
    let tree =
        Tree::spawn("(trap '' TERM; exec sleep 1000) & while [ ! -e go ]; do sleep 0.02; done");
    let mut h = Harness::attach_ignoring(tree.pid(), plan, 2, 1).await;
    h.runner.handle.command(Command::RunAll);
    h.until(|e| matches!(e, PhaseEvent::Started { index: 0, .. }))
        .await;
    touch(&tree.go());
    let t = match h.until(|e| matches!(e, PhaseEvent::AllDone(_))).await {
        PhaseEvent::AllDone(t) => *t,
        _ => unreachable!(),
    };
    let target = h.target.pid;
    let exits_in_phases: Vec<i32> = t
        .phases
        .iter()
        .flat_map(|p| p.exits.iter().map(|x| x.pid))
        .collect();
    assert!(exits_in_phases.contains(&target), "{t:#?}");
    assert_eq!(
        t.phases[0].outcome,
        Outcome::Escalated,
        "the orphaned child still gets SIGKILL"
    );
    assert_eq!(t.phases[1].outcome, Outcome::Ok);
    assert!(
        matches!(&t.phases[2].outcome, Outcome::Skipped { reason } if reason.contains("exited"))
    );
    assert_eq!(t.phases[3].outcome, Outcome::Ok, "{:#?}", t.leftovers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_the_running_phase() {
    let plan = "[[phase]]\nname = \"children\"\naction = \"signal_children\"\ntimeout = \"60s\"\n[[phase]]\nname = \"target\"\naction = \"signal_target\"\n";
    let tree = Tree::spawn("(trap '' TERM; exec sleep 1000) & wait");
    let mut h = Harness::attach_ignoring(tree.pid(), plan, 2, 1).await;
    h.runner.handle.command(Command::RunAll);
    let child = match h.until(|e| matches!(e, PhaseEvent::Signal { .. })).await {
        PhaseEvent::Signal { key, .. } => key,
        _ => unreachable!(),
    };
    h.runner.handle.command(Command::Abort);
    let rec = match h.until(|e| matches!(e, PhaseEvent::Finished(_))).await {
        PhaseEvent::Finished(r) => r,
        _ => unreachable!(),
    };
    assert_eq!(rec.outcome, Outcome::Aborted);
    assert!(alive(child.pid), "abort never escalates");
    assert!(
        alive(tree.pid()),
        "abort stops run-all: the target phase did not run"
    );
    assert!(
        !h.seen
            .iter()
            .any(|e| matches!(e, PhaseEvent::Started { index: 1, .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_child_gets_sigcont_and_runs_its_term_handler() {
    // A subshell that handles TERM (exit 0), stopped with SIGSTOP once its trap is set: without
    // the SIGCONT after SIGTERM it could never run the handler and would need SIGKILL.
    let tree = Tree::spawn(
        "(trap 'exit 0' TERM; touch ready; sleep 1000 & wait) & p=$!; \
         while [ ! -e ready ]; do sleep 0.01; done; kill -STOP $p; exec sleep 1001",
    );
    let mut h = Harness::attach(tree.pid(), SHORT_NATIVE.replace("400ms", "30s").as_str(), 3).await;
    let snap = h
        .until_snapshot(|s| s.processes.iter().any(|p| p.state == RunState::Stopped))
        .await;
    let stopped = snap
        .processes
        .iter()
        .find(|p| p.state == RunState::Stopped)
        .expect("stopped")
        .key
        .pid;
    let t = h.run_all().await;
    let p = &t.phases[0];
    assert_eq!(
        p.outcome,
        Outcome::Ok,
        "handled TERM after SIGCONT, no escalation: {p:#?}"
    );
    assert!(p.notes.iter().any(|n| n.starts_with(&format!(
        "pid {stopped} (sh) is stopped: SIGCONT after SIGTERM"
    ))));
    assert!(
        p.signals
            .iter()
            .any(|s| s.pid == stopped && s.signal == "SIGCONT")
    );
    assert!(!t.needed_sigkill());
}
