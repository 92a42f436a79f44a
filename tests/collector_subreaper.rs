//! Launch mode: lifecycle-top is a child subreaper, so an orphan of the launched tree that
//! no refresh saw under its parent is reparented to us; the collector adopts it (whatever its
//! process group or session: a `setsid` daemon too), marks it orphan, and reaps it for its exit
//! status, while lifecycle-top's registered helpers are left alone. A separate test binary,
//! because being a subreaper changes where every orphan of this process goes; its tests run
//! one at a time, since a launch-mode collector adopts every child of this process.
#![allow(clippy::unwrap_used)]

mod collector_util;

use collector_util::{Target, need, wait_for};
use lifecycle_top::collect::live::{self, CollectEvent};
use lifecycle_top::collect::pidfd::PidFd;
use lifecycle_top::collect::procfs::{self, Stat};
use lifecycle_top::collect::{Collector, CollectorOptions, helpers, snapshot_text};
use lifecycle_top::model::{ExitStatus, ProcInfo, ProcKey, Snapshot};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time, this process a subreaper.
fn serial() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    g
}

fn me() -> i32 {
    std::process::id() as i32
}

fn launch_mode() -> CollectorOptions {
    CollectorOptions {
        launch_mode: true,
        ..CollectorOptions::default()
    }
}

/// Processes whose parent is this test process, as /proc shows them now.
fn own_children() -> Vec<Stat> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|d| procfs::parse_stat(&std::fs::read(d.path().join("stat")).ok()?))
        .filter(|s| s.ppid == me())
        .collect()
}

