//! `lifecycle-top stacks --pid N [--json] [--seize]`: one joined snapshot of every thread,
//! like `eu-stack -p` or `py-spy dump`, but with the kernel wait point, native frames and
//! Python frames side by side per thread. With an agent in the target, its Python (or
//! Node.js JavaScript) frames are asked for and shown first; a process it may not read is
//! refused (exit 2) with the reason and the remedy. Text formatting lives here, nowhere else.

use super::{Frame, StackOptions, StackSnapshot, ThreadStacks, capture};
use std::io::Write;

/// What `stacks` was asked for on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// JSON instead of text.
    pub json: bool,
    /// Allow PTRACE_SEIZE for threads the ptrace-free path cannot read.
    pub seize: bool,
    /// Read system libraries' separate DWARF too (file:line of libc frames), see
    /// [`StackOptions::debug_info`].
    pub debug_info: bool,
}

/// Capture and print. JSON is the serialised [`StackSnapshot`].
pub fn run(pid: i32, json: bool, seize: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let flags = Flags {
        json,
        seize,
        ..Flags::default()
    };
    run_with(pid, flags, out)
}

/// [`run`] with every command-line flag. The output is buffered (a dump of 100 threads is
/// thousands of lines: one write each cost more than the unwinding).
pub fn run_with(pid: i32, flags: Flags, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    run_buffered(pid, flags, &mut out)?;
    out.flush()?;
    Ok(())
}

fn run_buffered(pid: i32, flags: Flags, out: &mut dyn Write) -> anyhow::Result<()> {
    let Flags {
        json,
        seize,
        debug_info,
    } = flags;
    // The start time read now pins the pid: were the process to exit and the pid be reused
    // during the capture, the seize helper refuses the newcomer.
    let Ok(start_time) = crate::collect::procfs::read_start_time(pid) else {
        anyhow::bail!("no process with pid {pid} (check the pid with `ps -p {pid}`)");
    };
    // Nothing can be captured: say why and exit 2 (main prints the line) instead of an
    // empty dump that exits 0.
    if let Some(why) = super::refused(pid) {
        anyhow::bail!("{why}");
    }
    let mut opts = StackOptions {
        seize,
        expect_start_time: Some(start_time),
        debug_info,
        ..StackOptions::default()
    };
    // With an agent in the target (Python or Node.js), its frames go first: asked on a
    // thread of its own while the kernel and native sources are read.
    let agent = super::from_agent::may_have_agent(pid).then(|| {
        let key = crate::model::ProcKey { pid, start_time };
        std::thread::spawn(move || super::from_agent::request(key))
    });
    if agent.is_some() {
        opts.pyspy = false;
    }
    let mut snap = capture(pid, &[], &opts);
    if let Some(agent) = agent {
        let answer = agent
            .join()
            .unwrap_or_else(|_| Err("agent client panicked".into()));
        let joined = match answer {
            Ok(v) => super::python::join_agent(&v, &mut snap.threads, &mut snap.errors),
            Err(why) => {
                snap.errors.push(super::SourceError {
                    source: super::SourceKind::AgentPython,
                    message: format!("no stacks from the agent: {why}"),
                });
                false
            }
        };
        if !joined {
            // As without an agent: py-spy reads a CPython interpreter from outside.
            opts.pyspy = true;
            super::python::join_into(pid, None, &mut snap.threads, &opts, &mut snap.errors);
        }
    }
    // A JVM: its Java frames, joined by nid (a dump over the attach protocol, a few ms).
    let java = crate::jvm::is_jvm(pid).then(|| crate::jvm::thread_dump(pid));
    if json {
        // The snapshot's own shape, plus `jvm` (the parsed dump or its error) for a JVM.
        let mut value = serde_json::to_value(&snap)?;
        if let (Some(java), Some(obj)) = (&java, value.as_object_mut()) {
            let jvm = match java {
                Ok(d) => serde_json::json!({
                    "via": d.via,
                    "dump_ms": d.took.as_secs_f64() * 1000.0,
                    "threads": d.dump.threads,
                    "deadlocks": d.dump.deadlocks,
                }),
                Err(e) => serde_json::json!({ "error": e }),
            };
            obj.insert("jvm".into(), jvm);
        }
        serde_json::to_writer_pretty(&mut *out, &value)?;
        writeln!(out)?;
    } else {
        write_text_with_java(&snap, java.as_ref(), out)?;
    }
    Ok(())
}

