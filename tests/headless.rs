//! Headless mode end to end, in-process through `headless::run` against real trees: exit
//! codes, the JSON report decoded back into its types, the trace file parsed back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::cli::{RunConfig, Target};
use lifecycle_top::headless;
use lifecycle_top::report::Report;
use lifecycle_top::report::trace::TraceFile;
use lifecycle_top::teardown::timeline::Outcome;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

struct Tree(Child);

impl Tree {
    fn spawn(script: &str) -> Tree {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        // Let sh fork its children before the collector's first look (not a timing assert).
        std::thread::sleep(Duration::from_millis(100));
        Tree(child)
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Test cleanup only: the whole process group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::SIGKILL,
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PLAN: &str = r#"
name = "ci"
[[phase]]
name = "terminate children"
action = "signal_children"
timeout = "300ms"
[[phase]]
name = "signal target"
action = "signal_target"
timeout = "300ms"
[[phase]]
name = "left-over audit"
action = "audit"
"#;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.toml"), PLAN).unwrap();
        Files { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self, target: Target) -> RunConfig {
        RunConfig {
            target,
            interval: Duration::from_millis(50),
            headless: true,
            plan: Some(self.path("plan.toml").display().to_string()),
            report: Some(self.path("report.json")),
            trace: Some(self.path("trace.json")),
            record: None,
            log: None,
            inject_agent: false,
        }
    }
}

fn report(p: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(p).expect("report written"))
        .expect("typed decode")
}

fn trace(p: &Path) -> TraceFile {
    serde_json::from_str(&std::fs::read_to_string(p).expect("trace written")).expect("trace parses")
}

#[test]
fn clean_tree_exits_0_with_report_and_trace() {
    let tree = Tree::spawn("sleep 1000 & exec sleep 1001");
    let f = Files::new();
    let code = headless::run(&f.config(Target::Pid(tree.pid())));
    let r = report(&f.path("report.json"));
    assert_eq!(code, ExitCode::from(0), "{:#?}", r.verdict);
    assert!(r.verdict.clean && r.verdict.reasons.is_empty());
    assert_eq!(r.target.pid, tree.pid());
    let outcomes: Vec<_> = r
        .timeline
        .phases
        .iter()
        .map(|p| p.outcome.clone())
        .collect();
    assert_eq!(outcomes, vec![Outcome::Ok; 3]);

    let t = trace(&f.path("trace.json"));
    let tracks: Vec<_> = t
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .collect();
    assert_eq!(tracks.len(), 4, "one track per phase + outside");
    let phases: Vec<_> = t.trace_events.iter().filter(|e| e.ph == "X").collect();
    assert_eq!(phases.len(), 3);
    assert!(phases.iter().all(|p| p.tid >= 1 && p.dur.is_some()));
    assert!(
        t.trace_events
            .iter()
            .any(|e| e.ph == "i" && e.cat == "signal" && e.name.starts_with("SIGTERM"))
    );
    assert!(
        t.trace_events
            .iter()
            .any(|e| e.ph == "i" && e.cat == "exit")
    );
}

#[test]
fn term_ignoring_child_exits_1_and_says_why() {
    let tree = Tree::spawn("(trap '' TERM; exec sleep 1000) & exec sleep 1001");
    let f = Files::new();
    let code = headless::run(&f.config(Target::Pid(tree.pid())));
    assert_eq!(code, ExitCode::from(1));
    let r = report(&f.path("report.json"));
    assert!(!r.verdict.clean);
    assert_eq!(r.verdict.exit_code, 1);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|s| s.contains("needed SIGKILL")),
        "{:#?}",
        r.verdict
    );
    assert_eq!(r.timeline.phases[0].outcome, Outcome::Escalated);
    let t = trace(&f.path("trace.json"));
    assert!(
        t.trace_events
            .iter()
            .any(|e| e.ph == "i" && e.name.starts_with("SIGKILL"))
    );
}

#[test]
fn attach_error_exits_2() {
    let f = Files::new();
    let code = headless::run(&f.config(Target::Pid(2_000_000_000)));
    assert_eq!(code, ExitCode::from(2));
    assert!(!f.path("report.json").exists());
}

