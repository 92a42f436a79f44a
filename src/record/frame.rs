//! The byte layout of the file header and of one frame, and the parser that tells a good
//! frame from a cut one and a damaged one. No I/O and no JSON: bytes in, bytes out. The
//! layout is specified in `docs/recording.md`; the constants here are the spec.

/// First 8 bytes of a recording. The high byte and CR LF catch text-mode mangling, as PNG does.
pub const MAGIC: [u8; 8] = *b"\x89LTREC\r\n";
/// Format major version this code writes and reads. Minor versions only add things an older
/// reader can skip (frame types, flag bits it does not need, kinds).
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
pub const FILE_HEADER_LEN: usize = 16;

/// Every frame starts with these 4 bytes: the point a reader resynchronises on.
pub const SYNC: [u8; 4] = [0xD7, b'L', b'T', b'F'];
/// Bytes of a frame header before its kind and delta key strings.
pub const FIXED_LEN: usize = 32;
/// Largest decompressed body a reader accepts (a bad length must not allocate gigabytes).
pub const MAX_RAW_LEN: u32 = 256 << 20;

/// A whole value: a plain event, or a keyframe when it has a delta key.
pub const TYPE_FULL: u8 = 1;
/// A patch against the previous frame of the same delta key (`base_back` bytes before).
pub const TYPE_DELTA: u8 = 2;
/// Body compressed with zstd (one frame, whole body).
pub const FLAG_ZSTD: u8 = 1;
/// Flag bits a v1 reader understands; a frame with others set is skipped.
pub const KNOWN_FLAGS: u8 = FLAG_ZSTD;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    pub ty: u8,
    pub flags: u8,
    pub at_ms: u64,
    /// TYPE_DELTA: bytes from the start of the base frame to the start of this one (so a
    /// frame's meaning does not depend on where it sits in the file). Otherwise 0.
    pub base_back: u64,
    pub body_len: u32,
    pub raw_len: u32,
    pub kind: String,
    pub key: Option<String>,
}

pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub enum FileHeader {
    Ok {
        major: u16,
        minor: u16,
    },
    /// Shorter than a header but a prefix of one: the writer died right after creating it.
    Cut,
    NotARecording,
    /// Magic right, checksum wrong.
    BadChecksum {
        major: u16,
        minor: u16,
    },
}

pub fn parse_file_header(data: &[u8]) -> FileHeader {
    if data.len() < FILE_HEADER_LEN {
        let n = data.len().min(MAGIC.len());
        return if data[..n] == MAGIC[..n] {
            FileHeader::Cut
        } else {
            FileHeader::NotARecording
        };
    }
    if data[..8] != MAGIC {
        return FileHeader::NotARecording;
    }
    let major = u16::from_le_bytes([data[8], data[9]]);
    let minor = u16::from_le_bytes([data[10], data[11]]);
    let crc = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
    if crc32fast::hash(&data[..12]) == crc {
        FileHeader::Ok { major, minor }
    } else {
        FileHeader::BadChecksum { major, minor }
    }
}

/// Append one frame to `out`. `kind` must be 1..=255 bytes, `key` at most 255 (checked by
/// the writer).
pub fn encode(out: &mut Vec<u8>, h: &FrameHeader, body: &[u8]) {
    let start = out.len();
    let key = h.key.as_deref().unwrap_or("");
    out.extend_from_slice(&SYNC);
    out.push(h.ty);
    out.push(h.flags);
    out.push(h.kind.len() as u8);
    out.push(key.len() as u8);
    out.extend_from_slice(&h.at_ms.to_le_bytes());
    out.extend_from_slice(&h.base_back.to_le_bytes());
    out.extend_from_slice(&h.body_len.to_le_bytes());
    out.extend_from_slice(&h.raw_len.to_le_bytes());
    out.extend_from_slice(h.kind.as_bytes());
    out.extend_from_slice(key.as_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
}

/// What is at the start of `data` (the bytes from a frame boundary to the end of the file).
#[derive(Debug)]
pub enum Parsed {
    /// A frame whose header and body checksums match. `body` is a range into `data`.
    Good {
        header: FrameHeader,
        body: std::ops::Range<usize>,
        len: usize,
    },
    /// The file ends inside what looks like a frame (every byte present agrees with one).
    Cut,
    /// Not a frame start, or its header checksum fails: resynchronise.
    BadHeader,
    /// Header good, body checksum wrong: the frame is lost, the next one starts at `len`.
    BadBody { header: FrameHeader, len: usize },
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_le_bytes(b)
}

pub fn parse(data: &[u8]) -> Parsed {
    let n = data.len().min(SYNC.len());
    if data[..n] != SYNC[..n] {
        return Parsed::BadHeader;
    }
    if data.len() < FIXED_LEN {
        return Parsed::Cut;
    }
    let (kind_len, key_len) = (data[6] as usize, data[7] as usize);
    let hdr_len = FIXED_LEN + kind_len + key_len;
    if data.len() < hdr_len + 4 {
        return Parsed::Cut;
    }
    if crc32fast::hash(&data[..hdr_len]) != u32_at(data, hdr_len) || kind_len == 0 {
        return Parsed::BadHeader;
    }
    let (Ok(kind), Ok(key)) = (
        std::str::from_utf8(&data[FIXED_LEN..FIXED_LEN + kind_len]),
        std::str::from_utf8(&data[FIXED_LEN + kind_len..hdr_len]),
    ) else {
        return Parsed::BadHeader;
    };
    let header = FrameHeader {
        ty: data[4],
        flags: data[5],
        at_ms: u64_at(data, 8),
        base_back: u64_at(data, 16),
        body_len: u32_at(data, 24),
        raw_len: u32_at(data, 28),
        kind: kind.to_owned(),
        key: (!key.is_empty()).then(|| key.to_owned()),
    };
    let body_start = hdr_len + 4;
    let len = body_start + header.body_len as usize + 4;
    if data.len() < len {
        return Parsed::Cut;
    }
    let body = body_start..body_start + header.body_len as usize;
    if crc32fast::hash(&data[body.clone()]) != u32_at(data, body.end) {
        return Parsed::BadBody { header, len };
    }
    Parsed::Good { header, body, len }
}

/// Offset (relative to `data`) of the next place a frame could start, after `from`.
pub fn next_sync(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < data.len() {
        let j = i + memchr_first(&data[i..], SYNC[0])?;
        let rest = &data[j..];
        let n = rest.len().min(SYNC.len());
        if rest[..n] == SYNC[..n] {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

fn memchr_first(d: &[u8], b: u8) -> Option<usize> {
    d.iter().position(|&x| x == b)
}
