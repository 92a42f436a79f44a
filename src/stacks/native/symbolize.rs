//! Address -> frames with blazesym: inlined calls expanded, file:line where DWARF exists,
//! names demangled here (only `_Z`/`__Z` Itanium C++ and `_R`/legacy Rust names: blazesym
//! alone would read a plain C symbol such as `a` as a mangled type, "signed char"). One
//! batched call per module per snapshot; results cached by absolute address per target
//! while its executable mappings stay the same.
//!
//! Files are opened through `/proc/PID/map_files/` when that works (root: it also reaches
//! deleted or replaced files), else through `/proc/PID/root` + the mapped path (that
//! directory needs CAP_SYS_ADMIN, so this is the non-root way; it still works in a
//! container's mount namespace).

use super::modules::Mapping;
use crate::stacks::Frame;
use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// A symbolizer plus a per-process address cache.
pub struct Symbols {
    symbolizer: Symbolizer,
    cache: HashMap<u64, Vec<Frame>>,
    /// Whether `/proc/PID/map_files/` entries can be opened (decided on first use).
    map_files: Option<bool>,
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
        }
    }
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
                        function: demangle(&i.name).into_owned(),
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
                function: demangle(&s.name).into_owned(),
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

impl Symbols {
    /// Forget cached addresses (the target's mappings changed).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// Resolve every address not cached yet. `maps` are the target's mappings (file
    /// offsets and paths for the non-root path). Returns a one-line error if blazesym
    /// failed as a whole for some module (individual misses become `??` frames).
    pub fn resolve(&mut self, pid: i32, addrs: &[u64], maps: &[Mapping]) -> Option<String> {
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
        // Root: one call for everything, files reached through map_files.
        if map_files {
            let mut process = Process::new((pid as u32).into());
            process.map_files = true;
            match self
                .symbolizer
                .symbolize(&Source::Process(process), Input::AbsAddr(&todo))
            {
                Ok(syms) => {
                    for (addr, sym) in todo.iter().copied().zip(syms) {
                        let module = mapping_of(addr).map(|m| basename(&m.path));
                        self.cache.insert(addr, frames_of(addr, sym, module));
                    }
                    return None;
                }
                // Fall through to the per-file path (and say why if that fails too).
                Err(e) => failure = Some(format!("{e}")),
            }
        }
        // Per file: file offsets in /proc/PID/root + path; the rest (vdso, anonymous code)
        // through the process source without map_files.
        let mut by_file: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
        let mut other: Vec<u64> = Vec::new();
        for &a in &todo {
            match mapping_of(a) {
                Some(m) if m.path.starts_with('/') && !m.path.ends_with(" (deleted)") => by_file
                    .entry(m.path.as_str())
                    .or_default()
                    .push((a, a - m.range.start + m.offset)),
                _ => other.push(a),
            }
        }
        for (path, list) in by_file {
            let offsets: Vec<u64> = list.iter().map(|p| p.1).collect();
            let src = Source::Elf(Elf::new(format!("/proc/{pid}/root{path}")));
            match self.symbolizer.symbolize(&src, Input::FileOffset(&offsets)) {
                Ok(syms) => {
                    for ((addr, _), sym) in list.iter().copied().zip(syms) {
                        self.cache
                            .insert(addr, frames_of(addr, sym, Some(basename(path))));
                    }
                }
                Err(e) => failure = Some(format!("{path}: {e}")),
            }
        }
        if !other.is_empty() {
            let mut process = Process::new((pid as u32).into());
            process.map_files = false;
            process.perf_map = false;
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
    use super::demangle;

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
