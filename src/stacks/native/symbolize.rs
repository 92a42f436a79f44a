//! Address -> frames with blazesym: inlined calls expanded, file:line from the DWARF a module
//! carries itself (the user's program); a system library whose DWARF lives in a separate
//! debug file is named from that file's symbol table only, unless asked (`--debug-info`: see
//! [`plan_for`]). The interpreter's own modules (libpython, the python executable) are named
//! from their symbol tables too when Python frames were read for the same capture, though
//! they may carry their DWARF themselves ([`Naming`]). Names are demangled here (only `_Z`/`__Z` Itanium C++ and `_R`/legacy Rust names: blazesym
//! alone would read a plain C symbol such as `a` as a mangled type, "signed char"). One
//! batched call per module per snapshot; results cached by absolute address per target
//! while its executable mappings stay the same.
//!
//! Files are opened through `/proc/PID/map_files/` when that works (root: it also reaches
//! deleted or replaced files), else through `/proc/PID/root` + the mapped path (that
//! directory needs CAP_SYS_ADMIN, so this is the non-root way; it still works in a
//! container's mount namespace).

use super::Naming;
use super::modules::{ElfUnwindInfo, LoadedFile, Mapping};
use crate::stacks::Frame;
use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A symbolizer plus a per-process address cache.
pub struct Symbols {
    symbolizer: Symbolizer,
    cache: HashMap<u64, Vec<Frame>>,
    /// Whether `/proc/PID/map_files/` entries can be opened (decided on first use).
    map_files: Option<bool>,
    /// Plans by mapping start (the debug file lookup is a few stats per module).
    plans: HashMap<u64, Plan>,
    /// How the cached frames were named.
    naming: Naming,
    /// Modules that carry DWARF but were named from their symbol tables (basenames).
    by_symbols: BTreeSet<String>,
}

impl Default for Symbols {
    fn default() -> Self {
        Self {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                // See `demangle`: blazesym would also "demangle" plain C names.
                .enable_demangling(false)
                .build(),
            cache: HashMap::new(),
            map_files: None,
            plans: HashMap::new(),
            naming: Naming::default(),
            by_symbols: BTreeSet::new(),
        }
    }
}

/// The name shown for a symbol: glibc's internal `__GI_` alias prefix dropped (a symbol
/// table may pick the hidden alias `__GI___pthread_cond_wait` of `__pthread_cond_wait`), then
/// demangled (see [`demangle`]).
pub fn display_name(name: &str) -> Cow<'_, str> {
    demangle(name.strip_prefix("__GI_").unwrap_or(name))
}

/// Demangle a symbol if it is a mangled one: Itanium C++ (`_Z`, `__Z` on some platforms)
/// and Rust (`_R` v0; legacy Rust names are `_ZN...h<hash>E`). Anything else (C names,
/// `a`, `main`) is returned as is.
pub fn demangle(name: &str) -> Cow<'_, str> {
    let mangled = ["_Z", "__Z", "_R", "__R"]
        .iter()
        .any(|p| name.starts_with(p));
    if !mangled {
        return Cow::Borrowed(name);
    }
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        // `{:#}` drops the legacy hash suffix.
        return Cow::Owned(format!("{d:#}"));
    }
    if let Some(d) = cpp_demangle::Symbol::new(name)
        .ok()
        .and_then(|s| s.demangle().ok())
    {
        return Cow::Owned(d);
    }
    Cow::Borrowed(name)
}

fn code(f: &mut Frame, ci: Option<&CodeInfo>) {
    if let Some(ci) = ci {
        f.file = Some(ci.to_path().display().to_string());
        f.line = ci.line;
    }
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Frames (innermost first) for one blazesym answer.
fn frames_of(addr: u64, sym: Symbolized<'_>, module: Option<String>) -> Vec<Frame> {
    match sym {
        Symbolized::Sym(s) => {
            // blazesym lists inlined calls outermost first; we want innermost first.
            let mut v: Vec<Frame> = s
                .inlined
                .iter()
                .rev()
                .map(|i| {
                    let mut f = Frame {
                        function: display_name(&i.name).into_owned(),
                        addr: Some(addr),
                        module: module.clone(),
                        inlined: true,
                        ..Frame::default()
                    };
                    code(&mut f, i.code_info.as_ref());
                    f
                })
                .collect();
            let mut f = Frame {
                function: display_name(&s.name).into_owned(),
                addr: Some(addr),
                module,
                ..Frame::default()
            };
            code(&mut f, s.code_info.as_deref());
            v.push(f);
            v
        }
        Symbolized::Unknown(_) => vec![Frame {
            function: "??".into(),
            addr: Some(addr),
            module,
            ..Frame::default()
        }],
    }
}

/// Whether `/proc/PID/map_files/` can be used (CAP_SYS_ADMIN, in practice root): checked on
/// the first file-backed mapping.
fn map_files_usable(pid: i32, maps: &[Mapping]) -> bool {
    maps.iter()
        .find(|m| m.path.starts_with('/'))
        .is_some_and(|m| {
            let p = format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                m.range.start, m.range.end
            );
            std::fs::File::open(p).is_ok()
        })
}

