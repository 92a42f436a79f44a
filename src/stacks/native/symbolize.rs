//! Address -> frames with blazesym: demangled names (C++, Rust legacy and v0), inlined calls
//! expanded, file:line where DWARF exists. One batched call per snapshot; results cached by
//! absolute address per target while its executable mappings stay the same.

use crate::stacks::Frame;
use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer};
use std::collections::HashMap;

/// A symbolizer plus a per-process address cache.
pub struct Symbols {
    symbolizer: Symbolizer,
    cache: HashMap<u64, Vec<Frame>>,
}

impl Default for Symbols {
    fn default() -> Self {
        Self {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            cache: HashMap::new(),
        }
    }
}

fn code(f: &mut Frame, ci: Option<&CodeInfo>) {
    if let Some(ci) = ci {
        f.file = Some(ci.to_path().display().to_string());
        f.line = ci.line;
    }
}

impl Symbols {
    /// Forget cached addresses (the target's mappings changed).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// Resolve every address not cached yet, in one call. Returns a one-line error if
    /// blazesym failed as a whole (individual misses become `??` frames).
    pub fn resolve(
        &mut self,
        pid: i32,
        addrs: &[u64],
        module_of: &dyn Fn(u64) -> Option<String>,
    ) -> Option<String> {
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
        let mut process = Process::new((pid as u32).into());
        // Map through /proc/PID/map_files so deleted or namespaced binaries still resolve.
        process.map_files = true;
        let src = Source::Process(process);
        let syms = match self.symbolizer.symbolize(&src, Input::AbsAddr(&todo)) {
            Ok(s) => s,
            Err(e) => {
                return Some(format!(
                    "symbolization failed: {e} (frames shown as addresses)"
                ));
            }
        };
        for (addr, sym) in todo.iter().copied().zip(syms) {
            let module = module_of(addr);
            let frames = match sym {
                Symbolized::Sym(s) => {
                    // blazesym lists inlined calls outermost first; we want innermost first.
                    let mut v: Vec<Frame> = s
                        .inlined
                        .iter()
                        .rev()
                        .map(|i| {
                            let mut f = Frame {
                                function: i.name.to_string(),
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
                        function: s.name.to_string(),
                        addr: Some(addr),
                        module: module.clone(),
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
            };
            self.cache.insert(addr, frames);
        }
        None
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
