//! Timing helper for bench/stacks_vs_tools.sh: `stacks_timing PID [RUNS] [--seize]` takes one
//! cold snapshot of every thread of PID, then RUNS warm ones (same thread, so the caches are
//! reused), and prints one line of figures: threads, frames, cold ms, warm min/median/max ms,
//! and the longest pause (`--dump` also prints the last snapshot as text) (always 0 on the ptrace-free path, which never stops a thread).

use lifecycle_top::stacks::{self, SourceKind, StackOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(pid) = args.get(1).and_then(|p| p.parse::<i32>().ok()) else {
        eprintln!("usage: stacks_timing PID [RUNS] [--seize]");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20);
    let seize = args.iter().any(|a| a == "--seize");
    let native = !args.iter().any(|a| a == "--kernel-only");
    let opts = StackOptions {
        seize,
        prefer_seize: seize,
        kernel_stack: false,
        native,
        ..Default::default()
    };
    let t0 = Instant::now();
    let cold = stacks::capture(pid, &[], &opts);
    let cold_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut warm: Vec<f64> = Vec::new();
    let mut last = cold.clone();
    for _ in 0..runs {
        let t = Instant::now();
        last = stacks::capture(pid, &[], &opts);
        warm.push(t.elapsed().as_secs_f64() * 1e3);
    }
    warm.sort_by(f64::total_cmp);
    if args.iter().any(|a| a == "--dump") {
        let mut out = std::io::stdout();
        let _ = stacks::cli::write_text(&last, &mut out);
    }
    let native: Vec<_> = last
        .threads
        .iter()
        .filter_map(|t| t.stack(SourceKind::Native))
        .collect();
    let frames: usize = native.iter().map(|s| s.frames.len()).sum();
    let max_pause_ms = native
        .iter()
        .filter_map(|s| {
            s.note
                .as_deref()?
                .strip_prefix("seized ")?
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .fold(0.0, f64::max);
    let med = warm.get(warm.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "threads={} native_stacks={} frames={} cold_ms={:.2} warm_min_ms={:.2} warm_median_ms={:.2} warm_max_ms={:.2} max_pause_ms={:.3} path={}",
        last.threads.len(),
        native.len(),
        frames,
        cold_ms,
        warm.first().copied().unwrap_or(f64::NAN),
        med,
        warm.last().copied().unwrap_or(f64::NAN),
        max_pause_ms,
        if seize { "seize" } else { "ptrace-free" }
    );
}
