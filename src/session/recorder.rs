//! The recorder: a consumer of the session's stream that writes each [`Stamped`] to a
//! [`record::Writer`] on its own thread (encoding and delta-diffing a snapshot costs
//! milliseconds, the run must not wait for it), and the way back: [`Playback`] reads a file
//! into `Stamped`s again. Writing never fails a run: an I/O error stops the recording with
//! one line ("recording stopped: ...") and the run goes on.
//!
//! Each frame's kind is the `CoreEvent` variant's serde tag (`snapshot`, `phase`, ...) and
//! its value the whole `Stamped` as JSON; snapshots carry the delta key `snapshot`, so only
//! what changed since the previous one is stored (`docs/recording.md` has the table).

use super::event::{CoreEvent, Stamp, Stamped};
use crate::model::{ProcInfo, Snapshot, ThreadInfo};
use crate::record::{self, ObjectPatch, RecordError, TypedDelta, TypedDiff, Writer, keyed_array};
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

/// Snapshot events are appended typed: the patch against the previous snapshot comes from
/// comparing `ProcInfo`s and `ThreadInfo`s (by `key` / `tid`), serializing only what changed,
/// and is the very patch `record::diff` writes for the two events' JSON (tests check that).
impl TypedDelta for Stamped {
    fn typed_diff(&self, old: &Self) -> Result<TypedDiff, serde_json::Error> {
        let (CoreEvent::Snapshot { snapshot: new_s }, CoreEvent::Snapshot { snapshot: old_s }) =
            (&self.event, &old.event)
        else {
            return Ok(TypedDiff::Untyped);
        };
        let Stamped {
            seq,
            at: Stamp { at_ms, unix_ms },
            event: _,
        } = self;
        let mut o = ObjectPatch::default();
        o.field("seq", &old.seq, seq)?;
        o.field("at_ms", &old.at.at_ms, at_ms)?;
        o.field("unix_ms", &old.at.unix_ms, unix_ms)?;
        let mut ev = ObjectPatch::default();
        ev.patch("snapshot", snapshot_patch(old_s, new_s)?);
        o.patch("event", ev.finish());
        Ok(o.finish().map_or(TypedDiff::Same, TypedDiff::Patch))
    }
}

impl TypedDelta for Snapshot {
    fn typed_diff(&self, old: &Self) -> Result<TypedDiff, serde_json::Error> {
        Ok(snapshot_patch(old, self)?.map_or(TypedDiff::Same, TypedDiff::Patch))
    }
}

// The destructuring below names every field (no `..`): a field added to a model struct does
// not compile until its patch is written here.

fn snapshot_patch(old: &Snapshot, new: &Snapshot) -> Result<Option<Value>, serde_json::Error> {
    if std::ptr::eq(old, new) {
        return Ok(None);
    }
    let Snapshot {
        taken_at_unix_ms,
        target,
        processes,
        threads,
        system,
    } = new;
    let mut o = ObjectPatch::default();
    o.field("taken_at_unix_ms", &old.taken_at_unix_ms, taken_at_unix_ms)?;
    o.field("target", &old.target, target)?;
    o.patch(
        "processes",
        keyed_array(&old.processes, processes, |p| p.key, proc_patch)?,
    );
    o.patch(
        "threads",
        keyed_array(&old.threads, threads, |t| t.tid, thread_patch)?,
    );
    o.field("system", &old.system, system)?;
    Ok(o.finish())
}

fn proc_patch(old: &ProcInfo, new: &ProcInfo) -> Result<Option<Value>, serde_json::Error> {
    let ProcInfo {
        key,
        ppid,
        pgid,
        sid,
        name,
        cmdline,
        state,
        cpu_ticks,
        cpu_percent,
        rss_bytes,
        num_threads,
        age_secs,
        depth,
        orphan,
        signals,
        exit,
    } = new;
    let mut o = ObjectPatch::default();
    o.field("key", &old.key, key)?;
    o.field("ppid", &old.ppid, ppid)?;
    o.field("pgid", &old.pgid, pgid)?;
    o.field("sid", &old.sid, sid)?;
    o.field("name", &old.name, name)?;
    o.field("cmdline", &old.cmdline, cmdline)?;
    o.field("state", &old.state, state)?;
    o.field("cpu_ticks", &old.cpu_ticks, cpu_ticks)?;
    o.field("cpu_percent", &old.cpu_percent, cpu_percent)?;
    o.field("rss_bytes", &old.rss_bytes, rss_bytes)?;
    o.field("num_threads", &old.num_threads, num_threads)?;
    o.field("age_secs", &old.age_secs, age_secs)?;
    o.field("depth", &old.depth, depth)?;
    o.field("orphan", &old.orphan, orphan)?;
    o.field("signals", &old.signals, signals)?;
    o.field("exit", &old.exit, exit)?;
    Ok(o.finish())
}

