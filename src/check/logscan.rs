//! Shutdown warnings and tracebacks found in a launched command's log (its stdout+stderr).
//!
//! The source without an agent, and a second source with one: the asyncio warnings users
//! hit at shutdown (the seed's "Loop <...> that handles pid N is closed", "exception was
//! never retrieved", ...), exceptions that killed a thread, and top-level tracebacks.
//! Kinds carry the names the agent uses. A block that belongs to one finding (the
//! traceback under "Task exception was never retrieved" or "Exception in thread X:") is
//! consumed by it and is not reported again as an unhandled exception.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

/// Largest `detail` kept per finding, in bytes (cut on a char boundary).
pub const DETAIL_CAP: usize = 4 * 1024;
/// Only the last this-many bytes of a log are scanned (line numbers stay file-absolute).
pub const SCAN_CAP: u64 = 32 * 1024 * 1024;

/// What a finding is; serialized with the agent's names (`loop_closed_watcher`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// "Loop <...> that handles pid N is closed" (asyncio child watcher, loop closed first).
    LoopClosedWatcher,
    /// "Future/Task/_GatheringFuture exception was never retrieved".
    ExceptionNeverRetrieved,
    /// "Task was destroyed but it is pending!".
    TaskDestroyedPending,
    /// "Executing <...> took N.NNN seconds" (debug mode, a blocking callback).
    SlowCallback,
    /// "RuntimeWarning: coroutine '...' was never awaited".
    NeverAwaited,
    /// "ResourceWarning: unclosed ...".
    ResourceWarning,
    /// "Exception in thread NAME:" and its traceback.
    ThreadException,
    /// A top-level "Traceback (most recent call last):" block ending in `ExcType: message`.
    UnhandledException,
    /// "Exception ignored in: <obj>" and its traceback: an exception CPython could not raise
    /// (in `__del__`, a callback, `threading._shutdown`...), printed and dropped.
    Unraisable,
}

impl WarningKind {
    pub const ALL: [WarningKind; 9] = [
        WarningKind::LoopClosedWatcher,
        WarningKind::ExceptionNeverRetrieved,
        WarningKind::TaskDestroyedPending,
        WarningKind::SlowCallback,
        WarningKind::NeverAwaited,
        WarningKind::ResourceWarning,
        WarningKind::ThreadException,
        WarningKind::UnhandledException,
        WarningKind::Unraisable,
    ];

    /// The agent's name for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::LoopClosedWatcher => "loop_closed_watcher",
            WarningKind::ExceptionNeverRetrieved => "exception_never_retrieved",
            WarningKind::TaskDestroyedPending => "task_destroyed_pending",
            WarningKind::SlowCallback => "slow_callback",
            WarningKind::NeverAwaited => "never_awaited",
            WarningKind::ResourceWarning => "resource_warning",
            WarningKind::ThreadException => "thread_exception",
            WarningKind::UnhandledException => "unhandled_exception",
            WarningKind::Unraisable => "unraisable",
        }
    }

    /// The kind with this agent name, if any.
    pub fn from_name(name: &str) -> Option<WarningKind> {
        WarningKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for WarningKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One warning or traceback found in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFinding {
    pub kind: WarningKind,
    /// One line, from the start of the warning text (a logging prefix is dropped).
    pub message: String,
    /// The whole block (warning line, `future:`/`task:` lines, traceback), capped at 4 KiB.
    pub detail: String,
    /// The exception type, where the block names one (`ValueError`, `asyncio.exceptions.CancelledError`).
    pub exc_type: Option<String>,
    /// 1-based line number of the block's first line in the file.
    pub line: usize,
}

fn re(pattern: &str) -> Regex {
    // Constant patterns below; a typo is a programming error caught by the unit tests.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("constant regex")
}

static LOOP_CLOSED: LazyLock<Regex> =
    LazyLock::new(|| re(r"\bLoop\b.*?\bthat handles pid (\d+) is closed"));
static NEVER_RETRIEVED: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\w+) exception was never retrieved"));
static DESTROYED_PENDING: LazyLock<Regex> =
    LazyLock::new(|| re(r"Task was destroyed but it is pending!"));
