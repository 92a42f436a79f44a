//! Reads a recording back: one scan on open checks every frame's checksums (no
//! decompression) and builds the index seek uses; iteration decodes frames and applies
//! deltas to the right base only. Damage becomes [`Note`]s, never an error.

use super::frame::{self, FileHeader, Parsed, TYPE_DELTA, TYPE_FULL};
use super::{Damage, Note, RecordError, delta};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// One event as recorded, deltas applied. `value` is shared with the reader's delta base:
/// drop it (or decode from it) before the next call and the next delta patches in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    pub kind: Arc<str>,
    pub value: Arc<Value>,
}

impl Event {
    /// The value as a `T` (no copy of the JSON tree).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecordError> {
        super::decode(&self.value)
    }
}

struct Entry {
    offset: u64,
    at_ms: u64,
    ty: u8,
    zstd: bool,
    kind: Arc<str>,
    key: Option<Arc<str>>,
    /// TYPE_DELTA: absolute offset of the base frame.
    base: u64,
    body: Range<usize>,
    raw_len: u32,
    /// Not to be decoded: an unknown type or flag, or a delta whose base is lost.
    skip: bool,
}

/// A reader's place and delta chains, saved by [`Reader::save`] (a few tens of KB for a
/// 1,000-thread snapshot chain).
#[derive(Debug, Clone)]
pub struct Resume {
    cursor: usize,
    chains: Vec<(Arc<str>, u64, Arc<[u8]>)>,
    /// Every chain was kept (else restoring reads them again).
    complete: bool,
}

impl Resume {
    /// Bytes held (compressed chain values).
    pub fn bytes(&self) -> usize {
        self.chains.iter().map(|(_, _, b)| b.len()).sum()
    }
}

/// What the open scan found wrong, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DamageCounts {
    pub bad_frames: usize,
    pub skipped_bytes: u64,
    pub dropped_deltas: usize,
    pub unknown_frames: usize,
    pub cut_tail: bool,
}

pub struct Reader {
    data: Vec<u8>,
    index: Vec<Entry>,
    /// Per delta key, positions in `index` of its keyframes.
    keyframes: HashMap<Arc<str>, Vec<usize>>,
    cursor: usize,
    chains: HashMap<Arc<str>, (u64, Arc<Value>)>,
    notes: Vec<Note>,
    damage: DamageCounts,
    version: (u16, u16),
}

