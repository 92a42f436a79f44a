//! lifecycle-top's own reader of CPython frames from outside the process (3.11-3.13, 64-bit,
//! with the GIL): finds `_PyRuntime` through the ELF hash table, walks interpreters ->
//! thread states -> frames -> code objects (qualified name, file, line from the location
//! table) and joins each thread by its `native_thread_id`. Reads are batched
//! (`process_vm_readv` with many iovecs: a level of every thread's frame chain, every code
//! object, every string at once); the target is never stopped. Anything that does not look
//! like the interpreter's own data (a frame chain that does not end, a code object whose
//! type is not the code type, an instruction outside its code) is an [`Failure::Inconsistent`]
//! read, never a frame: the caller retries once, then falls back to py-spy (see `python`).
//! Versions it does not know are [`Failure::Unsupported`] and go to py-spy at once.

mod elf;
pub mod layout;
pub mod lines;
mod mem;

use super::Frame;
use super::python::PyThreadStack;
use layout::Layout;
use mem::{Mem, u32_at, u64_at};
use std::collections::HashMap;

/// Bounds past which a read is taken for garbage (py-spy uses the same 4,096).
const MAX_THREADS: usize = 4096;
const MAX_DEPTH: usize = 4096;
const MAX_INTERPRETERS: usize = 256;
const MAX_STRING_BYTES: u64 = 1 << 20;
const MAX_TABLE_BYTES: u64 = 16 << 20;

/// Why the reader gave no frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// This interpreter is not one the reader knows: use another source.
    Unsupported(String),
    /// What was read does not hold together (raced the interpreter, or a wrong layout).
    Inconsistent(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Self::Unsupported(r) | Self::Inconsistent(r) => r,
        }
    }
}

/// A CPython process ready to be read: its layout and the addresses of its symbols.
#[derive(Debug, Clone)]
pub struct Reader {
    pid: i32,
    version: u64,
    layout: Layout,
    syms: elf::Symbols,
}

/// What one read gave, with its cost.
#[derive(Debug, Clone)]
pub struct Read {
    pub threads: Vec<PyThreadStack>,
    /// `process_vm_readv` calls made.
    pub calls: u32,
}

