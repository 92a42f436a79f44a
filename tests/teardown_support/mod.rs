//! Shared by the teardown test crates: a process tree in its own group (killed on drop) and a
//! harness wiring a real collector to a real Runner, waiting on events, never on sleeps.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::collect::{self, Collector, CollectorOptions, live::CollectEvent};
use lifecycle_top::model::ProcKey;
use lifecycle_top::teardown::timeline::Timeline;
use lifecycle_top::teardown::{AgentPort, Command, PhaseEvent, plan, runner};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub struct Tree {
    child: Child,
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn spawn(script: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Tree { child, dir }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn go(&self) -> PathBuf {
        self.dir.path().join("go")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Test cleanup only (the product signals through pidfds): the whole group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::SIGKILL,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn start_time(pid: i32) -> u64 {
    collect::procfs::read_start_time(pid).unwrap()
}

/// Collector + live + runner wired together, like headless does.
pub struct Harness {
    pub live: collect::live::LiveCollector,
    pub runner: runner::Runner,
    pub target: ProcKey,
    pub seen: Vec<PhaseEvent>,
}

impl Harness {
    /// Attaches and waits until the snapshot shows `min_procs` processes in the tree.
    pub async fn attach(pid: i32, plan_text: &str, min_procs: usize) -> Harness {
        Self::attach_with(pid, plan_text, min_procs, None).await
    }

    /// Like [`Harness::attach`], and also waits until `ignoring` processes of the tree
    /// ignore SIGTERM: a `(trap '' TERM; ...)` subshell is listed before it ran its `trap`,
    /// and a SIGTERM in between would kill it and change what the test is about.
    pub async fn attach_ignoring(
        pid: i32,
        plan_text: &str,
        min_procs: usize,
        ignoring: usize,
    ) -> Harness {
        let mut h = Self::attach_with(pid, plan_text, min_procs, None).await;
        h.until_snapshot(|s| {
            s.processes
                .iter()
                .filter(|p| p.exit.is_none() && p.signals.ignores(15))
                .count()
                >= ignoring
        })
        .await;
        h
    }

    pub async fn attach_with(
        pid: i32,
        plan_text: &str,
        min_procs: usize,
        agent: Option<Arc<dyn AgentPort>>,
    ) -> Harness {
        let plan = plan::parse(plan_text, "test.toml").expect("valid test plan");
        let collector = Collector::attach(pid, CollectorOptions::default()).expect("attach");
        let target = collector.target();
        let mut live = collect::live::spawn(collector, Duration::from_millis(50));
        let runner = runner::spawn(plan, target, 0, agent);
        loop {
            match live.events.recv().await.expect("collector alive") {
                CollectEvent::Snapshot(s) => {
                    let n = s.processes.iter().filter(|p| p.exit.is_none()).count();
                    runner.handle.snapshot(s.into());
                    if n >= min_procs {
                        break;
                    }
                }
                CollectEvent::Exited { key, status, .. } => runner.handle.exited(key, status),
                CollectEvent::Error(e) => panic!("collector: {e}"),
            }
        }
        Harness {
            live,
            runner,
            target,
            seen: Vec::new(),
        }
    }

    /// Pumps events until `f` accepts one; returns it.
    pub async fn until(&mut self, mut f: impl FnMut(&PhaseEvent) -> bool) -> PhaseEvent {
        let pump = async {
            loop {
                tokio::select! {
                    ev = self.live.events.recv() => match ev.expect("collector alive") {
                        CollectEvent::Snapshot(s) => self.runner.handle.snapshot(s.into()),
                        CollectEvent::Exited { key, status, .. } => self.runner.handle.exited(key, status),
                        CollectEvent::Error(_) => {}
                    },
                    pe = self.runner.events.recv() => {
                        let pe = pe.expect("runner alive");
                        if matches!(pe, PhaseEvent::RefreshNow) {
                            self.live.refresh_now();
                        }
                        self.seen.push(pe.clone());
                        if f(&pe) {
                            return pe;
                        }
                    }
                }
            }
        };
        // A generous bound so a bug fails the test instead of hanging CI; not a timing assert.
        tokio::time::timeout(Duration::from_secs(60), pump)
            .await
            .expect("event within 60 s")
    }

    /// Pumps until a snapshot satisfies `f` (the snapshot is forwarded to the runner too).
    pub async fn until_snapshot(
        &mut self,
        f: impl Fn(&lifecycle_top::model::Snapshot) -> bool,
    ) -> lifecycle_top::model::Snapshot {
        let pump = async {
            loop {
                match self.live.events.recv().await.expect("collector alive") {
                    CollectEvent::Snapshot(s) => {
                        let done = f(&s).then(|| (*s).clone());
                        self.runner.handle.snapshot(s.into());
                        if let Some(s) = done {
                            return s;
                        }
                    }
                    CollectEvent::Exited { key, status, .. } => {
                        self.runner.handle.exited(key, status)
                    }
                    CollectEvent::Error(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), pump)
            .await
            .expect("snapshot within 60 s")
    }

    pub async fn run_all(&mut self) -> Timeline {
        self.runner.handle.command(Command::RunAll);
        match self.until(|e| matches!(e, PhaseEvent::AllDone(_))).await {
            PhaseEvent::AllDone(t) => *t,
            _ => unreachable!(),
        }
    }
}
