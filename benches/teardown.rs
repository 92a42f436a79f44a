//! Teardown latencies over many real runs (plain harness: prints figures, asserts nothing).
//! - escalation latency: from the grace deadline to SIGKILL delivered (pidfd_send_signal
//!   returned), goal < 20 ms;
//! - exit-noticed latency: from SIGKILL delivered to the runner receiving the exit from the
//!   live collector's pidfd watcher, goal < 10 ms.
//!
//! Run: `cargo bench --bench teardown` (RUNS=N to change the number of runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::collect::{self, Collector, CollectorOptions, live::CollectEvent};
use lifecycle_top::teardown::{Command, PhaseEvent, plan, runner};
use std::os::unix::process::CommandExt;
use std::time::Duration;

const PLAN: &str = r#"
[[phase]]
name = "target"
action = "signal_target"
signals = ["SIGTERM", "SIGKILL"]
timeout = "50ms"
"#;

async fn one_run() -> (Duration, Duration) {
    // Ignores SIGTERM, so every run escalates to SIGKILL at the deadline.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 1000"])
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    // Wait for the exec so the masks and the comm are the sleep's.
    while !std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep") {
        std::thread::sleep(Duration::from_millis(1));
    }
    let collector = Collector::attach(pid, CollectorOptions::default()).expect("attach");
    let target = collector.target();
    // The default TUI interval: exit notice must not depend on it.
    let mut live = collect::live::spawn(collector, Duration::from_millis(500));
    let mut r = runner::spawn(plan::parse(PLAN, "bench").unwrap(), target, 0, None);
    let (mut escalation, mut noticed) = (None, None);
    let mut started = false;
    while noticed.is_none() || escalation.is_none() {
        tokio::select! {
            ev = live.events.recv() => match ev.expect("collector") {
                CollectEvent::Snapshot(s) => {
                    r.handle.snapshot(s.into());
                    if !started {
                        started = true;
                        r.handle.command(Command::RunAll);
                    }
                }
                CollectEvent::Exited { key, status, .. } => r.handle.exited(key, status),
                CollectEvent::Error(_) => {}
            },
            pe = r.events.recv() => match pe.expect("runner") {
                PhaseEvent::Signal { sig, late: Some(late), .. } if sig == libc::SIGKILL => escalation = Some(late),
                PhaseEvent::ExitNoticed { since_signal, .. } => noticed = since_signal,
                PhaseEvent::RefreshNow => live.refresh_now(),
                _ => {}
            },
        }
    }
    let _ = child.wait();
    (escalation.unwrap_or_default(), noticed.unwrap_or_default())
}

fn stats(name: &str, goal_ms: f64, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(v[((v.len() - 1) as f64 * p).round() as usize]);
    println!(
        "{name:<24} runs {:>4}  p50 {:>7.3} ms  p95 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  (goal < {goal_ms} ms: {})",
        v.len(),
        pct(0.5),
        pct(0.95),
        pct(0.99),
        ms(v[v.len() - 1]),
        if pct(0.95) < goal_ms {
            "met at p95"
        } else {
            "NOT met at p95"
        }
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    // `cargo bench` passes --bench; anything else (cargo test --benches) is a quick smoke run.
    let default_runs = if std::env::args().any(|a| a == "--bench") {
        100
    } else {
        3
    };
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_runs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut esc, mut exit) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (e, x) = rt.block_on(one_run());
        esc.push(e);
        exit.push(x);
    }
    stats("escalation latency", 20.0, esc);
    stats("exit-noticed latency", 10.0, exit);
}
