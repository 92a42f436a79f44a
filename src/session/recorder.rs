//! The recorder: a consumer of the session's stream that writes each [`Stamped`] to a
//! [`record::Writer`] on its own thread (encoding and delta-diffing a snapshot costs
//! milliseconds, the run must not wait for it), and the way back: [`Playback`] reads a file
//! into `Stamped`s again. Writing never fails a run: an I/O error stops the recording with
//! one line ("recording stopped: ...") and the run goes on.
//!
//! Each frame's kind is the `CoreEvent` variant's serde tag (`snapshot`, `phase`, ...) and
//! its value the whole `Stamped` as JSON; snapshots carry the delta key `snapshot`, so only
//! what changed since the previous one is stored (`docs/recording.md` has the table).

use super::event::Stamped;
use crate::record::{self, RecordError, Writer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// The delta key of snapshot frames.
pub const SNAPSHOT_KEY: &str = "snapshot";

/// The frame for one event: (kind, value, delta key).
pub fn encode(ev: &Stamped) -> Result<(String, Value, Option<&'static str>), RecordError> {
    let value = record::encode(ev)?;
    let kind = value
        .get("event")
        .and_then(|e| e.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let key = (kind == "snapshot").then_some(SNAPSHOT_KEY);
    Ok((kind, value, key))
}

/// One recorded frame as a `Stamped` again. `Err(line)`: skip it, with that note.
pub fn decode(ev: &record::Event) -> Result<Stamped, String> {
    match <Stamped as serde::Deserialize>::deserialize(ev.value.as_ref()) {
        Ok(s) => Ok(s),
        Err(e) if e.to_string().starts_with("unknown variant") => Err(format!(
            "recording, at {:.3} s: event kind {:?} is unknown to this lifecycle-top (a newer one wrote it): skipped",
            ev.at_ms as f64 / 1000.0,
            ev.kind
        )),
        Err(e) => Err(format!(
            "recording, at {:.3} s: event {:?} cannot be decoded ({e}): skipped",
            ev.at_ms as f64 / 1000.0,
            ev.kind
        )),
    }
}

/// What a finished recording wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub frames: u64,
    pub bytes: u64,
    /// Set when an I/O error stopped it early ("recording stopped: ...").
    pub stopped: Option<String>,
}

impl RecordSummary {
    /// The closing line headless and check print.
    pub fn line(&self) -> String {
        let what = format!(
            "recording written to {} ({} events, {:.1} KiB; replay it with `lifecycle-top replay {}`)",
            self.path.display(),
            self.frames,
            self.bytes as f64 / 1024.0,
            self.path.display()
        );
        match &self.stopped {
            Some(why) => format!("{what}; cut short: {why}"),
            None => what,
        }
    }
}

/// Records a session's stream on a thread of its own. [`Recorder::off`] records nothing, so
/// consumers call [`Recorder::record`] unconditionally.
pub struct Recorder {
    inner: Option<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: Option<mpsc::Sender<Stamped>>,
    thread: Option<JoinHandle<(u64, u64)>>,
    failed: Arc<AtomicBool>,
    why: Arc<Mutex<Option<String>>>,
    said: bool,
}

impl Recorder {
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Creates (truncates) the file and starts the writer thread. An error here is for the
    /// caller to say in one line; the run goes on without a recording.
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        let mut writer = Writer::create(path)?;
        let (tx, rx) = mpsc::channel::<Stamped>();
        let failed = Arc::new(AtomicBool::new(false));
        let why = Arc::new(Mutex::new(None));
        let (f, w) = (failed.clone(), why.clone());
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                for ev in rx {
                    let r = encode(&ev).and_then(|(kind, value, key)| {
                        writer.append_owned(ev.at.at_ms, &kind, value, key)
                    });
                    if let Err(e) = r {
                        if let Ok(mut slot) = w.lock() {
                            *slot = Some(format!("recording stopped: {e}"));
                        }
                        f.store(true, Ordering::Release);
                        break;
                    }
                }
                // The end of a session: survive a power cut too (best effort).
                let _ = writer.sync();
                let s = writer.stats();
                (s.frames, s.bytes)
            })?;
        Ok(Self {
            inner: Some(Inner {
                path: path.to_path_buf(),
                tx: Some(tx),
                thread: Some(thread),
                failed,
                why,
                said: false,
            }),
        })
    }

    /// `create`, or `off` with the one line to say why.
    pub fn create_or_say(path: Option<&Path>) -> (Self, Option<String>) {
        match path {
            None => (Self::off(), None),
            Some(p) => match Self::create(p) {
                Ok(r) => (r, None),
                Err(e) => (
                    Self::off(),
                    Some(format!("not recording to {}: {e}", p.display())),
                ),
            },
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|i| i.path.as_path())
    }

    /// Queues one event (never blocks). Returns "recording stopped: ..." once, the first
    /// time it is called after the writer gave up.
    pub fn record(&mut self, ev: &Stamped) -> Option<String> {
        let inner = self.inner.as_mut()?;
        if inner.failed.load(Ordering::Acquire) {
            inner.tx = None;
            if inner.said {
                return None;
            }
            inner.said = true;
            return inner.why.lock().ok().and_then(|w| w.clone());
        }
        if let Some(tx) = &inner.tx {
            let _ = tx.send(ev.clone());
        }
        None
    }

    /// Waits for the queue to be written and the file synced; `None` when off.
    pub fn finish(mut self) -> Option<RecordSummary> {
        let mut inner = self.inner.take()?;
        inner.tx = None;
        let (frames, bytes) = inner
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0));
        let stopped = inner.why.lock().ok().and_then(|w| w.clone());
        Some(RecordSummary {
            path: inner.path,
            frames,
            bytes,
            stopped,
        })
    }
}