/// Wait (no collector involved) until a child of ours matches `pred`.
fn wait_own_child(what: &str, pred: impl Fn(&Stat) -> bool) -> ProcKey {
    let deadline = Instant::now() + collector_util::DEADLINE;
    loop {
        if let Some(s) = own_children().into_iter().find(|s| pred(s)) {
            return ProcKey {
                pid: s.pid,
                start_time: s.start_time,
            };
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs (through pidfds) and reaps the listed processes on drop: orphans reparented to
/// us are outside the target's process group, so `Target`'s drop does not reach them.
#[derive(Default)]
struct Cleanup(Vec<ProcKey>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for key in &self.0 {
            let Ok(fd) = PidFd::open(*key) else { continue }; // gone (reaped) already
            let _ = lifecycle_top::teardown::exec::signal(fd.key(), 9);
            let end = Instant::now() + Duration::from_secs(5);
            while !fd.has_exited() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = fd.try_reap();
        }
    }
}

/// Is `key` gone from /proc, i.e. reaped (a zombie would still be listed)?
fn reaped(key: ProcKey) -> bool {
    procfs::read_start_time(key.pid).map_or(true, |t| t != key.start_time)
}

fn find(s: &Snapshot, key: ProcKey) -> Option<&ProcInfo> {
    s.processes.iter().find(|p| p.key == key)
}

#[test]
fn orphan_reparented_to_us_is_adopted_and_reaped() {
    let _serial = serial();
    // The subshell starts a sleep and exits at once: the sleep is orphaned before we attach.
    let t = Target::sh("(sleep 1000 &); exec sleep 1001");
    let mut cleanup = Cleanup::default();
    let mut plain = Collector::attach(t.pid(), CollectorOptions::default()).unwrap();
    // Wait for the reparenting itself (no collector involved yet).
    let key = wait_own_child("the sleep reparented to us", |s| {
        s.pgrp == t.pid() && s.pid != t.pid()
    });
    cleanup.0.push(key);
    // Without launch mode it is not our child to reap; since every fork is watched (issue
    // 11), it may still be listed as a member of the tree (same process group, started after
    // the target): if so, only as an orphan, never as exited.
    let snap = plain.refresh();
    if let Some(p) = find(&snap, key) {
        assert!(p.orphan && p.exit.is_none(), "{}", snapshot_text(&snap));
    }

    let mut c = Collector::attach(t.pid(), launch_mode()).unwrap();
    let snap = wait_for(&mut c, "adopted orphan", |s| find(s, key).is_some());
    let orphan = find(&snap, key).unwrap();
    assert!(orphan.orphan && orphan.exit.is_none() && orphan.ppid == me());
    lifecycle_top::teardown::exec::signal(key, 15).unwrap();
    let snap = wait_for(&mut c, "adopted orphan exit", |s| {
        find(s, key).is_some_and(|p| p.exit.is_some())
    });
    assert_eq!(
        find(&snap, key).unwrap().exit.unwrap().status,
        ExitStatus::Signal(15),
        "we reaped it, so we know how it ended"
    );
    assert!(reaped(key), "the adopted orphan was left a zombie");
}

#[test]
fn setsid_daemon_orphaned_before_first_refresh_is_adopted_and_reaped() {
    let _serial = serial();
    need("setsid");
    // The subshell starts a daemon in a session (and process group) of its own and exits at
    // once: the daemon is reparented to us before the collector exists.
    let t = Target::sh("(setsid sh -c 'exec sleep 1000' &); exec sleep 1001");
    let mut cleanup = Cleanup::default();
    let key = wait_own_child("the setsid daemon reparented to us", |s| {
        s.pid != t.pid() && s.session == s.pid && s.comm == "sleep"
    });
    cleanup.0.push(key);

    let mut c = Collector::attach(t.pid(), launch_mode()).unwrap();
    let snap = c.refresh();
    let daemon = find(&snap, key).unwrap_or_else(|| {
        panic!(
            "the daemon is missing from the first refresh:\n{}",
            snapshot_text(&snap)
        )
    });
    assert!(daemon.orphan, "{}", snapshot_text(&snap));
    assert_eq!((daemon.ppid, daemon.sid), (me(), key.pid));
    assert!(daemon.exit.is_none());

    lifecycle_top::teardown::exec::signal(key, 9).unwrap();
    let snap = wait_for(&mut c, "the daemon's exit", |s| {
        find(s, key).is_some_and(|p| p.exit.is_some())
    });
    assert_eq!(
        find(&snap, key).unwrap().exit.unwrap().status,
        ExitStatus::Signal(9)
    );
    assert!(reaped(key), "the daemon was left a zombie of ours");
    // The target itself is untouched.
    assert!(find(&snap, t.key()).is_some_and(|p| p.exit.is_none()));
}

#[test]
fn registered_helper_is_not_adopted_and_keeps_its_exit_status() {
    let _serial = serial();
    need("sleep");
    let t = Target::sh("exec sleep 1001");
    let mut cleanup = Cleanup::default();
    // Both children of ours, both in a group of their own (as a tree's daemon would be):
    // only the registry tells the helper apart.
    let mut helper = helpers::spawn(Command::new("sleep").arg("1002").process_group(0)).unwrap();
    let helper_key = ProcKey {
        pid: helper.id() as i32,
        start_time: procfs::read_start_time(helper.id() as i32).unwrap(),
    };
    cleanup.0.push(helper_key);
    let mut stranger = Command::new("sleep")
        .arg("1003")
        .process_group(0)
        .spawn()
        .unwrap();
    let stranger_key = ProcKey {
        pid: stranger.id() as i32,
        start_time: procfs::read_start_time(stranger.id() as i32).unwrap(),
    };
    cleanup.0.push(stranger_key);

    let mut c = Collector::attach(t.pid(), launch_mode()).unwrap();
    let snap = wait_for(&mut c, "the unregistered child adopted", |s| {
        find(s, stranger_key).is_some()
    });
    assert!(
        find(&snap, helper_key).is_none(),
        "{}",
        snapshot_text(&snap)
    );

    // The helper's exit stays its waiter's: refreshes after its death do not reap it.
    lifecycle_top::teardown::exec::signal(helper_key, 9).unwrap();
    let fd = PidFd::open(helper_key).unwrap();
    let end = Instant::now() + collector_util::DEADLINE;
    while !fd.has_exited() {
        assert!(Instant::now() < end, "the helper survived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..3 {
        let snap = c.refresh();
        assert!(
            find(&snap, helper_key).is_none(),
            "{}",
            snapshot_text(&snap)
        );
    }
    let status = helper.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    helpers::unregister(helper_key.pid);
    assert!(!helpers::is_helper(helper_key.pid));

    lifecycle_top::teardown::exec::signal(stranger_key, 9).unwrap();
    let snap = wait_for(&mut c, "the unregistered child's exit", |s| {
        find(s, stranger_key).is_some_and(|p| p.exit.is_some())
    });
    assert_eq!(
        find(&snap, stranger_key).unwrap().exit.unwrap().status,
        ExitStatus::Signal(9)
    );
    assert!(reaped(stranger_key));
    assert!(stranger.wait().is_err(), "the collector reaped it (ECHILD)");
}

#[test]
fn live_watcher_reports_and_reaps_an_adopted_daemon() {
    let _serial = serial();
    need("setsid");
    let t = Target::sh("(setsid sh -c 'exec sleep 1000' &); exec sleep 1001");
    let mut cleanup = Cleanup::default();
    let key = wait_own_child("the setsid daemon reparented to us", |s| {
        s.pid != t.pid() && s.session == s.pid && s.comm == "sleep"
    });
    cleanup.0.push(key);
    let c = Collector::attach(t.pid(), launch_mode()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        // Refreshes once at start, then hourly: only the pidfd watcher can see the exit.
        let mut lc = live::spawn(c, Duration::from_secs(3600));
        let wait = async {
            let mut killed = false;
            while let Some(ev) = lc.events.recv().await {
                match ev {
                    CollectEvent::Snapshot(s) if !killed => {
                        assert!(
                            find(&s, key).is_some_and(|p| p.orphan),
                            "{}",
                            snapshot_text(&s)
                        );
                        lifecycle_top::teardown::exec::signal(key, 9).unwrap();
                        killed = true;
                    }
                    CollectEvent::Exited { key: k, status, .. } if k == key => return status,
                    _ => {}
                }
            }
            panic!("event channel closed before the daemon's exit");
        };
        tokio::time::timeout(collector_util::DEADLINE, wait)
            .await
            .expect("timed out waiting for the daemon's exit")
    });
    assert_eq!(status, ExitStatus::Signal(9));
    assert!(reaped(key), "the daemon was left a zombie of ours");
}