static SLOW_CALLBACK: LazyLock<Regex> =
    LazyLock::new(|| re(r"\bExecuting (<.*>|\S.*?) took (\d+(?:\.\d+)?) seconds"));
static NEVER_AWAITED: LazyLock<Regex> =
    LazyLock::new(|| re(r"RuntimeWarning: coroutine '([^']*)' was never awaited"));
static RESOURCE: LazyLock<Regex> = LazyLock::new(|| re(r"ResourceWarning: unclosed\b.*"));
static THREAD_EXC: LazyLock<Regex> = LazyLock::new(|| re(r"^Exception in thread (.+):\s*$"));
static IGNORED: LazyLock<Regex> = LazyLock::new(|| re(r"^Exception ignored (?:in|on|while)\b.*$"));
static TRACEBACK: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*Traceback \(most recent call last\):\s*$"));
/// The line ending a traceback: `pkg.mod.ExcType: message` or a bare `ExcType`.
static EXC_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::\s?(.*))?$"));
/// `exception=ConnectionError('...')` in a `future:`/`task:` repr.
static EXC_IN_REPR: LazyLock<Regex> =
    LazyLock::new(|| re(r"exception=([A-Za-z_][A-Za-z0-9_.]*)\("));

const CHAIN_LINES: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

/// A parsed traceback block: `lines[start..end]`, its final exception line's type.
struct Block {
    end: usize,
    exc_type: Option<String>,
    exc_line: Option<String>,
}

/// Parses the traceback starting at `lines[start]` (the "Traceback" line), following
/// chained exceptions. Returns where it ends (exclusive).
fn traceback_block(lines: &[&str], start: usize) -> Block {
    let mut i = start + 1;
    let mut exc_type = None;
    let mut exc_line = None;
    loop {
        // Frames: indented lines (`  File ...`, source, carets).
        while i < lines.len() && (lines[i].starts_with(' ') || lines[i].starts_with('\t')) {
            i += 1;
        }
        // The exception line.
        if i < lines.len()
            && let Some(c) = EXC_LINE.captures(lines[i])
        {
            exc_type = c.get(1).map(|m| m.as_str().to_string());
            exc_line = Some(lines[i].to_string());
            i += 1;
        }
        // Chained: blank, "During handling ...", blank, "Traceback ...".
        let mut j = i;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        if j < lines.len() && CHAIN_LINES.contains(&lines[j].trim()) {
            let mut k = j + 1;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            if k < lines.len() && TRACEBACK.is_match(lines[k]) {
                i = k + 1;
                continue;
            }
        }
        return Block {
            end: i,
            exc_type,
            exc_line,
        };
    }
}

fn cap_detail(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    if s.len() > DETAIL_CAP {
        let marker = "\n... (truncated)";
        let mut cut = DETAIL_CAP - marker.len();
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(marker);
    }
    s
}

fn one_line(s: &str) -> String {
    s.trim().to_string()
}

