//! Python frames without an agent: the py-spy crate as a library reads CPython's interpreter
//! state from the target's memory (process_vm_readv) and we join its threads to kernel tids
//! by `os_thread_id` (on the PyThreadState since CPython 3.11; older versions give no tid
//! and their stacks are reported unjoined). Only the non-blocking strategy is used: py-spy's
//! locking mode would ptrace-stop every thread in-process, without our watchdog. A read can
//! race the interpreter, so it is retried once. The `PythonSpy` (binary parsing, symbol
//! lookup: tens of ms) is cached per process for warm snapshots.

use super::python::PyThreadStack;
use super::{Frame, SourceError, SourceKind};
use py_spy::config::LockingStrategy;
use py_spy::{Config, PythonSpy};
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

thread_local! {
    // PythonSpy holds file maps and interpreter addresses for one process: reuse it.
    static SPIES: RefCell<HashMap<(i32, u64), PythonSpy>> = RefCell::new(HashMap::new());
}

fn config() -> Config {
    Config {
        blocking: LockingStrategy::NonBlocking,
        native: false,
        collect_thread_names: false,
        ..Config::default()
    }
}

/// One line, no backtrace: py-spy errors are anyhow chains.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Python stacks of `pid` (identified with its start time) read from outside.
pub fn capture(pid: i32, start_time: u64) -> Result<Vec<PyThreadStack>, SourceError> {
    let err = |m: String| SourceError {
        source: SourceKind::PySpyPython,
        message: m,
    };
    SPIES.with(|cell| {
        let mut spies = cell.borrow_mut();
        spies.retain(|(p, _), _| std::path::Path::new(&format!("/proc/{p}")).exists());
        let spy = match spies.entry((pid, start_time)) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(PythonSpy::new(pid as py_spy::Pid, &config()).map_err(|e| {
                err(format!(
                    "py-spy cannot read this interpreter: {} (use the agent: launch under lifecycle-top)",
                    one_line(&e)
                ))
            })?),
        };
        let traces = match spy.get_stack_traces() {
            Ok(t) => t,
            // The interpreter moved under a non-blocking read: one more try.
            Err(_) => spy.get_stack_traces().map_err(|e| {
                err(format!(
                    "py-spy read raced the interpreter twice: {} (retry the snapshot)",
                    one_line(&e)
                ))
            })?,
        };
        Ok(traces
            .into_iter()
            .map(|t| PyThreadStack {
                tid: t
                    .os_thread_id
                    .and_then(|id| i32::try_from(id).ok())
                    .unwrap_or(0),
                name: t.thread_name,
                frames: t
                    .frames
                    .into_iter()
                    .map(|f| Frame {
                        function: f.name,
                        file: Some(f.filename),
                        line: u32::try_from(f.line).ok(),
                        ..Frame::default()
                    })
                    .collect(),
            })
            .collect())
    })
}
