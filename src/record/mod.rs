//! Recording files: an append-only, crash-safe stream of clock-stamped events that replays
//! into the same dashboard. Generic over events: each one is a `kind` string and a JSON
//! value (the session's `CoreEvent`s go through [`encode`]/[`decode`]); events given a
//! *delta key* (snapshots) are stored as patches against the previous one of that key, with
//! a keyframe every minute. Owns the file format (`docs/recording.md` specifies it byte by
//! byte), not what the events mean. No ratatui, no tokio: the caller owns threads and clocks.
//!
//! ```no_run
//! use lifecycle_top::record::{Reader, Writer};
//! # fn main() -> Result<(), lifecycle_top::record::RecordError> {
//! # let snapshot = serde_json::json!({});
//! let mut w = Writer::create("session.ltrec")?;
//! w.append(0, "snapshot", &snapshot, Some("snapshot"))?; // delta-encoded
//! w.append(10, "warning", &serde_json::json!("..."), None)?; // stored whole
//! drop(w); // every frame already went out with write(2); `sync()` to fsync
//!
//! let (mut r, notes) = Reader::open("session.ltrec")?; // notes: damage found on open
//! for n in &notes { eprintln!("{n}"); }
//! r.seek(60_000); // from the keyframe at or before 60 s
//! for ev in r.by_ref() { let _ = (ev.at_ms, &ev.kind, &ev.value); }
//! # Ok(()) }
//! ```
//!
//! - Typed values ([`TypedDelta`], [`Writer::append_typed`]): the same frames, but the patch
//!   is built from typed comparisons (serializing only what changed) and the delta base is
//!   kept typed, so an idle snapshot costs no JSON tree at all (`typed.rs`).
//! - Writer: one frame per [`Writer::append`], handed to the kernel with one `write(2)`; no
//!   user-space buffer and no fsync per frame, so a SIGKILL loses at most the frame being
//!   written and a power cut what the page cache held ([`Writer::sync`] at the end).
//! - Reader: [`Reader::open`] reads the file and checks every frame's two CRC32s without
//!   decompressing, building the seek index and the [`Note`]s (cut tail, bad checksum at
//!   byte X, lost delta base, unknown frame types). It never applies a delta to any base but
//!   the frame it names: a delta whose base is lost is dropped until the next keyframe.
//!   The whole file is held in memory (about 5 MB per hour of an idle 1,000-thread target).

mod delta;
mod frame;
mod reader;
mod typed;
mod writer;

pub use delta::{ApplyError, ID_FIELDS, apply as apply_patch, diff};
pub use frame::{MAGIC, VERSION_MAJOR, VERSION_MINOR};
pub use reader::{DamageCounts, Event, Reader, Resume};
pub use typed::{ObjectPatch, TypedDelta, TypedDiff, keyed_array};
pub use writer::{Writer, WriterOptions, WriterStats};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a lifecycle-top recording (bad magic bytes)")]
    NotARecording,
    #[error(
        "recording format {0}.{1} is newer than this lifecycle-top reads ({VERSION_MAJOR}.x): upgrade it"
    )]
    UnsupportedVersion(u16, u16),
    #[error("event kind or delta key {0:?} must be 1 to 255 bytes")]
    BadName(String),
    #[error("event of {0} bytes is too large to record")]
    TooLarge(usize),
    #[error("event (de)serialization: {0}")]
    Json(#[from] serde_json::Error),
}

/// What kind of damage a [`Note`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside a frame (the writer was killed mid-write).
    CutTail,
    /// A frame (or the file header) whose checksum does not match: skipped.
    BadChecksum,
    /// Bytes at the end that are no frame at all.
    Garbage,
    /// A delta whose base frame is lost: it and the deltas after it, until a keyframe, dropped.
    LostBase,
    /// Checksums good, body undecodable (zstd or JSON or a patch that does not fit).
    Unreadable,
    /// A frame type or flag this reader does not know (a newer writer): skipped.
    Unknown,
}

/// One line about damage found in a recording, with the byte offset where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub offset: u64,
    pub damage: Damage,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "recording, byte {}: {}", self.offset, self.text)
    }
}

/// Any serde value as the JSON a frame stores.
pub fn encode<T: Serialize>(event: &T) -> Result<Value, RecordError> {
    Ok(serde_json::to_value(event)?)
}

/// A frame's value as a `T`, without copying the JSON tree.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, RecordError> {
    Ok(T::deserialize(value)?)
}

/// For an externally tagged serde enum (`{"Variant": payload}`): the variant name as the
/// kind and the payload as the value, so the kind is readable without decoding the body.
pub fn encode_tagged<T: Serialize>(event: &T) -> Result<(String, Value), RecordError> {
    match encode(event)? {
        Value::String(unit) => Ok((unit, Value::Null)),
        Value::Object(m) if m.len() == 1 => {
            let mut it = m.into_iter();
            it.next()
                .ok_or_else(|| serde::ser::Error::custom("empty enum object"))
                .map_err(RecordError::Json)
        }
        _ => Err(RecordError::Json(serde::ser::Error::custom(
            "encode_tagged wants an externally tagged enum",
        ))),
    }
}

/// The inverse of [`encode_tagged`]. `Ok(None)`: a kind `T` does not have (a newer writer);
/// skip it.
pub fn decode_tagged<T: DeserializeOwned>(
    kind: &str,
    value: &Value,
) -> Result<Option<T>, RecordError> {
    use serde::de::value::{MapAccessDeserializer, MapDeserializer};
    let entry = std::iter::once((kind, value));
    let map = MapDeserializer::<_, serde_json::Error>::new(entry);
    match T::deserialize(MapAccessDeserializer::new(map)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.to_string().starts_with("unknown variant") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
