//! `lifecycle-top check -- CMD`, the CI shutdown gate, end to end against the real binary
//! and the real programs in tests/targets/check/: exit codes (0 clean, 1 not clean, 2
//! usage), the last stdout line (`clean:` / `NOT clean: <cause>`), the JSON report's
//! verdict, checks, target_exit and warnings, and the JUnit file parsed back.
//!
//! `programs_behave_as_documented` runs every program without lifecycle-top (READY, then
//! SIGTERM) and scans its output with `check::logscan`, so a program that stopped doing
//! what its docstring says fails here, not as a confusing `check` verdict.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "targets/check/harness.rs"]
mod harness;

use harness::*;
use lifecycle_top::check::logscan::{WarningKind, scan_text};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const READY: [&str; 2] = ["--ready-log", "^READY$"];

fn py(name: &str) -> Vec<String> {
    need("python3", "apt-get install python3");
    vec!["python3".into(), target(name)]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `check --ready-log ^READY$ <opts> -- python3 tests/targets/check/<name>`.
fn check_py(name: &str, opts: &[&str]) -> Run {
    let cmd = py(name);
    let mut all: Vec<&str> = READY.to_vec();
    all.extend_from_slice(opts);
    check(&all, &strs(&cmd))
}

// ---- the programs themselves (run without lifecycle-top; these pass on any branch) ----

struct Expect {
    cmd: Vec<String>,
    /// Exit code, or the signal (negative), or None: needs a SIGKILL after the limit.
    status: Option<i32>,
    kinds: &'static [WarningKind],
    exc_type: Option<&'static str>,
    output: &'static [&'static str],
}

fn expect(name: &str, status: Option<i32>, kinds: &'static [WarningKind]) -> Expect {
    Expect {
        cmd: py(name),
        status,
        kinds,
        exc_type: None,
        output: &[],
    }
}