#[test]
fn bad_plan_exits_2_before_signalling_anything() {
    let tree = Tree::spawn("exec sleep 1000");
    let f = Files::new();
    std::fs::write(
        f.path("plan.toml"),
        "[[phase]]\nname = \"x\"\naction = \"explode\"\n",
    )
    .unwrap();
    let code = headless::run(&f.config(Target::Pid(tree.pid())));
    assert_eq!(code, ExitCode::from(2));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", tree.pid())).unwrap();
    assert!(
        !stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
        "target untouched"
    );
}

/// Launch mode runs in the real binary, not in-process: as child subreaper, a launch-mode
/// collector adopts every child of its process, so in the test process it would adopt (and
/// tear down) the trees of the tests running beside it. `plan` is a built-in name or, when
/// `None`, the test plan; `args` come first (`demo`, `--no-agent`, `-- CMD` last).
fn headless_binary(f: &Files, plan: Option<&str>, args: &[&str]) -> Option<i32> {
    let plan = plan.map_or_else(|| f.path("plan.toml").display().to_string(), String::from);
    let (before, after) = match args.iter().position(|a| *a == "--") {
        Some(i) => args.split_at(i),
        None => (args, &[][..]),
    };
    std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(before)
        .args(["--headless", "--interval", "50", "--plan", &plan])
        .arg("--report")
        .arg(f.path("report.json"))
        .arg("--trace")
        .arg(f.path("trace.json"))
        .args(after)
        .stdin(Stdio::null())
        .status()
        .expect("run lifecycle-top --headless")
        .code()
}

#[test]
fn launched_command_is_torn_down() {
    let f = Files::new();
    let code = headless_binary(
        &f,
        None,
        &[
            "--no-agent",
            "--",
            "sh",
            "-c",
            "sleep 1000 & exec sleep 1001",
        ],
    );
    let r = report(&f.path("report.json"));
    assert_eq!(code, Some(0), "{:#?}", r.verdict);
    assert!(
        r.timeline.phases[1]
            .exits
            .iter()
            .any(|x| x.pid == r.target.pid)
    );
}

/// The bundled demo (Python, agent injected) through the whole built-in python-asyncio plan.
#[test]
fn demo_through_the_python_asyncio_plan() {
    let f = Files::new();
    let code = headless_binary(&f, Some("python-asyncio"), &["demo"]);
    let r = report(&f.path("report.json"));
    let ph = |name: &str| {
        r.timeline
            .phases
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("phase {name} ran"))
    };
    assert_eq!(
        code,
        Some(1),
        "the demo does not shut down clean: {:#?}",
        r.verdict
    );
    assert_eq!(r.timeline.phases.len(), 8);
    // Agent phases ran against the injected agent and are judged by what it answered:
    // "stubborn-consumer" swallows its cancellation (the agent says so after 0.5 s), and the
    // executor's worker blocks in `blocking_io` past the agent's budget.
    let cancel = ph("cancel tasks");
    assert_eq!(
        cancel.outcome,
        Outcome::Failed {
            reason: "1 swallowed the cancellation: \"stubborn-consumer\"".into()
        },
        "{cancel:#?}"
    );
    let exec = ph("shut down executors");
    assert_eq!(exec.outcome, Outcome::TimedOut, "{exec:#?}");
    assert!(
        exec.notes
            .iter()
            .any(|n| n.contains("did not finish shutting down: 1 worker still running (asyncio_0)")),
        "{:?}",
        exec.notes
    );
    for name in ["stop loop", "close loop"] {
        assert_eq!(ph(name).outcome, Outcome::Ok, "{:#?}", ph(name));
    }
    for why in [
        "\"cancel tasks\" failed: 1 swallowed the cancellation",
        "\"shut down executors\" timed out",
    ] {
        assert!(
            r.verdict.reasons.iter().any(|x| x.starts_with(why)),
            "{why}: {:#?}",
            r.verdict
        );
    }
    // The stubborn worker ignores SIGTERM: killed at the grace deadline, and the note says why.
    let kids = ph("terminate children");
    assert_eq!(kids.outcome, Outcome::Escalated);
    assert!(
        kids.notes
            .iter()
            .any(|n| n.contains("ignored SIGTERM, killed after")),
        "{:?}",
        kids.notes
    );
    // The non-daemon "asyncio_1" thread is what keeps the interpreter alive.
    let audit = ph("audit threads");
    assert!(
        matches!(audit.outcome, Outcome::Failed { .. }),
        "{audit:#?}"
    );
    assert!(
        audit
            .notes
            .iter()
            .any(|n| n.contains("asyncio_1") && n.contains("non-daemon"))
    );
    assert!(
        r.stacks
            .iter()
            .flat_map(|s| &s.threads)
            .any(|t| t.name == "asyncio_1"),
        "stacks captured"
    );
    // After "stop loop" the demo idles in its main thread; SIGINT there is a
    // KeyboardInterrupt it handles, and threading._shutdown then waits for asyncio_1:
    // only SIGTERM ends it.
    let target = ph("signal target");
    assert_eq!(target.outcome, Outcome::Escalated, "{target:#?}");
    assert!(
        target.signals.iter().any(|s| s.signal == "SIGINT"),
        "SIGINT first: {target:#?}"
    );
    // Its exit is noticed in this phase or, when the collector saw the zombie first, just after.
    let exits = r.timeline.phases[6..].iter().flat_map(|p| &p.exits);
    assert!(
        exits
            .chain(&r.timeline.exits_outside)
            .any(|x| x.pid == r.target.pid),
        "{:#?}",
        r.timeline
    );
    assert_eq!(
        ph("left-over audit").outcome,
        Outcome::Ok,
        "{:#?}",
        r.timeline.leftovers
    );
}

