//! Native user-space stacks: framehop unwinds from .eh_frame, blazesym symbolizes. Preferred
//! capture is ptrace-free: a thread blocked in the kernel shows its user sp/pc in
//! /proc/TID/syscall; one process_vm_readv copies its stack, and re-reading the syscall file
//! confirms it did not move meanwhile. Threads running in user space need `seize` (opt-in,
//! see [`seize`]: one helper per snapshot interrupts them in turn). x86_64 only for now
//! (framehop needs rip, rsp, rbp there; aarch64 would need pc, sp, fp and lr, and lr is not
//! in /proc/TID/syscall, so aarch64 would have to seize). Parsed ELF files, unwinders and
//! symbols are cached across snapshots.

pub mod modules;
pub mod seize;
mod seize_helper;
pub mod symbolize;
pub mod unwind;

use super::kernel::{self, SyscallLine};
use super::{SourceError, SourceKind, SourceStack, StackOptions, ThreadStacks};
use crate::model::RunState;
use modules::{ElfCache, Mapping};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

/// What is kept per target process between snapshots (a warm snapshot reuses all of it).
#[cfg(target_arch = "x86_64")]
struct ProcCache {
    exec_maps: Vec<Mapping>,
    /// Executable ranges sorted by start, for the hot "is this a code address?" test.
    code: Vec<std::ops::Range<u64>>,
    unwinder: unwind::NativeUnwinder,
    rules: unwind::NativeCache,
    symbols: symbolize::Symbols,
    /// The ELF files mapped executable, with their load bias (for the symbolizer).
    files: Vec<modules::LoadedFile>,
    module_errors: Vec<String>,
}

#[derive(Default)]
struct NativeState {
    elf: ElfCache,
    #[cfg(target_arch = "x86_64")]
    procs: HashMap<(i32, u64), ProcCache>,
}

thread_local! {
    // blazesym's Symbolizer is !Send, so caches live per thread; `stacks::capture` always
    // runs on the one long-lived stacks thread (see `stacks::worker`), which keeps them warm.
    static STATE: RefCell<NativeState> = RefCell::new(NativeState::default());
}

fn err(message: String) -> SourceError {
    SourceError {
        source: SourceKind::Native,
        message,
    }
}

/// Threads unwound but not yet symbolized (see [`unwind_into`] and [`Unwound::symbolize`]):
/// symbols are looked up once the Python read is joined, since whether Python frames exist
/// decides how the interpreter's own frames are named.
pub struct Unwound {
    pid: i32,
    st: u64,
    exec_maps: Vec<Mapping>,
    walks: Vec<(usize, unwind::Walk, String)>,
}

/// How native frames are named: which modules' own DWARF is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Naming {
    /// `--debug-info`: every module's DWARF, system libraries' separate debug files too.
    pub debug_info: bool,
    /// Python frames were read for this capture: the interpreter's modules (libpython, the
    /// python executable) are named from their symbol tables even when they carry DWARF (a
    /// pyenv build's libpython has 20 MB of it, most of a cold capture's time); their
    /// file:line says little next to the Python frames. `debug_info` overrides it.
    pub interpreter_by_symbols: bool,
}

/// Unwind the native stack of each thread (ptrace-free, else seized when allowed); name
/// the frames with [`Unwound::symbolize`]. `maps_text` is /proc/PID/maps, read once per
/// snapshot by the caller.
#[cfg(target_arch = "x86_64")]
pub fn unwind_into(
    pid: i32,
    maps_text: &str,
    threads: &mut [ThreadStacks],
    opts: &StackOptions,
    started: Instant,
    errors: &mut Vec<SourceError>,
) -> Option<Unwound> {
    let maps = modules::parse_maps(maps_text);
    // The caller already refused a pid whose start time differs from `expect_start_time`.
    let st = match opts.expect_start_time {
        Some(st) => st,
        None => match crate::collect::procfs::read_start_time(pid) {
            Ok(st) => st,
            Err(e) => {
                errors.push(err(format!(
                    "pid {pid}: /proc/{pid}/stat unreadable: {e} (has it exited?)"
                )));
                return None;
            }
        },
    };
    STATE.with(|cell| {
        let mut native = cell.borrow_mut();
        unwind_with(&mut native, pid, st, &maps, threads, opts, started, errors)
    })
}

