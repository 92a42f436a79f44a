//! Recording cost for a realistic idle target: a `model::Snapshot` of 200 processes and
//! 1,000 target threads every 500 ms, where per refresh a few threads and processes use CPU
//! and every process's age moves on. Figures: CPU per appended snapshot (serde to JSON +
//! delta + zstd + CRC + write), bytes per hour, open time and seek time in a one-hour file.
//! Appending goes two ways, measured side by side: the JSON-tree path (`encode` + `append_owned`:
//! `to_value`, `diff` of two trees) and the typed path (`append_typed` of an `Arc<Snapshot>`,
//! what the recorder does: typed comparisons, only changed items serialized). Both write the
//! same bytes (checked below).
#![allow(clippy::unwrap_used)]

use criterion::Criterion;
use lifecycle_top::model::{
    ProcInfo, ProcKey, RunState, SignalMasks, Snapshot, SystemInfo, ThreadInfo, WaitPoint,
};
use lifecycle_top::record::{Reader, Writer, encode};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 500;
const HOUR_FRAMES: u64 = 3_600_000 / INTERVAL_MS;

fn base_snapshot() -> Snapshot {
    let target = ProcKey {
        pid: 4000,
        start_time: 123_456,
    };
    let processes = (0..200)
        .map(|i| ProcInfo {
            key: ProcKey {
                pid: 4000 + i,
                start_time: 123_456 + i as u64 * 3,
            },
            ppid: if i == 0 { 1 } else { 4000 },
            pgid: 4000,
            sid: 3900,
            name: format!("worker-{i}").into(),
            cmdline: vec!["python3".into(), "app.py".into(), format!("--worker={i}")],
            state: RunState::Sleeping,
            cpu_ticks: 1_000 + i as u64,
            cpu_percent: 0.0,
            rss_bytes: 30_000_000 + i as u64 * 4096,
            num_threads: if i == 0 { 1000 } else { 1 },
            age_secs: 100.0 + i as f64 * 0.01,
            depth: u32::from(i != 0),
            orphan: false,
            signals: SignalMasks {
                ignored: 0,
                caught: 1 << 14 | 1 << 1,
                blocked: 0,
            },
            exit: None,
        })
        .collect();
    let threads = (0..1000)
        .map(|t| ThreadInfo {
            tid: 4000 + t,
            name: format!("pool-{}", t % 50).into(),
            state: RunState::Sleeping,
            wait: WaitPoint {
                wchan: Some("futex_wait_queue".into()),
                syscall_nr: Some(202),
                syscall: Some("futex".into()),
                syscall_args: vec![0x7f00_0000_1000 + t as u64 * 64, 128, 0, 0, 0, 0],
            }
            .into(),
            cpu_ticks: 50 + t as u64 % 17,
            cpu_percent: 0.0,
            voluntary_ctxt_switches: Some(10 + t as u64),
            nonvoluntary_ctxt_switches: Some(t as u64 % 5),
        })
        .collect();
    Snapshot {
        taken_at_unix_ms: 1_700_000_000_000,
        target,
        processes,
        threads,
        system: SystemInfo {
            cpus: 2,
            mem_total_bytes: 24 << 30,
            mem_available_bytes: 20 << 30,
            load_avg: [0.5, 0.4, 0.3],
        },
    }
}

/// One refresh later: 8 threads and 3 processes ran, everything aged by 0.5 s.
fn advance(s: &mut Snapshot, step: u64) {
    s.taken_at_unix_ms += INTERVAL_MS;
    for p in &mut s.processes {
        p.age_secs += 0.5;
        p.cpu_percent = 0.0;
    }
    for k in 0..3 {
        let p = &mut s.processes[((step * 7 + k * 61) % 200) as usize];
        p.cpu_ticks += 1;
        p.cpu_percent = 2.0;
        p.rss_bytes += 4096;
    }
    for t in &mut s.threads {
        t.cpu_percent = 0.0;
        t.state = RunState::Sleeping;
    }
    for k in 0..8 {
        let t = &mut s.threads[((step * 13 + k * 127) % 1000) as usize];
        t.cpu_ticks += 1 + k % 3;
        t.cpu_percent = 2.0 * (1 + k % 3) as f32;
        t.state = if k == 0 {
            RunState::Running
        } else {
            RunState::Sleeping
        };
        t.voluntary_ctxt_switches = t.voluntary_ctxt_switches.map(|n| n + 3);
    }
    s.system.mem_available_bytes -= 4096 * (step % 3);
    s.system.load_avg[0] = 0.5 + (step % 10) as f64 / 100.0;
}