#[test]
fn programs_behave_as_documented() {
    use WarningKind::*;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let mut cases = vec![
        expect("clean_asyncio.py", Some(0), &[]),
        expect("clean_no_handler.py", Some(-15), &[]),
        expect("ignores_term.py", None, &[]),
        expect("exits_3.py", Some(3), &[]),
        expect("join_cut_by_sigint.py", Some(-15), &[]),
        expect("os_exit_on_term.py", Some(0), &[]),
        Expect {
            exc_type: Some("ValueError"),
            ..expect("raises_in_thread.py", Some(0), &[ThreadException])
        },
        Expect {
            exc_type: Some("RuntimeError"),
            ..expect("raises_on_term.py", Some(1), &[UnhandledException])
        },
        expect("swallows_cancel.py", None, &[]),
        Expect {
            output: &["SIGTERM noted"],
            ..expect("main_survives.py", None, &[])
        },
        expect("warn_loop_closed_watcher.py", Some(0), &[LoopClosedWatcher]),
        expect(
            "warn_exception_never_retrieved.py",
            Some(0),
            &[ExceptionNeverRetrieved, ExceptionNeverRetrieved],
        ),
        expect(
            "warn_task_destroyed_pending.py",
            Some(0),
            &[TaskDestroyedPending],
        ),
        expect("warn_slow_callback.py", Some(0), &[SlowCallback]),
        expect("warn_never_awaited.py", Some(0), &[NeverAwaited]),
        expect(
            "warn_resource_warning.py",
            Some(0),
            &[ResourceWarning, ResourceWarning],
        ),
        Expect {
            cmd: vec![compile_c("clean_term.c")],
            output: &["STOPPED"],
            ..expect("clean_term.c", Some(0), &[])
        },
        Expect {
            cmd: vec![compile_c("ignores_term.c")],
            ..expect("ignores_term.c", None, &[])
        },
    ];
    let mut orphan = py("orphan_daemon.py");
    orphan.push(pidfile.display().to_string());
    cases.push(Expect {
        cmd: orphan,
        output: &["DAEMON STARTED"],
        ..expect("orphan_daemon.py", Some(0), &[])
    });

    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                s.spawn(move || {
                    // A program that hangs by design is killed after 3 s; one that exits gets
                    // as long as a loaded machine needs (it exits at once when not loaded).
                    let limit = Duration::from_secs(if c.status.is_none() { 3 } else { 60 });
                    let (st, killed, out) = run_direct(&strs(&c.cmd), limit);
                    let got = if killed {
                        None
                    } else {
                        st.code().or(st.signal().map(|s| -s))
                    };
                    let found = scan_text(&out);
                    let kinds: Vec<WarningKind> = found.iter().map(|f| f.kind).collect();
                    let mut errs = Vec::new();
                    if got != c.status {
                        errs.push(format!("status {got:?}, expected {:?}", c.status));
                    }
                    if kinds != c.kinds {
                        errs.push(format!("findings {kinds:?}, expected {:?}", c.kinds));
                    }
                    if let Some(t) = c.exc_type
                        && found.first().and_then(|f| f.exc_type.as_deref()) != Some(t)
                    {
                        errs.push(format!("exc_type should be {t}"));
                    }
                    for want in c.output {
                        if !out.contains(want) {
                            errs.push(format!("output lacks {want:?}"));
                        }
                    }
                    if errs.is_empty() {
                        None
                    } else {
                        Some(format!(
                            "{:?}: {}\n--- output ---\n{out}",
                            c.cmd,
                            errs.join("; ")
                        ))
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    let daemon = read_pid_file(&pidfile, Duration::from_secs(3));
    if let Some(pid) = daemon {
        let alive = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        kill_if_sleep(pid);
        assert_eq!(
            alive, b"sleep\x00300\x00",
            "the orphan daemon should outlive its parent"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(daemon.is_some(), "orphan_daemon.py wrote no daemon pid");
}

// ---- clean ----

#[test]
fn clean_asyncio_is_clean_20_times_in_a_row() {
    for i in 0..20 {
        let run = check_py("clean_asyncio.py", &[]);
        run.assert_clean();
        let r = run.report();
        assert!(
            r["warnings"].as_array().is_some_and(|w| w.is_empty()),
            "run {i}\n{}",
            run.describe()
        );
        assert!(
            json_has_number(&r["target_exit"]["status"], 0),
            "run {i}: exit status 0 expected\n{}",
            run.describe()
        );
        assert!(r["target_exit"]["after_ms"].is_u64(), "{}", run.describe());
        assert!(
            r["evidence"].is_null(),
            "no evidence without overrun\n{}",
            run.describe()
        );
    }
}

#[test]
fn headless_python_asyncio_plan_is_clean_20_times_in_a_row() {
    let cmd = py("clean_asyncio.py");
    for i in 0..20 {
        let mut args = vec!["--headless", "--plan", "python-asyncio", "--"];
        args.extend(strs(&cmd));
        let run = run_raw(&args);
        assert_eq!(
            run.code,
            0,
            "run {i}: the staged plan must not break a clean program (cancel tasks spares the main task)\n{}",
            run.describe()
        );
    }
}

#[test]
fn death_by_the_stop_signal_is_clean() {
    let run = check_py("clean_no_handler.py", &[]);
    run.assert_clean();
    assert!(
        json_has_number(&run.report()["target_exit"]["status"], 15)
            || json_mentions(&run.report()["target_exit"]["status"], "SIGTERM"),
        "status should say SIGTERM\n{}",
        run.describe()
    );
}

#[test]
fn stop_signal_spellings_and_ready_after() {
    for sig in ["SIGTERM", "TERM", "15"] {
        let run = check_py(
            "clean_asyncio.py",
            &["--stop-signal", sig, "--budget", "5s"],
        );
        run.assert_clean();
    }
    let cmd = py("clean_asyncio.py");
    let run = check(&["--ready-after", "500ms"], &strs(&cmd));
    run.assert_clean();
}

#[test]
fn native_programs_without_agent() {
    let clean = compile_c("clean_term.c");
    let stuck = compile_c("ignores_term.c");
    let run = check(&["--ready-log", "^READY$", "--no-agent"], &[&clean]);
    run.assert_clean();
    let run = check(
        &["--ready-log", "^READY$", "--no-agent", "--budget", "1s"],
        &[&stuck],
    );
    run.assert_not_clean("exited within budget");
    assert!(!run.report()["evidence"].is_null(), "{}", run.describe());
}

#[test]
fn trace_file_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let t = trace.display().to_string();
    let run = check_py("clean_asyncio.py", &["--trace", &t]);
    run.assert_clean();
    let text = std::fs::read_to_string(&trace)
        .unwrap_or_else(|e| panic!("trace: {e}\n{}", run.describe()));
    let _: serde_json::Value = serde_json::from_str(&text).expect("trace parses as JSON");
}

// ---- not clean ----

#[test]
fn ignores_term_overruns_budget_with_evidence() {
    let run = check_py("ignores_term.py", &["--budget", "2s"]);
    run.assert_not_clean("exited within budget");
    let r = run.report();
    assert!(
        !r["evidence"].is_null(),
        "evidence expected\n{}",
        run.describe()
    );
    assert!(
        json_mentions(&r["evidence"], "stuck-worker"),
        "the evidence should name the non-daemon thread `stuck-worker`\n{}",
        run.describe()
    );
    assert!(
        json_mentions(&r["evidence"], "wait"),
        "the evidence should show its stack (Event.wait)\n{}",
        run.describe()
    );
    // Killed in the end: the tree is gone when check returns.
    assert!(!r["target_exit"].is_null(), "{}", run.describe());
}

/// What the forced phases provoke after the budget ran out is listed, not judged, so the
/// verdict does not depend on the runner's SIGINT disposition: with SIGINT taken, the forced
/// SIGINT's KeyboardInterrupt ends the program; with SIGINT ignored, the forced SIGTERM
/// raises SystemExit inside threading._shutdown. Both give the one budget reason, and the
/// root cause names the worker.
#[test]
fn forced_exit_side_effects_are_not_judged_whatever_sigint_does() {
    let mut seen = Vec::new();
    for extra in [None, Some("--ignore-int")] {
        let mut cmd = py("pool_blocks_exit.py");
        cmd.extend(extra.map(String::from));
        let mut opts: Vec<&str> = READY.to_vec();
        opts.extend(["--budget", "2s"]);
        let run = check(&opts, &strs(&cmd));
        run.assert_not_clean("exited within budget");
        let r = run.report();
        let reasons: Vec<String> = r["verdict"]["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        assert_eq!(
            reasons.len(),
            1,
            "only the budget: {reasons:?}\n{}",
            run.describe()
        );
        assert!(
            reasons[0].contains("past the budget of 2.0 s"),
            "{reasons:?}"
        );
        assert!(
            run.stdout.contains("joins \"pool_0\""),
            "the root cause names the worker\n{}",
            run.describe()
        );
        seen.push(run);
    }
    // The case was exercised: with SIGINT ignored the SystemExit was seen, and kept.
    let late = seen[1].warnings_of("unraisable");
    assert!(
        late.iter()
            .any(|w| w["exc_type"] == "SystemExit" && w["after_budget"] == true),
        "{}",
        seen[1].describe()
    );
    let (passed, _, msg) = seen[1].check("no warnings");
    assert!(passed && msg.contains("listed, not judged"), "{msg}");
}

#[test]
fn exit_status_3_is_not_clean() {
    let run = check_py("exits_3.py", &[]);
    run.assert_not_clean("exit status");
    run.assert_passed("exited within budget");
    run.assert_passed("no warnings");
    assert!(
        json_has_number(&run.report()["target_exit"]["status"], 3),
        "{}",
        run.describe()
    );
    assert!(
        run.last_line().contains('3'),
        "the cause names the status\n{}",
        run.describe()
    );
}

#[test]
fn thread_exception_is_a_warning_unless_allowed() {
    let run = check_py("raises_in_thread.py", &[]);
    run.assert_not_clean("no warnings");
    run.assert_passed("exit status");
    // The log scan finds it; the agent may report it too (the lead may merge the two).
    let w = run.warnings_of("thread_exception");
    assert!(!w.is_empty(), "{}", run.describe());
    assert!(
        w.iter().all(|w| w["exc_type"] == "ValueError"),
        "{}",
        run.describe()
    );

    let run = check_py("raises_in_thread.py", &["--allow-warnings"]);
    assert_eq!(run.code, 0, "--allow-warnings: clean\n{}", run.describe());
    assert!(run.last_line().starts_with("clean:"), "{}", run.describe());
    assert!(
        !run.warning_kinds().is_empty(),
        "still reported\n{}",
        run.describe()
    );
}

#[test]
fn unhandled_exception_at_shutdown() {
    let run = check_py("raises_on_term.py", &[]);
    run.assert_not_clean("exit status");
    run.assert_not_clean("no warnings");
    let w = run.warnings_of("unhandled_exception");
    assert!(
        w.iter().any(|w| w["exc_type"] == "RuntimeError"),
        "{}",
        run.describe()
    );
}

/// SIGINT cuts the interpreter's wait for a non-daemon thread short: status 0 and only an
/// "Exception ignored" for our own KeyboardInterrupt, but the exit abandoned the thread.
/// Same verdict every time.
#[test]
fn a_non_daemon_thread_abandoned_by_an_interrupted_join_is_not_clean() {
    for _ in 0..3 {
        let run = check_py("join_cut_by_sigint.py", &["--stop-signal", "SIGINT"]);
        run.assert_not_clean("no lingering non-daemon threads");
        run.assert_passed("exit status");
        run.assert_passed("no warnings");
        assert!(
            json_mentions(&run.report()["verdict"]["reasons"], "loop-runner"),
            "the verdict should name the abandoned thread\n{}",
            run.describe()
        );
        assert!(
            run.last_line().contains("non-daemon thread"),
            "{}",
            run.describe()
        );
    }
}

/// os._exit(0) from a SIGTERM handler while a non-daemon thread runs: status 0, nothing
/// printed, but the thread was killed mid-work.
#[test]
fn os_exit_that_kills_a_non_daemon_thread_is_not_clean() {
    for _ in 0..3 {
        let run = check_py("os_exit_on_term.py", &[]);
        run.assert_not_clean("no lingering non-daemon threads");
        run.assert_passed("exit status");
        assert!(
            json_mentions(&run.report()["verdict"]["reasons"], "flush-worker")
                && json_mentions(&run.report()["verdict"]["reasons"], "os._exit"),
            "the verdict should name the thread and os._exit\n{}",
            run.describe()
        );
    }
}

#[test]
fn orphan_daemon_is_a_left_over() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    let mut cmd = py("orphan_daemon.py");
    cmd.push(pidfile.display().to_string());
    let run = check(&READY, &strs(&cmd));
    let daemon = read_pid_file(&pidfile, Duration::from_secs(1));
    if let Some(pid) = daemon {
        kill_if_sleep(pid);
    }
    run.assert_not_clean("no left-over processes");
    run.assert_passed("exited within budget");
    run.assert_passed("exit status");
    let pid = daemon.expect("the daemon wrote its pid");
    assert!(
        json_mentions(run.report(), "sleep") || json_mentions(run.report(), &pid.to_string()),
        "the report should name the left-over (sleep, pid {pid})\n{}",
        run.describe()
    );
}

#[test]
fn swallowed_cancel_overruns_and_is_killed() {
    let run = check_py("swallows_cancel.py", &["--budget", "2s"]);
    run.assert_not_clean("exited within budget");
    assert!(
        json_mentions(&run.report()["evidence"], "stubborn"),
        "the evidence should name the task `stubborn`\n{}",
        run.describe()
    );
}

#[test]
fn forced_cancel_spares_the_main_task() {
    let run = check_py("main_survives.py", &["--budget", "2s"]);
    run.assert_not_clean("exited within budget");
    let log = run.log_text();
    assert!(
        log.contains("CLEANUP DONE"),
        "the main task should finish its cleanup after the forced cancel\n{log}\n{}",
        run.describe()
    );
    assert!(
        !log.contains("MAIN TASK CANCELLED"),
        "the main task was cancelled\n{log}"
    );
    assert!(
        json_has_number(&run.report()["target_exit"]["status"], 0),
        "exit 0 after its own cleanup, not SIGKILL\n{}",
        run.describe()
    );
}

#[test]
fn each_seed_warning_has_its_kind() {
    let cases = [
        ("warn_loop_closed_watcher.py", "loop_closed_watcher"),
        (
            "warn_exception_never_retrieved.py",
            "exception_never_retrieved",
        ),
        ("warn_task_destroyed_pending.py", "task_destroyed_pending"),
        ("warn_slow_callback.py", "slow_callback"),
        ("warn_never_awaited.py", "never_awaited"),
        ("warn_resource_warning.py", "resource_warning"),
    ];
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = cases
            .iter()
            .map(|&(prog, kind)| {
                s.spawn(move || {
                    let run = check_py(prog, &[]);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run.assert_not_clean("no warnings");
                        run.assert_passed("exit status");
                        run.assert_passed("exited within budget");
                        assert!(
                            run.warning_kinds().iter().any(|k| k == kind),
                            "{prog}: expected a warning of kind {kind}\n{}",
                            run.describe()
                        );
                        for w in run.warnings_of(kind) {
                            assert!(w["message"].as_str().is_some_and(|m| !m.is_empty()));
                        }
                    }));
                    r.err().map(|e| {
                        e.downcast_ref::<String>()
                            .cloned()
                            .unwrap_or_else(|| format!("{prog}: panicked"))
                    })
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- usage errors: exit 2 ----

#[test]
fn usage_errors_exit_2() {
    need("python3", "apt-get install python3");
    let prog = target("clean_asyncio.py");
    let cases: [(&[&str], &str); 5] = [
        (&["check"], "command"),
        (
            &["check", "--budget", "2x", "--", "python3", &prog],
            "unknown unit x",
        ),
        (
            &["check", "--ready-log", "(", "--", "python3", &prog],
            "regex",
        ),
        (
            &["check", "--stop-signal", "NOPE", "--", "python3", &prog],
            "NOPE",
        ),
        (&["check", "--pid", "999999999"], "999999999"),
    ];
    for (args, needle) in cases {
        let run = run_raw(args);
        assert_eq!(run.code, 2, "{}", run.describe());
        assert!(
            run.stderr.to_lowercase().contains(&needle.to_lowercase())
                || run.stdout.to_lowercase().contains(&needle.to_lowercase()),
            "the error should mention {needle:?}\n{}",
            run.describe()
        );
    }
}

// ---- attached (`--pid`): the same verdict every time ----

/// `clean_asyncio.py` started by the test (not by lifecycle-top) with the agent on its
/// PYTHONPATH, so `--pid` finds an agent; returns once it printed READY.
fn start_attached_clean(dir: &std::path::Path) -> std::process::Child {
    need("python3", "apt-get install python3");
    let agent = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/agent");
    let out = dir.join("out.log");
    let child = std::process::Command::new("python3")
        .arg(target("clean_asyncio.py"))
        .env("PYTHONPATH", agent)
        .env("LIFECYCLE_TOP_AGENT", "1")
        .env("LIFECYCLE_TOP_SOCKET", dir.join("agent.sock"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn python3");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("READY")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the target did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn attached_clean_asyncio_gives_one_verdict_20_times() {
    for i in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = start_attached_clean(dir.path());
        let pid = child.id().to_string();
        let run = check(&["--pid", &pid], &[]);
        let _ = child.wait();
        run.assert_clean();
        assert!(
            run.stdout.contains("agent connected"),
            "run {i}: the agent should answer an attached check\n{}",
            run.describe()
        );
    }
    for i in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = start_attached_clean(dir.path());
        let pid = child.id().to_string();
        let run = run_raw(&["--headless", "--plan", "python-asyncio", "--pid", &pid]);
        let _ = child.wait();
        assert_eq!(
            run.code,
            0,
            "run {i}: attached headless must say clean every time\n{}",
            run.describe()
        );
    }
}
