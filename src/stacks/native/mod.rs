//! Native user-space stacks: framehop unwinds from .eh_frame, blazesym symbolizes. Preferred
//! capture is ptrace-free: a thread blocked in the kernel shows its user sp/pc in
//! /proc/TID/syscall; one process_vm_readv copies its stack, and re-reading the syscall file
//! confirms it did not move meanwhile. Threads running in user space need `seize` (opt-in,
//! see [`seize`]). Parsed ELF files, unwinders and symbols are cached across snapshots.

pub mod modules;
pub mod seize;
pub mod symbolize;
pub mod unwind;

use super::kernel::{self, SyscallLine};
use super::{SourceError, SourceKind, SourceStack, StackOptions, ThreadStacks};
use modules::{ElfCache, Mapping};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What is kept per target process between snapshots (a warm snapshot reuses all of it).
#[cfg(target_arch = "x86_64")]
struct ProcCache {
    exec_maps: Vec<Mapping>,
    unwinder: unwind::NativeUnwinder,
    rules: unwind::NativeCache,
    symbols: symbolize::Symbols,
    module_errors: Vec<String>,
}

#[derive(Default)]
struct NativeState {
    elf: ElfCache,
    #[cfg(target_arch = "x86_64")]
    procs: HashMap<(i32, u64), ProcCache>,
}

thread_local! {
    // blazesym's Symbolizer is !Send, so caches live per thread: call `capture` from one
    // long-lived thread (the app's stacks worker) to get warm snapshots.
    static STATE: RefCell<NativeState> = RefCell::new(NativeState::default());
}

fn err(message: String) -> SourceError {
    SourceError {
        source: SourceKind::Native,
        message,
    }
}

