//! JVM targets: detection, a thread dump over HotSpot's attach protocol (or `jcmd`), the
//! dump parsed into typed threads and deadlocks, joined to /proc tids by `nid`.
//!
//! How the dump is taken: HotSpot's attach protocol spoken directly (`.attach_pid<PID>` file +
//! SIGQUIT the first time, then `threaddump -l` on the `/tmp/.java_pid<PID>` socket). Measured
//! on OpenJDK 17 (tests/fixtures/jvm/README.md): 1-2 ms warm, ~6.5 ms for the first attach,
//! against 160-280 ms and ~45 MB RSS for `jcmd PID Thread.print -l` (jcmd is a JVM itself),
//! and no JDK tools needed on the machine. `jcmd` stays as the fallback when the socket does
//! not come up, and can be forced with `LIFECYCLE_TOP_JVM_ATTACH=jcmd`.
//!
//! Before sending SIGQUIT the target is checked to *catch* it (a JVM run with `-Xrs` does not:
//! SIGQUIT would kill it) and not to have `-XX:+DisableAttachMechanism` (SIGQUIT would print
//! a dump into its own stdout and no socket would come up). Every failure is one line with
//! the reason and a remedy; the callers keep the rest of their output.

pub mod parse;
pub mod report;

pub use parse::{Deadlock, DeadlockEdge, JavaThread, Monitor, ThreadDump};

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long the first attach may take for the JVM to open its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(3);
/// Bound for reading the dump once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Is `pid` a JVM: comm or exe basename `java`, or `libjvm.so` mapped.
pub fn is_jvm(pid: i32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() == "java" {
        return true;
    }
    let exe_is_java = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n == "java"))
        .unwrap_or(false);
    // Line by line: a 1,000-thread target's maps are ~200 KB (a guard and a stack per
    // thread), read whole it was a step of the TUI's heap peak (bench/rss_breakdown.py --heap).
    exe_is_java
        || std::fs::File::open(format!("/proc/{pid}/maps")).is_ok_and(|f| {
            use std::io::BufRead;
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.ends_with("/libjvm.so"))
        })
}

/// A thread dump, parsed, with the way it was taken and its wall time.
#[derive(Debug, Clone)]
pub struct Dump {
    pub dump: ThreadDump,
    /// `attach` or `jcmd`.
    pub via: &'static str,
    pub took: Duration,
}

/// Take and parse a thread dump of JVM `pid`. `Err` is one line: reason and remedy.
pub fn thread_dump(pid: i32) -> Result<Dump, String> {
    let started = Instant::now();
    let force_jcmd = std::env::var("LIFECYCLE_TOP_JVM_ATTACH").is_ok_and(|v| v == "jcmd");
    let (text, via) = if force_jcmd {
        (jcmd_dump(pid)?, "jcmd")
    } else {
        match attach_dump(pid) {
            Ok(text) => (text, "attach"),
            Err(AttachError::Refused(why)) => return Err(why),
            Err(AttachError::NoSocket(why)) => match jcmd_dump(pid) {
                Ok(text) => (text, "jcmd"),
                Err(jcmd_why) => return Err(format!("{why}; {jcmd_why}")),
            },
        }
    };
    Ok(Dump {
        dump: parse::parse(&text),
        via,
        took: started.elapsed(),
    })
}

enum AttachError {
    /// The JVM cannot or will not be attached: no point in trying jcmd.
    Refused(String),
    /// The socket did not come up or did not answer: jcmd may still manage.
    NoSocket(String),
}

/// The pid the JVM knows itself by (the last `NSpid` entry: differs inside a container).
fn ns_pid(status: &str, pid: i32) -> i32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|s| s.split_whitespace().last())
        .and_then(|s| s.parse().ok())
        .unwrap_or(pid)
}

/// Does the process catch SIGQUIT (`SigCgt` bit 2)?
fn catches_sigquit(status: &str) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(mask & (1 << (libc::SIGQUIT - 1)) != 0)
}