impl Reader {
    /// Find the interpreter of `pid` (`maps`: its /proc/PID/maps) and pick its layout.
    pub fn open(pid: i32, maps: &str) -> Result<Self, Failure> {
        let unsupported = |m: String| Failure::Unsupported(m);
        if !cfg!(all(target_pointer_width = "64", target_endian = "little")) {
            return Err(unsupported(
                "only 64-bit little-endian targets are known".into(),
            ));
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (path, base) = elf::interpreter_file(maps, &exe)
            .ok_or_else(|| unsupported("no libpython or python executable mapped".into()))?;
        // Through the target's root: its files as it sees them (containers).
        let syms = elf::lookup(&format!("/proc/{pid}/root{path}"), base).map_err(unsupported)?;
        let mut mem = Mem::new(pid);
        let version = syms
            .version
            .and_then(|a| mem.read(a, 8))
            .map(|b| u64_at(&b, 0))
            .ok_or_else(|| {
                unsupported("no Py_Version in the interpreter: CPython older than 3.11".into())
            })?;
        let layout = match layout::for_version(version).map_err(unsupported)? {
            Some(l) => l,
            None => {
                let raw = mem
                    .read(syms.runtime, layout::DEBUG_OFFSETS_LEN)
                    .ok_or_else(|| unsupported("_PyRuntime unreadable".into()))?;
                layout::from_debug_offsets(&raw, version).map_err(|e| {
                    unsupported(format!("CPython {}: {e}", layout::version_text(version)))
                })?
            }
        };
        Ok(Self {
            pid,
            version,
            layout,
            syms,
        })
    }

    /// `3.11.7`.
    pub fn version(&self) -> String {
        layout::version_text(self.version)
    }

    /// The same reader with another layout (tests: a wrong layout must be caught).
    #[doc(hidden)]
    pub fn with_layout(mut self, edit: impl FnOnce(&mut Layout)) -> Self {
        edit(&mut self.layout);
        self
    }

    /// Every thread's Python stack, innermost first, in the interpreter's thread order.
    pub fn read(&self) -> Result<Read, Failure> {
        let mut mem = Mem::new(self.pid);
        let threads = self.walk(&mut mem)?;
        Ok(Read {
            threads,
            calls: mem.calls,
        })
    }

    fn walk(&self, mem: &mut Mem) -> Result<Vec<PyThreadStack>, Failure> {
        let l = &self.layout;
        let bad = |m: String| Failure::Inconsistent(m);
        let ptr = |mem: &mut Mem, at: u64, what: &str| {
            mem.read(at, 8)
                .map(|b| u64_at(&b, 0))
                .ok_or_else(|| bad(format!("{what} at {at:#x} unreadable")))
        };
        // Thread states of every interpreter, in list order.
        let mut threads: Vec<Thread> = Vec::new();
        let mut interp = ptr(
            mem,
            self.syms.runtime + l.runtime_interpreters_head,
            "interpreter list",
        )?;
        let interp_len = l.interp_next.max(l.interp_threads_head) as usize + 8;
        for _ in 0..MAX_INTERPRETERS {
            if interp == 0 {
                break;
            }
            let is = mem
                .read(interp, interp_len)
                .ok_or_else(|| bad(format!("interpreter state at {interp:#x} unreadable")))?;
            let mut ts = u64_at(&is, l.interp_threads_head);
            while ts != 0 {
                if threads.len() >= MAX_THREADS {
                    return Err(bad("thread list does not end".into()));
                }
                let t = mem
                    .read(ts, l.tstate_len())
                    .ok_or_else(|| bad(format!("thread state at {ts:#x} unreadable")))?;
                if u64_at(&t, l.tstate_interp) != interp {
                    return Err(bad(format!(
                        "thread state at {ts:#x} does not point back to its interpreter"
                    )));
                }
                let native = u64_at(&t, l.tstate_native_thread_id);
                threads.push(Thread {
                    tid: i32::try_from(native).unwrap_or(0),
                    tstate: ts,
                    raw: t,
                });
                ts = u64_at(&threads[threads.len() - 1].raw, l.tstate_next);
            }
            interp = u64_at(&is, l.interp_next);
        }
        let starts = self.current_frames(mem, &threads)?;
        let (mut raw, tops) = self.chains(mem, &threads, &starts)?;
        // A thread running Python code moves while its chain is read a level at a time:
        // where its top frame (or the instruction in it) changed, its chain is read again on
        // its own, with no other thread's reads in between (py-spy's window).
        let ts_reqs: Vec<(u64, usize)> =
            threads.iter().map(|t| (t.tstate, l.tstate_len())).collect();
        for (t, fresh) in threads.iter_mut().zip(mem.read_many(&ts_reqs)) {
            if let Some(fresh) = fresh {
                t.raw = fresh;
            }
        }
        let now = self.current_frames(mem, &threads)?;
        let top_reqs: Vec<(u64, usize)> = now.iter().map(|&f| (f, l.frame_len())).collect();
        let now_tops: Vec<u64> = mem
            .read_many(&top_reqs)
            .into_iter()
            .map(|f| f.map_or(0, |f| u64_at(&f, l.frame_instr)))
            .collect();
        for i in 0..threads.len() {
            if (now[i], now_tops[i]) != (starts[i], tops[i]) {
                let one = std::slice::from_ref(&threads[i]);
                let (mut again, _) = self.chains(mem, one, &now[i..=i])?;
                raw[i] = again.pop().unwrap_or_default();
            }
        }
        // Code objects, each once.
        let mut codes: Vec<u64> = raw.iter().flatten().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        struct Code {
            first_line: i32,
            units: u64,
            filename: u64,
            qualname: u64,
            table: u64,
        }
        let reqs: Vec<(u64, usize)> = codes.iter().map(|&c| (c, l.code_len())).collect();
        let mut code_of: HashMap<u64, Code> = HashMap::with_capacity(codes.len());
        for (&c, got) in codes.iter().zip(mem.read_many(&reqs)) {
            let b = got.ok_or_else(|| bad(format!("code object at {c:#x} unreadable")))?;
            if u64_at(&b, l.ob_type) != self.syms.code_type {
                return Err(bad(format!(
                    "the object at {c:#x} in a frame is not a code object"
                )));
            }
            code_of.insert(
                c,
                Code {
                    first_line: u32_at(&b, l.code_firstlineno) as i32,
                    units: u64_at(&b, l.var_size),
                    filename: u64_at(&b, l.code_filename),
                    qualname: u64_at(&b, l.code_qualname),
                    table: u64_at(&b, l.code_linetable),
                },
            );
        }
        // Their strings and location tables: headers in one call, contents in another.
        let mut strings: Vec<u64> = code_of
            .values()
            .flat_map(|c| [c.filename, c.qualname])
            .collect();
        strings.sort_unstable();
        strings.dedup();
        let mut tables: Vec<u64> = code_of.values().map(|c| c.table).collect();
        tables.sort_unstable();
        tables.dedup();
        let reqs: Vec<(u64, usize)> = strings
            .iter()
            .map(|&s| (s, l.str_ascii_size as usize))
            .chain(tables.iter().map(|&t| (t, l.bytes_data as usize)))
            .collect();
        let headers = mem.read_many(&reqs);
        // (address, byte length, bytes per character; 0 for a bytes object).
        let mut contents: Vec<(u64, u64, u8)> = Vec::with_capacity(reqs.len());
        for (k, got) in headers.into_iter().enumerate() {
            let obj = reqs[k].0;
            let h = got.ok_or_else(|| bad(format!("object at {obj:#x} unreadable")))?;
            let ty = u64_at(&h, l.ob_type);
            if k < strings.len() {
                if ty != self.syms.unicode_type {
                    return Err(bad(format!(
                        "a code object's name at {obj:#x} is not a str"
                    )));
                }
                let len = u64_at(&h, l.str_length);
                let state = u32_at(&h, l.str_state);
                let (kind, compact, ascii) =
                    ((state >> 2) & 7, state & 0x20 != 0, state & 0x40 != 0);
                if !compact
                    || !matches!(kind, 1 | 2 | 4)
                    || len * u64::from(kind) > MAX_STRING_BYTES
                {
                    return Err(bad(format!(
                        "str at {obj:#x} has a layout the reader does not know"
                    )));
                }
                let data = obj
                    + if ascii {
                        l.str_ascii_size
                    } else {
                        l.str_compact_size
                    };
                contents.push((data, len * u64::from(kind), kind as u8));
            } else {
                if ty != self.syms.bytes_type {
                    return Err(bad(format!("a location table at {obj:#x} is not bytes")));
                }
                let len = u64_at(&h, l.var_size);
                if len > MAX_TABLE_BYTES {
                    return Err(bad(format!(
                        "location table at {obj:#x} is {len} bytes long"
                    )));
                }
                contents.push((obj + l.bytes_data, len, 0));
            }
        }
        let reqs: Vec<(u64, usize)> = contents.iter().map(|&(a, n, _)| (a, n as usize)).collect();
        let data = mem.read_many(&reqs);
        let mut text_of: HashMap<u64, String> = HashMap::with_capacity(strings.len());
        let mut table_of: HashMap<u64, Vec<u8>> = HashMap::with_capacity(tables.len());
        for (k, got) in data.into_iter().enumerate() {
            let (addr, n, kind) = contents[k];
            let bytes = match got {
                Some(b) => b,
                None if n == 0 => Vec::new(),
                None => return Err(bad(format!("object data at {addr:#x} unreadable"))),
            };
            if k < strings.len() {
                text_of.insert(strings[k], decode(&bytes, kind));
            } else {
                table_of.insert(tables[k - strings.len()], bytes);
            }
        }
        // Frames, innermost first.
        let mut out = Vec::with_capacity(threads.len());
        for (t, chain) in threads.iter().zip(raw) {
            let mut frames = Vec::with_capacity(chain.len());
            for r in chain {
                let Some(c) = code_of.get(&r.code) else {
                    continue;
                };
                let lasti = r.instr.wrapping_sub(r.code + l.code_adaptive) as i64;
                // -2: a frame whose first instruction has not run yet.
                if lasti < -2 || lasti > (c.units as i64) * 2 {
                    return Err(bad(format!(
                        "an instruction pointer of thread {} is outside its code object",
                        t.tid
                    )));
                }
                let file = text_of.get(&c.filename).cloned().unwrap_or_default();
                // C calls into Python (3.12+) push frames of a "<shim>" code object.
                if file.is_empty() || file == "<shim>" {
                    continue;
                }
                let table = table_of
                    .get(&c.table)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let line = lines::line_for(table, c.first_line, lasti);
                frames.push(Frame {
                    function: text_of.get(&c.qualname).cloned().unwrap_or_default(),
                    file: Some(file),
                    line: u32::try_from(line).ok(),
                    ..Frame::default()
                });
            }
            out.push(PyThreadStack {
                tid: t.tid,
                name: None,
                frames,
            });
        }
        Ok(out)
    }
}

/// A thread state as read: its kernel tid, address and bytes.
struct Thread {
    tid: i32,
    tstate: u64,
    raw: Vec<u8>,
}

/// A Python frame as read: its code object and instruction pointer.
struct Raw {
    code: u64,
    instr: u64,
}

impl Reader {
    /// Each thread's current frame: in its thread state (3.13) or its C frame (3.11/3.12,
    /// one batched read).
    fn current_frames(&self, mem: &mut Mem, threads: &[Thread]) -> Result<Vec<u64>, Failure> {
        let l = &self.layout;
        if let Some(off) = l.tstate_current_frame {
            return Ok(threads.iter().map(|t| u64_at(&t.raw, off)).collect());
        }
        let off = l.tstate_cframe.unwrap_or(0);
        let cframes: Vec<u64> = threads.iter().map(|t| u64_at(&t.raw, off)).collect();
        let reqs: Vec<(u64, usize)> = cframes
            .iter()
            .map(|&c| {
                (
                    if c == 0 {
                        0
                    } else {
                        c + l.cframe_current_frame
                    },
                    8,
                )
            })
            .collect();
        mem.read_many(&reqs)
            .into_iter()
            .zip(cframes)
            .map(|(got, c)| match got {
                Some(b) => Ok(u64_at(&b, 0)),
                None if c == 0 => Ok(0),
                None => Err(Failure::Inconsistent(format!(
                    "C frame at {c:#x} unreadable"
                ))),
            })
            .collect()
    }

