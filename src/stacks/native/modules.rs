//! Loaded modules of a target, from /proc/PID/maps, turned into framehop modules. Unwind
//! sections (.eh_frame, .eh_frame_hdr, .text) are windows of the file mapped read-only, so
//! only the pages an unwind touches are read (framehop binary-searches .eh_frame_hdr: a
//! cold capture reads a few pages of libc, not its 1.5 MB of .text); one mapping per file
//! identity (device, inode, mtime), shared by every process; only the load address differs
//! between processes (PIE/ASLR).
//! Load bias: the executable mapping at file offset O and address S lies in the PT_LOAD whose
//! file range holds O, so bias = S - (p_vaddr + O - p_offset), and framehop gets
//! base_svma = 0, base_avma = bias (ELF svmas are relative to 0).

use framehop::{ExplicitModuleSectionInfo, Module};
use object::{Object, ObjectSection, ObjectSegment};
use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Section bytes shared between processes mapping the same file: a window of the file's
/// read-only mapping (empty if the window does not fit the file, or for `default()`).
#[derive(Clone, Default)]
pub struct Bytes {
    map: Option<Arc<memmap2::Mmap>>,
    range: Range<usize>,
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map
            .as_ref()
            .and_then(|m| m.get(self.range.clone()))
            .unwrap_or(&[])
    }
}

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub range: Range<u64>,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

/// Parse /proc/PID/maps text; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next()?.split_once('-')?;
            let perms = f.next()?.to_string();
            let offset = u64::from_str_radix(f.next()?, 16).ok()?;
            let _dev = f.next()?;
            let _inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            Some(Mapping {
                range: u64::from_str_radix(a, 16).ok()?..u64::from_str_radix(b, 16).ok()?,
                perms,
                offset,
                path,
            })
        })
        .collect()
}