/// `-XX:+DisableAttachMechanism` on the command line or in the JVM's option variables.
fn attach_disabled(pid: i32) -> bool {
    const FLAG: &str = "-XX:+DisableAttachMechanism";
    let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let cmdline = read("cmdline");
    let in_cmdline = cmdline.split(|&b| b == 0).any(|a| a == FLAG.as_bytes());
    let environ = read("environ");
    let in_env = environ.split(|&b| b == 0).any(|kv| {
        let kv = String::from_utf8_lossy(kv);
        ["JAVA_TOOL_OPTIONS=", "JDK_JAVA_OPTIONS=", "_JAVA_OPTIONS="]
            .iter()
            .any(|k| kv.starts_with(k) && kv.contains(FLAG))
    });
    in_cmdline || in_env
}

/// One attach at a time in this process: two first attaches racing would both send SIGQUIT,
/// and a SIGQUIT that reaches a JVM whose attach listener is already up prints a thread dump
/// into the target's own stdout.
static ATTACH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn attach_dump(pid: i32) -> Result<String, AttachError> {
    let _one = ATTACH.lock().unwrap_or_else(|e| e.into_inner());
    attach_dump_locked(pid)
}

fn attach_dump_locked(pid: i32) -> Result<String, AttachError> {
    use AttachError::{NoSocket, Refused};
    if attach_disabled(pid) {
        return Err(Refused(format!(
            "jvm: pid {pid} refuses attach (-XX:+DisableAttachMechanism): no Java frames; restart it without that flag to see them (kernel and native stacks still shown)"
        )));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        Refused(format!(
            "jvm: pid {pid}: /proc/{pid}/status unreadable ({e}); is it running?"
        ))
    })?;
    let nspid = ns_pid(&status, pid);
    let root = format!("/proc/{pid}/root");
    let socket = format!("{root}/tmp/.java_pid{nspid}");
    if !std::path::Path::new(&socket).exists() {
        if catches_sigquit(&status) == Some(false) {
            return Err(Refused(format!(
                "jvm: pid {pid} does not handle SIGQUIT (run with -Xrs?), so attaching would kill it: no Java frames; restart it without -Xrs to see them"
            )));
        }
        // The trigger file: in the JVM's cwd, as jcmd does (falls back to its /tmp).
        let trigger = [
            format!("/proc/{pid}/cwd/.attach_pid{nspid}"),
            format!("{root}/tmp/.attach_pid{nspid}"),
        ]
        .into_iter()
        .find(|p| std::fs::File::create(p).is_ok());
        let Some(trigger) = trigger else {
            return Err(NoSocket(format!(
                "jvm: cannot create the attach trigger file for pid {pid} (run as its user or root)"
            )));
        };
        // Through a pidfd, like every signal lifecycle-top sends: the (pid, start time) read
        // now is the process the pidfd names, so a pid reused meanwhile is never hit.
        let sent = crate::collect::procfs::read_start_time(pid)
            .map_err(|e| e.to_string())
            .and_then(|start_time| {
                crate::teardown::exec::signal(
                    crate::model::ProcKey { pid, start_time },
                    libc::SIGQUIT,
                )
                .map_err(|e| e.to_string())
            });
        let deadline = Instant::now() + SOCKET_WAIT;
        while sent.is_ok() && Instant::now() < deadline && !std::path::Path::new(&socket).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&trigger);
        if let Err(e) = sent {
            return Err(Refused(format!(
                "jvm: cannot signal pid {pid} to attach ({e}): run as its user or root"
            )));
        }
        if !std::path::Path::new(&socket).exists() {
            return Err(NoSocket(format!(
                "jvm: pid {pid} opened no attach socket within {} s (attach disabled in a flags file, or the JVM is busy or still starting)",
                SOCKET_WAIT.as_secs()
            )));
        }
    }
    let no_socket = |e: std::io::Error| {
        NoSocket(format!(
            "jvm: attach socket of pid {pid} did not answer ({e}; run as the JVM's user or root)"
        ))
    };
    let mut s = UnixStream::connect(&socket).map_err(no_socket)?;
    s.set_read_timeout(Some(READ_TIMEOUT)).map_err(no_socket)?;
    s.set_write_timeout(Some(READ_TIMEOUT)).map_err(no_socket)?;
    // Protocol 1: version, command, three arguments, each NUL-terminated.
    s.write_all(b"1\0threaddump\0-l\0\0\0").map_err(no_socket)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(no_socket)?;
    let text = String::from_utf8_lossy(&buf);
    let (code, body) = text.split_once('\n').unwrap_or((&text, ""));
    if code.trim() != "0" {
        return Err(NoSocket(format!(
            "jvm: pid {pid} answered threaddump with error {}: {}",
            code.trim(),
            body.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_string())
}

fn jcmd_dump(pid: i32) -> Result<String, String> {
    let out = std::process::Command::new("jcmd")
        .args([pid.to_string().as_str(), "Thread.print", "-l"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!("jvm: jcmd not runnable ({e}): install a JDK (apt-get install default-jdk-headless) or put jcmd on PATH to see Java frames")
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let why = stdout
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .find(|l| l.contains("Exception") || l.contains("rror"))
            .unwrap_or("no reason given")
            .to_string();
        let remedy = if why.contains("does not support the attach mechanism") {
            "restart it without -XX:+DisableAttachMechanism to see Java frames"
        } else {
            "run as the JVM's user, with the same JDK version"
        };
        return Err(format!(
            "jvm: jcmd {pid} Thread.print failed ({why}): {remedy}"
        ));
    }
    Ok(stdout)
}

/// One Java thread joined to a /proc tid, for `snapshot`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JoinedThread {
    /// The /proc tid (`nid`), `None` when the dump gave none or it is not a live tid.
    pub tid: Option<i32>,
    pub name: String,
    pub java_tid: Option<u64>,
    pub daemon: bool,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_to_lock: Option<Monitor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<Monitor>,
}

/// The `jvm` section of `snapshot --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JvmSection {
    /// How the dump was taken (`attach`, `jcmd`) and its wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_ms: Option<f64>,
    pub threads: Vec<JoinedThread>,
    pub deadlocks: Vec<Deadlock>,
    /// Why there are no threads (attach refused, no jcmd): one line with the remedy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The dump as an agent report ([`report::to_report`]), for `why` (not printed).
    #[serde(skip)]
    pub report: Option<crate::agent::protocol::Report>,
}

/// The `jvm` section for `pid` if it is a JVM, joined against the live `tids`.
pub fn section(pid: i32, tids: &[i32]) -> Option<JvmSection> {
    if !is_jvm(pid) {
        return None;
    }
    Some(match thread_dump(pid) {
        Ok(d) => JvmSection {
            report: Some(report::to_report(&d.dump, pid, tids, 1, 0)),
            via: Some(d.via),
            dump_ms: Some(d.took.as_secs_f64() * 1000.0),
            threads: d
                .dump
                .threads
                .iter()
                .map(|t| JoinedThread {
                    tid: t.nid.filter(|n| tids.contains(n)),
                    name: t.name.clone(),
                    java_tid: t.java_tid,
                    daemon: t.daemon,
                    state: t.state.clone(),
                    waiting_to_lock: t.waiting_to_lock.clone(),
                    locked: t.locked.clone(),
                })
                .collect(),
            deadlocks: d.dump.deadlocks,
            error: None,
        },
        Err(e) => JvmSection {
            via: None,
            dump_ms: None,
            threads: Vec::new(),
            deadlocks: Vec::new(),
            error: Some(e),
            report: None,
        },
    })
}

/// Java lines for one thread, under its other stacks in `stacks` text: the frames with their
/// monitor lines, jstack style.
pub fn thread_lines(t: &JavaThread) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in t.frames.iter().enumerate() {
        out.push(format!("#{i:<2} {f}"));
        for (_, l) in t.lock_lines.iter().filter(|(at, _)| *at == i) {
            out.push(format!("    - {l}"));
        }
    }
    if t.frames.is_empty() {
        for (_, l) in &t.lock_lines {
            out.push(format!("- {l}"));
        }
    }
    out
}