/// How the addresses of one module are symbolized: which file blazesym opens, and whether it
/// reads DWARF there (file:line, inlined calls) or symbol tables only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Plan {
    pub path: String,
    pub debug_syms: bool,
}

/// The separate debug file of a module (a distribution's `-dbg`/`-dbgsym` package): by
/// build id under `/usr/lib/debug/.build-id/`, else by `.gnu_debuglink` next to the file or
/// under `/usr/lib/debug`, looked up in the target's root first. Only a file with a `.symtab`
/// and, when the module has a build id, the same build id is taken.
fn separate_debug_file(pid: i32, path: &str, info: &ElfUnwindInfo) -> Option<String> {
    let root = format!("/proc/{pid}/root");
    let mut candidates = Vec::new();
    if let Some(id) = info.build_id.as_deref().filter(|id| id.len() > 1) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let rel = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
        candidates.push(format!("{root}{rel}"));
        // A container without the debug package: the host's copy, same build id.
        candidates.push(rel);
    }
    if let Some(link) = &info.debuglink {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for c in [
            format!("{root}/usr/lib/debug{dir}/{link}"),
            format!("{root}{dir}/.debug/{link}"),
            format!("{root}{dir}/{link}"),
        ] {
            candidates.push(c);
        }
    }
    candidates
        .into_iter()
        .find(|c| debug_file_fits(c, info.build_id.as_deref()))
}

/// Whether `path` is an ELF file with symbols and, if `build_id` is known, that build id.
/// Reads the headers only (the file is mapped, not read).
fn debug_file_fits(path: &str, build_id: Option<&[u8]>) -> bool {
    use object::{Object, ObjectSection};
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: a read-only private mapping of a debug file, only parsed here and dropped; a
    // file truncated meanwhile could fault, as for any reader of such files (blazesym maps
    // them the same way).
    let Ok(map) = (unsafe { memmap2::Mmap::map(&f) }) else {
        return false;
    };
    let Ok(file) = object::File::parse(&map[..]) else {
        return false;
    };
    let has_symtab = file
        .section_by_name(".symtab")
        .is_some_and(|s| s.size() > 0);
    has_symtab && build_id.is_none_or(|id| file.build_id().ok().flatten() == Some(id))
}

/// Whether a mapped file is the CPython interpreter's: `libpython3.X.so...` or the
/// `python3.X` executable (a statically linked interpreter is the executable itself).
pub fn is_interpreter(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libpython") || name.starts_with("python")
}

/// The plan for one mapped module. Its own DWARF (the user's program built with `-g`) is
/// read for file:line; a system library's separate DWARF is not, unless `debug_info`: it is
/// compressed, and decompressing libc's took about half of a cold `stacks` run. Its symbol
/// table (the debug file's `.symtab`, which also names static functions such as
/// `__futex_abstimed_wait_common`) is enough for names. The interpreter's own DWARF is not
/// read either when `interpreter_by_symbols` (see [`Naming`]): its `.symtab` names static
/// functions too.
pub fn plan_for(
    pid: i32,
    m: &Mapping,
    info: &ElfUnwindInfo,
    map_files: bool,
    naming: Naming,
) -> Plan {
    let open = if map_files {
        format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            m.range.start, m.range.end
        )
    } else {
        format!("/proc/{pid}/root{}", m.path)
    };
    let own = info.own_dwarf && !(naming.interpreter_by_symbols && is_interpreter(&m.path));
    if own || naming.debug_info {
        return Plan {
            path: open,
            debug_syms: true,
        };
    }
    let path = separate_debug_file(pid, &m.path, info).unwrap_or(open);
    Plan {
        path,
        debug_syms: false,
    }
}

impl Symbols {
    /// Forget cached addresses (the target's mappings changed).
    pub fn clear(&mut self) {
        self.cache.clear();
        self.plans.clear();
        self.by_symbols.clear();
    }