fn thread_patch(old: &ThreadInfo, new: &ThreadInfo) -> Result<Option<Value>, serde_json::Error> {
    let ThreadInfo {
        tid,
        name,
        state,
        wait,
        cpu_ticks,
        cpu_percent,
        voluntary_ctxt_switches,
        nonvoluntary_ctxt_switches,
    } = new;
    let mut o = ObjectPatch::default();
    o.field("tid", &old.tid, tid)?;
    o.field("name", &old.name, name)?;
    o.field("state", &old.state, state)?;
    o.field("wait", &old.wait, wait)?;
    o.field("cpu_ticks", &old.cpu_ticks, cpu_ticks)?;
    o.field("cpu_percent", &old.cpu_percent, cpu_percent)?;
    o.field(
        "voluntary_ctxt_switches",
        &old.voluntary_ctxt_switches,
        voluntary_ctxt_switches,
    )?;
    o.field(
        "nonvoluntary_ctxt_switches",
        &old.nonvoluntary_ctxt_switches,
        nonvoluntary_ctxt_switches,
    )?;
    Ok(o.finish())
}

/// How much of a snapshot event to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Full,
    /// Everything but the target's threads (`threads` left empty): what `Model::apply`
    /// reads of a snapshot, for a replay's first pass (its checkpoints keep no snapshot).
    NoThreads,
}

/// A snapshot frame decoded straight into its types: `Stamped`'s flattened stamp and
/// `CoreEvent`'s internal tag make serde buffer the whole 1,000-thread value first (that
/// doubled a replay's decode time). `None`: not a snapshot frame (the general path then).
fn decode_snapshot(v: &Value, depth: Depth) -> Option<Result<Stamped, serde_json::Error>> {
    #[derive(serde::Deserialize)]
    struct NoThreads {
        taken_at_unix_ms: u64,
        target: crate::model::ProcKey,
        processes: Vec<ProcInfo>,
        system: crate::model::SystemInfo,
    }
    let event = v.get("event")?;
    if event.get("kind")?.as_str()? != "snapshot" {
        return None;
    }
    let stamp = Stamp {
        at_ms: v.get("at_ms")?.as_u64()?,
        unix_ms: v.get("unix_ms")?.as_u64()?,
    };
    let seq = v.get("seq")?.as_u64()?;
    let value = event.get("snapshot")?;
    let snapshot = match depth {
        Depth::Full => <Snapshot as serde::Deserialize>::deserialize(value),
        Depth::NoThreads => {
            <NoThreads as serde::Deserialize>::deserialize(value).map(|s| Snapshot {
                taken_at_unix_ms: s.taken_at_unix_ms,
                target: s.target,
                processes: s.processes,
                threads: Vec::new(),
                system: s.system,
            })
        }
    };
    Some(snapshot.map(|s| Stamped {
        seq,
        at: stamp,
        event: CoreEvent::Snapshot {
            snapshot: Arc::new(s),
        },
    }))
}

/// One recorded frame as a `Stamped` again. `Err(line)`: skip it, with that note.
pub fn decode(ev: &record::Event) -> Result<Stamped, String> {
    decode_at(ev, Depth::Full)
}

