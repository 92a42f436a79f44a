//! A JVM thread dump as a report of the agent protocol (docs/protocol.md §5), so that a JVM,
//! which runs no agent, feeds the same facts path as Python and Node.js: daemon flags joined
//! to tids (the THREADS panel, the audits' non-daemon threads), and what each thread waits
//! for (the wait-for graph: monitors and their owners, `DestroyJavaVM` waiting for the
//! non-daemon threads, the shutdown sequence waiting for a hook that does not finish). Pure.
//!
//! Wait kinds used (the graph's own): `rlock` with `owner_native_id` for a monitor or a
//! `java.util.concurrent` lock held by another thread (object `the monitor <0x..> (a Foo)`),
//! `shutdown` (object `DestroyJavaVM`) for the thread that waits for every non-daemon thread
//! once `main()` has returned, `join` for the shutdown sequence (object `the JVM's shutdown
//! sequence`: the launcher thread, which the process exits with, waits for the thread running
//! the hooks; object `shutdown hook`: that thread waits for a hook), `sleep` for
//! `Thread.sleep`.

use super::parse::{JavaThread, Monitor, ThreadDump};
use crate::agent::protocol::{PyThread, Report, WaitsOn};

/// The `object` of the launcher thread's wait during a shutdown.
pub const SHUTDOWN_SEQUENCE: &str = "the JVM's shutdown sequence";
/// The `object` of the wait of the thread running the hooks.
pub const SHUTDOWN_HOOK: &str = "shutdown hook";
/// The `object` of `DestroyJavaVM`'s wait.
pub const DESTROY_JVM: &str = "DestroyJavaVM";

/// The first frame outside the JDK (`LtJvm.sleepForever(LtJvm.java:42)`), else the first.
fn app_frame(t: &JavaThread) -> Option<String> {
    let jdk = |f: &str| {
        ["java.", "jdk.", "sun.", "javax."]
            .iter()
            .any(|p| f.starts_with(p))
    };
    t.frames
        .iter()
        .find(|f| !jdk(f) && !f.contains("$$Lambda"))
        .or(t.frames.first())
        .cloned()
}

fn monitor_label(m: &Monitor, lock: bool) -> String {
    let what = if lock { "lock" } else { "monitor" };
    if m.class.is_empty() {
        format!("the {what} <{}>", m.addr)
    } else {
        format!("the {what} <{}> (a {})", m.addr, m.class)
    }
}

/// The thread running the shutdown hooks (`ApplicationShutdownHooks.runHooks`), if any.
pub fn hooks_runner(d: &ThreadDump) -> Option<&JavaThread> {
    d.threads.iter().find(|t| {
        t.frames
            .iter()
            .any(|f| f.starts_with("java.lang.ApplicationShutdownHooks.runHooks("))
    })
}

/// A shutdown is under way: a thread is in `java.lang.Shutdown` (`exit` or `shutdown`).
pub fn shutting_down(d: &ThreadDump) -> bool {
    d.threads.iter().any(|t| {
        t.frames
            .iter()
            .any(|f| f.starts_with("java.lang.Shutdown."))
    })
}

/// The running shutdown hooks: Java threads started after the thread running them (a hook
/// is started by it, so it is never older), oldest Java id first. The attach listener
/// lifecycle-top itself may have started meanwhile is not one.
pub fn running_hooks(d: &ThreadDump) -> Vec<&JavaThread> {
    let Some(runner) = hooks_runner(d) else {
        return Vec::new();
    };
    let Some(age) = runner.elapsed_ms else {
        return Vec::new();
    };
    let mut hooks: Vec<&JavaThread> = d
        .threads
        .iter()
        .filter(|t| t.java_tid.is_some() && t.nid != runner.nid && t.name != "Attach Listener")
        .filter(|t| t.elapsed_ms.is_some_and(|e| e <= age))
        .collect();
    hooks.sort_by_key(|t| t.java_tid);
    hooks
}

