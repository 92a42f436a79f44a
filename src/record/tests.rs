//! Real files in a temp dir: round trips, cut tails, flipped bytes, unknown frames, seek.
#![allow(clippy::unwrap_used)]

use super::frame::{self, FrameHeader};
use super::*;
use serde_json::json;

/// A snapshot-shaped value that drifts like an idle target: a few counters move, threads
/// come and go now and then.
fn snap(i: u64) -> Value {
    let threads: Vec<Value> = (0..40u64)
        .filter(|t| !(t % 7 == 3 && (i / 9) % 2 == 1))
        .map(|t| {
            let ticks = if t % 10 == i % 10 { 100 + i } else { 100 + t };
            json!({"tid": 1000 + t, "name": format!("w{t}"), "state": "Sleeping",
                   "cpu_ticks": ticks, "cpu_percent": (ticks % 7) as f32 * 0.5,
                   "wait": {"wchan": "futex_wait_queue", "syscall_args": [1, 2, 3]}})
        })
        .collect();
    json!({"taken_at_unix_ms": 1_700_000_000_000u64 + i * 500,
           "processes": [{"key": {"pid": 1, "start_time": 7}, "age_secs": i as f64 * 0.5 + 0.25}],
           "threads": threads})
}

struct Recorded {
    dir: tempfile::TempDir,
    events: Vec<(u64, String, Value)>,
    /// File size after each append: the frame boundaries.
    ends: Vec<u64>,
    /// Indices of the events written as keyframes.
    keyframes: Vec<usize>,
}

impl Recorded {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("r.ltrec")
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.path()).unwrap()
    }
}

fn record(n: u64, opts: WriterOptions) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::create_with(dir.path().join("r.ltrec"), opts).unwrap();
    let (mut events, mut ends, mut keyframes) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let before = w.stats().keyframes;
        let at = i * 500;
        if i % 5 == 4 {
            let v = json!({"phase": i, "note": "sigterm"});
            w.append(at, "phase", &v, None).unwrap();
            events.push((at, "phase".to_owned(), v));
        } else {
            let v = snap(i);
            w.append(at, "snapshot", &v, Some("snapshot")).unwrap();
            events.push((at, "snapshot".to_owned(), v));
        }
        ends.push(w.stats().bytes);
        if w.stats().keyframes > before {
            keyframes.push(i as usize);
        }
    }
    w.flush().unwrap();
    Recorded {
        dir,
        events,
        ends,
        keyframes,
    }
}

fn small_keyframes() -> WriterOptions {
    WriterOptions {
        keyframe_every_frames: 8,
        ..WriterOptions::default()
    }
}

/// Compare without printing whole snapshots: the times and kinds say enough.
#[track_caller]
fn same(got: &[(u64, String, Value)], want: &[(u64, String, Value)], what: &str) {
    if got != want {
        let brief =
            |v: &[(u64, String, Value)]| v.iter().map(|e| (e.0, e.1.clone())).collect::<Vec<_>>();
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: first difference at {first:?}\n got {:?}\nwant {:?}",
            brief(got),
            brief(want)
        );
    }
}

fn read_all(r: &mut Reader) -> Vec<(u64, String, Value)> {
    r.map(|e| (e.at_ms, e.kind.to_string(), (*e.value).clone()))
        .collect()
}

#[test]
fn many_events_round_trip_through_deltas() {
    let rec = record(400, WriterOptions::default());
    let (mut r, notes) = Reader::open(rec.path()).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    same(&read_all(&mut r), &rec.events, "all");
    assert_eq!(r.frames(), 400);
    // Deltas are small: the whole file is well under one keyframe per event.
    let size = rec.bytes().len();
    let keyframe = serde_json::to_vec(&snap(0)).unwrap().len();
    assert!(size < 400 * keyframe / 10, "{size} bytes");
}