/// The real binary: the summary is printed as phases run, and Ctrl-C aborts the running phase
/// but still writes the report (exit 1: the tree did not shut down clean).
#[test]
fn binary_prints_as_it_goes_and_ctrl_c_aborts_with_a_report() {
    use std::io::{BufRead, BufReader};
    let tree = Tree::spawn("(trap '' TERM; exec sleep 1000) & exec sleep 1001");
    let f = Files::new();
    std::fs::write(f.path("plan.toml"), PLAN.replace("300ms", "60s")).unwrap();
    let mut lt = std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args([
            "--pid",
            &tree.pid().to_string(),
            "--headless",
            "--interval",
            "50",
        ])
        .arg("--plan")
        .arg(f.path("plan.toml"))
        .arg("--report")
        .arg(f.path("report.json"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run lifecycle-top");
    let mut lines = BufReader::new(lt.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let signalled = line.contains("SIGTERM -> pid");
        seen.push(line);
        if signalled {
            break; // phase 1 runs and is waiting out its 60 s grace
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("[1/3] terminate children")),
        "{seen:#?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lt.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = lt.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest:#?}");
    // Aborted, not failed, and not clean: the summary says so and names the phase.
    assert!(
        rest.iter()
            .any(|l| l.trim_start().starts_with("ABORTED after")),
        "{rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("\"terminate children\" was aborted")),
        "{rest:#?}"
    );
    let r = report(&f.path("report.json"));
    assert_eq!(r.timeline.phases.len(), 1, "nothing ran after the abort");
    assert_eq!(r.timeline.phases[0].outcome, Outcome::Aborted);
}

/// SIGTERM while headless still waits for the agent (a CI timeout, say): exit 2 and a report
/// that says nothing was judged, never a silent death by the signal.
#[test]
fn a_signal_before_the_plan_starts_still_writes_a_report() {
    use std::io::{BufRead, BufReader};
    let f = Files::new();
    // The agent is injected into a command that never starts one: headless waits up to 5 s.
    let mut lt = std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(["--headless", "--interval", "50", "--plan"])
        .arg(f.path("plan.toml"))
        .arg("--report")
        .arg(f.path("report.json"))
        .args(["--", "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run lifecycle-top");
    let mut lines = BufReader::new(lt.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("waiting for the agent"), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lt.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = lt.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{rest:#?}");
    let r = report(&f.path("report.json"));
    assert!(!r.verdict.clean);
    assert_eq!(r.verdict.exit_code, 2);
    assert!(r.timeline.phases.is_empty());
    // What headless launched does not outlive it.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", r.target.pid)).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        "the launched command was left running: {stat}"
    );
}
