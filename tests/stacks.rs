//! End-to-end stack snapshots of real processes: a Rust target (examples/
//! stacks_blocked_threads, built by `cargo test` with the other examples), a C target compiled
//! here with gcc, Python threads; plus the ptrace safety properties. Never asserts timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stacks_common;

use lifecycle_top::stacks::{self, SourceKind, StackOptions};
use stacks_common::*;

#[test]
fn kernel_view_of_rust_threads() {
    let t = Target::rust();
    let snap = stacks::capture(
        t.pid(),
        &[],
        &StackOptions {
            native: false,
            ..Default::default()
        },
    );
    let mutex = thread_named(&snap, "mutex_waiter");
    let k = mutex.kernel.as_ref().unwrap();
    assert_eq!(k.wait.syscall.as_deref(), Some("futex"), "{k:?}");
    assert!(k.described_args[0].starts_with("futex 0x"), "{k:?}");
    assert!(k.voluntary_ctxt_switches.is_some());
    let pipe = thread_named(&snap, "pipe_reader").kernel.clone().unwrap();
    assert_eq!(pipe.wait.syscall.as_deref(), Some("read"));
    assert!(
        pipe.described_args[0].contains("pipe:["),
        "{:?}",
        pipe.described_args
    );
    let sleeper = thread_named(&snap, "sleeper").kernel.clone().unwrap();
    assert!(
        sleeper
            .wait
            .syscall
            .as_deref()
            .is_some_and(|s| s.contains("sleep")),
        "{sleeper:?}"
    );
    // Root can read kernel stacks; as non-root the error says so.
    if nix::unistd::geteuid().is_root() {
        assert!(!k.kernel_stack.is_empty());
    }
}

#[test]
fn native_frames_of_rust_threads_ptrace_free() {
    let t = Target::rust();
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    for (thread, func) in [
        ("mutex_waiter", "blocked_on_mutex"),
        ("condvar_waiter", "blocked_on_condvar"),
        ("sleeper", "blocked_in_sleep"),
        ("pipe_reader", "blocked_on_pipe_read"),
        ("stacks_blocked_", "main_waits_forever"),
    ] {
        let th = thread_named(&snap, thread);
        let native = th
            .stack(SourceKind::Native)
            .unwrap_or_else(|| panic!("{thread}: no native stack: {th:#?}"));
        assert_eq!(
            native.note.as_deref().map(|n| n.starts_with("ptrace-free")),
            Some(true),
            "{native:?}"
        );
        assert!(
            has_function(native, func),
            "{thread}: {func} not in\n{}",
            dump(&snap)
        );
        let root = if thread.starts_with("stacks_blocked") {
            "lang_start"
        } else {
            "start_thread"
        };
        assert!(
            has_function(native, root),
            "{thread}: walk did not reach {root}\n{}",
            dump(&snap)
        );
        // Demangled: std is v0-mangled (_R...), the target legacy-mangled (_ZN...).
        let mangled = native
            .frames
            .iter()
            .find(|f| f.function.starts_with("_R") || f.function.starts_with("_ZN"));
        assert!(mangled.is_none(), "{thread}: mangled frame {mangled:?}");
        // file:line from DWARF for the target's own function.
        let own = native
            .frames
            .iter()
            .find(|f| f.function.contains(func))
            .unwrap();
        let file_ok = own
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("stacks_blocked_threads.rs"));
        assert!(file_ok && own.line.is_some(), "{own:?}");
    }
}

#[test]
fn cli_text_and_json_are_joined_per_thread() {
    let t = Target::rust();
    let mut out = Vec::new();
    stacks::cli::run(t.pid(), false, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"pipe_reader\": S read(fd"), "{text}");
    assert!(text.contains("blocked_on_pipe_read"), "{text}");
    let mut out = Vec::new();
    stacks::cli::run(t.pid(), true, false, &mut out).unwrap();
    let snap: stacks::StackSnapshot = serde_json::from_slice(&out).unwrap();
    assert_eq!(snap.pid, t.pid());
    assert!(snap.threads.len() >= 5);
    let err = stacks::cli::run(i32::MAX, false, false, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no process"));
}

#[test]
fn native_frames_of_c_threads_built_with_gcc() {
    let t = c_target(2);
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    for (thread, func) in [
        ("c_mutex", "c_blocked_on_mutex"),
        ("c_sleep", "c_blocked_in_sleep"),
        ("c_pipe", "c_blocked_on_pipe"),
        ("c_parked", "c_parked_on_condvar"),
    ] {
        let th = thread_named(&snap, thread);
        let native = th
            .stack(SourceKind::Native)
            .unwrap_or_else(|| panic!("{thread}: no native stack:\n{}", dump(&snap)));
        assert!(
            has_function(native, func),
            "{thread}: {func} not in\n{}",
            dump(&snap)
        );
        assert!(
            has_function(native, "start_thread"),
            "{thread}: walk did not reach start_thread\n{}",
            dump(&snap)
        );
    }
    // The -O0 main thread (frame-pointer frames, rbp guessed) is walked to libc's start.
    let main = snap.threads.iter().find(|t| t.tid == snap.pid).unwrap();
    let native = main.stack(SourceKind::Native).unwrap();
    assert!(has_function(native, "__libc_start"), "{}", dump(&snap));
    assert!(
        native.frames.iter().all(|f| f.function != "??"),
        "{}",
        dump(&snap)
    );
    // The kernel view decodes the pipe read with its fd target.
    let pipe = thread_named(&snap, "c_pipe").kernel.clone().unwrap();
    assert!(pipe.described_args[0].contains("pipe:["), "{pipe:?}");
}