/// A recording read back as `Stamped`s, in order. Frames that cannot be decoded are skipped
/// with a note ([`Playback::take_notes`]); damage found on open comes back from `open`.
pub struct Playback {
    reader: record::Reader,
    notes: Vec<String>,
    seen_reader_notes: usize,
}

impl Playback {
    /// Opens a recording: the notes are the damage the open scan found, one line each.
    pub fn open(path: &Path) -> Result<(Self, Vec<String>), RecordError> {
        let (reader, notes) = record::Reader::open(path)?;
        let seen = reader.notes().len();
        let lines = notes.iter().map(ToString::to_string).collect();
        Ok((
            Self {
                reader,
                notes: Vec::new(),
                seen_reader_notes: seen,
            },
            lines,
        ))
    }

    /// Notes found while reading since the last call (undecodable frames, unknown kinds).
    pub fn take_notes(&mut self) -> Vec<String> {
        let fresh = self.reader.notes().get(self.seen_reader_notes..);
        if let Some(fresh) = fresh {
            self.notes.extend(fresh.iter().map(ToString::to_string));
        }
        self.seen_reader_notes = self.reader.notes().len();
        std::mem::take(&mut self.notes)
    }

    /// Reads everything: the events and every note (open scan first).
    pub fn read_all(path: &Path) -> Result<(Vec<Stamped>, Vec<String>), RecordError> {
        let (mut p, mut notes) = Self::open(path)?;
        let events: Vec<Stamped> = p.by_ref().collect();
        notes.extend(p.take_notes());
        Ok((events, notes))
    }
}

impl Iterator for Playback {
    type Item = Stamped;
    fn next(&mut self) -> Option<Stamped> {
        loop {
            let ev = self.reader.next_event()?;
            match decode(&ev) {
                Ok(s) => return Some(s),
                Err(note) => self.notes.push(note),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{AgentState, CoreEvent, Stamp};

    fn stamped(seq: u64, event: CoreEvent) -> Stamped {
        Stamped {
            seq,
            at: Stamp {
                at_ms: seq * 10,
                unix_ms: 1_000 + seq * 10,
            },
            event,
        }
    }

    #[test]
    fn events_round_trip_with_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.ltrec");
        let evs = vec![
            stamped(
                1,
                CoreEvent::Notice {
                    message: "hello".into(),
                },
            ),
            stamped(
                2,
                CoreEvent::Snapshot {
                    snapshot: Arc::new(crate::state::fixture::snapshot()),
                },
            ),
            stamped(
                3,
                CoreEvent::AgentState {
                    state: AgentState::Lost("gone".into()),
                },
            ),
        ];
        let mut rec = Recorder::create(&path).expect("create");
        for e in &evs {
            assert_eq!(rec.record(e), None);
        }
        let s = rec.finish().expect("on");
        assert_eq!(s.frames, 3);
        assert!(s.line().contains("t.ltrec"), "{}", s.line());
        let (reader, _) = record::Reader::open(&path).expect("open");
        let kinds: Vec<String> = reader.map(|e| e.kind.to_string()).collect();
        assert_eq!(kinds, ["notice", "snapshot", "agent_state"]);
        let (back, notes) = Playback::read_all(&path).expect("read");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(back, evs);
    }

    #[test]
    fn unknown_kinds_and_bad_frames_are_skipped_with_a_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.ltrec");
        let mut w = Writer::create(&path).expect("create");
        let ok = stamped(
            1,
            CoreEvent::Notice {
                message: "kept".into(),
            },
        );
        let future = serde_json::json!({"seq": 2, "at_ms": 20, "unix_ms": 1020,
            "event": {"kind": "hologram", "x": 1}});
        let broken = serde_json::json!({"seq": 3, "at_ms": 30, "unix_ms": 1030,
            "event": {"kind": "notice"}});
        w.append_event(10, "notice", &ok, None).expect("append");
        w.append(20, "hologram", &future, None).expect("append");
        w.append(30, "notice", &broken, None).expect("append");
        drop(w);
        let (back, notes) = Playback::read_all(&path).expect("read");
        assert_eq!(back, vec![ok]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("\"hologram\" is unknown"), "{notes:?}");
        assert!(notes[1].contains("cannot be decoded"), "{notes:?}");
    }

    #[test]
    fn a_write_error_stops_the_recording_with_one_line() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let full = Path::new("/dev/full");
        let Ok(mut rec) = Recorder::create(full) else {
            // The header write failed already: one line at create, and no recorder.
            let (rec, line) = Recorder::create_or_say(Some(full));
            assert!(rec.path().is_none());
            assert!(line.is_some_and(|l| l.starts_with("not recording to /dev/full")));
            return;
        };
        let ev = stamped(
            1,
            CoreEvent::Notice {
                message: "x".into(),
            },
        );
        let mut said = Vec::new();
        for _ in 0..200 {
            said.extend(rec.record(&ev));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("recording stopped: "), "{said:?}");
        let s = rec.finish().expect("on");
        assert!(s.stopped.is_some());
    }
}