fn decode_at(ev: &record::Event, depth: Depth) -> Result<Stamped, String> {
    let decoded = match decode_snapshot(&ev.value, depth) {
        Some(r) => r,
        None => <Stamped as serde::Deserialize>::deserialize(ev.value.as_ref()),
    };
    match decoded {
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
                    let r = if matches!(ev.event, CoreEvent::Snapshot { .. }) {
                        writer.append_typed(ev.at.at_ms, "snapshot", ev, SNAPSHOT_KEY)
                    } else {
                        encode(&ev).and_then(|(kind, value, key)| {
                            writer.append_owned(ev.at.at_ms, &kind, value, key)
                        })
                    };
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

    /// The next event and the index of its frame in the file (for [`Playback::seek_frame`]).
    pub fn next_indexed(&mut self) -> Option<(usize, Stamped)> {
        self.next_at(Depth::Full)
    }

    /// [`Playback::next_indexed`], decoding snapshots only as deep as asked.
    pub fn next_at(&mut self, depth: Depth) -> Option<(usize, Stamped)> {
        loop {
            let ev = self.reader.next_event()?;
            let frame = self.reader.cursor() - 1;
            match decode_at(&ev, depth) {
                Ok(s) => return Some((frame, s)),
                Err(note) => self.notes.push(note),
            }
        }
    }

    /// Positions the playback so the next event is the one of frame `frame` (or the first
    /// after it), snapshots' delta chain rebuilt from its keyframe ([`record::Reader::seek_frame`]).
    pub fn seek_frame(&mut self, frame: usize) {
        self.reader.seek_frame(frame);
    }

    /// Where the playback is, to come back to with [`Playback::restore`] ([`record::Reader::save`]).
    pub fn save(&self, prev: Option<&record::Resume>) -> record::Resume {
        self.reader.save(prev)
    }

    /// Goes on from a saved place; false when it had to read the chain again instead.
    pub fn restore(&mut self, r: &record::Resume) -> bool {
        self.reader.restore(r)
    }

    /// The last snapshot read, decoded whole from the snapshot chain (what a restored
    /// playback shows without reading that event again).
    pub fn last_snapshot(&self) -> Option<Arc<Snapshot>> {
        let v = self.reader.chain_value(SNAPSHOT_KEY)?;
        match decode_snapshot(v, Depth::Full)? {
            Ok(Stamped {
                event: CoreEvent::Snapshot { snapshot },
                ..
            }) => Some(snapshot),
            _ => None,
        }
    }

    /// Moves forward to frame `frame` without decoding the events in between (snapshot
    /// deltas are applied to keep the chain); never moves back.
    pub fn advance_to(&mut self, frame: usize) {
        self.reader.advance_to(frame);
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
        self.next_indexed().map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::AgentState;

    #[test]
    fn the_snapshot_fast_path_decodes_what_serde_decodes() {
        let mut snap = crate::state::fixture::snapshot();
        snap.processes[4].exit = Some(crate::model::ExitInfo {
            status: crate::model::ExitStatus::Signal(9),
            at_unix_ms: 5,
        });
        let ev = stamped(
            7,
            CoreEvent::Snapshot {
                snapshot: Arc::new(snap.clone()),
            },
        );
        let v = record::encode(&ev).expect("encode");
        let slow = <Stamped as serde::Deserialize>::deserialize(&v).expect("serde");
        let fast = decode_snapshot(&v, Depth::Full)
            .expect("a snapshot")
            .expect("decodes");
        assert_eq!(fast, slow);
        assert_eq!(fast, ev);
        let light = decode_snapshot(&v, Depth::NoThreads)
            .expect("a snapshot")
            .expect("decodes");
        snap.threads.clear();
        assert_eq!(
            light.event,
            CoreEvent::Snapshot {
                snapshot: Arc::new(snap)
            }
        );
        // Other kinds take the general path.
        let notice = record::encode(&stamped(
            8,
            CoreEvent::Notice {
                message: "m".into(),
            },
        ))
        .expect("encode");
        assert!(decode_snapshot(&notice, Depth::Full).is_none());
    }

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

    // The typed fast path: its patch must be the JSON diff's, byte for byte.

    use crate::model::{ExitInfo, ExitStatus, ProcKey, RunState};
    use proptest::prelude::*;

    fn snap_ev(seq: u64, s: Snapshot) -> Stamped {
        stamped(
            seq,
            CoreEvent::Snapshot {
                snapshot: Arc::new(s),
            },
        )
    }

    /// The fixture, grown by `extra` threads and processes (a real-shaped snapshot).
    fn grown(extra: usize) -> Snapshot {
        let mut s = crate::state::fixture::snapshot();
        for i in 0..extra {
            let mut t = s.threads[i % s.threads.len()].clone();
            t.tid = 1000 + i as i32;
            t.wait.syscall_args = vec![i as u64, 128, 0, 0, 0, 0];
            s.threads.push(t);
            let mut p = s.processes[1 + i % 3].clone();
            p.key.pid = 2000 + i as i32;
            p.key.start_time = 5000 + i as u64;
            s.processes.push(p);
        }
        s
    }

    const F32S: [f32; 7] = [0.0, -0.0, 2.5, 0.1, f32::NAN, f32::MAX, 1e-7];
    const F64S: [f64; 7] = [0.5, -0.0, 0.1, 1e300, f64::NAN, 1.2805938630801233e120, 3.0];

    fn edit_thread(t: &mut ThreadInfo, field: u32, seed: u32) {
        let k = seed as usize % 7;
        match field % 10 {
            0 => t.cpu_ticks += u64::from(seed % 5),
            1 => t.cpu_percent = F32S[k],
            2 => t.state = [RunState::Running, RunState::Sleeping, RunState::Other('W')][k % 3],
            3 => t.name = format!("n{}", seed % 3).into(),
            4 => t.wait.wchan = seed.is_multiple_of(2).then(|| "do_poll".into()),
            5 => t.wait.syscall_args = vec![u64::from(seed); k],
            6 => t.voluntary_ctxt_switches = (!seed.is_multiple_of(3)).then_some(u64::from(seed)),
            7 => t.nonvoluntary_ctxt_switches = t.nonvoluntary_ctxt_switches.map(|n| n + 1),
            8 => t.wait.syscall_nr = Some(i64::from(seed % 300) - 5),
            _ => t.cpu_ticks = t.cpu_ticks.saturating_sub(u64::from(seed % 9)),
        }
    }

    fn edit_proc(p: &mut ProcInfo, field: u32, seed: u32) {
        let k = seed as usize % 7;
        match field % 12 {
            0 => p.age_secs += F64S[k],
            1 => p.age_secs = F64S[k],
            2 => p.cpu_percent = F32S[k],
            3 => p.cpu_ticks += u64::from(seed % 4),
            4 => p.rss_bytes = u64::from(seed) * 4096,
            5 => p.cmdline.push(format!("--x={seed}")),
            6 => {
                p.exit = Some(ExitInfo {
                    status: [
                        ExitStatus::Code(1),
                        ExitStatus::Signal(9),
                        ExitStatus::Unknown,
                    ][k % 3],
                    at_unix_ms: u64::from(seed),
                })
            }
            7 => p.orphan = !p.orphan,
            8 => p.signals.caught ^= 1 << (seed % 64),
            9 => p.ppid = seed as i32 % 7 - 3,
            10 => p.state = RunState::from_char(['R', 'S', 'Z', 'x'][k % 4]),
            _ => p.num_threads = seed % 4,
        }
    }

    /// Random edits: fields changed, items inserted (fresh or duplicate ids), removed, moved,
    /// lists emptied; the stamp and the system figures moved.
    fn edit(s: &mut Snapshot, ops: &[(u8, u16, u16, u32)]) {
        for &(op, a, b, seed) in ops {
            let (nt, np) = (s.threads.len().max(1), s.processes.len().max(1));
            match op % 12 {
                0..=2 => {
                    if let Some(t) = s.threads.get_mut(a as usize % nt) {
                        edit_thread(t, u32::from(b), seed);
                    }
                }
                3 | 4 => {
                    if let Some(p) = s.processes.get_mut(a as usize % np) {
                        edit_proc(p, u32::from(b), seed);
                    }
                }
                5 => {
                    if !s.threads.is_empty() {
                        s.threads.remove(a as usize % nt);
                    }
                    if seed.is_multiple_of(2) && !s.processes.is_empty() {
                        s.processes.remove(b as usize % np);
                    }
                }
                6 => {
                    let mut t =
                        crate::state::fixture::snapshot().threads[seed as usize % 4].clone();
                    // Fresh or (seed odd) a tid already listed.
                    t.tid = if seed.is_multiple_of(2) {
                        9000 + seed as i32 % 50
                    } else {
                        100 + (b % 8) as i32
                    };
                    s.threads.insert(a as usize % (s.threads.len() + 1), t);
                    let mut p =
                        crate::state::fixture::snapshot().processes[seed as usize % 5].clone();
                    if seed.is_multiple_of(3) {
                        p.key = ProcKey {
                            pid: 7000 + b as i32 % 40,
                            start_time: u64::from(seed),
                        };
                    }
                    s.processes.insert(b as usize % (s.processes.len() + 1), p);
                }
                7 => {
                    let (i, j) = (a as usize % nt, b as usize % nt);
                    if i < s.threads.len() && j < s.threads.len() {
                        s.threads.swap(i, j);
                    }
                    let (i, j) = (a as usize % np, b as usize % np);
                    if i < s.processes.len() && j < s.processes.len() {
                        s.processes.swap(i, j);
                    }
                }
                8 => {
                    if seed.is_multiple_of(4) {
                        s.threads.clear();
                    } else if seed % 4 == 1 {
                        s.processes.clear();
                    }
                }
                9 => {
                    s.taken_at_unix_ms += u64::from(seed % 1000);
                    s.system.load_avg[seed as usize % 3] = F64S[b as usize % 7];
                }
                10 => {
                    s.system.mem_available_bytes = u64::from(seed);
                    s.target.pid = i32::from(b % 3) + 100;
                }
                _ => {
                    for p in &mut s.processes {
                        p.age_secs += 0.5;
                    }
                    for t in &mut s.threads {
                        t.cpu_percent = 0.0;
                    }
                }
            }
        }
    }

    fn typed_patch(old: &Stamped, new: &Stamped) -> Value {
        match new.typed_diff(old).expect("typed diff") {
            TypedDiff::Same => serde_json::json!({}),
            TypedDiff::Patch(p) => p,
            TypedDiff::Untyped => panic!("snapshot pairs always diff typed"),
        }
    }

    /// The typed patch is the JSON diff's (as text too), and rebuilds the new JSON.
    fn check_pair(old: &Stamped, new: &Stamped) {
        let (ov, nv) = (
            record::encode(old).expect("json"),
            record::encode(new).expect("json"),
        );
        let want = record::diff(&ov, &nv);
        let got = typed_patch(old, new);
        assert_eq!(got.to_string(), want.to_string());
        let mut base = ov;
        record::apply_patch(&mut base, got).expect("apply");
        // `==`, not text: the JSON diff takes -0.0 for 0.0 (serde_json's `Number` equality),
        // so a sign-only change of a zero is not recorded, typed or not.
        assert_eq!(base, nv);
    }

    fn edits() -> impl Strategy<Value = Vec<(u8, u16, u16, u32)>> {
        proptest::collection::vec(any::<(u8, u16, u16, u32)>(), 0..12)
    }

    proptest! {
        #[test]
        fn typed_snapshot_patch_is_the_json_diff(
            extra in 0usize..40,
            ops in edits(),
            back in edits(),
            seq_step in 0u64..3,
        ) {
            let mut s = grown(extra);
            edit(&mut s, &back); // not always the fixture's shape to start with
            let old = snap_ev(7, s.clone());
            edit(&mut s, &ops);
            let mut new = snap_ev(7 + seq_step, s);
            new.at.unix_ms += seq_step * 3;
            check_pair(&old, &new);
            check_pair(&new, &old);
            check_pair(&old, &old);
        }

        /// A chain written typed is the file written from JSON trees, byte for byte.
        #[test]
        fn typed_appends_write_the_same_file(chain in proptest::collection::vec(edits(), 1..8)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
            let opts = record::WriterOptions { keyframe_every_frames: 3, ..Default::default() };
            let mut a = Writer::create_with(&pa, opts.clone()).expect("create");
            let mut b = Writer::create_with(&pb, opts).expect("create");
            let mut s = grown(10);
            for (i, ops) in chain.iter().enumerate() {
                edit(&mut s, ops);
                let ev = snap_ev(i as u64, s.clone());
                let (kind, value, key) = encode(&ev).expect("encode");
                prop_assert_eq!(kind.as_str(), "snapshot");
                prop_assert_eq!(key, Some(SNAPSHOT_KEY));
                b.append_owned(ev.at.at_ms, &kind, value, key).expect("append");
                a.append_typed(ev.at.at_ms, "snapshot", ev, SNAPSHOT_KEY).expect("append");
                // Interleaved plain events do not touch the chain.
                let note = stamped(100 + i as u64, CoreEvent::Notice { message: "n".into() });
                let (kind, value, key) = encode(&note).expect("encode");
                a.append_owned(note.at.at_ms, &kind, value.clone(), key).expect("append");
                b.append_owned(note.at.at_ms, &kind, value, key).expect("append");
            }
            prop_assert_eq!(a.stats(), b.stats());
            drop((a, b));
            let (fa, fb) = (std::fs::read(&pa).expect("read"), std::fs::read(&pb).expect("read"));
            prop_assert!(fa == fb, "files differ");
        }
    }

    #[test]
    fn snapshots_round_trip_through_the_recorder_as_deltas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.ltrec");
        let mut rec = Recorder::create(&path).expect("create");
        let mut s = grown(20);
        let mut evs = Vec::new();
        for i in 0..10u64 {
            edit(&mut s, &[(0, i as u16, 0, 1), (11, 0, 0, 0), (9, 1, 2, 3)]);
            evs.push(snap_ev(i, s.clone()));
            if i == 4 {
                evs.push(stamped(
                    50,
                    CoreEvent::Notice {
                        message: "mid".into(),
                    },
                ));
            }
        }
        for e in &evs {
            assert_eq!(rec.record(e), None);
        }
        rec.finish().expect("on");
        let (r, _) = record::Reader::open(&path).expect("open");
        let json: Vec<String> = r.map(|e| e.value.to_string()).collect();
        let want: Vec<String> = evs
            .iter()
            .map(|e| record::encode(e).expect("json").to_string())
            .collect();
        assert_eq!(json, want);
        let (back, notes) = Playback::read_all(&path).expect("read");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(back.len(), evs.len());
    }
}