impl Reader {
    /// Open and scan a recording. Errors only for I/O, a file that is not a recording, or a
    /// major version this reader does not know; damage comes back as notes.
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, Vec<Note>), RecordError> {
        Self::from_bytes(std::fs::read(path.as_ref())?)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<(Self, Vec<Note>), RecordError> {
        let mut r = Reader {
            data,
            index: Vec::new(),
            keyframes: HashMap::new(),
            cursor: 0,
            chains: HashMap::new(),
            notes: Vec::new(),
            damage: DamageCounts::default(),
            version: (frame::VERSION_MAJOR, frame::VERSION_MINOR),
        };
        match frame::parse_file_header(&r.data) {
            FileHeader::NotARecording => return Err(RecordError::NotARecording),
            FileHeader::Cut => {
                r.damage.cut_tail = true;
                r.note(
                    0,
                    Damage::CutTail,
                    "file ends inside its header: no events".into(),
                );
                let notes = r.notes.clone();
                return Ok((r, notes));
            }
            FileHeader::Ok { major, minor } => r.version = (major, minor),
            FileHeader::BadChecksum { major, minor } => {
                r.version = (major, minor);
                r.note(
                    0,
                    Damage::BadChecksum,
                    format!("file header checksum mismatch; reading as version {major}.{minor}"),
                );
            }
        }
        if r.version.0 != frame::VERSION_MAJOR {
            return Err(RecordError::UnsupportedVersion(r.version.0, r.version.1));
        }
        r.scan_frames();
        let notes = r.notes.clone();
        Ok((r, notes))
    }

    fn note(&mut self, offset: u64, damage: Damage, text: String) {
        self.notes.push(Note {
            offset,
            damage,
            text,
        });
    }

    /// The next place at or after `from` where a frame with a trustworthy header starts.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut at = from;
        while let Some(p) = frame::next_sync(&self.data, at) {
            if matches!(
                frame::parse(&self.data[p..]),
                Parsed::Good { .. } | Parsed::BadBody { .. }
            ) {
                return Some(p);
            }
            at = p + 1;
        }
        None
    }

    fn scan_frames(&mut self) {
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |s: String| names.entry(s.clone()).or_insert_with(|| s.into()).clone();
        // Per key: offset of the last frame of its chain we can rebuild; None: broken.
        let mut chains: HashMap<Arc<str>, Option<u64>> = HashMap::new();
        let mut unknown: BTreeMap<(u8, u8), (u64, usize)> = BTreeMap::new();
        let mut pos = frame::FILE_HEADER_LEN;
        while pos < self.data.len() {
            let offset = pos as u64;
            match frame::parse(&self.data[pos..]) {
                Parsed::Good { header, body, len } => {
                    let kind = intern(header.kind);
                    let key = header.key.map(&mut intern);
                    let known = (header.ty == TYPE_FULL || header.ty == TYPE_DELTA)
                        && header.flags & !frame::KNOWN_FLAGS == 0
                        && (header.ty == TYPE_FULL || key.is_some());
                    let mut skip = !known;
                    if !known {
                        let u = unknown
                            .entry((header.ty, header.flags))
                            .or_insert((offset, 0));
                        u.1 += 1;
                        self.damage.unknown_frames += 1;
                        if let Some(k) = &key {
                            chains.insert(k.clone(), None);
                        }
                    } else if let Some(k) = &key {
                        if header.ty == TYPE_FULL {
                            chains.insert(k.clone(), Some(offset));
                            self.keyframes
                                .entry(k.clone())
                                .or_default()
                                .push(self.index.len());
                        } else {
                            let chain = chains.get(k).copied().flatten();
                            let base = offset.wrapping_sub(header.base_back);
                            if chain == Some(base) {
                                chains.insert(k.clone(), Some(offset));
                            } else {
                                skip = true;
                                self.damage.dropped_deltas += 1;
                                // One note per break, not per dropped delta.
                                if chain.is_some() || !chains.contains_key(k) {
                                    self.note(offset, Damage::LostBase, format!(
                                        "delta of {k:?} at {} ms: its base frame at byte {} is lost; \
                                         deltas of {k:?} dropped until its next keyframe",
                                        header.at_ms, base));
                                }
                                chains.insert(k.clone(), None);
                            }
                        }
                    }
                    let start = pos + body.start;
                    self.index.push(Entry {
                        offset,
                        at_ms: header.at_ms,
                        ty: header.ty,
                        zstd: header.flags & frame::FLAG_ZSTD != 0,
                        kind,
                        key,
                        base: offset.wrapping_sub(header.base_back),
                        body: start..pos + body.end,
                        raw_len: header.raw_len,
                        skip,
                    });
                    pos += len;
                }
                Parsed::BadBody { header, len } => {
                    self.damage.bad_frames += 1;
                    self.note(offset, Damage::BadChecksum, format!(
                        "frame {:?} at {} ms ({len} bytes): body checksum mismatch, frame skipped",
                        header.kind, header.at_ms));
                    pos += len;
                }
                parsed @ (Parsed::BadHeader | Parsed::Cut) => match self.resync(pos + 1) {
                    Some(next) => {
                        self.damage.bad_frames += 1;
                        self.damage.skipped_bytes += (next - pos) as u64;
                        self.note(offset, Damage::BadChecksum, format!(
                            "no valid frame header here: skipped {} bytes to the next frame at byte {next}",
                            next - pos));
                        pos = next;
                    }
                    None => {
                        let rest = self.data.len() - pos;
                        self.damage.skipped_bytes += rest as u64;
                        if matches!(parsed, Parsed::Cut) {
                            self.damage.cut_tail = true;
                            self.note(
                                offset,
                                Damage::CutTail,
                                format!(
                                    "file ends inside a frame ({rest} bytes of it present): \
                                 the writer stopped mid-write; every frame before it is complete"
                                ),
                            );
                        } else {
                            self.damage.bad_frames += 1;
                            self.note(
                                offset,
                                Damage::Garbage,
                                format!("the last {rest} bytes are no frame: skipped"),
                            );
                        }
                        break;
                    }
                },
            }
        }
        for ((ty, flags), (offset, n)) in unknown {
            self.note(
                offset,
                Damage::Unknown,
                format!(
                    "{n} frame(s) of type {ty} flags {flags:#04x}, unknown to this reader \
                 (format {}.{}): skipped",
                    self.version.0, self.version.1
                ),
            );
        }
        self.notes.sort_by_key(|n| n.offset);
    }

    fn body(&self, e: &Entry) -> Result<Value, String> {
        let raw = &self.data[e.body.clone()];
        if e.zstd {
            let v = zstd::bulk::decompress(raw, e.raw_len.min(frame::MAX_RAW_LEN) as usize)
                .map_err(|err| format!("zstd: {err}"))?;
            if v.len() != e.raw_len as usize {
                return Err(format!(
                    "{} bytes decompressed, header says {}",
                    v.len(),
                    e.raw_len
                ));
            }
            serde_json::from_slice(&v).map_err(|err| format!("json: {err}"))
        } else {
            serde_json::from_slice(raw).map_err(|err| format!("json: {err}"))
        }
    }

    /// The next event, deltas applied; `None` at the end of the file.
    pub fn next_event(&mut self) -> Option<Event> {
        while self.cursor < self.index.len() {
            if let Some(ev) = self.step() {
                return Some(ev);
            }
        }
        None
    }

    /// Reads exactly the frame at the cursor and moves past it: its event, or `None` when
    /// it yields none (skipped, unreadable, a delta without its base, or the end).
    fn step(&mut self) -> Option<Event> {
        let e = self.index.get(self.cursor)?;
        self.cursor += 1;
        if e.skip {
            return None;
        }
        let base = match (&e.key, e.ty) {
            (Some(k), TYPE_DELTA) => match self.chains.get(k) {
                Some((off, _)) if *off == e.base => true,
                // Before its first keyframe after a seek, or after an unreadable frame.
                _ => return None,
            },
            _ => false,
        };
        let (offset, at_ms, kind, key) = (e.offset, e.at_ms, e.kind.clone(), e.key.clone());
        let value = match self.body(e) {
            Ok(v) => v,
            Err(why) => {
                self.unreadable(offset, &kind, key.as_ref(), &why);
                return None;
            }
        };
        let value = match key {
            None => Arc::new(value),
            Some(k) if !base => {
                let v = Arc::new(value);
                self.chains.insert(k, (offset, v.clone()));
                v
            }
            Some(k) => {
                let (off, v) = self.chains.get_mut(&k)?;
                if let Err(err) = delta::apply(Arc::make_mut(v), value) {
                    self.unreadable(offset, &kind, Some(&k), &err.to_string());
                    return None;
                }
                *off = offset;
                v.clone()
            }
        };
        Some(Event { at_ms, kind, value })
    }

    /// Index (in file order, from 0) of the frame the next [`Reader::next_event`] reads first.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Positions the reader at frame `frame` (a [`Reader::cursor`] value) with every delta
    /// chain rebuilt as it stood right before it: from each key's latest keyframe before
    /// `frame`, only the frames of delta chains are decoded; other frames are not read.
    pub fn seek_frame(&mut self, frame: usize) {
        let frame = frame.min(self.index.len());
        self.chains.clear();
        self.cursor = self
            .keyframes
            .values()
            .filter_map(|kf| {
                let n = kf.partition_point(|&i| i < frame);
                n.checked_sub(1).map(|n| kf[n])
            })
            .min()
            .unwrap_or(frame);
        self.advance_to(frame);
    }

    /// Where the reader is and its delta chains, kept compactly (each chain's value as
    /// zstd-compressed JSON), so [`Reader::restore`] goes on from here without reading a
    /// chain from its keyframe again. Chains whose value did not change since `prev` share
    /// its bytes. serde_json's `float_roundtrip` parser reads every float back as written,
    /// so a value restored from its JSON is the value saved (no verifying parse here: it was
    /// two thirds of the cost of opening a one-hour recording).
    pub fn save(&self, prev: Option<&Resume>) -> Resume {
        let mut chains: Vec<(Arc<str>, u64, Arc<[u8]>)> = self
            .chains
            .iter()
            .filter_map(|(k, (off, v))| {
                let same = prev.and_then(|p| {
                    p.chains
                        .iter()
                        .find(|(pk, poff, _)| pk == k && poff == off)
                        .map(|(_, _, b)| b.clone())
                });
                let bytes = match same {
                    Some(b) => b,
                    None => {
                        let json = serde_json::to_vec(v.as_ref()).ok()?;
                        zstd::bulk::compress(&json, 1).ok()?.into()
                    }
                };
                Some((k.clone(), *off, bytes))
            })
            .collect();
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        Resume {
            cursor: self.cursor,
            complete: chains.len() == self.chains.len(),
            chains,
        }
    }

    /// Goes on from a [`Reader::save`]d state. False (and the reader as after
    /// [`Reader::seek_frame`] to the same place) when a saved chain does not decode.
    pub fn restore(&mut self, r: &Resume) -> bool {
        if !r.complete {
            self.seek_frame(r.cursor);
            return false;
        }
        self.chains.clear();
        for (k, off, bytes) in &r.chains {
            let value = zstd::stream::decode_all(bytes.as_ref())
                .ok()
                .and_then(|json| serde_json::from_slice::<Value>(&json).ok());
            let Some(value) = value else {
                self.seek_frame(r.cursor);
                return false;
            };
            self.chains.insert(k.clone(), (*off, Arc::new(value)));
        }
        self.cursor = r.cursor.min(self.index.len());
        true
    }

    /// The current value of a delta chain (the last frame of that key read), if rebuilt.
    pub fn chain_value(&self, key: &str) -> Option<&Value> {
        self.chains.get(key).map(|(_, v)| v.as_ref())
    }

    /// Moves forward to frame `frame` without yielding events, keeping the delta chains: of
    /// the frames in between, only those with a delta key are decoded. Never moves back.
    pub fn advance_to(&mut self, frame: usize) {
        let frame = frame.min(self.index.len());
        while self.cursor < frame {
            if self.index[self.cursor].key.is_some() {
                drop(self.step());
            } else {
                self.cursor += 1;
            }
        }
    }

    fn unreadable(&mut self, offset: u64, kind: &str, key: Option<&Arc<str>>, why: &str) {
        let mut text =
            format!("frame {kind:?} has good checksums but cannot be decoded ({why}): skipped");
        if let Some(k) = key {
            self.chains.remove(k);
            text.push_str(&format!(
                "; deltas of {k:?} dropped until its next keyframe"
            ));
        }
        self.damage.bad_frames += 1;
        self.note(offset, Damage::Unreadable, text);
    }

    /// Position the reader so the next event is the latest keyframe at or before `at_ms`
    /// (for several delta keys, the earliest of their latest keyframes, so every key's state
    /// can be rebuilt); events after it, up to and past `at_ms`, follow. With no keyframe at
    /// or before `at_ms`: the first event at or after it. Returns that event's time.
    pub fn seek(&mut self, at_ms: u64) -> Option<u64> {
        self.chains.clear();
        let start = self
            .keyframes
            .values()
            .filter_map(|kf| {
                let n = kf.partition_point(|&i| self.index[i].at_ms <= at_ms);
                n.checked_sub(1).map(|n| kf[n])
            })
            .min()
            .unwrap_or_else(|| self.index.partition_point(|e| e.at_ms < at_ms));
        self.cursor = start;
        self.index.get(start).map(|e| e.at_ms)
    }

    /// Back to the first event.
    pub fn rewind(&mut self) {
        self.chains.clear();
        self.cursor = 0;
    }

    /// Everything found wrong so far: the open scan's notes, then any frame that could not
    /// be decoded during iteration.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    pub fn damage(&self) -> DamageCounts {
        self.damage
    }

    /// (major, minor) from the file header.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// Frames in the index (readable or not), and the time span they cover.
    pub fn frames(&self) -> usize {
        self.index.len()
    }

    pub fn span_ms(&self) -> Option<(u64, u64)> {
        Some((self.index.first()?.at_ms, self.index.last()?.at_ms))
    }
}

impl Iterator for Reader {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.next_event()
    }
}
