//! What the header's sysinfo figures cost next to a collector refresh: attaches to PID,
//! then alternates rounds of `refresh` alone and `refresh` + `SystemFigures::refresh`
//! (the session does the second), INTERVAL_MS apart, and prints the CPU per refresh of each
//! (CLOCK_THREAD_CPUTIME_ID) and of the sysinfo call alone.
//!
//! `cargo run --release --example sysfig_cost -- PID [ROUNDS (default 20)] [INTERVAL_MS (default 500)]`

use lifecycle_top::collect::{Collector, CollectorOptions};
use lifecycle_top::sysfig::SystemFigures;
use std::time::Duration;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> std::process::ExitCode {
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let Some(&pid) = nums.first() else {
        eprintln!("usage: sysfig_cost PID [ROUNDS] [INTERVAL_MS]");
        return std::process::ExitCode::from(2);
    };
    let rounds = nums.get(1).copied().unwrap_or(20);
    let interval = Duration::from_millis(nums.get(2).copied().unwrap_or(500));
    let mut c = match Collector::attach(pid as i32, CollectorOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut figures = SystemFigures::new();
    let _ = c.refresh();
    let (mut alone, mut with, mut sys_only) = (Vec::new(), Vec::new(), 0u64);
    for i in 0..rounds * 2 {
        std::thread::sleep(interval);
        let t0 = thread_cpu_ns();
        let snap = c.refresh();
        let t1 = thread_cpu_ns();
        if i % 2 == 0 {
            alone.push(t1 - t0);
        } else {
            let s = figures.refresh(&snap.system);
            let t2 = thread_cpu_ns();
            std::hint::black_box(s);
            with.push(t2 - t0);
            sys_only += t2 - t1;
        }
    }
    let ms = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1e6;
    let sd = |v: &[u64]| {
        let m = ms(v);
        (v.iter().map(|x| (*x as f64 / 1e6 - m).powi(2)).sum::<f64>() / v.len().max(1) as f64)
            .sqrt()
    };
    println!(
        "CPU per refresh over {rounds}+{rounds} rounds: collector alone {:.3} ms (sd {:.3}), \
         collector + sysinfo figures {:.3} ms (sd {:.3}); sysinfo figures alone {:.1} us",
        ms(&alone),
        sd(&alone),
        ms(&with),
        sd(&with),
        sys_only as f64 / rounds as f64 / 1e3
    );
    std::process::ExitCode::SUCCESS
}