    /// The frame chains from `starts`, one level of every thread per call, innermost first;
    /// also the instruction pointer of each thread's top frame (to see if it moved).
    fn chains(
        &self,
        mem: &mut Mem,
        threads: &[Thread],
        starts: &[u64],
    ) -> Result<(Vec<Vec<Raw>>, Vec<u64>), Failure> {
        let l = &self.layout;
        let mut raw: Vec<Vec<Raw>> = threads.iter().map(|_| Vec::new()).collect();
        let mut tops = vec![0u64; threads.len()];
        let mut cursor = starts.to_vec();
        for depth in 0.. {
            let live: Vec<usize> = (0..cursor.len()).filter(|&i| cursor[i] != 0).collect();
            if live.is_empty() {
                break;
            }
            if depth >= MAX_DEPTH {
                return Err(Failure::Inconsistent(format!(
                    "the frame chain of thread {} does not end",
                    threads[live[0]].tid
                )));
            }
            let reqs: Vec<(u64, usize)> =
                live.iter().map(|&i| (cursor[i], l.frame_len())).collect();
            for (&i, got) in live.iter().zip(mem.read_many(&reqs)) {
                let f = got.ok_or_else(|| {
                    Failure::Inconsistent(format!("frame at {:#x} unreadable", cursor[i]))
                })?;
                cursor[i] = u64_at(&f, l.frame_previous);
                let instr = u64_at(&f, l.frame_instr);
                if depth == 0 {
                    tops[i] = instr;
                }
                let owner = f.get(l.frame_owner as usize).copied().unwrap_or(0);
                let code = u64_at(&f, l.frame_code);
                // Shim frames of C calls into Python carry no Python code.
                if Some(owner) == l.owner_cstack || code == 0 {
                    continue;
                }
                raw[i].push(Raw { code, instr });
            }
        }
        Ok((raw, tops))
    }
}

/// A compact str's characters: 1 (Latin-1), 2 (UCS-2) or 4 (UCS-4) bytes each.
fn decode(b: &[u8], kind: u8) -> String {
    match kind {
        2 => b
            .chunks_exact(2)
            .map(|c| {
                char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or('\u{fffd}')
            })
            .collect(),
        4 => b
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => b.iter().map(|&c| char::from(c)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_kind() {
        assert_eq!(decode(b"abc", 1), "abc");
        assert_eq!(decode(&[0xe9], 1), "é");
        assert_eq!(decode(&[0x3b, 0x04, 0x41, 0x00], 2), "л\u{41}");
        assert_eq!(decode(&0x1f600u32.to_le_bytes(), 4), "😀");
        // A lone surrogate (possible in a str) is replaced, not a panic.
        assert_eq!(decode(&[0x00, 0xd8], 2), "\u{fffd}");
    }
}