/// Who holds `m`: the JVM's own deadlock report first, else the thread listing it as locked.
fn owner<'a>(d: &'a ThreadDump, waiter: &JavaThread, m: &Monitor) -> Option<&'a JavaThread> {
    let from_report = d
        .deadlocks
        .iter()
        .flat_map(|dl| &dl.edges)
        .find(|e| e.thread == waiter.name && e.monitor.addr == m.addr)
        .and_then(|e| d.threads.iter().find(|t| t.name == e.held_by));
    from_report.or_else(|| {
        d.threads
            .iter()
            .find(|t| t.nid != waiter.nid && t.locked.iter().any(|l| l.addr == m.addr))
    })
}

/// What `t` waits for, in the graph's terms.
fn waits_on(d: &ThreadDump, t: &JavaThread, shutdown: bool) -> Option<WaitsOn> {
    let at = app_frame(t);
    let parks_on_lock = t
        .lock_lines
        .iter()
        .any(|(_, l)| l.starts_with("parking to wait for"));
    let lock = t.waiting_to_lock.as_ref().map(|m| (m, false)).or_else(|| {
        t.waiting_on
            .as_ref()
            .filter(|_| parks_on_lock)
            .map(|m| (m, true))
    });
    if let Some((m, is_lock)) = lock
        && let Some(o) = owner(d, t, m)
        && let Some(nid) = o.nid
    {
        return Some(WaitsOn {
            kind: "rlock".into(),
            owner_native_id: Some(nid),
            where_: at,
            object: Some(monitor_label(m, is_lock)),
            ..WaitsOn::default()
        });
    }
    if t.name == DESTROY_JVM && t.java_tid.is_some() && !shutdown {
        return Some(WaitsOn {
            kind: "shutdown".into(),
            object: Some(DESTROY_JVM.into()),
            ..WaitsOn::default()
        });
    }
    if hooks_runner(d).is_some_and(|r| r.nid == t.nid) {
        let hook = running_hooks(d).first().and_then(|h| h.nid);
        return hook.map(|h| WaitsOn {
            kind: "join".into(),
            target_native_id: Some(h),
            where_: t
                .frames
                .iter()
                .find(|f| f.starts_with("java.lang.ApplicationShutdownHooks.runHooks("))
                .cloned(),
            object: Some(SHUTDOWN_HOOK.into()),
            ..WaitsOn::default()
        });
    }
    // Thread.join waits on the joined Thread object, whose thread the dump does not name.
    if t.frames
        .iter()
        .any(|f| f.starts_with("java.lang.Thread.join("))
    {
        return Some(WaitsOn {
            kind: "join".into(),
            where_: at,
            object: Some(JAVA_JOIN.into()),
            ..WaitsOn::default()
        });
    }
    if t.state.starts_with("TIMED_WAITING (sleeping)") {
        return Some(WaitsOn {
            kind: "sleep".into(),
            where_: at,
            ..WaitsOn::default()
        });
    }
    None
}

/// The report for JVM `pid` from `dump`, joined against its live `tids`: its Java threads
/// (the JVM's internal ones have no Java id and are left out, as the agents leave out the
/// runtime's own), and, during a shutdown that runs hooks, the launcher thread (tid = pid,
/// which the process exits with) waiting for the thread running them.
pub fn to_report(dump: &ThreadDump, pid: i32, tids: &[i32], seq: u64, at_unix_ms: u64) -> Report {
    let shutdown = shutting_down(dump);
    let mut threads: Vec<PyThread> = dump
        .threads
        .iter()
        .filter(|t| t.java_tid.is_some())
        .filter_map(|t| {
            let nid = t.nid.filter(|n| tids.contains(n))?;
            Some(PyThread {
                name: t.name.clone(),
                ident: t.java_tid,
                native_id: Some(nid),
                daemon: t.daemon,
                alive: true,
                // `main` until it returns, then the same thread as `DestroyJavaVM`: the one
                // that ends with the program, never a left-over.
                main: t.name == "main" || t.name == DESTROY_JVM,
                agent: false,
                waits_on: waits_on(dump, t, shutdown),
                started_at: None,
            })
        })
        .collect();
    if let Some(runner) = hooks_runner(dump).and_then(|r| r.nid)
        && tids.contains(&pid)
        && !threads.iter().any(|t| t.native_id == Some(pid))
    {
        threads.insert(
            0,
            PyThread {
                name: "java launcher".into(),
                native_id: Some(pid),
                alive: true,
                main: true,
                waits_on: Some(WaitsOn {
                    kind: "join".into(),
                    target_native_id: Some(runner),
                    object: Some(SHUTDOWN_SEQUENCE.into()),
                    ..WaitsOn::default()
                }),
                ..PyThread::default()
            },
        );
    }
    Report {
        seq,
        at_unix_ms,
        pid,
        threads,
        runtime: Some(RUNTIME.into()),
        ..Report::default()
    }
}