/// libc's DWARF lives in a separate debug file (libc6-dbg): by default its frames are named
/// from that file's symbol table (static functions included), without file:line; the
/// target's own DWARF still gives file:line. `debug_info` reads libc's DWARF too.
#[test]
fn system_libraries_named_from_symbols_own_code_keeps_file_line() {
    assert!(
        std::path::Path::new("/usr/lib/debug/.build-id").is_dir(),
        "libc's debug symbols are missing: install them (apt-get install libc6-dbg)"
    );
    let t = c_target(2);
    let parked_native = |snap: &stacks::StackSnapshot| {
        thread_named(snap, "c_parked")
            .stack(SourceKind::Native)
            .unwrap_or_else(|| panic!("no native stack:\n{}", dump(snap)))
            .clone()
    };
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    let native = parked_native(&snap);
    // A static function: in the debug file's .symtab, not in libc's .dynsym.
    let wait = native
        .frames
        .iter()
        .find(|f| f.function == "__futex_abstimed_wait_common")
        .unwrap_or_else(|| panic!("libc's static wait function not named:\n{}", dump(&snap)));
    assert_eq!(wait.module.as_deref(), Some("libc.so.6"), "{wait:?}");
    assert_eq!((wait.file.as_deref(), wait.line), (None, None), "{wait:?}");
    assert!(
        has_function(&native, "pthread_cond_wait"),
        "{}",
        dump(&snap)
    );
    assert!(
        native
            .frames
            .iter()
            .all(|f| !f.function.starts_with("__GI_")),
        "{}",
        dump(&snap)
    );
    let own = native
        .frames
        .iter()
        .find(|f| f.function == "c_parked_on_condvar")
        .unwrap_or_else(|| panic!("{}", dump(&snap)));
    assert!(
        own.file
            .as_deref()
            .is_some_and(|f| f.ends_with("stacks_blocked.c"))
            && own.line.is_some(),
        "{own:?}"
    );
    let opts = StackOptions {
        debug_info: true,
        ..StackOptions::default()
    };
    let snap = stacks::capture(t.pid(), &[], &opts);
    let native = parked_native(&snap);
    let libc_lines = native
        .frames
        .iter()
        .filter(|f| f.module.as_deref() == Some("libc.so.6") && f.line.is_some())
        .count();
    assert!(
        libc_lines > 0,
        "no file:line in libc frames with debug_info:\n{}",
        dump(&snap)
    );
    assert!(
        has_function(&native, "c_parked_on_condvar"),
        "{}",
        dump(&snap)
    );
}

#[test]
fn blocked_threads_are_stuck_across_two_snapshots() {
    use lifecycle_top::stacks::stuck::{Observation, stuck_tids};
    let t = Target::rust();
    let opts = StackOptions {
        native: false,
        ..Default::default()
    };
    let obs = |s: &stacks::StackSnapshot| {
        s.threads
            .iter()
            .filter_map(Observation::from_stacks)
            .collect::<Vec<_>>()
    };
    let a = stacks::capture(t.pid(), &[], &opts);
    let b = stacks::capture(t.pid(), &[], &opts);
    let stuck = stuck_tids(&obs(&a), &obs(&b));
    for name in ["mutex_waiter", "condvar_waiter", "pipe_reader"] {
        assert!(
            stuck.contains(&thread_named(&b, name).tid),
            "{name} not stuck: {stuck:?}\n{}",
            dump(&b)
        );
    }
}

#[test]
fn a_zombie_gets_a_kernel_view_and_a_clear_native_error() {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("true runs");
    let pid = child.id() as i32;
    eventually("child is a zombie", || thread_state(pid, pid) == Some('Z'));
    let snap = stacks::capture(pid, &[], &StackOptions::default());
    let t = snap.thread(pid).unwrap();
    assert_eq!(
        t.kernel.as_ref().unwrap().state,
        lifecycle_top::model::RunState::Zombie
    );
    assert!(
        t.errors.iter().any(|e| e.message.contains("zombie")),
        "{:?}",
        t.errors
    );
    child.wait().unwrap();
    // Gone entirely: one process-wide error, no panic.
    let gone = stacks::capture(pid, &[], &StackOptions::default());
    assert!(
        gone.threads.is_empty() && !gone.errors.is_empty(),
        "{gone:?}"
    );
}
