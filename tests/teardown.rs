//! Teardown against real process trees: the collector feeds a real Runner, which signals
//! through pidfds. Tests wait on events (never on sleeps) and assert outcomes, not timings.
//! Every tree is spawned in its own process group and killed by the guard on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::collect::{self, Collector, CollectorOptions, live::CollectEvent};
use lifecycle_top::model::AgentFacts;
use lifecycle_top::model::ProcKey;
use lifecycle_top::teardown::timeline::{Outcome, Timeline};
use lifecycle_top::teardown::{AgentPort, Command, PhaseEvent, exec, plan, runner};
use serde_json::{Value, json};
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A shell tree in its own process group; the whole group is SIGKILLed and reaped on drop.
struct Tree {
    child: Child,
    dir: tempfile::TempDir,
}

impl Tree {
    fn spawn(script: &str) -> Tree {
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
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn go(&self) -> PathBuf {
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

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn start_time(pid: i32) -> u64 {
    collect::procfs::read_start_time(pid).unwrap()
}

/// Collector + live + runner wired together, like headless does.
struct Harness {
    live: collect::live::LiveCollector,
    runner: runner::Runner,
    target: ProcKey,
    seen: Vec<PhaseEvent>,
}

impl Harness {
    /// Attaches and waits until the snapshot shows `min_procs` processes in the tree.
    async fn attach(pid: i32, plan_text: &str, min_procs: usize) -> Harness {
        Self::attach_with(pid, plan_text, min_procs, None).await
    }

    async fn attach_with(
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
                    runner.handle.snapshot(s);
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
    async fn until(&mut self, mut f: impl FnMut(&PhaseEvent) -> bool) -> PhaseEvent {
        let pump = async {
            loop {
                tokio::select! {
                    ev = self.live.events.recv() => match ev.expect("collector alive") {
                        CollectEvent::Snapshot(s) => self.runner.handle.snapshot(s),
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
    async fn until_snapshot(
        &mut self,
        f: impl Fn(&lifecycle_top::model::Snapshot) -> bool,
    ) -> lifecycle_top::model::Snapshot {
        let pump = async {
            loop {
                match self.live.events.recv().await.expect("collector alive") {
                    CollectEvent::Snapshot(s) => {
                        let done = f(&s).then(|| (*s).clone());
                        self.runner.handle.snapshot(s);
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

    async fn run_all(&mut self) -> Timeline {
        self.runner.handle.command(Command::RunAll);
        match self.until(|e| matches!(e, PhaseEvent::AllDone(_))).await {
            PhaseEvent::AllDone(t) => *t,
            _ => unreachable!(),
        }
    }
}

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
    let mut h = Harness::attach(tree.pid(), SHORT_NATIVE, 3).await;
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
    let mut h = Harness::attach(tree.pid(), plan, 2).await;
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
    let mut h = Harness::attach(tree.pid(), plan, 2).await;
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
    assert_eq!(
        rec.outcome,
        Outcome::Failed {
            reason: "aborted by the user".into()
        }
    );
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

#[test]
fn pid_reuse_guard_refuses_a_key_with_the_wrong_start_time() {
    let tree = Tree::spawn("exec sleep 1000");
    let pid = tree.pid();
    let real = start_time(pid);
    let stale = ProcKey {
        pid,
        start_time: real.wrapping_sub(1),
    };
    let err = exec::signal(stale, libc::SIGKILL).expect_err("must refuse a reused pid");
    assert!(matches!(err, exec::SignalError::Reused(_)), "{err}");
    assert!(alive(pid), "the live process holding the pid is untouched");
    exec::signal(
        ProcKey {
            pid,
            start_time: real,
        },
        0,
    )
    .expect("the right key reaches it");
}

#[test]
fn plan_file_errors_name_file_phase_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[phase]]\nname = \"flush\"\naction = \"signal_target\"\non_timeout = \"retry\"\n",
    )
    .unwrap();
    let err = plan::load(path.to_str().unwrap()).expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("flush") && msg.contains("on_timeout"),
        "{msg}"
    );
    assert!(
        msg.contains("escalate, snapshot, continue"),
        "the message lists the choices: {msg}"
    );
    let missing = plan::load("/nonexistent/plan.toml").expect_err("missing file");
    assert!(
        missing.to_string().contains("python-asyncio"),
        "remedy names built-ins: {missing}"
    );
}

/// A scripted agent: answers every request but `run_phase`, which it does not know.
#[derive(Default)]
struct ScriptedAgent {
    calls: Mutex<Vec<(String, Value)>>,
}

impl AgentPort for ScriptedAgent {
    fn request(
        &self,
        method: &str,
        params: Value,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        self.calls
            .lock()
            .unwrap()
            .push((method.to_string(), params));
        let known = method != "run_phase";
        Box::pin(async move {
            if known {
                Ok(json!({ "results": [] }))
            } else {
                Err("agent refused `run_phase`: not_found: no phase 'flush'".to_string())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phases_go_through_the_agent_port() {
    let plan = r#"
[[phase]]
name = "cancel"
action = "agent"
request = "cancel_tasks"
[[phase]]
name = "flush"
action = "agent"
request = "run_phase"
app_phase = "flush"
[[phase]]
name = "target"
action = "signal_target"
"#;
    let tree = Tree::spawn("exec sleep 1000");
    let agent = Arc::new(ScriptedAgent::default());
    let mut h = Harness::attach_with(tree.pid(), plan, 1, Some(agent.clone())).await;
    h.runner.handle.agent_facts(Some(AgentFacts {
        threads: vec![],
        pending_tasks: 0,
        loops: 1,
    }));
    let t = h.run_all().await;
    assert_eq!(t.phases[0].outcome, Outcome::Ok);
    assert!(
        matches!(&t.phases[1].outcome, Outcome::Failed { reason } if reason.contains("no phase 'flush'"))
    );
    assert_eq!(
        t.phases[2].outcome,
        Outcome::Ok,
        "an agent failure does not stop the plan"
    );
    let calls = agent.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "cancel_tasks");
    assert_eq!(
        (calls[1].0.as_str(), &calls[1].1["name"]),
        ("run_phase", &json!("flush"))
    );
}
