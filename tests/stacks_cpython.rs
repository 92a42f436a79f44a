//! The built-in CPython reader (`stacks::cpython`) on real interpreters of every version it
//! supports (pyenv's 3.11, 3.12, 3.13): its frames (function, file, line) equal py-spy's for
//! the same blocked process, and each thread is the kernel thread the target itself names
//! (`threading.get_native_id`). An interpreter it does not support (3.10) and a layout that
//! does not fit fall back to py-spy, the reason in `stacks --json`. Location tables are
//! decoded like CPython's own `co_lines()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stacks_common;

use lifecycle_top::stacks::cpython::{Failure, Reader};
use lifecycle_top::stacks::python::{self, PyThreadStack};
use lifecycle_top::stacks::{self, SourceKind, StackOptions};
use stacks_common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// pyenv's interpreter of `version` (e.g. "3.12.1"); fails naming it when it is missing.
fn interpreter(version: &str) -> PathBuf {
    let minor = version.rsplit_once('.').map_or(version, |(m, _)| m);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = PathBuf::from(format!(
        "{home}/.pyenv/versions/{version}/bin/python{minor}"
    ));
    assert!(
        path.exists(),
        "Python {version} is missing at {}: install it (pyenv install {version})",
        path.display()
    );
    path
}

/// The blocked-threads target under `python`, started after writing its own view of its
/// threads (native id -> frames) once every named thread is blocked.
fn target(python: &PathBuf, extra: usize) -> (Target, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stacks.json");
    let mut cmd = Command::new(python);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/targets/stacks_blocked.py"
    ))
    .arg(extra.to_string())
    .arg(&path);
    let t = Target::start(cmd, &[], Some(dir));
    let v = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (t, v)
}

fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}

/// (function, file, line) of each frame.
fn frames(t: &PyThreadStack) -> Vec<(String, String, Option<u32>)> {
    t.frames
        .iter()
        .map(|f| {
            (
                f.function.clone(),
                f.file.clone().unwrap_or_default(),
                f.line,
            )
        })
        .collect()
}

/// The worker threads (the main thread polls its parent and moves between lines).
fn workers(list: &[PyThreadStack], pid: i32) -> HashMap<i32, Vec<(String, String, Option<u32>)>> {
    list.iter()
        .filter(|t| t.tid != pid)
        .map(|t| (t.tid, frames(t)))
        .collect()
}

/// The reader's stacks of a target under `version` equal py-spy's, thread by thread, and
/// match what the target says of itself.
fn same_as_py_spy(version: &str) {
    let python = interpreter(version);
    let (t, own_view) = target(&python, 4);
    let pid = t.pid();
    let start = lifecycle_top::collect::procfs::read_start_time(pid).unwrap();
    let reader = Reader::open(pid, &maps(pid)).unwrap_or_else(|f| panic!("{version}: {f:?}"));
    assert_eq!(reader.version(), version);
    let ours = reader.read().unwrap_or_else(|f| panic!("{version}: {f:?}"));
    let theirs = python::read_with_py_spy(pid, start).unwrap();
    let (a, b) = (workers(&ours.threads, pid), workers(&theirs, pid));
    assert_eq!(a.len(), 6, "{version}: 6 worker threads expected: {a:#?}");
    assert_eq!(a, b, "{version}: the built-in reader and py-spy disagree");
    // A handful of batched reads, not one per struct.
    assert!(ours.calls < 40, "{version}: {} reads", ours.calls);
    // Joined to the right kernel thread: the target's own view, by native id.
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    for th in own_view["threads"].as_array().unwrap() {
        let tid = th["native_id"].as_i64().unwrap() as i32;
        if tid == pid {
            continue;
        }
        assert!(
            tids.contains(&tid),
            "{version}: tid {tid} is not a thread of {pid}"
        );
        let got = &a[&tid];
        let want: Vec<(String, String, Option<u32>)> = th["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap().to_string(),
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_u64().map(|l| l as u32),
                )
            })
            .collect();
        // co_qualname (ours) ends with co_name (the target's).
        let short: Vec<(String, String, Option<u32>)> = got
            .iter()
            .map(|(f, file, line)| {
                let name = f.rsplit('.').next().unwrap_or(f).to_string();
                (name, file.clone(), *line)
            })
            .collect();
        assert_eq!(short, want, "{version}: thread {tid} ({})", th["name"]);
    }
    drop(t);
}

#[test]
fn python_3_11_frames_equal_py_spy() {
    same_as_py_spy("3.11.7");
}

#[test]
fn python_3_12_frames_equal_py_spy() {
    same_as_py_spy("3.12.1");
}

#[test]
fn python_3_13_frames_equal_py_spy() {
    same_as_py_spy("3.13.0");
}

#[test]
fn a_capture_uses_the_built_in_reader_and_joins_kernel_threads() {
    let (t, _) = python_target(2, true);
    let snap = stacks::capture(t.pid(), &[], &StackOptions::default());
    let lock = snap
        .threads
        .iter()
        .find(|t| {
            t.stack(SourceKind::PySpyPython)
                .is_some_and(|s| has_function(s, "py_blocked_on_lock"))
        })
        .unwrap_or_else(|| panic!("no python frames:\n{}", dump(&snap)));
    let py = &lock.stacks[0];
    assert_eq!(py.source, SourceKind::PySpyPython);
    assert!(
        py.note
            .as_deref()
            .is_some_and(|n| n.starts_with("CPython 3.11")),
        "{:?}",
        py.note
    );
    assert_eq!(
        lock.kernel.as_ref().unwrap().wait.syscall.as_deref(),
        Some("futex")
    );
}

