//! Appends events to a recording: one frame per event, one `write(2)` per frame, deltas
//! against the previous event of the same delta key, a keyframe every N frames or N ms.

use super::RecordError;
use super::delta;
use super::frame::{self, FLAG_ZSTD, FrameHeader, TYPE_DELTA, TYPE_FULL};
use super::typed::{TypedDelta, TypedDiff};
use serde::Serialize;
use serde_json::Value;
use std::any::Any;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// When to write a keyframe instead of a delta, and how hard to compress.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A keyframe after this many deltas of one key (120 = one minute at 500 ms).
    pub keyframe_every_frames: u32,
    /// A keyframe when the last one of that key is this old (ms of event time).
    pub keyframe_every_ms: u64,
    /// zstd level (1..=22; 3 is zstd's default and fast enough for keyframes of 300 KB).
    pub zstd_level: i32,
    /// Bodies shorter than this are stored raw: zstd's frame overhead would not pay.
    pub compress_min_len: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            keyframe_every_frames: 120,
            keyframe_every_ms: 60_000,
            zstd_level: 3,
            compress_min_len: 64,
        }
    }
}

/// What a writer has put in its file so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub frames: u64,
    pub keyframes: u64,
    pub deltas: u64,
    /// File size, header included.
    pub bytes: u64,
    /// Events whose `at_ms` was before the previous one's, written with the previous time.
    pub clamped_times: u64,
}

/// The value of a chain's last frame: the JSON tree, or the typed value it came from.
enum Base {
    Value(Value),
    Typed(Box<dyn TypedBase>),
}

trait TypedBase: Send {
    fn as_any(&self) -> &dyn Any;
    fn to_value(&self) -> Result<Value, serde_json::Error>;
}

impl<T: TypedDelta> TypedBase for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

struct Chain {
    /// Offset of the last frame of this key: the base of the next delta.
    offset: u64,
    value: Base,
    deltas_since_key: u32,
    key_at_ms: u64,
}

pub struct Writer {
    file: File,
    opts: WriterOptions,
    offset: u64,
    last_at_ms: u64,
    chains: HashMap<String, Chain>,
    buf: Vec<u8>,
    body: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
    stats: WriterStats,
}