/// `LtJvm.sleepForever(LtJvm.java:41)` as a frame: function, file and line;
/// `java.lang.Thread.sleep(java.base@17.0.15/Native Method)`: function and module.
pub fn frame(text: &str) -> crate::stacks::Frame {
    let (function, place) = match text.strip_suffix(')').and_then(|t| t.split_once('(')) {
        Some((f, p)) => (f.to_string(), p),
        None => (text.to_string(), ""),
    };
    let (module, place) = match place.split_once('/') {
        Some((m, p)) => (Some(m.to_string()), p),
        None => (None, place),
    };
    let (file, line) = match place.rsplit_once(':') {
        Some((f, l)) if l.parse::<u32>().is_ok() => (Some(f.to_string()), l.parse().ok()),
        _ if place.ends_with(".java") => (Some(place.to_string()), None),
        _ => (None, None),
    };
    let module = match (module, place) {
        (m, "Native Method") => Some(m.map_or("native".to_string(), |m| format!("{m}, native"))),
        (m, _) => m,
    };
    crate::stacks::Frame {
        function,
        file,
        line,
        module,
        ..crate::stacks::Frame::default()
    }
}

/// The Java stack of one thread for a stack capture: its frames innermost first, each
/// monitor line (`- waiting to lock <0x..> (a Foo)`, `- locked <0x..> (a Foo)`) as a frame
/// of its own right under the frame it belongs to (function `- ...`, no file), and the thread
/// state with the daemon flag as the note.
pub fn java_stack(t: &JavaThread) -> crate::stacks::SourceStack {
    let mut frames = Vec::new();
    let lock_frame = |l: &str| crate::stacks::Frame {
        function: format!("- {l}"),
        ..crate::stacks::Frame::default()
    };
    for (i, f) in t.frames.iter().enumerate() {
        frames.push(frame(f));
        for (_, l) in t.lock_lines.iter().filter(|(at, _)| *at == i) {
            frames.push(lock_frame(l));
        }
    }
    if t.frames.is_empty() {
        frames.extend(t.lock_lines.iter().map(|(_, l)| lock_frame(l)));
    }
    let mut note = format!("\"{}\"", t.name);
    if t.daemon {
        note.push_str(", daemon");
    }
    if !t.state.is_empty() {
        note.push_str(&format!(", {}", t.state));
    }
    crate::stacks::SourceStack {
        source: crate::stacks::SourceKind::Java,
        frames,
        note: Some(note),
    }
}

