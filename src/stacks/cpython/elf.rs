//! The few CPython symbols the reader needs (`_PyRuntime`, `Py_Version`, the code, str and
//! bytes type objects), found through the ELF file's GNU hash table over `.dynsym`: a
//! handful of page reads instead of parsing all ~15,000 symbols the way py-spy does.

use object::elf::{FileHeader64, SHT_DYNSYM};
use object::read::elf::{FileHeader, VersionTable};
use object::{Endianness, elf};
use std::fs::File;

/// Addresses in the target of the symbols we look up (load bias applied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Symbols {
    pub runtime: u64,
    /// `Py_Version` (3.11+), absent in older interpreters.
    pub version: Option<u64>,
    pub code_type: u64,
    pub unicode_type: u64,
    pub bytes_type: u64,
}

/// Look the symbols up in `path` (as seen from this process), loaded at `base` (the start of
/// its mapping at file offset 0).
pub fn lookup(path: &str, base: u64) -> Result<Symbols, String> {
    let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: a read-only private mapping of a file the target has mapped (its interpreter
    // or libpython); only its headers, hash table and a few symbols are touched. A file
    // truncated under us could fault, as for the native unwinder's mappings of the same files.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("{path}: mmap: {e}"))?;
    let data = &map[..];
    let bad = |e: object::Error| format!("{path}: not a readable ELF file: {e}");
    let header = FileHeader64::<Endianness>::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    // Symbol values are link-time addresses: relative to the first loadable segment's.
    let first_load = header
        .program_headers(endian, data)
        .map_err(bad)?
        .iter()
        .find(|p| p.p_type.get(endian) == elf::PT_LOAD)
        .ok_or_else(|| format!("{path}: no loadable segment"))?;
    let link_base = first_load.p_vaddr.get(endian) - first_load.p_offset.get(endian);
    let bias = base.wrapping_sub(link_base);
    let sections = header.sections(endian, data).map_err(bad)?;
    let symbols = sections.symbols(endian, data, SHT_DYNSYM).map_err(bad)?;
    let (hash, _) = sections
        .gnu_hash(endian, data)
        .map_err(bad)?
        .ok_or_else(|| format!("{path}: no GNU hash table (.gnu.hash)"))?;
    let versions = VersionTable::default();
    let find = |name: &str| -> Option<u64> {
        let (_, sym) = hash.find(
            endian,
            name.as_bytes(),
            elf::gnu_hash(name.as_bytes()),
            None,
            &symbols,
            &versions,
        )?;
        let value = sym.st_value.get(endian);
        (value != 0 && sym.st_shndx.get(endian) != elf::SHN_UNDEF).then(|| value.wrapping_add(bias))
    };
    let need = |name: &str| find(name).ok_or_else(|| format!("{path}: no symbol {name}"));
    Ok(Symbols {
        runtime: need("_PyRuntime")?,
        version: find("Py_Version"),
        code_type: need("PyCode_Type")?,
        unicode_type: need("PyUnicode_Type")?,
        bytes_type: need("PyBytes_Type")?,
    })
}

/// The file holding the interpreter's symbols in `maps` (/proc/PID/maps): libpython when
/// the process loaded one, else the executable named `exe`. Returns its path and the start
/// of its mapping at file offset 0.
pub fn interpreter_file(maps: &str, exe: &str) -> Option<(String, u64)> {
    let mut exe_base = None;
    for line in maps.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(range), _, Some(offset), _, _, Some(path)) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            continue;
        };
        if u64::from_str_radix(offset, 16) != Ok(0) {
            continue;
        }
        let Some(start) = range
            .split('-')
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.starts_with("libpython3") {
            return Some((path.to_string(), start));
        }
        if path == exe && exe_base.is_none() {
            exe_base = Some(start);
        }
    }
    exe_base.map(|b| (exe.to_string(), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpython_wins_over_the_executable() {
        let maps = "\
55d0a000-55d0b000 r--p 00000000 fd:01 1 /usr/bin/python3.11
7f00a000-7f00b000 r--p 00000000 fd:01 2 /opt/lib/libpython3.11.so.1.0
7f00b000-7f00c000 r-xp 00001000 fd:01 2 /opt/lib/libpython3.11.so.1.0
";
        assert_eq!(
            interpreter_file(maps, "/usr/bin/python3.11"),
            Some(("/opt/lib/libpython3.11.so.1.0".into(), 0x7f00a000))
        );
        let static_only = "55d0a000-55d0b000 r--p 00000000 fd:01 1 /usr/bin/python3.11\n";
        assert_eq!(
            interpreter_file(static_only, "/usr/bin/python3.11"),
            Some(("/usr/bin/python3.11".into(), 0x55d0a000))
        );
        assert_eq!(interpreter_file("garbage\n", "/x"), None);
    }
}
