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