    /// Resolve every address not cached yet. `maps` are the target's executable mappings,
    /// `files` the ELF files loaded there (see [`plan_for`]); `naming` says whose DWARF is
    /// read. Returns a one-line error if blazesym failed as a whole for some module
    /// (individual misses become `??` frames).
    pub fn resolve(
        &mut self,
        pid: i32,
        addrs: &[u64],
        maps: &[Mapping],
        files: &[LoadedFile],
        naming: Naming,
    ) -> Option<String> {
        if self.naming != naming {
            self.clear();
            self.naming = naming;
        }
        let mut todo: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.cache.contains_key(a))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return None;
        }
        let mapping_of = |a: u64| maps.iter().find(|m| m.range.contains(&a));
        let map_files = *self
            .map_files
            .get_or_insert_with(|| map_files_usable(pid, maps));
        let mut failure = None;
        // Per module: virtual offsets in the file its plan names; the rest (vdso, anonymous
        // code, deleted files) through the process source.
        let mut by_plan: BTreeMap<Plan, Vec<(u64, u64, String)>> = BTreeMap::new();
        let mut other: Vec<u64> = Vec::new();
        for &a in &todo {
            let file = files.iter().find(|f| f.range.contains(&a));
            match (mapping_of(a), file) {
                (Some(m), Some(f)) if m.path.starts_with('/') && a >= f.bias => {
                    let plan = self
                        .plans
                        .entry(f.range.start)
                        .or_insert_with(|| plan_for(pid, m, &f.info, map_files, naming))
                        .clone();
                    if f.info.own_dwarf && !plan.debug_syms {
                        self.by_symbols.insert(basename(&m.path));
                    }
                    by_plan
                        .entry(plan)
                        .or_default()
                        .push((a, a - f.bias, basename(&m.path)));
                }
                _ => other.push(a),
            }
        }
        for (plan, list) in by_plan {
            let virt: Vec<u64> = list.iter().map(|p| p.1).collect();
            let mut elf = Elf::new(&plan.path);
            elf.debug_syms = plan.debug_syms;
            match self
                .symbolizer
                .symbolize(&Source::Elf(elf), Input::VirtOffset(&virt))
            {
                Ok(syms) => {
                    for ((addr, _, module), sym) in list.into_iter().zip(syms) {
                        self.cache.insert(addr, frames_of(addr, sym, Some(module)));
                    }
                }
                Err(e) => failure = Some(format!("{}: {e}", plan.path)),
            }
        }
        if !other.is_empty() {
            let mut process = Process::new((pid as u32).into());
            process.map_files = map_files;
            process.perf_map = false;
            process.debug_syms = naming.debug_info;
            match self
                .symbolizer
                .symbolize(&Source::Process(process), Input::AbsAddr(&other))
            {
                Ok(syms) => {
                    for (addr, sym) in other.iter().copied().zip(syms) {
                        let module = mapping_of(addr).map(|m| basename(&m.path));
                        self.cache.insert(addr, frames_of(addr, sym, module));
                    }
                }
                Err(e) => failure = Some(format!("{e}")),
            }
        }
        failure.map(|e| format!("symbolization failed: {e} (those frames shown as addresses)"))
    }

    /// The modules among `frames` that carry DWARF but were named from their symbol tables
    /// (joined with ", "), if any: said in the stack's note.
    pub fn named_by_symbols(&self, frames: &[Frame]) -> Option<String> {
        let mut found: Vec<&str> = Vec::new();
        for m in frames.iter().filter_map(|f| f.module.as_deref()) {
            if self.by_symbols.contains(m) && !found.contains(&m) {
                found.push(m);
            }
        }
        (!found.is_empty()).then(|| found.join(", "))
    }

    /// Frames of one walk (after `resolve`).
    pub fn frames(&self, addrs: &[u64]) -> Vec<Frame> {
        addrs
            .iter()
            .flat_map(|a| {
                self.cache.get(a).cloned().unwrap_or_else(|| {
                    vec![Frame {
                        function: "??".into(),
                        addr: Some(*a),
                        ..Frame::default()
                    }]
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{demangle, display_name};

    #[test]
    fn glibc_internal_aliases_lose_their_prefix() {
        assert_eq!(
            display_name("__GI___pthread_cond_wait"),
            "__pthread_cond_wait"
        );
        assert_eq!(
            display_name("__futex_abstimed_wait_common"),
            "__futex_abstimed_wait_common"
        );
        assert_eq!(display_name("_ZN3foo3barEv"), "foo::bar()");
    }

    #[test]
    fn plain_c_names_are_not_demangled() {
        for n in [
            "a",
            "b",
            "c",
            "i",
            "main",
            "pause",
            "start_thread",
            "Z",
            "R",
        ] {
            assert_eq!(demangle(n), n);
        }
    }

    #[test]
    fn mangled_names_are_demangled() {
        assert_eq!(demangle("_Z3foov"), "foo()");
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            demangle("_RNvCs1234_7mycrate3foo"),
            "mycrate::foo",
            "Rust v0"
        );
        // Not a valid mangling after the prefix: left alone.
        assert_eq!(demangle("_Zfoo"), "_Zfoo");
    }
}
