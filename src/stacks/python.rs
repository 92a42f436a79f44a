//! Python frames joined to kernel threads (and JavaScript frames, from the Node.js agent's
//! answer of the same shape). With an agent connected, its `stacks` response
//! (`sys._current_frames()` keyed by `Thread.native_id`) is parsed here; without one, a
//! CPython process is read from outside: by the built-in reader (`cpython`, 3.11-3.13) or,
//! for other versions and reads that do not hold together, by py-spy (`pyspy`). The choice
//! is made here ([`read_outside`]) and said in each stack's note. Frames are innermost first
//! everywhere, and Python stacks go first in a thread's list (they say the most).

use super::{Frame, SourceError, SourceKind, SourceStack, StackOptions, ThreadStacks};
use serde::Deserialize;
use std::fs;

/// The agent's `stacks` response: `{threads: [{native_id, name, frames: [{file, line,
/// function}]}]}`, frames innermost first unless `"order": "outermost_first"` is given.
#[derive(Debug, Deserialize)]
struct AgentStacks {
    threads: Vec<AgentThread>,
    #[serde(default)]
    order: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AgentThread {
    native_id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    frames: Vec<AgentFrame>,
}

#[derive(Debug, Deserialize)]
struct AgentFrame {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    line: Option<u32>,
    #[serde(default, alias = "name")]
    function: Option<String>,
}

/// One thread of an agent response.
#[derive(Debug, Clone, PartialEq)]
pub struct PyThreadStack {
    pub tid: i32,
    pub name: Option<String>,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

/// Python stacks from an agent response, by native thread id.
pub fn from_agent(v: &serde_json::Value) -> Result<Vec<PyThreadStack>, String> {
    // Accept the whole response line as well as its `result`.
    let v = v.get("result").unwrap_or(v);
    let parsed: AgentStacks = serde_json::from_value(v.clone()).map_err(|e| {
        format!("agent stacks response not understood: {e} (agent/lifecycle-top version mismatch?)")
    })?;
    let outer_first = parsed.order.as_deref() == Some("outermost_first");
    Ok(parsed
        .threads
        .into_iter()
        .filter_map(|t| {
            let tid = i32::try_from(t.native_id?).ok()?;
            let mut frames: Vec<Frame> = t
                .frames
                .into_iter()
                .map(|f| Frame {
                    function: f.function.unwrap_or_else(|| "??".into()),
                    file: f.file,
                    line: f.line,
                    ..Frame::default()
                })
                .collect();
            if outer_first {
                frames.reverse();
            }
            Some(PyThreadStack {
                tid,
                name: t.name,
                frames,
            })
        })
        .collect())
}

/// Does this process run CPython (executable or a loaded libpython named so)?
/// `maps_text` is /proc/PID/maps when already read (it is long with many threads).
pub fn is_python(pid: i32, maps_text: Option<&str>) -> bool {
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if exe
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("python"))
    {
        return true;
    }
    match maps_text {
        Some(m) => m.contains("/libpython"),
        None => {
            fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("/libpython"))
        }
    }
}

/// Joins the agent's `stacks` response into threads already captured (Python first: the
/// most telling). Returns false, with an error recorded, when the response is unusable.
pub fn join_agent(
    v: &serde_json::Value,
    threads: &mut [ThreadStacks],
    errors: &mut Vec<SourceError>,
) -> bool {
    // The Node.js agent answers the same shape with JavaScript frames (`runtime: "node"`);
    // a thread it has no frames for is not running JavaScript (idle in its event loop).
    let node = v
        .get("result")
        .unwrap_or(v)
        .get("runtime")
        .and_then(|r| r.as_str())
        == Some("node");
    match from_agent(v) {
        Ok(list) => {
            for PyThreadStack { tid, frames, .. } in list {
                if node && frames.is_empty() {
                    continue;
                }
                if let Some(t) = threads.iter_mut().find(|t| t.tid == tid) {
                    let stack = SourceStack {
                        source: if node {
                            SourceKind::AgentJs
                        } else {
                            SourceKind::AgentPython
                        },
                        frames,
                        note: None,
                    };
                    t.stacks.insert(0, stack);
                }
            }
            true
        }
        Err(message) => {
            errors.push(SourceError {
                source: SourceKind::AgentPython,
                message,
            });
            false
        }
    }
}

/// Python frames read from outside (no agent), and which reader gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Outside {
    pub threads: Vec<PyThreadStack>,
    /// Set on every stack: `CPython 3.11.7 reader` when the built-in reader
    /// ([`super::cpython`]) read them, else `py-spy: <why the built-in reader could not>`.
    pub note: String,
    /// The built-in reader gave them (not py-spy).
    pub built_in: bool,
}

thread_local! {
    // The built-in reader of each process (its layout and symbol addresses), kept for warm
    // snapshots on the `lt-pyspy` thread; a process it refused is remembered as refused.
    static READERS: std::cell::RefCell<std::collections::HashMap<(i32, u64), Result<super::cpython::Reader, String>>> =
        Default::default();
}