/// Scans log text; `first_line` is the 1-based number of the text's first line.
pub fn scan_text_from(text: &str, first_line: usize) -> Vec<LogFinding> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let at = first_line + i;
        let finding = |kind, message: String, block: &[&str], exc_type| LogFinding {
            kind,
            message,
            detail: cap_detail(block),
            exc_type,
            line: at,
        };
        if let Some(m) = LOOP_CLOSED.find(line) {
            out.push(finding(
                WarningKind::LoopClosedWatcher,
                one_line(&line[m.start()..]),
                &lines[i..=i],
                None,
            ));
            i += 1;
        } else if let Some(m) = NEVER_RETRIEVED.find(line) {
            // "future: <...>" / "task: <...>", then an optional traceback.
            let mut j = i + 1;
            let mut exc_type = None;
            if j < lines.len()
                && (lines[j].starts_with("future: ") || lines[j].starts_with("task: "))
            {
                exc_type = EXC_IN_REPR
                    .captures(lines[j])
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str().to_string());
                j += 1;
            }
            if j < lines.len() && TRACEBACK.is_match(lines[j]) {
                let b = traceback_block(&lines, j);
                exc_type = b.exc_type.or(exc_type);
                j = b.end;
            }
            out.push(finding(
                WarningKind::ExceptionNeverRetrieved,
                one_line(&line[m.start()..]),
                &lines[i..j],
                exc_type,
            ));
            i = j;
        } else if let Some(m) = DESTROYED_PENDING.find(line) {
            let mut j = i + 1;
            if j < lines.len() && lines[j].starts_with("task: ") {
                j += 1;
            }
            out.push(finding(
                WarningKind::TaskDestroyedPending,
                one_line(&line[m.start()..]),
                &lines[i..j],
                None,
            ));
            i = j;
        } else if let Some(m) = SLOW_CALLBACK.find(line) {
            out.push(finding(
                WarningKind::SlowCallback,
                one_line(&line[m.start()..]),
                &lines[i..=i],
                None,
            ));
            i += 1;
        } else if NEVER_AWAITED.is_match(line) || RESOURCE.is_match(line) {
            let kind = if NEVER_AWAITED.is_match(line) {
                WarningKind::NeverAwaited
            } else {
                WarningKind::ResourceWarning
            };
            // `path:N: RuntimeWarning: ...`, the indented source line, and the
            // "Enable tracemalloc ..." hint.
            let mut j = i + 1;
            while j < lines.len() && lines[j].starts_with("  ") {
                j += 1;
            }
            if j < lines.len() && lines[j].contains("Enable tracemalloc") {
                j += 1;
            }
            out.push(finding(kind, one_line(line), &lines[i..j], None));
            i = j;
        } else if THREAD_EXC.is_match(line) {
            let mut j = i + 1;
            let mut exc_type = None;
            if j < lines.len() && TRACEBACK.is_match(lines[j]) {
                let b = traceback_block(&lines, j);
                exc_type = b.exc_type;
                j = b.end;
            }
            out.push(finding(
                WarningKind::ThreadException,
                one_line(line),
                &lines[i..j],
                exc_type,
            ));
            i = j;
        } else if IGNORED.is_match(line) {
            // Its traceback (or a bare exception line) is part of it, not a top-level one.
            let mut j = i + 1;
            let mut exc_type = None;
            let mut exc_line = None;
            if j < lines.len() && TRACEBACK.is_match(lines[j]) {
                let b = traceback_block(&lines, j);
                (exc_type, exc_line, j) = (b.exc_type, b.exc_line, b.end);
            } else if let Some(c) = lines.get(j).and_then(|l| EXC_LINE.captures(l)) {
                exc_type = c.get(1).map(|m| m.as_str().to_string());
                exc_line = Some(lines[j].to_string());
                j += 1;
            }
            let mut message = one_line(line);
            if let Some(e) = exc_line {
                message.push_str(&format!(" ({})", e.trim()));
            }
            out.push(finding(
                WarningKind::Unraisable,
                message,
                &lines[i..j],
                exc_type,
            ));
            i = j;
        } else if TRACEBACK.is_match(line) {
            let b = traceback_block(&lines, i);
            let message = b.exc_line.as_deref().map_or_else(
                || "Traceback (most recent call last): (no exception line)".to_string(),
                one_line,
            );
            out.push(finding(
                WarningKind::UnhandledException,
                message,
                &lines[i..b.end],
                b.exc_type,
            ));
            i = b.end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Scans log text whose first line is line 1.
pub fn scan_text(text: &str) -> Vec<LogFinding> {
    scan_text_from(text, 1)
}

/// Reads the log (its last [`SCAN_CAP`] bytes, from a line start) as text and the
/// 1-based number of its first line.
fn read_log(path: &Path) -> std::io::Result<(String, usize)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut first_line = 1;
    let mut bytes = Vec::new();
    if len > SCAN_CAP {
        // Count the lines skipped so line numbers stay absolute.
        let skip = len - SCAN_CAP;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = skip;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            first_line += buf[..n].iter().filter(|&&b| b == b'\n').count();
            left -= n as u64;
        }
        f.seek(SeekFrom::Start(skip))?;
        f.read_to_end(&mut bytes)?;
        // Drop the partial first line.
        if let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            bytes.drain(..=nl);
            first_line += 1;
        }
    } else {
        f.read_to_end(&mut bytes)?;
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), first_line))
}