/// Joins a dump's Java stacks into a capture's threads (by `nid`), best source first; the
/// JVM's deadlock report, or the reason there is no dump, becomes a process-wide line.
pub fn join_into(
    dump: Result<&ThreadDump, &str>,
    threads: &mut [crate::stacks::ThreadStacks],
    errors: &mut Vec<crate::stacks::SourceError>,
) {
    let d = match dump {
        Ok(d) => d,
        Err(e) => {
            errors.push(crate::stacks::SourceError {
                source: crate::stacks::SourceKind::Java,
                message: e.to_string(),
            });
            return;
        }
    };
    for dl in &d.deadlocks {
        let edges: Vec<String> = dl
            .edges
            .iter()
            .map(|e| {
                format!(
                    "\"{}\" waits for <{}> (a {}) held by \"{}\"",
                    e.thread, e.monitor.addr, e.monitor.class, e.held_by
                )
            })
            .collect();
        errors.push(crate::stacks::SourceError {
            source: crate::stacks::SourceKind::Java,
            message: format!("the JVM found a Java-level deadlock: {}", edges.join("; ")),
        });
    }
    for t in threads.iter_mut() {
        // The JVM's own threads (GC, compiler: no Java id) have no Java frames to show.
        if let Some(jt) = d
            .by_nid(t.tid)
            .filter(|jt| jt.java_tid.is_some() || !jt.frames.is_empty())
        {
            t.stacks.insert(0, java_stack(jt));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A process that maps a file named libjvm.so (an embedded JVM) is a JVM; one that does
    /// not, is not. A real python3 child mapping a real file.
    #[test]
    fn a_mapped_libjvm_makes_a_jvm() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libjvm.so");
        std::fs::write(&lib, vec![0u8; 4096]).unwrap();
        let code = "import mmap, sys, time\n\
                    f = open(sys.argv[1], 'rb')\n\
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n\
                    print('ready', flush=True)\n\
                    time.sleep(60)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", code])
            .arg(&lib)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test (apt-get install python3)");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let pid = child.id() as i32;
        let verdict = is_jvm(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(verdict, "libjvm.so is mapped");
        assert!(
            !is_jvm(std::process::id() as i32),
            "this test binary is no JVM"
        );
    }

    #[test]
    fn frames_and_lock_lines_as_a_java_stack() {
        let f = frame("LtJvm.lambda$main$2(LtJvm.java:22)");
        assert_eq!(
            (f.function.as_str(), f.file.as_deref(), f.line),
            ("LtJvm.lambda$main$2", Some("LtJvm.java"), Some(22))
        );
        let f = frame("java.lang.Thread.sleep(java.base@17.0.15/Native Method)");
        assert_eq!(
            (f.function.as_str(), f.file, f.module.as_deref()),
            (
                "java.lang.Thread.sleep",
                None,
                Some("java.base@17.0.15, native")
            )
        );
        let f = frame("java.lang.Thread.join(java.base@17.0.15/Thread.java:1313)");
        assert_eq!(
            (f.file.as_deref(), f.line),
            (Some("Thread.java"), Some(1313))
        );
        assert_eq!(
            frame("LtJvm$$Lambda$3/0x00007f5074001000.run(Unknown Source)").line,
            None
        );
        let d = parse::parse(include_str!("../../tests/fixtures/jvm/deadlock_hook.txt"));
        let t = d.threads.iter().find(|t| t.name == "lt-dead-1").unwrap();
        let s = java_stack(t);
        assert_eq!(s.source, crate::stacks::SourceKind::Java);
        assert_eq!(
            s.note.as_deref(),
            Some("\"lt-dead-1\", daemon, BLOCKED (on object monitor)")
        );
        assert_eq!(s.frames[0].function, "LtJvm.lambda$main$2");
        assert_eq!(
            s.frames[1].function,
            "- waiting to lock <0x000000069ec2e598> (a LtJvm$Beta)"
        );
        assert_eq!(
            s.frames[2].function,
            "- locked <0x000000069ec2ddd0> (a LtJvm$Alpha)"
        );
    }

    #[test]
    fn status_fields() {
        let st = "Name:\tjava\nNSpid:\t4242\t7\nSigCgt:\t0000000181005ccf\n";
        assert_eq!(ns_pid(st, 4242), 7);
        assert_eq!(catches_sigquit(st), Some(true));
        assert_eq!(catches_sigquit("SigCgt:\t0000000000000000\n"), Some(false));
        assert_eq!(ns_pid("", 9), 9);
    }

    #[test]
    fn lines_put_locks_under_their_frame() {
        let d = parse::parse(include_str!("../../tests/fixtures/jvm/deadlock_hook.txt"));
        let t = d.threads.iter().find(|t| t.name == "lt-dead-1").unwrap();
        let l = thread_lines(t);
        assert_eq!(l[0], "#0  LtJvm.lambda$main$2(LtJvm.java:22)");
        assert_eq!(
            l[1],
            "    - waiting to lock <0x000000069ec2e598> (a LtJvm$Beta)"
        );
        assert_eq!(l[2], "    - locked <0x000000069ec2ddd0> (a LtJvm$Alpha)");
    }
}