/// Read the Python stacks of `pid` (started at `start_time`) from outside: the built-in
/// reader for the CPython versions it knows (an inconsistent read is retried once), py-spy
/// for the others and when the built-in reader's reads do not hold together. `maps` is
/// /proc/PID/maps when already read. `edit_layout` (tests) alters the built-in reader's
/// layout, to check that a wrong one is caught and falls back.
pub fn read_outside(
    pid: i32,
    start_time: u64,
    maps: Option<&str>,
    edit_layout: Option<fn(&mut super::cpython::layout::Layout)>,
) -> Result<Outside, SourceError> {
    use super::cpython::{Failure, Reader};
    let reader = READERS.with(|cell| {
        let mut readers = cell.borrow_mut();
        readers.retain(|(p, _), _| std::path::Path::new(&format!("/proc/{p}")).exists());
        readers
            .entry((pid, start_time))
            .or_insert_with(|| {
                let owned;
                let maps = match maps {
                    Some(m) => m,
                    None => {
                        owned = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                        &owned
                    }
                };
                Reader::open(pid, maps).map_err(|f| f.reason().to_string())
            })
            .clone()
    });
    let why_not = match reader {
        Ok(reader) => {
            let reader = match edit_layout {
                Some(edit) => reader.with_layout(edit),
                None => reader,
            };
            // A read racing the interpreter (a thread starting, a frame pushed) once more.
            match reader.read().or_else(|_| reader.read()) {
                Ok(read) => {
                    return Ok(Outside {
                        threads: read.threads,
                        note: format!("CPython {} reader", reader.version()),
                        built_in: true,
                    });
                }
                Err(Failure::Inconsistent(r) | Failure::Unsupported(r)) => format!(
                    "the built-in CPython {} reader read inconsistent data twice ({r})",
                    reader.version()
                ),
            }
        }
        Err(r) => format!("built-in reader: {r}"),
    };
    match super::pyspy::capture(pid, start_time) {
        Ok(threads) => Ok(Outside {
            threads,
            note: format!("py-spy; {why_not}"),
            built_in: false,
        }),
        Err(mut e) => {
            e.message = format!("{}; {why_not}", e.message);
            Err(e)
        }
    }
}

/// py-spy's read alone (tests compare the built-in reader with it).
pub fn read_with_py_spy(pid: i32, start_time: u64) -> Result<Vec<PyThreadStack>, SourceError> {
    super::pyspy::capture(pid, start_time)
}

/// A read from outside under way on the `lt-pyspy` thread (see [`start`]).
pub struct Pending(std::sync::mpsc::Receiver<Result<Outside, SourceError>>);

/// Start reading Python stacks without an agent, if the options ask for it, no agent answer
/// is joined already and `pid` runs CPython. The read runs on its own thread while the
/// caller reads the kernel and native sources; [`finish`] joins it.
pub fn start(pid: i32, maps_text: Option<&str>, opts: &StackOptions) -> Option<Pending> {
    if !opts.pyspy || !is_python(pid, maps_text) {
        return None;
    }
    let start = match opts.expect_start_time {
        Some(st) => st,
        None => crate::collect::procfs::read_start_time(pid).ok()?,
    };
    let maps = maps_text.map(str::to_owned);
    Some(Pending(super::worker::PYSPY.submit(move || {
        read_outside(pid, start, maps.as_deref(), None)
    })))
}

/// Join a read started by [`start`] into `threads` (Python first).
pub fn finish(pending: Pending, threads: &mut [ThreadStacks], errors: &mut Vec<SourceError>) {
    let answer = pending.0.recv().unwrap_or_else(|_| {
        Err(SourceError {
            source: SourceKind::PySpyPython,
            message: "Python stack read failed internally (a bug: please report it with the log)"
                .into(),
        })
    });
    match answer {
        Ok(Outside {
            threads: list,
            note,
            ..
        }) => {
            let mut unjoined = 0;
            for PyThreadStack { tid, frames, .. } in list {
                match threads.iter_mut().find(|t| t.tid == tid) {
                    Some(t) => {
                        let stack = SourceStack {
                            source: SourceKind::PySpyPython,
                            frames,
                            note: Some(note.clone()),
                        };
                        t.stacks.insert(0, stack);
                    }
                    None if tid == 0 => unjoined += 1,
                    None => {} // a thread not asked for, or gone since
                }
            }
            if unjoined > 0 {
                errors.push(SourceError {
                    source: SourceKind::PySpyPython,
                    message: format!(
                        "{unjoined} Python threads could not be joined to kernel threads \
                         (CPython < 3.11 has no native id): use the agent for joined stacks \
                         (read by {note})"
                    ),
                });
            }
        }
        Err(e) => errors.push(e),
    }
}

/// Put Python stacks first in each thread's list (they are the most telling): the agent's
/// answer in `opts` if any, else a py-spy read ([`start`] + [`finish`] in one go).
pub fn join_into(
    pid: i32,
    maps_text: Option<&str>,
    threads: &mut [ThreadStacks],
    opts: &StackOptions,
    errors: &mut Vec<SourceError>,
) {
    if let Some(v) = &opts.python_from_agent
        && join_agent(v, threads, errors)
    {
        return;
    }
    if let Some(pending) = start(pid, maps_text, opts) {
        finish(pending, threads, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_response_innermost_first() {
        let v = serde_json::json!({"threads": [
            {"native_id": 42, "name": "worker", "frames": [
                {"file": "a.py", "line": 3, "function": "wait_here"},
                {"file": "a.py", "line": 9, "function": "run"}]},
            {"native_id": null, "frames": []}
        ]});
        let got = from_agent(&v).expect("parses");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tid, 42);
        assert_eq!(got[0].frames[0].function, "wait_here");
        assert_eq!(got[0].frames[0].line, Some(3));
    }

    #[test]
    fn honours_outermost_first_order() {
        let v = serde_json::json!({"order": "outermost_first", "threads": [
            {"native_id": 1, "frames": [{"function": "main"}, {"function": "leaf"}]}]});
        let got = from_agent(&v).expect("parses");
        assert_eq!(got[0].frames[0].function, "leaf");
    }

    #[test]
    fn rejects_garbage_with_one_line() {
        let err = from_agent(&serde_json::json!({"nope": 1})).expect_err("must fail");
        assert!(!err.contains('\n'));
    }
}
