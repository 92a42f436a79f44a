//! Python targets: CPython threads blocked in named functions. With the agent's `stacks`
//! result (from the real agent in assets/agent over its socket, and from the target itself
//! producing the same format) the Python function names appear on the right kernel thread,
//! next to its native frames and wait point. Without an agent, the same names are read from
//! outside (the built-in CPython reader, py-spy for other versions), joined by the native
//! thread id; tests/stacks_cpython.rs compares the two readers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stacks_common;

use lifecycle_top::stacks::{self, SourceKind, StackOptions, ThreadStacks};
use stacks_common::*;

fn with_python_function<'a>(snap: &'a stacks::StackSnapshot, f: &str) -> &'a ThreadStacks {
    snap.threads
        .iter()
        .find(|t| {
            t.stack(SourceKind::AgentPython)
                .is_some_and(|s| has_function(s, f))
        })
        .unwrap_or_else(|| panic!("no thread with python frame {f}:\n{}", dump(snap)))
}

#[test]
fn python_names_from_agent_result_join_kernel_threads() {
    let (t, agent) = python_target(2, true);
    let opts = StackOptions {
        python_from_agent: agent,
        ..Default::default()
    };
    let snap = stacks::capture(t.pid(), &[], &opts);
    let lock = with_python_function(&snap, "py_blocked_on_lock");
    // Python first, then native; the kernel shows the same thread waiting on a futex.
    assert_eq!(lock.stacks[0].source, SourceKind::AgentPython);
    assert_eq!(
        lock.kernel.as_ref().unwrap().wait.syscall.as_deref(),
        Some("futex"),
        "{}",
        dump(&snap)
    );
    assert!(lock.stack(SourceKind::Native).is_some(), "{}", dump(&snap));
    let sleep = with_python_function(&snap, "py_blocked_in_sleep");
    assert_ne!(sleep.tid, lock.tid);
    let parked = snap
        .threads
        .iter()
        .filter(|t| {
            t.stack(SourceKind::AgentPython)
                .is_some_and(|s| has_function(s, "py_parked_on_event"))
        })
        .count();
    assert_eq!(parked, 2, "{}", dump(&snap));
}

