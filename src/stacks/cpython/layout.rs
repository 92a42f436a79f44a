//! Where the fields the reader needs sit in each supported CPython's structures (64-bit
//! builds). 3.11 and 3.12 have fixed, known layouts (checked against their headers with
//! `offsetof`); 3.13 describes itself in `_Py_DebugOffsets` at the start of `_PyRuntime`,
//! which is read from the target. Anything else is refused, so the caller falls back.

/// Byte offsets of the fields read, for one interpreter version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `_PyRuntime.interpreters.head`.
    pub runtime_interpreters_head: u64,
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub tstate_next: u64,
    pub tstate_interp: u64,
    pub tstate_native_thread_id: u64,
    /// 3.11/3.12: `tstate->cframe`, then `cframe->current_frame` (two reads).
    pub tstate_cframe: Option<u64>,
    pub cframe_current_frame: u64,
    /// 3.13: `tstate->current_frame` (one read).
    pub tstate_current_frame: Option<u64>,
    pub frame_previous: u64,
    pub frame_code: u64,
    /// `prev_instr` (3.11/3.12) or `instr_ptr` (3.13).
    pub frame_instr: u64,
    pub frame_owner: u64,
    /// Shim frames pushed by C code (3.12+), which carry no Python code.
    pub owner_cstack: Option<u8>,
    pub ob_type: u64,
    pub code_firstlineno: u64,
    pub code_filename: u64,
    pub code_qualname: u64,
    pub code_linetable: u64,
    /// The bytecode starts here, inside the code object.
    pub code_adaptive: u64,
    /// `ob_size` of a var object (code units of a code object, bytes of a bytes object).
    pub var_size: u64,
    pub bytes_data: u64,
    pub str_length: u64,
    pub str_state: u64,
    /// `sizeof(PyASCIIObject)` (compact ASCII data follows) and
    /// `sizeof(PyCompactUnicodeObject)` (other compact data follows).
    pub str_ascii_size: u64,
    pub str_compact_size: u64,
}

impl Layout {
    /// Bytes to read of a thread state to cover every field used.
    pub fn tstate_len(&self) -> usize {
        let fields = [
            self.tstate_next,
            self.tstate_interp,
            self.tstate_native_thread_id,
            self.tstate_cframe.unwrap_or(0),
            self.tstate_current_frame.unwrap_or(0),
        ];
        fields.iter().max().map_or(8, |m| *m as usize + 8)
    }

    /// Bytes to read of an interpreter frame.
    pub fn frame_len(&self) -> usize {
        let fields = [self.frame_previous, self.frame_code, self.frame_instr];
        let ptrs = fields.iter().max().map_or(8, |m| *m as usize + 8);
        ptrs.max(self.frame_owner as usize + 1)
    }

    /// Bytes to read of a code object (its header, up to the bytecode).
    pub fn code_len(&self) -> usize {
        self.code_adaptive as usize
    }
}

/// Fields shared by 3.11 and 3.12 (objects, code, bytes).
const fn common(adaptive: u64, firstlineno: u64, ascii: u64, compact: u64) -> Layout {
    Layout {
        runtime_interpreters_head: 40,
        interp_next: 0,
        interp_threads_head: 0,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_native_thread_id: 0,
        tstate_cframe: None,
        cframe_current_frame: 0,
        tstate_current_frame: None,
        frame_previous: 0,
        frame_code: 0,
        frame_instr: 0,
        frame_owner: 0,
        owner_cstack: None,
        ob_type: 8,
        code_firstlineno: firstlineno,
        code_filename: 112,
        code_qualname: 128,
        code_linetable: 136,
        code_adaptive: adaptive,
        var_size: 16,
        bytes_data: 32,
        str_length: 16,
        str_state: 32,
        str_ascii_size: ascii,
        str_compact_size: compact,
    }
}

/// CPython 3.11.x.
pub const V3_11: Layout = Layout {
    interp_threads_head: 16,
    tstate_native_thread_id: 160,
    tstate_cframe: Some(56),
    cframe_current_frame: 8,
    frame_previous: 48,
    frame_code: 32,
    frame_instr: 56,
    frame_owner: 69,
    ..common(184, 72, 48, 72)
};

/// CPython 3.12.x.
pub const V3_12: Layout = Layout {
    interp_threads_head: 72,
    tstate_native_thread_id: 144,
    tstate_cframe: Some(56),
    cframe_current_frame: 0,
    frame_previous: 8,
    frame_code: 0,
    frame_instr: 56,
    frame_owner: 70,
    owner_cstack: Some(3),
    ..common(192, 68, 40, 56)
};

