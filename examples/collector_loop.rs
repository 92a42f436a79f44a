//! Drive the collector alone, for benchmarks and eyeballing: attach to PID, refresh every
//! INTERVAL_MS (default 1000) for SECONDS (default 10), then print the last snapshot as text
//! (`--print`), the wall time and the CPU time (CLOCK_THREAD_CPUTIME_ID) spent in refresh.
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
    let (mut spent, mut cpu_ns, mut n) = (Duration::ZERO, 0u64, 0u32);
    let mut last = c.refresh();
    while Instant::now() < end {
        std::thread::sleep(interval);
        let (t, cpu0) = (Instant::now(), thread_cpu_ns());
        last = c.refresh();
        spent += t.elapsed();
        cpu_ns += thread_cpu_ns().saturating_sub(cpu0);
        n += 1;
    }
    if print {
        print!("{}", snapshot_text(&last));
    }
    eprintln!(
        "refreshes {n}, per refresh: wall {:.3} ms, CPU {:.3} ms; processes {}, threads {}; \
         peak RSS {}",
        spent.as_secs_f64() * 1000.0 / f64::from(n.max(1)),
        cpu_ns as f64 / 1e6 / f64::from(n.max(1)),
        last.processes.len(),
        last.threads.len(),
        peak_rss()
    );
    std::process::ExitCode::SUCCESS
}

/// Nanoseconds this thread has run (CLOCK_THREAD_CPUTIME_ID is exact for the running
/// thread; schedstat lags by up to a scheduler tick).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `VmHWM` of /proc/self/status (peak resident set).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}