/// All findings in the log file, in file order.
pub fn scan_file(path: &Path) -> std::io::Result<Vec<LogFinding>> {
    let (text, first) = read_log(path)?;
    Ok(scan_text_from(&text, first))
}

/// The last traceback block in the text (wherever it appears: top level, thread,
/// never-retrieved), with chained exceptions, capped at 4 KiB.
pub fn last_traceback_in(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut last = None;
    let mut i = 0;
    while i < lines.len() {
        if TRACEBACK.is_match(lines[i]) {
            let b = traceback_block(&lines, i);
            last = Some(cap_detail(&lines[i..b.end]));
            i = b.end.max(i + 1);
        } else {
            i += 1;
        }
    }
    last
}

/// The last traceback in the log file; `None` when there is none or it cannot be read.
pub fn last_traceback(path: &Path) -> Option<String> {
    let (text, _) = read_log(path).ok()?;
    last_traceback_in(&text)
}

/// The last `n` lines of the log file (no trailing empty line); empty when unreadable.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let Ok((text, _)) = read_log(path) else {
        return Vec::new();
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Vec::new();
    }
    let lines: Vec<&str> = text.split('\n').collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::process::{Command, Stdio};

    /// Runs a tiny real Python program, returns its stderr+stdout (as a log has them).
    /// A missing python3 fails the test, naming it.
    fn python(code: &str, args: &[&str]) -> String {
        let out = Command::new("python3")
            .args(args)
            .arg("-c")
            .arg(code)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("python3 is needed for this test (install python3): {e}"));
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    fn kinds(f: &[LogFinding]) -> Vec<&'static str> {
        f.iter().map(|f| f.kind.as_str()).collect()
    }

    fn only(text: &str, kind: WarningKind) -> LogFinding {
        let found = scan_text(text);
        let of: Vec<_> = found.iter().filter(|f| f.kind == kind).collect();
        assert_eq!(
            of.len(),
            1,
            "one {kind} in {:?}\n--- log ---\n{text}",
            kinds(&found)
        );
        of[0].clone()
    }

    #[test]
    fn loop_closed_watcher_from_a_real_run() {
        let text = python(
            r#"
import asyncio, threading, warnings
import asyncio.unix_events as u
if hasattr(u, "can_use_pidfd"):
    u.can_use_pidfd = lambda: False
if hasattr(asyncio, "ThreadedChildWatcher"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
procs = []
async def main():
    procs.append(await asyncio.create_subprocess_exec("sleep", "0.2"))
asyncio.run(main())
for t in threading.enumerate():
    if "waitpid" in t.name:
        t.join(5)
"#,
            &[],
        );
        let f = only(&text, WarningKind::LoopClosedWatcher);
        assert!(f.message.starts_with("Loop <"), "{}", f.message);
        assert!(f.message.ends_with("is closed"), "{}", f.message);
        // The seed's logging-formatted variants, prefix dropped.
        let seed = "2025-11-09 04:46:33,328 - asyncio - WARNING - Loop <_UnixSelectorEventLoop running=False closed=True debug=False> that handles pid 98928 is closed\n\
                    2025-11-09 04:46:33,328 - asyncio - WARNING - Loop that handles pid 98928 is closed\n";
        let found = scan_text(seed);
        assert_eq!(
            kinds(&found),
            ["loop_closed_watcher", "loop_closed_watcher"]
        );
        assert!(found[1].message.starts_with("Loop that handles pid 98928"));
        assert_eq!(found[1].line, 2);
    }

    #[test]
    fn exception_never_retrieved_from_a_real_run() {
        let text = python(
            r#"
import asyncio, gc
async def fails():
    raise ConnectionError("backend went away")
async def main():
    child = asyncio.ensure_future(asyncio.sleep(10))
    g = asyncio.gather(child)
    child.cancel()
    t = asyncio.ensure_future(fails())
    await asyncio.sleep(0.05)
    del g, t, child
    gc.collect()
asyncio.run(main())
"#,
            &[],
        );
        let found = scan_text(&text);
        let nr: Vec<_> = found
            .iter()
            .filter(|f| f.kind == WarningKind::ExceptionNeverRetrieved)
            .collect();
        assert_eq!(nr.len(), 2, "{text}");
        assert!(
            nr[0]
                .message
                .starts_with("_GatheringFuture exception was never retrieved")
        );
        assert!(
            nr[0]
                .exc_type
                .as_deref()
                .unwrap()
                .ends_with("CancelledError")
        );
        assert!(
            nr[1]
                .message
                .starts_with("Task exception was never retrieved")
        );
        assert_eq!(nr[1].exc_type.as_deref(), Some("ConnectionError"));
        assert!(nr[1].detail.contains("backend went away"));
        // Their tracebacks are theirs, not unhandled exceptions.
        assert!(
            !found
                .iter()
                .any(|f| f.kind == WarningKind::UnhandledException),
            "{:?}",
            kinds(&found)
        );
    }

    #[test]
    fn task_destroyed_pending_from_a_real_run() {
        let text = python(
            r#"
import asyncio, gc
loop = asyncio.new_event_loop()
pending = []
async def forever():
    await loop.create_future()
async def main():
    pending.append(loop.create_task(forever()))
    await asyncio.sleep(0)
loop.run_until_complete(main())
loop.close()
pending.clear()
gc.collect()
"#,
            &[],
        );
        let f = only(&text, WarningKind::TaskDestroyedPending);
        assert_eq!(f.message, "Task was destroyed but it is pending!");
        assert!(f.detail.contains("task: <Task pending"), "{}", f.detail);
    }

    #[test]
    fn slow_callback_from_a_real_run() {
        let text = python(
            r#"
import asyncio, time
async def main():
    asyncio.get_running_loop().slow_callback_duration = 0.05
    time.sleep(0.1)
asyncio.run(main(), debug=True)
"#,
            &[],
        );
        let f = only(&text, WarningKind::SlowCallback);
        assert!(f.message.starts_with("Executing <"), "{}", f.message);
        assert!(f.message.ends_with("seconds"), "{}", f.message);
    }

    #[test]
    fn never_awaited_from_a_real_run() {
        let text = python(
            r#"
import asyncio, gc
async def flush_metrics():
    pass
flush_metrics()
gc.collect()
"#,
            &[],
        );
        let f = only(&text, WarningKind::NeverAwaited);
        assert!(
            f.message
                .contains("RuntimeWarning: coroutine 'flush_metrics' was never awaited")
        );
        // The source line and the tracemalloc hint belong to it, not to anything else.
        assert_eq!(scan_text(&text).len(), 1, "{text}");
    }

    #[test]
    fn resource_warning_from_a_real_run() {
        let text = python(
            r#"
import socket, gc, os
s = socket.socket()
f = open(os.devnull)
del s, f
gc.collect()
"#,
            &["-W", "default"],
        );
        let found = scan_text(&text);
        assert_eq!(
            kinds(&found),
            ["resource_warning", "resource_warning"],
            "{text}"
        );
        assert!(
            found[0]
                .message
                .contains("ResourceWarning: unclosed <socket.socket")
        );
        assert!(found[1].message.contains("unclosed file"));
    }

    #[test]
    fn thread_exception_from_a_real_run() {
        let text = python(
            r#"
import threading
def worker():
    raise ValueError("bad config value")
t = threading.Thread(target=worker, name="config-loader")
t.start(); t.join()
print("after the thread")
"#,
            &[],
        );
        let found = scan_text(&text);
        assert_eq!(kinds(&found), ["thread_exception"], "{text}");
        let f = &found[0];
        assert_eq!(f.message, "Exception in thread config-loader:");
        assert_eq!(f.exc_type.as_deref(), Some("ValueError"));
        assert!(
            f.detail.ends_with("ValueError: bad config value"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn unraisable_from_a_real_run_is_not_an_unhandled_exception() {
        // `__del__` raising, and SystemExit raised by a SIGTERM handler inside
        // threading._shutdown (a forced stop): each printed as "Exception ignored in:".
        let text = python(
            r#"
import os, signal, sys, threading, time
class C:
    def __del__(self):
        raise ValueError("in del")
c = C(); del c
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
threading.Thread(target=lambda: (time.sleep(0.5), os.kill(os.getpid(), signal.SIGTERM))).start()
threading.Thread(target=time.sleep, args=(3,)).start()
print("main returns")
"#,
            &[],
        );
        let found = scan_text(&text);
        assert_eq!(kinds(&found), ["unraisable", "unraisable"], "{text}");
        assert!(
            found[0]
                .message
                .starts_with("Exception ignored in: <function C.__del__"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.ends_with("(ValueError: in del)"));
        assert_eq!(found[0].exc_type.as_deref(), Some("ValueError"));
        assert!(
            found[1]
                .message
                .starts_with("Exception ignored in: <module 'threading'"),
            "{}",
            found[1].message
        );
        assert_eq!(found[1].exc_type.as_deref(), Some("SystemExit"));
        assert!(found[1].detail.contains("_shutdown"), "{}", found[1].detail);
    }

    #[test]
    fn unhandled_exception_with_a_chain_from_a_real_run() {
        let text = python(
            r#"
print("READY")
try:
    {}["missing"]
except KeyError:
    raise RuntimeError("could not flush state: disk full")
"#,
            &[],
        );
        let found = scan_text(&text);
        assert_eq!(kinds(&found), ["unhandled_exception"], "{text}");
        let f = &found[0];
        assert_eq!(f.exc_type.as_deref(), Some("RuntimeError"));
        assert_eq!(f.message, "RuntimeError: could not flush state: disk full");
        assert!(f.detail.contains("KeyError"), "the chain is one block");
        assert_eq!(f.line, 2, "after READY");
        let tb = last_traceback_in(&text).unwrap();
        assert!(tb.starts_with("Traceback (most recent call last):"));
        assert!(tb.ends_with("RuntimeError: could not flush state: disk full"));
    }

    #[test]
    fn bare_exception_type_and_dotted_type() {
        let text = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyboardInterrupt\n";
        let f = only(text, WarningKind::UnhandledException);
        assert_eq!(f.exc_type.as_deref(), Some("KeyboardInterrupt"));
        let text = "Traceback (most recent call last):\n  File \"x.py\", line 1\nasyncio.exceptions.CancelledError\n";
        let f = only(text, WarningKind::UnhandledException);
        assert_eq!(
            f.exc_type.as_deref(),
            Some("asyncio.exceptions.CancelledError")
        );
    }

    #[test]
    fn detail_is_capped_on_a_char_boundary() {
        let mut text = String::from("Traceback (most recent call last):\n");
        for _ in 0..500 {
            text.push_str("  File \"é.py\", line 1, in f\n");
        }
        text.push_str("ValueError: x\n");
        let f = only(&text, WarningKind::UnhandledException);
        assert!(f.detail.len() <= DETAIL_CAP);
        assert!(f.detail.ends_with("(truncated)"));
        assert_eq!(f.exc_type.as_deref(), Some("ValueError"));
    }

    #[test]
    fn files_tail_and_last_traceback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "a\nTraceback (most recent call last):\n  File \"x\", line 1\nOSError: one\nb\n\
             Traceback (most recent call last):\n  File \"y\", line 2\nValueError: two\nc\n",
        )
        .unwrap();
        assert_eq!(tail(&path, 2), ["ValueError: two", "c"]);
        assert_eq!(tail(&path, 100).len(), 9);
        assert!(tail(&path, 0).is_empty());
        assert!(last_traceback(&path).unwrap().ends_with("ValueError: two"));
        let found = scan_file(&path).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].line, found[1].line), (2, 6));
        let missing = dir.path().join("nope");
        assert!(scan_file(&missing).is_err());
        assert!(tail(&missing, 3).is_empty());
        assert!(last_traceback(&missing).is_none());
    }

    #[test]
    fn names_round_trip_and_serialize_like_the_agent() {
        for k in WarningKind::ALL {
            assert_eq!(WarningKind::from_name(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
        assert_eq!(WarningKind::from_name("nope"), None);
    }

    #[test]
    fn ordinary_output_finds_nothing() {
        let text = "READY\nINFO: Shutting down\nLoop iteration 3\nExecuting migrations\nTracebacks are fun\n";
        assert!(scan_text(text).is_empty());
    }
}