/// `fn at file:line` or `fn (module)`.
pub fn frame_text(f: &Frame) -> String {
    let mut s = match (f.function.as_str(), f.addr) {
        // No symbol (stripped binary): the address still lets a user run addr2line later.
        ("??", Some(a)) => format!("?? {a:#x}"),
        _ => f.function.clone(),
    };
    match (&f.file, f.line) {
        (Some(file), Some(line)) => s.push_str(&format!(" at {file}:{line}")),
        (Some(file), None) => s.push_str(&format!(" at {file}")),
        _ => {
            if let Some(m) = &f.module {
                s.push_str(&format!(" ({m})"));
            }
        }
    }
    if f.inlined {
        s.push_str(" [inlined]");
    }
    s
}

/// One-line kernel summary: `S futex(futex 0x.. WAIT) wchan=futex_wait_queue vcsw=12`.
pub fn kernel_line(t: &ThreadStacks) -> String {
    let Some(k) = &t.kernel else {
        return "gone".into();
    };
    let mut s = format!("{}", k.state.as_char());
    match (&k.wait.syscall, k.wait.syscall_nr) {
        (Some(name), _) => s.push_str(&format!(" {name}({})", k.described_args.join(", "))),
        (None, Some(nr)) => s.push_str(&format!(" syscall {nr}")),
        (None, None) => {}
    }
    if let Some(w) = &k.wait.wchan {
        s.push_str(&format!(" wchan={w}"));
    }
    if let Some(v) = k.voluntary_ctxt_switches {
        s.push_str(&format!(" vcsw={v}"));
    }
    if k.tracer_pid != 0 {
        s.push_str(&format!(" traced-by={}", k.tracer_pid));
    }
    s
}

/// The human-readable dump.
pub fn write_text(snap: &StackSnapshot, out: &mut dyn Write) -> std::io::Result<()> {
    write_text_with_java(snap, None, out)
}

type JavaDump = Result<crate::jvm::Dump, String>;

/// [`write_text`], with a JVM's Java frames (and monitor lines) under each thread.
pub fn write_text_with_java(
    snap: &StackSnapshot,
    java: Option<&JavaDump>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "pid {}: {} threads, captured in {:.2} ms",
        snap.pid,
        snap.threads.len(),
        snap.capture_us as f64 / 1000.0
    )?;
    for e in &snap.errors {
        writeln!(out, "  ! [{}] {}", e.source.label(), e.message)?;
    }
    let dump = match java {
        Some(Ok(d)) => Some(&d.dump),
        Some(Err(e)) => {
            writeln!(out, "  ! [java] {e}")?;
            None
        }
        None => None,
    };
    for d in dump.map(|d| d.deadlocks.as_slice()).unwrap_or_default() {
        writeln!(out, "  ! [java] Java-level deadlock:")?;
        for e in &d.edges {
            writeln!(
                out,
                "      \"{}\" waits for <{}> (a {}), held by \"{}\"",
                e.thread, e.monitor.addr, e.monitor.class, e.held_by
            )?;
        }
    }
    for t in &snap.threads {
        writeln!(out, "\nthread {} \"{}\": {}", t.tid, t.name, kernel_line(t))?;
        if let Some(jt) = dump.and_then(|d| d.by_nid(t.tid)) {
            let daemon = if jt.daemon { ", daemon" } else { "" };
            writeln!(out, "  [java \"{}\"{daemon}, {}]", jt.name, jt.state)?;
            for l in crate::jvm::thread_lines(jt) {
                writeln!(out, "    {l}")?;
            }
        }
        for st in &t.stacks {
            let note = st
                .note
                .as_deref()
                .map(|n| format!(", {n}"))
                .unwrap_or_default();
            writeln!(out, "  [{}{}]", st.source.label(), note)?;
            for (i, f) in st.frames.iter().enumerate() {
                writeln!(out, "    #{i:<2} {}", frame_text(f))?;
            }
        }
        if let Some(k) = &t.kernel
            && !k.kernel_stack.is_empty()
        {
            writeln!(out, "  [kernel]")?;
            for (i, f) in k.kernel_stack.iter().enumerate() {
                writeln!(out, "    #{i:<2} {f}")?;
            }
        }
        for e in &t.errors {
            writeln!(out, "  ! [{}] {}", e.source.label(), e.message)?;
        }
    }
    Ok(())
}