fn write_hour(path: &std::path::Path, typed: bool) -> (Duration, u64, u64) {
    let mut w = Writer::create(path).unwrap();
    let mut s = base_snapshot();
    let mut took = Duration::ZERO;
    for i in 0..HOUR_FRAMES {
        let at = i * INTERVAL_MS;
        // The collector builds a fresh snapshot per refresh: its clone is not the writer's cost.
        let shared = typed.then(|| Arc::new(s.clone()));
        let t0 = Instant::now();
        match shared {
            Some(a) => w.append_typed(at, "snapshot", a, "snapshot").unwrap(),
            None => w
                .append_owned(at, "snapshot", encode(&s).unwrap(), Some("snapshot"))
                .unwrap(),
        }
        took += t0.elapsed();
        advance(&mut s, i);
    }
    let st = w.stats();
    (took, st.bytes, st.keyframes)
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Seek to `target` and replay to the first snapshot at or after it: what a scrubbing UI does.
fn seek_to(r: &mut Reader, target: u64) -> u64 {
    r.seek(target);
    for ev in r.by_ref() {
        if ev.at_ms >= target {
            return ev.at_ms;
        }
    }
    u64::MAX
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hour.ltrec");

    let json_len = serde_json::to_vec(&base_snapshot()).unwrap().len();
    let tree_path = dir.path().join("hour-tree.ltrec");
    for (typed, p, how) in [
        (false, &tree_path, "JSON trees (to_value + diff)"),
        (true, &path, "typed (append_typed)"),
    ] {
        let (took, bytes, keyframes) = write_hour(p, typed);
        println!(
            "record: one hour at {INTERVAL_MS} ms = {HOUR_FRAMES} snapshots ({json_len} bytes of JSON each), {how}: \
             {:.2} MB/hour, {} keyframes, {:.3} ms CPU per appended snapshot (serde + delta + zstd + write)",
            bytes as f64 / 1e6,
            keyframes,
            took.as_secs_f64() * 1000.0 / HOUR_FRAMES as f64
        );
    }
    assert!(
        std::fs::read(&tree_path).unwrap() == std::fs::read(&path).unwrap(),
        "the typed path must write the very file the JSON-tree path writes"
    );
    std::fs::remove_file(&tree_path).unwrap();
    let t0 = Instant::now();
    let (mut reader, notes) = Reader::open(&path).unwrap();
    assert!(notes.is_empty());
    println!(
        "record: open + index scan of the one-hour file: {:.2} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let mut rng = Lcg(42);
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let target = rng.next() % (HOUR_FRAMES * INTERVAL_MS);
        let t0 = Instant::now();
        assert!(seek_to(&mut reader, target) >= target);
        worst = worst.max(t0.elapsed());
    }
    println!(
        "record: worst of 50 random seeks (+ replay to the target): {:.2} ms",
        worst.as_secs_f64() * 1000.0
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("record");
    {
        let mut w = Writer::create("/dev/null").unwrap();
        let mut s = base_snapshot();
        let mut i = 0u64;
        g.bench_function(
            "append snapshot (serde to Value + delta + zstd + write)",
            |b| {
                b.iter(|| {
                    w.append_owned(
                        i * INTERVAL_MS,
                        "snapshot",
                        encode(&s).unwrap(),
                        Some("snapshot"),
                    )
                    .unwrap();
                    advance(&mut s, i);
                    i += 1;
                })
            },
        );
    }
    {
        let mut w = Writer::create("/dev/null").unwrap();
        let mut s = base_snapshot();
        let mut i = 0u64;
        g.bench_function(
            "append snapshot typed (Arc<Snapshot>: typed delta + zstd + write)",
            |b| {
                b.iter_batched(
                    || {
                        advance(&mut s, i);
                        i += 1;
                        (i, Arc::new(s.clone()))
                    },
                    |(i, snap)| {
                        w.append_typed(i * INTERVAL_MS, "snapshot", snap, "snapshot")
                            .unwrap()
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    {
        let s = base_snapshot();
        g.bench_function("serde to Value only (the caller's share)", |b| {
            b.iter(|| encode(&s).unwrap())
        });
    }
    {
        let mut s = base_snapshot();
        let a = encode(&s).unwrap();
        advance(&mut s, 1);
        let b = encode(&s).unwrap();
        g.bench_function("diff of two consecutive snapshot Values", |bch| {
            bch.iter(|| lifecycle_top::record::diff(&a, &b))
        });
        g.bench_function("drop of one snapshot Value (the old delta base)", |bch| {
            bch.iter_batched(|| a.clone(), drop, criterion::BatchSize::LargeInput)
        });
    }
    g.bench_function("seek to a random moment of one hour + replay to it", |b| {
        b.iter(|| {
            let target = rng.next() % (HOUR_FRAMES * INTERVAL_MS);
            seek_to(&mut reader, target)
        })
    });
    g.bench_function("open one-hour file (read + CRC scan + index)", |b| {
        b.iter(|| Reader::open(&path).unwrap())
    });
    g.finish();
    c.final_summary();
}
