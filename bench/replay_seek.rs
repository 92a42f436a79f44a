//! Seek cost of `lifecycle-top replay` in a one-hour recording (bench/replay_seek.sh runs it,
//! release build). The hour is made from a real recording: a short headless run against the
//! shared 1,000-thread workload (attach, idle snapshots, the native plan's teardown). Its
//! events before the first phase are kept, the last idle snapshot before the teardown is
//! repeated every 500 ms for one hour (the ten threads that wake every 100 ms gain CPU ticks,
//! every process ages, the clock moves), then the real teardown follows, shifted by the hour.
//! The file is written through the session's own `Recorder` (typed deltas, keyframes, zstd),
//! so it is what `--record` writes for an idle hour.
//!
//! Then: open it as `replay` does (`Player::new`), and seek the replay dashboard to SEEKS
//! random moments (`Player::seek`, what the scrub keys and `--at` in the TUI do), printing
//! the median and worst seek.
//!
//!   replay_seek REAL.ltrec HOUR.ltrec [SEEKS (default 200)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::replay::Player;
use lifecycle_top::session::{CoreEvent, Playback, Recorder, Stamped};
use lifecycle_top::state::Dashboard;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 500;
const HOUR_MS: u64 = 3_600_000;

fn stretch(real: &Path, hour: &Path) -> (usize, u64) {
    let (events, notes) = Playback::read_all(real).expect("read the real recording");
    assert!(notes.is_empty(), "the real recording has damage: {notes:?}");
    let first_phase = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                CoreEvent::Phase { .. } | CoreEvent::Timeline { .. } | CoreEvent::PlanDone { .. }
            )
        })
        .expect("the real run ran a phase");
    let (idle, teardown) = events.split_at(first_phase);
    let last = idle
        .iter()
        .rev()
        .find(|e| matches!(e.event, CoreEvent::Snapshot { .. }))
        .expect("an idle snapshot before the teardown")
        .clone();
    let CoreEvent::Snapshot { snapshot } = &last.event else {
        unreachable!()
    };
    let mut snap = (**snapshot).clone();
    let wakers: Vec<usize> = snap
        .threads
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            matches!(
                t.name.as_str(),
                "w0" | "w1" | "w2" | "w3" | "w4" | "w5" | "w6" | "w7" | "w8" | "w9"
            )
        })
        .map(|(i, _)| i)
        .collect();
    let mut rec = Recorder::create(hour).expect("create the hour file");
    for e in idle {
        rec.record(e);
    }
    let (mut seq, mut at) = (last.seq, last.at);
    let n = (HOUR_MS / INTERVAL_MS) as usize;
    for i in 0..n {
        seq += 1;
        at.at_ms += INTERVAL_MS;
        at.unix_ms += INTERVAL_MS;
        snap.taken_at_unix_ms += INTERVAL_MS;
        for p in &mut snap.processes {
            p.age_secs += 0.5;
        }
        for (k, &t) in wakers.iter().enumerate() {
            let th = &mut snap.threads[t];
            th.cpu_ticks += u64::from((i + k) % 4 == 0);
            th.voluntary_ctxt_switches = th.voluntary_ctxt_switches.map(|v| v + 5);
        }
        rec.record(&Stamped {
            seq,
            at,
            event: CoreEvent::Snapshot {
                snapshot: Arc::new(snap.clone()),
            },
        });
    }
    let shift = at.at_ms - last.at.at_ms;
    let seq_shift = seq - last.seq;
    for e in teardown {
        let mut e = e.clone();
        e.seq += seq_shift;
        e.at.at_ms += shift;
        e.at.unix_ms += shift;
        rec.record(&e);
    }
    let s = rec.finish().expect("recording summary");
    assert!(s.stopped.is_none(), "{:?}", s.stopped);
    (events.len() + n, s.bytes)
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

/// CPU time of this thread: on a shared, loaded machine the wall time of a seek includes
/// waiting for a core, so both are printed.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(real), Some(hour)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: replay_seek REAL.ltrec HOUR.ltrec [SEEKS]");
        std::process::exit(2);
    };
    let seeks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let (events, bytes) = stretch(Path::new(real), Path::new(hour));
    println!(
        "replay_seek: one-hour recording of the 1,000-thread workload: {events} events, {:.2} MB",
        bytes as f64 / 1e6
    );

    let rss0 = rss_mb();
    let (t0, c0) = (Instant::now(), thread_cpu());
    let (playback, notes) = Playback::open(Path::new(hour)).expect("open");
    assert!(notes.is_empty(), "{notes:?}");
    let mut player = Player::new(playback);
    println!(
        "replay_seek: open (read, fold once, checkpoints): {:.0} ms wall, {:.0} ms CPU, +{:.0} MB resident, {:.1} MB of compressed snapshot chains in {} checkpoints",
        t0.elapsed().as_secs_f64() * 1000.0,
        thread_cpu().saturating_sub(c0).as_secs_f64() * 1000.0,
        rss_mb() - rss0,
        player.checkpoint_bytes() as f64 / 1e6,
        player.len() / lifecycle_top::replay::CHECKPOINT_EVERY + 1
    );
    let mut dash = Dashboard::new();
    let (start, end) = (player.start_ms(), player.end_ms());
    player.seek(&mut dash, start);
    let mut rng = Lcg(9);
    let mut took: Vec<Duration> = Vec::with_capacity(seeks);
    let mut cpu: Vec<Duration> = Vec::with_capacity(seeks);
    for _ in 0..seeks {
        let at = start + rng.next() % (end - start + 1);
        let (t0, c0) = (Instant::now(), thread_cpu());
        player.seek(&mut dash, at);
        took.push(t0.elapsed());
        cpu.push(thread_cpu().saturating_sub(c0));
        assert_eq!(player.position_ms(), at);
        assert!(
            dash.model.snapshot.is_some(),
            "a model with a snapshot at {at}"
        );
    }
    took.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "replay_seek: {seeks} seeks to random moments (release build, load average {}): wall median {:.1} ms, 90th {:.1} ms, worst {:.1} ms; CPU median {:.1} ms, worst {:.1} ms (goal: worst < 100 ms)",
        load_avg(),
        ms(took[took.len() / 2]),
        ms(took[took.len() * 9 / 10]),
        ms(took[took.len() - 1]),
        ms(cpu[cpu.len() / 2]),
        ms(cpu[cpu.len() - 1])
    );
}
