//! Drive the collector alone, for benchmarks and eyeballing: attach to PID, refresh every
//! INTERVAL_MS (default 1000) for SECONDS (default 10), then print the last snapshot as text
//! (`--print`) and the wall time spent in refresh.
//!
//! `cargo run --release --example collector_loop -- PID [SECONDS] [INTERVAL_MS] [--print]`

use lifecycle_top::collect::{Collector, CollectorOptions, snapshot_text};
use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let print = args.iter().any(|a| a == "--print");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let Some(&pid) = nums.first() else {
        eprintln!("usage: collector_loop PID [SECONDS] [INTERVAL_MS] [--print]");
        return std::process::ExitCode::from(2);
    };
    let secs = nums.get(1).copied().unwrap_or(10);
    let interval = Duration::from_millis(nums.get(2).copied().unwrap_or(1000));
    let mut c = match Collector::attach(pid as i32, CollectorOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut spent, mut n) = (Duration::ZERO, 0u32);
    let mut last = c.refresh();
    while Instant::now() < end {
        std::thread::sleep(interval);
        let t = Instant::now();
        last = c.refresh();
        spent += t.elapsed();
        n += 1;
    }
    if print {
        print!("{}", snapshot_text(&last));
    }
    eprintln!(
        "refreshes {n}, wall per refresh {:.3} ms, processes {}, threads {}",
        spent.as_secs_f64() * 1000.0 / f64::from(n.max(1)),
        last.processes.len(),
        last.threads.len()
    );
    std::process::ExitCode::SUCCESS
}