#[test]
fn a_cut_at_any_byte_of_the_last_frames_replays_every_complete_frame() {
    let rec = record(30, small_keyframes());
    let data = rec.bytes();
    let from = rec.ends[rec.ends.len() - 4] as usize;
    for cut in from..=data.len() {
        let (mut r, notes) = Reader::from_bytes(data[..cut].to_vec()).unwrap();
        let complete = rec.ends.iter().filter(|&&e| e as usize <= cut).count();
        same(
            &read_all(&mut r),
            &rec.events[..complete],
            &format!("cut at {cut}"),
        );
        let boundary = rec.ends.contains(&(cut as u64));
        if boundary {
            assert!(notes.is_empty(), "cut at {cut}: {notes:?}");
        } else {
            assert_eq!(notes.len(), 1, "cut at {cut}: {notes:?}");
            assert_eq!(notes[0].damage, Damage::CutTail);
            assert_eq!(notes[0].offset, rec.ends[complete - 1]);
            assert!(r.damage().cut_tail);
        }
    }
    // Cut inside the file header: no events, one note.
    let (mut r, notes) = Reader::from_bytes(data[..5].to_vec()).unwrap();
    assert_eq!(r.next(), None);
    assert_eq!(notes[0].damage, Damage::CutTail);
}

#[test]
fn a_flipped_byte_anywhere_in_a_middle_frame_skips_it_and_never_misapplies_a_delta() {
    let rec = record(40, small_keyframes());
    let data = rec.bytes();
    // A delta frame (snapshot, not the first after a keyframe) in the middle of the file.
    let k = 17;
    let (start, end) = (rec.ends[k - 1] as usize, rec.ends[k] as usize);
    assert_eq!(rec.events[k].1, "snapshot");
    for at in start..end {
        let mut bad = data.clone();
        bad[at] ^= 0x20;
        let (mut r, notes) = Reader::from_bytes(bad).unwrap();
        let got = read_all(&mut r);
        assert!(!notes.is_empty(), "flip at {at}: no note");
        assert_eq!(notes[0].offset, start as u64, "flip at {at}: {notes:?}");
        // Every event read is exactly what was written at that time (no wrong base), the
        // lost frame is not among them, and everything from the next keyframe on is back.
        for ev in &got {
            assert!(
                rec.events.contains(ev),
                "flip at {at}: invented event at {} ms",
                ev.0
            );
        }
        assert!(!got.iter().any(|e| e.0 == rec.events[k].0));
        let tail: Vec<_> = rec.events[k + 1..]
            .iter()
            .filter(|e| e.1 == "phase")
            .collect();
        assert!(tail.iter().all(|e| got.contains(e)), "flip at {at}");
        assert!(got.last() == rec.events.last(), "flip at {at}");
        let lost_base = notes.iter().any(|n| n.damage == Damage::LostBase);
        assert!(lost_base, "flip at {at}: {notes:?}");
        assert!(got.len() < rec.events.len() - 1, "later deltas dropped");
    }
}

#[test]
fn bytes_inserted_between_frames_are_skipped_by_resync() {
    let rec = record(30, small_keyframes());
    let data = rec.bytes();
    let k = 5;
    let cut = rec.ends[k] as usize;
    let mut bad = data[..cut].to_vec();
    bad.extend_from_slice(&[0xD7, b'L', b'T', 0x00, 9, 9, 9]); // a false sync, then junk
    bad.extend_from_slice(&data[cut..]);
    let (mut r, notes) = Reader::from_bytes(bad).unwrap();
    let got = read_all(&mut r);
    assert_eq!(notes[0].offset, cut as u64, "{notes:?}");
    assert_eq!(notes[0].damage, Damage::BadChecksum);
    assert_eq!(r.damage().skipped_bytes, 7);
    // The next delta's base is now 7 bytes further back than it says: it and its followers
    // are dropped (noted), never patched onto the wrong base; the next keyframe restores.
    assert_eq!(notes[1].damage, Damage::LostBase, "{notes:?}");
    let next_key = rec.keyframes.iter().copied().find(|&i| i > k).unwrap();
    let want: Vec<_> = rec
        .events
        .iter()
        .enumerate()
        .filter(|(i, e)| *i <= k || *i >= next_key || e.1 == "phase")
        .map(|(_, e)| e.clone())
        .collect();
    same(&got, &want, "after resync");
}