/// The `object` of a `Thread.join` (the dump does not say which thread is joined).
pub const JAVA_JOIN: &str = "a Java thread (Thread.join; the thread dump does not say which)";

/// [`Report::runtime`] of a report made from a thread dump.
pub const RUNTIME: &str = "jvm";

/// Whether `r` was made from a JVM's thread dump.
pub fn is_jvm_report(r: &Report) -> bool {
    r.runtime.as_deref() == Some(RUNTIME)
}

/// Whether the JVM of report `r` is in its shutdown sequence (a thread runs the hooks, or
/// the launcher waits for the thread that does): non-daemon threads no longer hold the exit.
pub fn in_shutdown_sequence(r: &Report) -> bool {
    is_jvm_report(r)
        && r.threads.iter().any(|t| {
            t.waits_on
                .as_ref()
                .and_then(|w| w.object.as_deref())
                .is_some_and(|o| o == SHUTDOWN_SEQUENCE || o == SHUTDOWN_HOOK)
        })
}

/// Native ids of the shutdown hooks the shutdown sequence waits for.
pub fn running_hook_tids(r: &Report) -> impl Iterator<Item = i32> + '_ {
    r.threads
        .iter()
        .filter_map(|t| t.waits_on.as_ref())
        .filter(|w| w.object.as_deref() == Some(SHUTDOWN_HOOK))
        .filter_map(|w| w.target_native_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::jvm::parse::parse;

    const DEADLOCK: &str = include_str!("../../tests/fixtures/jvm/deadlock_hook.txt");
    const SIGTERM: &str = include_str!("../../tests/fixtures/jvm/return_hook_sigterm.txt");
    const REENTRANT: &str = include_str!("../../tests/fixtures/jvm/reentrant_deadlock.txt");

    fn all_tids(d: &ThreadDump) -> Vec<i32> {
        d.threads.iter().filter_map(|t| t.nid).collect()
    }

    fn thread<'a>(r: &'a Report, name: &str) -> &'a PyThread {
        r.threads.iter().find(|t| t.name == name).unwrap()
    }

    #[test]
    fn java_threads_with_daemon_flags_and_monitor_owners() {
        let d = parse(DEADLOCK);
        let r = to_report(&d, 1, &all_tids(&d), 1, 0);
        assert!(r.threads.iter().all(|t| t.name != "VM Thread"), "{r:?}");
        assert!(!thread(&r, "lt-worker").daemon);
        assert!(thread(&r, "lt-daemon").daemon);
        assert!(thread(&r, "main").main);
        let w = thread(&r, "lt-worker").waits_on.as_ref().unwrap();
        assert_eq!(
            (w.kind.as_str(), w.where_.as_deref()),
            ("sleep", Some("LtJvm.sleepForever(LtJvm.java:41)"))
        );
        let d1 = thread(&r, "lt-dead-1").waits_on.as_ref().unwrap();
        let d2 = thread(&r, "lt-dead-2");
        assert_eq!(d1.kind, "rlock");
        assert_eq!(d1.owner_native_id, d2.native_id);
        assert_eq!(
            d1.object.as_deref(),
            Some("the monitor <0x000000069ec2e598> (a LtJvm$Beta)")
        );
        assert_eq!(
            d2.waits_on.as_ref().unwrap().owner_native_id,
            thread(&r, "lt-dead-1").native_id
        );
        // A tid that is not live is not joined.
        let r = to_report(&d, 1, &[], 1, 0);
        assert!(r.threads.is_empty());
    }

    #[test]
    fn reentrant_locks_are_owned_too() {
        let d = parse(REENTRANT);
        let r = to_report(&d, 1, &all_tids(&d), 1, 0);
        let w = thread(&r, "lt-rl-1").waits_on.as_ref().unwrap();
        assert_eq!(w.kind, "rlock", "{w:?}");
        assert_eq!(w.owner_native_id, thread(&r, "lt-rl-2").native_id);
        assert!(
            w.object.as_deref().unwrap().starts_with("the lock <0x"),
            "{w:?}"
        );
    }

    #[test]
    fn a_shutdown_waits_for_the_hook_not_for_destroy_java_vm() {
        let d = parse(SIGTERM);
        let hooks: Vec<&str> = running_hooks(&d).iter().map(|t| t.name.as_str()).collect();
        assert_eq!(hooks, ["lt-hook"]);
        let pid = 4242;
        let mut tids = all_tids(&d);
        tids.push(pid);
        let r = to_report(&d, pid, &tids, 1, 0);
        let launcher = &r.threads[0];
        assert_eq!(launcher.native_id, Some(pid));
        let handler = thread(&r, "SIGTERM handler");
        let lw = launcher.waits_on.as_ref().unwrap();
        assert_eq!(
            (lw.kind.as_str(), lw.target_native_id, lw.object.as_deref()),
            ("join", handler.native_id, Some(SHUTDOWN_SEQUENCE))
        );
        let hw = handler.waits_on.as_ref().unwrap();
        assert_eq!(hw.target_native_id, thread(&r, "lt-hook").native_id);
        assert_eq!(hw.object.as_deref(), Some(SHUTDOWN_HOOK));
        assert_eq!(
            thread(&r, "lt-hook")
                .waits_on
                .as_ref()
                .unwrap()
                .where_
                .as_deref(),
            Some("LtJvm.sleepForever(LtJvm.java:42)")
        );
        // Shutting down: DestroyJavaVM no longer decides.
        assert!(thread(&r, DESTROY_JVM).waits_on.is_none());
        assert!(thread(&r, DESTROY_JVM).main);
    }

    #[test]
    fn a_java_join_is_a_join_and_a_shutdown_marks_its_hooks_in_the_facts() {
        let d = parse(include_str!("../../tests/fixtures/jvm/plain.txt"));
        let r = to_report(&d, 1, &all_tids(&d), 1, 0);
        assert!(is_jvm_report(&r) && !in_shutdown_sequence(&r));
        let w = thread(&r, "main").waits_on.as_ref().unwrap();
        assert_eq!(
            (w.kind.as_str(), w.object.as_deref(), w.target_native_id),
            ("join", Some(JAVA_JOIN), None)
        );
        assert!(w.where_.as_deref().unwrap().starts_with("LtJvm.main("));
        // During the SIGTERM shutdown the facts name the running hook.
        let d = parse(SIGTERM);
        let mut tids = all_tids(&d);
        tids.push(4242);
        let r = to_report(&d, 4242, &tids, 1, 0);
        assert!(in_shutdown_sequence(&r));
        let facts = crate::model::AgentFacts::from(&r);
        assert!(facts.jvm_shutdown);
        let hooks: Vec<&str> = facts
            .threads
            .iter()
            .filter(|t| t.hook)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(hooks, ["lt-hook"]);
    }

    #[test]
    fn destroy_java_vm_waits_for_non_daemon_threads_before_a_shutdown() {
        // The same dump without the shutdown: keep DestroyJavaVM and the threads it waits for.
        let text: String = SIGTERM
            .split("\n\n")
            .filter(|b| !b.contains("\"SIGTERM handler\"") && !b.contains("\"lt-hook\""))
            .collect::<Vec<_>>()
            .join("\n\n");
        let d = parse(&text);
        assert!(!shutting_down(&d));
        let r = to_report(&d, 1, &all_tids(&d), 1, 0);
        let w = thread(&r, DESTROY_JVM).waits_on.as_ref().unwrap();
        assert_eq!(
            (w.kind.as_str(), w.object.as_deref()),
            ("shutdown", Some(DESTROY_JVM))
        );
        assert!(r.threads.iter().all(|t| t.name != "java launcher"));
    }
}