#[test]
fn a_layout_that_does_not_fit_falls_back_to_py_spy() {
    let (t, _) = python_target(2, true);
    let pid = t.pid();
    let start = lifecycle_top::collect::procfs::read_start_time(pid).unwrap();
    // Frames' code pointers read 8 bytes off: no code object there.
    let shifted = |l: &mut lifecycle_top::stacks::cpython::layout::Layout| l.frame_code += 8;
    let reader = Reader::open(pid, &maps(pid)).unwrap().with_layout(shifted);
    match reader.read() {
        Err(Failure::Inconsistent(why)) => assert!(why.contains("not a code object"), "{why}"),
        other => panic!("a wrong layout must be caught: {other:?}"),
    }
    let out = python::read_outside(pid, start, None, Some(shifted)).unwrap();
    assert!(!out.built_in);
    assert!(
        out.note.starts_with("py-spy") && out.note.contains("inconsistent"),
        "{}",
        out.note
    );
    let theirs = python::read_with_py_spy(pid, start).unwrap();
    assert_eq!(workers(&out.threads, pid), workers(&theirs, pid));
}

#[test]
fn an_unsupported_interpreter_falls_back_with_the_reason_in_json() {
    let python = interpreter("3.10.13");
    let (t, _) = target(&python, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_lifecycle-top"))
        .args(["stacks", "--json", "--pid", &t.pid().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Joined stacks carry the reader in their note; 3.10 has no native thread id, so its
    // stacks stay unjoined and the process-wide line says who read them.
    let notes: Vec<String> = v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["stacks"].as_array().unwrap())
        .filter(|s| s["source"] == "py_spy_python")
        .filter_map(|s| s["note"].as_str().map(str::to_owned))
        .chain(
            v["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["source"] == "py_spy_python")
                .filter_map(|e| e["message"].as_str().map(str::to_owned)),
        )
        .collect();
    assert!(!notes.is_empty(), "no word of the python reader: {v:#}");
    for n in &notes {
        assert!(
            n.contains("py-spy; built-in reader:") && n.contains("older than 3.11"),
            "the fallback and its reason: {n}"
        );
    }
    // py-spy did read the 3.10 interpreter: 1 + 2 worker threads and the main one.
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("4 Python threads could not be joined")),
        "{notes:#?}"
    );
}

/// The location-table decoder gives CPython's own line for every instruction of real code
/// objects (`co_lines()`), for each supported version.
#[test]
fn location_tables_decode_like_cpython() {
    let script = r#"
import json, threading, json.decoder, os
out = []
for f in [threading.Condition.wait, threading.Thread._bootstrap_inner, json.decoder.JSONDecoder.raw_decode, os.walk]:
    c = f.__code__
    out.append({"table": c.co_linetable.hex(), "first": c.co_firstlineno,
                "lines": [[s, e, l] for s, e, l in c.co_lines()]})
print(json.dumps(out))
"#;
    for version in ["3.11.7", "3.12.1", "3.13.0"] {
        let out = Command::new(interpreter(version))
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut checked = 0;
        for code in v.as_array().unwrap() {
            let hex = code["table"].as_str().unwrap();
            let table: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let first = code["first"].as_i64().unwrap() as i32;
            for r in code["lines"].as_array().unwrap() {
                let Some(line) = r[2].as_i64() else { continue };
                let (s, e) = (r[0].as_i64().unwrap(), r[1].as_i64().unwrap());
                for lasti in (s..e).step_by(2) {
                    let got = stacks::cpython::lines::line_for(&table, first, lasti);
                    assert_eq!(i64::from(got), line, "{version}: offset {lasti}");
                    checked += 1;
                }
            }
        }
        assert!(
            checked > 50,
            "{version}: only {checked} instructions checked"
        );
    }
}

/// A thread running Python code moves under the reader: every read of it is either a real
/// stack (its frames, outermost first, are the thread's call path) or refused, never a mix.
#[test]
fn a_running_thread_reads_as_a_real_stack() {
    let script = r#"
import os, sys, threading, time
def busy_leaf(n):
    return sum(range(n))
def busy_middle():
    x = 0
    for i in range(50):
        x += busy_leaf(i)
    return x
def busy_outer():
    while True:
        busy_middle()
threading.Thread(target=busy_outer, name="busy", daemon=True).start()
print("ready", flush=True)
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.2)
"#;
    let mut cmd = Command::new(interpreter("3.11.7"));
    cmd.args(["-c", script]);
    let t = Target::start(cmd, &[], None);
    let pid = t.pid();
    let reader = Reader::open(pid, &maps(pid)).unwrap();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..200 {
        let read = match reader.read() {
            Ok(r) => r,
            Err(Failure::Inconsistent(_)) => {
                refused += 1;
                continue;
            }
            Err(f) => panic!("{f:?}"),
        };
        let Some(busy) = read
            .threads
            .iter()
            .find(|t| t.frames.iter().any(|f| f.function == "busy_outer"))
        else {
            continue; // not started yet
        };
        let names: Vec<&str> = busy
            .frames
            .iter()
            .rev()
            .map(|f| f.function.as_str())
            .collect();
        let path = [
            "Thread._bootstrap",
            "Thread._bootstrap_inner",
            "Thread.run",
            "busy_outer",
        ];
        assert_eq!(&names[..4], &path, "{names:?}");
        // Below busy_outer: nothing, busy_middle, or busy_middle -> busy_leaf.
        let rest = &names[4..];
        assert!(
            matches!(rest, [] | ["busy_middle"] | ["busy_middle", "busy_leaf"]),
            "not a call path of the busy thread: {names:?}"
        );
        ok += 1;
    }
    assert!(ok > 100, "{ok} good reads, {refused} refused");
}