impl Writer {
    /// Create (truncate) `path` and write the file header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, RecordError> {
        Self::create_with(path, WriterOptions::default())
    }

    pub fn create_with(path: impl AsRef<Path>, opts: WriterOptions) -> Result<Self, RecordError> {
        let mut file = File::create(path.as_ref())?;
        let header = frame::file_header();
        file.write_all(&header)?;
        let compressor = zstd::bulk::Compressor::new(opts.zstd_level)?;
        Ok(Self {
            file,
            opts,
            offset: header.len() as u64,
            last_at_ms: 0,
            chains: HashMap::new(),
            buf: Vec::new(),
            body: Vec::new(),
            compressor,
            stats: WriterStats {
                bytes: header.len() as u64,
                ..WriterStats::default()
            },
        })
    }

    /// Append one event. With a `delta_key`, the event is written as a patch against the
    /// previous event of that key (or as a keyframe when one is due), which needs a copy of
    /// `value`: [`Writer::append_owned`] avoids it.
    pub fn append(
        &mut self,
        at_ms: u64,
        kind: &str,
        value: &Value,
        delta_key: Option<&str>,
    ) -> Result<(), RecordError> {
        match delta_key {
            None => self.write_frame(at_ms, kind, None, TYPE_FULL, 0, value),
            Some(_) => self.append_owned(at_ms, kind, value.clone(), delta_key),
        }
    }

    /// [`Writer::append`] taking the value: the writer keeps it as the next delta base.
    pub fn append_owned(
        &mut self,
        at_ms: u64,
        kind: &str,
        value: Value,
        delta_key: Option<&str>,
    ) -> Result<(), RecordError> {
        let Some(key) = delta_key else {
            return self.write_frame(at_ms, kind, None, TYPE_FULL, 0, &value);
        };
        self.append_chain(
            at_ms,
            kind,
            key,
            Some(&value),
            &|| serde_json::to_value(&value),
            |base| {
                Ok(match base {
                    Base::Value(old) => delta::diff(old, &value),
                    Base::Typed(t) => delta::diff(&t.to_value()?, &value),
                })
            },
        )?;
        self.set_base(key, Base::Value(value));
        Ok(())
    }

    /// Append a typed event with delta key `delta_key`. The file is byte for byte the one
    /// [`Writer::append_owned`] of `serde_json::to_value(&value)` writes, but the patch comes
    /// from [`TypedDelta::typed_diff`] when the previous event of that key was appended as a
    /// `T` too, and the writer keeps `value` itself as the next base: only keyframes (and
    /// [`TypedDiff::Untyped`] pairs) build the JSON tree.
    pub fn append_typed<T: TypedDelta>(
        &mut self,
        at_ms: u64,
        kind: &str,
        value: T,
        delta_key: &str,
    ) -> Result<(), RecordError> {
        let to_value = || serde_json::to_value(&value);
        self.append_chain(at_ms, kind, delta_key, None, &to_value, |base| {
            if let Base::Typed(t) = base
                && let Some(old) = t.as_any().downcast_ref::<T>()
            {
                match value.typed_diff(old)? {
                    TypedDiff::Same => return Ok(Value::Object(serde_json::Map::new())),
                    TypedDiff::Patch(p) => return Ok(p),
                    TypedDiff::Untyped => {}
                }
            }
            let new = to_value()?;
            Ok(match base {
                Base::Value(old) => delta::diff(old, &new),
                Base::Typed(t) => delta::diff(&t.to_value()?, &new),
            })
        })?;
        self.set_base(delta_key, Base::Typed(Box::new(value)));
        Ok(())
    }

    /// Writes the frame of one event of chain `key`: a delta from `patch(base)` when no
    /// keyframe is due and the patch is not a whole replacement, else a keyframe of `value`
    /// (or of `to_value()` when the caller has no JSON tree). The caller sets the new base.
    fn append_chain(
        &mut self,
        at_ms: u64,
        kind: &str,
        key: &str,
        value: Option<&Value>,
        to_value: &dyn Fn() -> Result<Value, serde_json::Error>,
        patch: impl FnOnce(&Base) -> Result<Value, RecordError>,
    ) -> Result<(), RecordError> {
        if key.is_empty() {
            return Err(RecordError::BadName(key.to_owned()));
        }
        let at_ms = at_ms.max(self.last_at_ms);
        let offset = self.offset;
        let opts = &self.opts;
        let due = |c: &Chain| {
            c.deltas_since_key >= opts.keyframe_every_frames
                || at_ms.saturating_sub(c.key_at_ms) >= opts.keyframe_every_ms
        };
        let patch = match self.chains.get(key) {
            Some(c) if !due(c) => {
                let p = patch(&c.value)?;
                (!delta::is_replace(&p)).then_some((offset - c.offset, p))
            }
            _ => None,
        };
        let keyframe = patch.is_none();
        match (patch, value) {
            (Some((back, p)), _) => {
                self.write_frame(at_ms, kind, Some(key), TYPE_DELTA, back, &p)?
            }
            (None, Some(v)) => self.write_frame(at_ms, kind, Some(key), TYPE_FULL, 0, v)?,
            (None, None) => {
                let v = to_value()?;
                self.write_frame(at_ms, kind, Some(key), TYPE_FULL, 0, &v)?
            }
        }
        let chain = self.chains.entry(key.to_owned()).or_insert(Chain {
            offset,
            value: Base::Value(Value::Null),
            deltas_since_key: 0,
            key_at_ms: at_ms,
        });
        chain.offset = offset;
        if keyframe {
            chain.deltas_since_key = 0;
            chain.key_at_ms = at_ms;
            self.stats.keyframes += 1;
        } else {
            chain.deltas_since_key += 1;
            self.stats.deltas += 1;
        }
        Ok(())
    }

    fn set_base(&mut self, key: &str, base: Base) {
        if let Some(c) = self.chains.get_mut(key) {
            c.value = base;
        }
    }

    /// Serialize `event` and append it (see [`super::encode`]).
    pub fn append_event<T: Serialize>(
        &mut self,
        at_ms: u64,
        kind: &str,
        event: &T,
        delta_key: Option<&str>,
    ) -> Result<(), RecordError> {
        self.append_owned(at_ms, kind, super::encode(event)?, delta_key)
    }

    fn write_frame(
        &mut self,
        at_ms: u64,
        kind: &str,
        key: Option<&str>,
        ty: u8,
        base_back: u64,
        value: &Value,
    ) -> Result<(), RecordError> {
        if kind.is_empty() || kind.len() > 255 {
            return Err(RecordError::BadName(kind.to_owned()));
        }
        if key.is_some_and(|k| k.len() > 255) {
            return Err(RecordError::BadName(key.unwrap_or_default().to_owned()));
        }
        if at_ms < self.last_at_ms {
            self.stats.clamped_times += 1;
        }
        let at_ms = at_ms.max(self.last_at_ms);
        self.body.clear();
        serde_json::to_writer(&mut self.body, value)?;
        let raw_len = u32::try_from(self.body.len())
            .ok()
            .filter(|&n| n <= frame::MAX_RAW_LEN)
            .ok_or(RecordError::TooLarge(self.body.len()))?;
        let compressed = if self.body.len() >= self.opts.compress_min_len {
            Some(self.compressor.compress(&self.body)?).filter(|c| c.len() < self.body.len())
        } else {
            None
        };
        let (flags, body) = match &compressed {
            Some(c) => (FLAG_ZSTD, c.as_slice()),
            None => (0, self.body.as_slice()),
        };
        let header = FrameHeader {
            ty,
            flags,
            at_ms,
            base_back,
            body_len: body.len() as u32,
            raw_len,
            kind: kind.to_owned(),
            key: key.map(str::to_owned),
        };
        self.buf.clear();
        frame::encode(&mut self.buf, &header, body);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Part of the frame may be on disk: the reader resyncs past it. Start every
            // chain afresh with a keyframe, at the file's real end.
            self.chains.clear();
            self.offset = self.file.seek(SeekFrom::End(0)).unwrap_or(self.offset);
            return Err(e.into());
        }
        self.offset += self.buf.len() as u64;
        self.last_at_ms = at_ms;
        self.stats.frames += 1;
        self.stats.bytes = self.offset;
        Ok(())
    }

    /// Frames are handed to the kernel (`write(2)`) as they are appended, so a SIGKILL loses
    /// at most the frame being written; nothing is buffered here. This does not fsync.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.file.flush()?;
        Ok(())
    }

    /// fsync: survive a power cut too. Call at the end of a session, not per frame.
    pub fn sync(&mut self) -> Result<(), RecordError> {
        self.file.sync_data()?;
        Ok(())
    }

    pub fn stats(&self) -> WriterStats {
        self.stats
    }
}