/// Bytes of `_Py_DebugOffsets` read (through the `pyobject` group).
pub const DEBUG_OFFSETS_LEN: usize = 368;

/// The 3.13 layout from the target's `_Py_DebugOffsets` (`raw`: its first
/// [`DEBUG_OFFSETS_LEN`] bytes). Strings keep 3.12's layout (unchanged in 3.13).
pub fn from_debug_offsets(raw: &[u8], version: u64) -> Result<Layout, String> {
    let u = |at: usize| -> u64 {
        raw.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    if raw.len() < DEBUG_OFFSETS_LEN || &raw[..8] != b"xdebugpy" {
        return Err("no _Py_DebugOffsets cookie at the start of _PyRuntime".into());
    }
    if u(8) >> 16 != version >> 16 {
        return Err(format!(
            "_Py_DebugOffsets says version {:#x}, Py_Version {version:#x}",
            u(8)
        ));
    }
    if u(16) != 0 {
        return Err("free-threaded build (its frames are not read yet)".into());
    }
    let layout = Layout {
        runtime_interpreters_head: u(40),
        interp_next: u(64),
        interp_threads_head: u(72),
        tstate_next: u(168),
        tstate_interp: u(176),
        tstate_native_thread_id: u(200),
        tstate_cframe: None,
        cframe_current_frame: 0,
        tstate_current_frame: Some(u(184)),
        frame_previous: u(232),
        frame_code: u(240),
        frame_instr: u(248),
        frame_owner: u(264),
        owner_cstack: Some(3),
        ob_type: u(360),
        code_firstlineno: u(312),
        code_filename: u(280),
        code_qualname: u(296),
        code_linetable: u(304),
        code_adaptive: u(344),
        ..V3_12
    };
    // Offsets past the structures' own sizes are a misread, not a layout.
    let within = |off: u64, size: u64| off < size && size < 1 << 20;
    let ok = within(layout.runtime_interpreters_head, u(24))
        && within(layout.interp_threads_head, u(48))
        && within(layout.interp_next, u(48))
        && [168, 176, 184, 200].iter().all(|&f| within(u(f), u(152)))
        && [232, 240, 248, 264].iter().all(|&f| within(u(f), u(224)))
        && [280, 296, 304, 312, 344]
            .iter()
            .all(|&f| within(u(f), u(272)));
    if !ok {
        return Err("_Py_DebugOffsets has offsets outside its structures".into());
    }
    Ok(layout)
}

/// The layout for `Py_Version` (`PY_VERSION_HEX`), or why there is none.
pub fn for_version(version: u64) -> Result<Option<Layout>, String> {
    match (version >> 24, (version >> 16) & 0xff) {
        (3, 11) => Ok(Some(V3_11)),
        (3, 12) => Ok(Some(V3_12)),
        // Read from the target's _Py_DebugOffsets.
        (3, 13) => Ok(None),
        (major, minor) => Err(format!(
            "CPython {major}.{minor} is not known to the built-in reader (3.11-3.13 are)"
        )),
    }
}

/// `3.11.7` from `PY_VERSION_HEX`.
pub fn version_text(version: u64) -> String {
    format!(
        "{}.{}.{}",
        version >> 24,
        (version >> 16) & 0xff,
        (version >> 8) & 0xff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_layouts() {
        assert_eq!(for_version(0x030B07F0), Ok(Some(V3_11)));
        assert_eq!(for_version(0x030C01F0), Ok(Some(V3_12)));
        assert_eq!(for_version(0x030D00F0), Ok(None));
        let e = for_version(0x030E00F0).expect_err("3.14 unknown");
        assert!(e.contains("3.14"), "{e}");
        assert_eq!(version_text(0x030B07F0), "3.11.7");
    }

    #[test]
    fn read_lengths_cover_the_fields() {
        assert_eq!(V3_11.tstate_len(), 168);
        assert_eq!(V3_11.frame_len(), 70);
        assert_eq!(V3_12.frame_len(), 71);
        assert_eq!(V3_12.code_len(), 192);
    }

    #[test]
    fn debug_offsets_are_checked() {
        let mut raw = vec![0u8; DEBUG_OFFSETS_LEN];
        assert!(from_debug_offsets(&raw, 0x030D00F0).is_err());
        raw[..8].copy_from_slice(b"xdebugpy");
        raw[8..16].copy_from_slice(&0x030D00F0u64.to_le_bytes());
        // All sizes zero: every offset is outside its structure.
        assert!(from_debug_offsets(&raw, 0x030D00F0).is_err());
    }
}