#[test]
fn python_names_without_agent_read_from_outside() {
    // The dump only makes the target wait until its threads are blocked; it is not used.
    let (t, _) = python_target(2, true);
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    let with = |f: &str| {
        snap.threads
            .iter()
            .find(|t| {
                t.stack(SourceKind::PySpyPython)
                    .is_some_and(|s| has_function(s, f))
            })
            .unwrap_or_else(|| panic!("no thread with py-spy frame {f}:\n{}", dump(&snap)))
    };
    let lock = with("py_blocked_on_lock");
    assert_eq!(lock.stacks[0].source, SourceKind::PySpyPython);
    assert_eq!(
        lock.kernel.as_ref().unwrap().wait.syscall.as_deref(),
        Some("futex")
    );
    // The interpreter's own frames are there too, natively.
    assert!(
        lock.stack(SourceKind::Native)
            .is_some_and(|s| has_function(s, "PyThread_acquire_lock")),
        "{}",
        dump(&snap)
    );
    let sleep = with("py_blocked_in_sleep");
    assert_ne!(sleep.tid, lock.tid);
    assert!(
        sleep
            .kernel
            .as_ref()
            .unwrap()
            .wait
            .syscall
            .as_deref()
            .is_some_and(|s| s.contains("sleep"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_names_from_the_real_agent() {
    use lifecycle_top::agent::{AgentEvent, spawn_client};
    use lifecycle_top::model::ProcKey;
    use std::time::Duration;
    let (t, _) = python_target_with(2, true, true);
    let pid = t.pid();
    let key = ProcKey {
        pid,
        start_time: lifecycle_top::collect::procfs::read_start_time(pid).unwrap(),
    };
    let mut h = spawn_client(
        key,
        std::sync::Arc::new(move |p| p == pid),
        Duration::from_millis(100),
    );
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = h.events.recv().await {
            if matches!(ev, AgentEvent::Connected(_)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(connected.ok(), Some(true), "the agent never connected");
    let agent = h
        .requester()
        .request("stacks", serde_json::Value::Null, Duration::from_secs(10))
        .await
        .expect("agent answers `stacks`");
    let opts = StackOptions {
        python_from_agent: Some(agent),
        ..Default::default()
    };
    let snap = tokio::task::spawn_blocking(move || stacks::capture(pid, &[], &opts))
        .await
        .unwrap();
    let lock = with_python_function(&snap, "py_blocked_on_lock");
    assert_eq!(lock.stacks[0].source, SourceKind::AgentPython);
    assert_eq!(
        lock.kernel.as_ref().unwrap().wait.syscall.as_deref(),
        Some("futex"),
        "{}",
        dump(&snap)
    );
    let sleep = with_python_function(&snap, "py_blocked_in_sleep");
    assert_ne!(sleep.tid, lock.tid);
}

/// The interpreter's own native frames (pyenv's libpython carries 20 MB of DWARF) are named
/// from its symbol table when Python frames were read in the same capture, and the stack's
/// note says so; `debug_info` reads its DWARF for file:line, as before. Checked through the
/// library and through the `stacks --json [--debug-info]` command line.
#[test]
fn libpython_named_by_symbol_with_python_frames_and_file_line_with_debug_info() {
    let (t, _) = python_target(2, true);
    let pid = t.pid();
    let interpreter = |f: &stacks::Frame| {
        f.module
            .as_deref()
            .is_some_and(|m| m.starts_with("libpython") || m.starts_with("python"))
    };
    let lock_stacks = |snap: &stacks::StackSnapshot| {
        let lock = snap
            .threads
            .iter()
            .find(|t| {
                t.stack(SourceKind::PySpyPython)
                    .is_some_and(|s| has_function(s, "py_blocked_on_lock"))
            })
            .unwrap_or_else(|| panic!("no Python frames read:\n{}", dump(snap)));
        lock.stack(SourceKind::Native)
            .unwrap_or_else(|| panic!("no native stack:\n{}", dump(snap)))
            .clone()
    };
    let by_symbol = |native: &stacks::SourceStack, snap: &stacks::StackSnapshot| {
        let acquire = native
            .frames
            .iter()
            .find(|f| f.function == "PyThread_acquire_lock_timed")
            .unwrap_or_else(|| panic!("interpreter frame not named:\n{}", dump(snap)));
        assert!(interpreter(acquire), "{acquire:?}");
        let with_lines: Vec<_> = native
            .frames
            .iter()
            .filter(|f| interpreter(f) && (f.file.is_some() || f.line.is_some()))
            .collect();
        assert!(with_lines.is_empty(), "DWARF read: {with_lines:?}");
        assert!(
            native
                .frames
                .iter()
                .filter(|f| interpreter(f))
                .all(|f| f.function != "??"),
            "{}",
            dump(snap)
        );
        let note = native.note.as_deref().unwrap_or_default();
        assert!(
            note.contains("libpython") && note.contains("named from its symbol table"),
            "{note}"
        );
    };
    let with_dwarf = |native: &stacks::SourceStack, snap: &stacks::StackSnapshot| {
        let lines = native
            .frames
            .iter()
            .filter(|f| interpreter(f) && f.file.as_deref().is_some_and(|p| p.ends_with(".c")))
            .filter(|f| f.line.is_some())
            .count();
        assert!(
            lines > 0,
            "no file:line in libpython frames:\n{}",
            dump(snap)
        );
        assert!(
            has_function(native, "PyThread_acquire_lock_timed"),
            "{}",
            dump(snap)
        );
        let note = native.note.as_deref().unwrap_or_default();
        assert!(!note.contains("symbol table"), "{note}");
    };

    let snap = stacks::capture(pid, &[], &StackOptions::default());
    by_symbol(&lock_stacks(&snap), &snap);
    let opts = StackOptions {
        debug_info: true,
        ..StackOptions::default()
    };
    let snap = stacks::capture(pid, &[], &opts);
    with_dwarf(&lock_stacks(&snap), &snap);

    // The same through the command line, cold (a process of its own).
    let cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
            .args(["stacks", "--json", "--pid", &pid.to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<stacks::StackSnapshot>(&out.stdout).unwrap()
    };
    let snap = cli(&[]);
    by_symbol(&lock_stacks(&snap), &snap);
    let snap = cli(&["--debug-info"]);
    with_dwarf(&lock_stacks(&snap), &snap);
}
