//! Launch mode: lifecycle-top is a child subreaper, so an orphan of the launched tree that
//! no refresh saw under its parent is reparented to us; the collector adopts it (same process
//! group as the tree), marks it orphan, and reaps it for its exit status. A separate test
//! binary, because being a subreaper changes where every orphan of this process goes.
#![allow(clippy::unwrap_used)]

mod collector_util;

use collector_util::{Target, wait_for};
use lifecycle_top::collect::pidfd::PidFd;
use lifecycle_top::collect::{Collector, CollectorOptions, snapshot_text};
use lifecycle_top::model::ExitStatus;

#[test]
fn orphan_reparented_to_us_is_adopted_and_reaped() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    // The subshell starts a sleep and exits at once: the sleep is orphaned before we attach.
    let t = Target::sh("(sleep 1000 &); exec sleep 1001");
    let me = std::process::id() as i32;
    let is_adopted = |p: &lifecycle_top::model::ProcInfo| {
        p.key != t.key() && p.name == "sleep" && p.ppid == me && p.exit.is_none()
    };
    // Wait for the reparenting itself (no collector involved yet).
    let deadline = std::time::Instant::now() + collector_util::DEADLINE;
    let mut plain = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    loop {
        let orphaned = std::fs::read_dir("/proc").unwrap().flatten().any(|d| {
            let stat = std::fs::read(d.path().join("stat")).unwrap_or_default();
            lifecycle_top::collect::procfs::parse_stat(&stat)
                .is_some_and(|s| s.ppid == me && s.pgrp == t.pid() && s.pid != t.pid())
        });
        if orphaned {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sleep was never reparented to us"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Without launch mode it is not ours to track.
    let snap = plain.refresh();
    assert!(
        !snap.processes.iter().any(is_adopted),
        "{}",
        snapshot_text(&snap)
    );

    let opts = CollectorOptions {
        launch_mode: true,
        ..CollectorOptions::default()
    };
    let mut c = Collector::attach(t.pid(), opts).unwrap();
    let snap = wait_for(&mut c, "adopted orphan", |s| {
        s.processes.iter().any(is_adopted)
    });
    let orphan = snap.processes.iter().find(|p| is_adopted(p)).unwrap();
    assert!(orphan.orphan);
    let key = orphan.key;
    PidFd::open(key).unwrap().send_signal(15).unwrap();
    let snap = wait_for(&mut c, "adopted orphan exit", |s| {
        s.processes.iter().any(|p| p.key == key && p.exit.is_some())
    });
    let exit = snap
        .processes
        .iter()
        .find(|p| p.key == key)
        .unwrap()
        .exit
        .unwrap();
    assert_eq!(
        exit.status,
        ExitStatus::Signal(15),
        "we reaped it, so we know how it ended"
    );
}