#[cfg(target_arch = "x86_64")]
impl Unwound {
    /// Name the frames of every walk and append a `Native` stack to its thread. A stack
    /// with interpreter frames named from symbols says so in its note.
    pub fn symbolize(
        self,
        threads: &mut [ThreadStacks],
        naming: Naming,
        errors: &mut Vec<SourceError>,
    ) {
        STATE.with(|cell| {
            let mut native = cell.borrow_mut();
            let Some(pc) = native.procs.get_mut(&(self.pid, self.st)) else {
                return;
            };
            let all: Vec<u64> = self
                .walks
                .iter()
                .flat_map(|(_, w, _)| w.lookup_addrs.iter().copied())
                .collect();
            if let Some(e) = pc
                .symbols
                .resolve(self.pid, &all, &self.exec_maps, &pc.files, naming)
            {
                errors.push(err(e));
            }
            for (i, w, mut note) in self.walks {
                if let Some(why) = &w.truncated {
                    note.push_str(&format!(", truncated ({why})"));
                }
                let frames = pc.symbols.frames(&w.lookup_addrs);
                if let Some(named) = pc.symbols.named_by_symbols(&frames) {
                    note.push_str(&format!(
                        ", {named} named from its symbol table (--debug-info: file:line)"
                    ));
                }
                if let Some(t) = threads.get_mut(i) {
                    t.stacks.push(SourceStack {
                        source: SourceKind::Native,
                        frames,
                        note: Some(note),
                    });
                }
            }
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn unwind_with(
    native: &mut NativeState,
    pid: i32,
    st: u64,
    maps: &[Mapping],
    threads: &mut [ThreadStacks],
    opts: &StackOptions,
    started: Instant,
    errors: &mut Vec<SourceError>,
) -> Option<Unwound> {
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
        let (mods, files, module_errors) = modules::modules_for(pid, maps, &mut native.elf);
        let mut unwinder = unwind::NativeUnwinder::new();
        for m in mods {
            framehop::Unwinder::add_module(&mut unwinder, m);
        }
        let pc = ProcCache {
            code: {
                let mut c: Vec<_> = exec_maps.iter().map(|m| m.range.clone()).collect();
                c.sort_by_key(|r| r.start);
                c
            },
            exec_maps: exec_maps.clone(),
            unwinder,
            rules: unwind::NativeCache::new(),
            symbols: Default::default(),
            files,
            module_errors,
        };
        native.procs.insert((pid, st), pc);
    }
    let pc = native.procs.get_mut(&(pid, st))?;
    for e in pc.module_errors.iter().take(3) {
        errors.push(err(format!("no unwind info: {e}")));
    }
    let mut walks: Vec<(usize, unwind::Walk, String)> = Vec::new();
    let mut to_seize: Vec<(usize, &'static str)> = Vec::new();
    for (i, t) in threads.iter_mut().enumerate() {
        if started.elapsed() > opts.budget {
            t.errors.push(err(
                "snapshot time budget exhausted before this thread (raise the budget)".into(),
            ));
            continue;
        }
        match capture_thread(pid, t, maps, pc, opts) {
            Outcome::Walked(w, note) => walks.push((i, w, note)),
            Outcome::NeedsSeize(why) => to_seize.push((i, why)),
            Outcome::Failed(e) => t.errors.push(err(e)),
        }
    }
    seize_all(pid, threads, &to_seize, pc, opts, started, &mut walks);
    Some(Unwound {
        pid,
        st,
        exec_maps,
        walks,
    })
}

enum Outcome {
    Walked(unwind::Walk, String),
    /// Not readable without stopping it (the reason says why).
    NeedsSeize(&'static str),
    Failed(String),
}

/// One thread, ptrace-free: read sp/pc from /proc/TID/syscall, copy the stack, walk, and
/// confirm the syscall line did not change meanwhile.
#[cfg(target_arch = "x86_64")]
fn capture_thread(
    pid: i32,
    t: &ThreadStacks,
    maps: &[Mapping],
    pc: &mut ProcCache,
    opts: &StackOptions,
) -> Outcome {
    let tid = t.tid;
    if let Some(k) = &t.kernel
        && matches!(k.state, RunState::Zombie | RunState::Dead)
    {
        return Outcome::Failed("exited (zombie): no user stack left to read".into());
    }
    if opts.seize && opts.prefer_seize {
        return Outcome::NeedsSeize("seize preferred");
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
            None => match kernel::read_syscall(pid, tid) {
                Ok(l) => l,
                Err(e) => return Outcome::Failed(format!("thread {tid}: {e}")),
            },
        };
        let Some((sp, ip)) = before.as_ref().and_then(SyscallLine::sp_pc) else {
            return Outcome::NeedsSeize("running in user space");
        };
        let Some(limit) = limit_of(sp) else {
            return Outcome::Failed(format!("sp {sp:#x} is in no mapping"));
        };
        let mut stack = match unwind::StackCopy::read(pid, sp, limit) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e),
        };
        let code = &pc.code;
        let is_code = |a: u64| {
            let i = code.partition_point(|r| r.start <= a);
            i > 0 && code.get(i - 1).is_some_and(|r| a < r.end)
        };
        let walk =
            unwind::walk_guessing_bp(&pc.unwinder, &mut pc.rules, &mut stack, ip, sp, &is_code);
        match kernel::read_syscall(pid, tid) {
            Ok(after) if after == before => return Outcome::Walked(walk, "ptrace-free".into()),
            Ok(_) => {}
            Err(e) => return Outcome::Failed(format!("thread {tid}: {e}")),
        }
    }
    Outcome::NeedsSeize("kept moving while read")
}

/// The opt-in fallback for the threads the ptrace-free path could not read: refusals first
/// (D state, traced), then one helper for all the others, bounded per thread and by what is
/// left of the snapshot budget.
#[cfg(target_arch = "x86_64")]
fn seize_all(
    pid: i32,
    threads: &mut [ThreadStacks],
    to_seize: &[(usize, &'static str)],
    pc: &mut ProcCache,
    opts: &StackOptions,
    started: Instant,
    walks: &mut Vec<(usize, unwind::Walk, String)>,
) {
    let mut go: Vec<usize> = Vec::new();
    for &(i, why) in to_seize {
        let Some(t) = threads.get_mut(i) else {
            continue;
        };
        if !opts.seize {
            t.errors.push(err(format!(
                "{why}: no ptrace-free stack (use --seize / `seize` to interrupt it briefly)"
            )));
            continue;
        }
        // Fresh state: the kernel view may be a few ms old.
        let fresh = kernel::read_thread(pid, t.tid, false);
        match fresh.kernel.as_ref().map(seize::refusal) {
            None => t.errors.push(err("thread vanished".into())),
            Some(Some(refused)) => t.errors.push(err(refused)),
            Some(None) => go.push(i),
        }
    }
    let tids: Vec<i32> = go
        .iter()
        .filter_map(|&i| threads.get(i).map(|t| t.tid))
        .collect();
    let params = seize::SeizeParams {
        per_thread: opts.per_thread_budget,
        total: opts.budget.saturating_sub(started.elapsed()),
        expect_start_time: opts.expect_start_time,
        hold_stopped: opts.hold_stopped,
        hold_seized: opts.hold_seized,
    };
    let results = seize::capture_many(pid, &tids, &params);
    for (i, r) in go.into_iter().zip(results) {
        match r {
            Ok(cap) => {
                let mut stack = unwind::StackCopy::from_bytes(cap.sp, cap.stack);
                let walk = unwind::walk(
                    &pc.unwinder,
                    &mut pc.rules,
                    &mut stack,
                    cap.ip,
                    cap.sp,
                    cap.bp,
                );
                let mut note = format!("seized {:.3} ms", cap.paused.as_secs_f64() * 1000.0);
                if let Some(sig) = cap.reinjected_signal {
                    note.push_str(&format!(", stopped at signal {sig} (delivered on detach)"));
                }
                walks.push((i, walk, note));
            }
            Err(e) => {
                if let Some(t) = threads.get_mut(i) {
                    t.errors.push(err(e));
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn unwind_into(
    _pid: i32,
    _maps_text: &str,
    _threads: &mut [ThreadStacks],
    _opts: &StackOptions,
    _started: Instant,
    errors: &mut Vec<SourceError>,
) -> Option<Unwound> {
    errors.push(err(
        "native stacks are implemented for x86_64 only in this build (kernel view shown)".into(),
    ));
    None
}

#[cfg(not(target_arch = "x86_64"))]
impl Unwound {
    pub fn symbolize(self, _: &mut [ThreadStacks], _: Naming, _: &mut Vec<SourceError>) {}
}