#[test]
fn unknown_frame_types_and_flags_are_skipped_with_a_note() {
    let rec = record(30, small_keyframes());
    let data = rec.bytes();
    // Spliced right before a keyframe so no delta spans the insertion (a real newer writer
    // counts its own frames in `base_back`).
    let cut = rec.ends[rec.keyframes[1] - 1] as usize;
    let mut spliced = data[..cut].to_vec();
    for (ty, flags) in [(9u8, 0u8), (frame::TYPE_FULL, 0x80)] {
        let h = FrameHeader {
            ty,
            flags,
            at_ms: 1_700,
            base_back: 0,
            body_len: 3,
            raw_len: 3,
            kind: "from-the-future".into(),
            key: None,
        };
        frame::encode(&mut spliced, &h, b"???");
    }
    spliced.extend_from_slice(&data[cut..]);
    let (mut r, notes) = Reader::from_bytes(spliced).unwrap();
    same(&read_all(&mut r), &rec.events, "all");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|n| n.damage == Damage::Unknown));
}

#[test]
fn unknown_kinds_are_skipped_by_a_typed_reader() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Old {
        Warning(String),
        Exit { code: i32 },
    }
    #[derive(serde::Serialize)]
    enum New {
        Warning(String),
        Fresh(u8),
        Exit { code: i32 },
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ltrec");
    let mut w = Writer::create(&path).unwrap();
    for (i, ev) in [
        New::Warning("w".into()),
        New::Fresh(1),
        New::Exit { code: 3 },
    ]
    .iter()
    .enumerate()
    {
        let (kind, value) = encode_tagged(ev).unwrap();
        w.append_owned(i as u64, &kind, value, None).unwrap();
    }
    drop(w);
    let (r, _) = Reader::open(&path).unwrap();
    let got: Vec<Old> = r
        .filter_map(|e| decode_tagged::<Old>(&e.kind, &e.value).unwrap())
        .collect();
    assert_eq!(got, [Old::Warning("w".into()), Old::Exit { code: 3 }]);
    assert!(decode_tagged::<Old>("Exit", &json!({"code": "x"})).is_err());
}

#[test]
fn seek_starts_at_the_keyframe_at_or_before_and_rebuilds_the_right_state() {
    let rec = record(300, small_keyframes());
    let (mut r, _) = Reader::open(rec.path()).unwrap();
    for target in [0, 1, 499, 500, 12_345, 77_000, 149_500, 1_000_000] {
        let start = r.seek(target);
        let evs: Vec<_> = read_all(&mut r);
        match start {
            Some(s) => assert!(s <= target.max(evs[0].0)),
            None => assert!(evs.is_empty()),
        }
        // The first snapshot read is a whole one at or before the target.
        if let Some(first) = evs.first() {
            assert!(
                first.0 <= target || target < 500,
                "target {target}: first {}",
                first.0
            );
        }
        // Every event from the target on is exactly the recorded one.
        let want: Vec<_> = rec
            .events
            .iter()
            .filter(|e| e.0 >= target)
            .cloned()
            .collect();
        let got: Vec<_> = evs.into_iter().filter(|e| e.0 >= target).collect();
        same(&got, &want, &format!("target {target}"));
    }
    r.rewind();
    same(&read_all(&mut r), &rec.events, "all");
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, b"{\"not\": \"a recording\"}").unwrap();
    assert!(matches!(Reader::open(&p), Err(RecordError::NotARecording)));
    let mut h = frame::file_header();
    h[8] = 2; // major 2
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        Reader::from_bytes(h.to_vec()),
        Err(RecordError::UnsupportedVersion(2, 0))
    ));
    let mut w = Writer::create(&p).unwrap();
    assert!(w.append(0, "", &json!(1), None).is_err());
    assert!(w.append(0, &"k".repeat(256), &json!(1), None).is_err());
}

/// Replay checkpoints keep snapshot chains as JSON and restore them without a verifying
/// parse: every float must read back bit for bit (serde_json's `float_roundtrip`).
#[test]
fn floats_read_back_from_json_bit_for_bit() {
    let values = [
        1.2805938630801233e120,
        0.1 + 0.2,
        1e-300,
        123456.789e-7,
        f64::MAX,
    ];
    for v in values {
        let text = serde_json::to_string(&v).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), v.to_bits(), "{v:e} read back as {back:e}");
    }
}