/// The unwind-relevant parts of one ELF file, relative addresses (svma).
#[derive(Clone)]
pub struct ElfUnwindInfo {
    /// (p_vaddr, p_offset, p_filesz, executable) of each PT_LOAD, for the load bias.
    loads: Vec<(u64, u64, u64, bool)>,
    text: Option<(Range<u64>, Bytes)>,
    eh_frame: Option<(Range<u64>, Bytes)>,
    eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    got: Option<Range<u64>>,
    /// The file carries its own DWARF (`.debug_info`): the user's program, built with `-g`.
    pub own_dwarf: bool,
    /// `.note.gnu.build-id`, to find a separate debug file (`/usr/lib/debug/.build-id/`).
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink` file name, the other way debug packages are found.
    pub debuglink: Option<String>,
}

fn section<'d>(
    map: &Arc<memmap2::Mmap>,
    file: &object::File<'d, &'d [u8]>,
    name: &str,
) -> Option<(Range<u64>, Bytes)> {
    let s = file.section_by_name(name)?;
    // Compressed or file-less (NOBITS) sections are of no use to unwinding.
    if !matches!(
        s.compressed_file_range().ok()?.format,
        object::CompressionFormat::None
    ) {
        return None;
    }
    let (off, size) = s.file_range()?;
    let range = usize::try_from(off).ok()?..usize::try_from(off.checked_add(size)?).ok()?;
    map.get(range.clone())?;
    Some((
        s.address()..s.address() + s.size(),
        Bytes {
            map: Some(map.clone()),
            range,
        },
    ))
}

/// Map an ELF file (via /proc/PID/root so containers work) and find its unwind sections.
/// Nothing is read but the headers until an unwind needs a page: a library with debug info
/// is mostly DWARF that unwinding does not need.
pub fn read_elf(path: &str) -> Result<ElfUnwindInfo, String> {
    let f = fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: a read-only private mapping of a file that is mapped executable in the target;
    // loaded code is not rewritten in place (the loader's files are replaced by rename, and
    // a running executable refuses writes with ETXTBSY). Only slices within the mapping's
    // length are ever handed out (`Bytes::deref`).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("{path}: mmap: {e}"))?;
    let map = Arc::new(map);
    let file =
        object::File::parse(&map[..]).map_err(|e| format!("{path}: not an ELF file: {e}"))?;
    let loads = file
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            let exec = matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
            (s.address(), off, size, exec)
        })
        .collect();
    Ok(ElfUnwindInfo {
        loads,
        text: section(&map, &file, ".text"),
        eh_frame: section(&map, &file, ".eh_frame"),
        eh_frame_hdr: section(&map, &file, ".eh_frame_hdr"),
        got: file
            .section_by_name(".got")
            .map(|s| s.address()..s.address() + s.size()),
        own_dwarf: file
            .section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0 && s.kind() != object::SectionKind::UninitializedData),
        build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
        debuglink: file
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, _crc)| String::from_utf8_lossy(name).into_owned()),
    })
}

impl ElfUnwindInfo {
    /// Load bias of an executable mapping at `start` with file offset `offset`. Mappings
    /// start on page boundaries, so the segment's offset and vaddr are page-aligned down
    /// first; the executable PT_LOAD wins when a read-only one also covers the page.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        const PAGE_MASK: u64 = !0xfff;
        let covers = |(_, poff, size, _): &&(u64, u64, u64, bool)| {
            (*poff & PAGE_MASK) <= offset && offset < poff + (*size).max(1)
        };
        let (vaddr, poff, _, _) = self
            .loads
            .iter()
            .filter(covers)
            .find(|l| l.3)
            .or_else(|| self.loads.iter().find(covers))?;
        start.checked_sub((vaddr & PAGE_MASK) + (offset - (poff & PAGE_MASK)))
    }

    /// A framehop module for this file loaded with `bias`, covering `avma`.
    pub fn module(&self, name: String, avma: Range<u64>, bias: u64) -> Module<Bytes> {
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.as_ref().map(|t| t.0.clone()),
            text: self.text.as_ref().map(|t| t.1.clone()),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|t| t.0.clone()),
            eh_frame: self.eh_frame.as_ref().map(|t| t.1.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|t| t.0.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|t| t.1.clone()),
            ..Default::default()
        };
        Module::new(name, avma, bias, info)
    }
}

/// Identity of a file on disk, so a rebuilt binary is re-read.
pub type FileId = (u64, u64, i64);

/// Parsed ELF files, shared by every target process.
#[derive(Default)]
pub struct ElfCache {
    files: HashMap<FileId, Arc<ElfUnwindInfo>>,
}

impl ElfCache {
    pub fn get(&mut self, path: &str) -> Result<Arc<ElfUnwindInfo>, String> {
        let md = fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
        let id = (md.dev(), md.ino(), md.mtime());
        if let Some(info) = self.files.get(&id) {
            return Ok(info.clone());
        }
        let info = Arc::new(read_elf(path)?);
        self.files.insert(id, info.clone());
        Ok(info)
    }
}

/// One executable file mapping as the symbolizer needs it: where it is loaded and what the
/// file says about its debug info.
#[derive(Clone)]
pub struct LoadedFile {
    /// The mapping's address range in the target.
    pub range: Range<u64>,
    /// Address minus ELF virtual address (svma) for this mapping.
    pub bias: u64,
    pub info: Arc<ElfUnwindInfo>,
}

/// Framehop modules for every executable file mapping of `pid`, the same mappings for the
/// symbolizer, plus per-file errors.
pub fn modules_for(
    pid: i32,
    maps: &[Mapping],
    cache: &mut ElfCache,
) -> (Vec<Module<Bytes>>, Vec<LoadedFile>, Vec<String>) {
    let mut out = Vec::new();
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for m in maps
        .iter()
        .filter(|m| m.perms.contains('x') && m.path.starts_with('/'))
    {
        let path = format!("/proc/{pid}/root{}", m.path);
        let info = match cache.get(&path) {
            Ok(i) => i,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Some(bias) = info.bias(m.range.start, m.offset) else {
            errors.push(format!(
                "{}: mapping at offset {:#x} not in any PT_LOAD",
                m.path, m.offset
            ));
            continue;
        };
        let name = m.path.rsplit('/').next().unwrap_or(&m.path).to_string();
        out.push(info.module(name, m.range.clone(), bias));
        loaded.push(LoadedFile {
            range: m.range.clone(),
            bias,
            info,
        });
    }
    (out, loaded, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let t = "55d0a000-55d0b000 r-xp 00001000 08:01 1234   /usr/bin/my prog\n\
                 7ffc0000-7ffc2000 rw-p 00000000 00:00 0      [stack]\nbad line\n";
        let m = parse_maps(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].range, 0x55d0a000..0x55d0b000);
        assert_eq!(m[0].offset, 0x1000);
        assert_eq!(m[0].path, "/usr/bin/my prog");
        assert_eq!(m[1].path, "[stack]");
    }

    #[test]
    fn bias_of_pie_and_non_pie() {
        let pie = ElfUnwindInfo {
            loads: vec![(0, 0, 0x185d4, false), (0x195e0, 0x185e0, 0x48380, true)],
            text: None,
            eh_frame: None,
            eh_frame_hdr: None,
            got: None,
            own_dwarf: false,
            build_id: None,
            debuglink: None,
        };
        assert_eq!(pie.bias(0x5555_5555_5000, 0x1000), Some(0x5555_5555_4000));
        let fixed = ElfUnwindInfo {
            loads: vec![(0x401000, 0x1000, 0x2000, true)],
            ..pie
        };
        assert_eq!(fixed.bias(0x401000, 0x1000), Some(0));
    }
}