/// Unwind and symbolize the native stack of each thread, appending a `Native` stack.
#[cfg(target_arch = "x86_64")]
/// `maps_text` is /proc/PID/maps, read once per snapshot by the caller.
pub fn capture_into(
    pid: i32,
    maps_text: &str,
    threads: &mut [ThreadStacks],
    opts: &StackOptions,
    started: Instant,
    errors: &mut Vec<SourceError>,
) {
    let maps = modules::parse_maps(maps_text);
    let Some(st) = kernel::start_time(pid) else {
        return;
    };
    STATE.with(|cell| {
        let mut native = cell.borrow_mut();
        capture_with(&mut native, pid, st, &maps, threads, opts, started, errors);
    });
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn capture_with(
    native: &mut NativeState,
    pid: i32,
    st: u64,
    maps: &[Mapping],
    threads: &mut [ThreadStacks],
    opts: &StackOptions,
    started: Instant,
    errors: &mut Vec<SourceError>,
) {
    let exec_maps: Vec<Mapping> = maps
        .iter()
        .filter(|m| m.perms.contains('x'))
        .cloned()
        .collect();
    let stale = native
        .procs
        .get(&(pid, st))
        .is_none_or(|p| p.exec_maps != exec_maps);
    if stale {
        if native.procs.len() > 16 {
            native.procs.clear();
        }
        let (mods, module_errors) = modules::modules_for(pid, maps, &mut native.elf);
        let mut unwinder = unwind::NativeUnwinder::new();
        for m in mods {
            framehop::Unwinder::add_module(&mut unwinder, m);
        }
        let pc = ProcCache {
            exec_maps: exec_maps.clone(),
            unwinder,
            rules: unwind::NativeCache::new(),
            symbols: Default::default(),
            module_errors,
        };
        native.procs.insert((pid, st), pc);
    }
    let Some(pc) = native.procs.get_mut(&(pid, st)) else {
        return;
    };
    for e in pc.module_errors.iter().take(3) {
        errors.push(err(format!("no unwind info: {e}")));
    }
    let mut walks: Vec<(usize, unwind::Walk, String)> = Vec::new();
    for (i, t) in threads.iter_mut().enumerate() {
        if started.elapsed() > opts.budget {
            t.errors.push(err(
                "snapshot time budget exhausted before this thread (raise the budget)".into(),
            ));
            continue;
        }
        // A seize never runs past the snapshot's budget either.
        let bound = opts
            .per_thread_budget
            .min(opts.budget.saturating_sub(started.elapsed()));
        match capture_thread(pid, t, maps, pc, opts, bound) {
            Ok((w, note)) => walks.push((i, w, note)),
            Err(e) => t.errors.push(err(e)),
        }
    }
    let all: Vec<u64> = walks
        .iter()
        .flat_map(|(_, w, _)| w.lookup_addrs.iter().copied())
        .collect();
    let module_of = |a: u64| {
        exec_maps
            .iter()
            .find(|m| m.range.contains(&a))
            .map(|m| m.path.rsplit('/').next().unwrap_or(&m.path).to_string())
    };
    if let Some(e) = pc.symbols.resolve(pid, &all, &module_of) {
        errors.push(err(e));
    }
    for (i, w, mut note) in walks {
        if let Some(why) = &w.truncated {
            note.push_str(&format!(", truncated ({why})"));
        }
        let frames = pc.symbols.frames(&w.lookup_addrs);
        if let Some(t) = threads.get_mut(i) {
            t.stacks.push(SourceStack {
                source: SourceKind::Native,
                frames,
                note: Some(note),
            });
        }
    }
}

/// One thread: ptrace-free when blocked, else seize if allowed.
#[cfg(target_arch = "x86_64")]
fn capture_thread(
    pid: i32,
    t: &ThreadStacks,
    maps: &[Mapping],
    pc: &mut ProcCache,
    opts: &StackOptions,
    bound: Duration,
) -> Result<(unwind::Walk, String), String> {
    let tid = t.tid;
    if opts.seize && opts.prefer_seize {
        return seize_thread(pid, t, pc, opts, bound, "seize preferred");
    }
    let limit_of = |sp: u64| {
        maps.iter()
            .find(|m| m.range.contains(&sp))
            .map(|m| m.range.end)
    };
    // First "before" is the line the kernel view just read: saves one slow read per thread.
    let mut first = t.kernel.as_ref().map(kernel::line_of);
    for _attempt in 0..2 {
        let before = match first.take() {
            Some(line) => line,
            None => kernel::read_syscall(pid, tid).map_err(|e| format!("thread {tid}: {e}"))?,
        };
        let Some((sp, ip)) = before.as_ref().and_then(SyscallLine::sp_pc) else {
            return seize_thread(pid, t, pc, opts, bound, "running in user space");
        };
        let limit = limit_of(sp).ok_or_else(|| format!("sp {sp:#x} is in no mapping"))?;
        let mut stack = unwind::StackCopy::read(pid, sp, limit)?;
        let is_code = |a: u64| pc.exec_maps.iter().any(|m| m.range.contains(&a));
        let walk =
            unwind::walk_guessing_bp(&pc.unwinder, &mut pc.rules, &mut stack, ip, sp, &is_code);
        let after = kernel::read_syscall(pid, tid).map_err(|e| format!("thread {tid}: {e}"))?;
        if after == before {
            return Ok((walk, "ptrace-free".into()));
        }
    }
    seize_thread(pid, t, pc, opts, bound, "kept moving while read")
}

#[cfg(target_arch = "x86_64")]
fn seize_thread(
    pid: i32,
    t: &ThreadStacks,
    pc: &mut ProcCache,
    opts: &StackOptions,
    bound: Duration,
    why: &str,
) -> Result<(unwind::Walk, String), String> {
    if !opts.seize {
        return Err(format!(
            "{why}: no ptrace-free stack (use --seize / `seize` to interrupt it briefly)"
        ));
    }
    // Fresh state: the kernel view may be a few ms old.
    let fresh = kernel::read_thread(pid, t.tid, false);
    let k = fresh.kernel.as_ref().ok_or("thread vanished")?;
    if let Some(why) = seize::refusal(k) {
        return Err(why);
    }
    let cap = seize::capture(pid, t.tid, bound, opts.hold_stopped)?;
    let mut stack = unwind::StackCopy::from_bytes(cap.sp, cap.stack);
    let walk = unwind::walk(
        &pc.unwinder,
        &mut pc.rules,
        &mut stack,
        cap.ip,
        cap.sp,
        cap.bp,
    );
    Ok((
        walk,
        format!("seized {:.3} ms", cap.paused.as_secs_f64() * 1000.0),
    ))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn capture_into(
    _pid: i32,
    _maps_text: &str,
    _threads: &mut [ThreadStacks],
    _opts: &StackOptions,
    _started: Instant,
    errors: &mut Vec<SourceError>,
) {
    errors.push(err(
        "native stacks are implemented for x86_64 only in this build (kernel view shown)".into(),
    ));
}
