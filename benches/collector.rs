//! One collector refresh against the shared workload (bench/tree_target.c: 1,000 threads,
//! 195 children, 5 grandchildren), compiled with gcc into a temp dir. Three cases: the
//! steady state (schedstat-gated reads, 1/30 of the threads re-checked per refresh), every
//! thread and process re-checked on every refresh (the gate's safety net at its most
//! expensive), and a fresh attach + first refresh (every file opened and read). Plus the
//! exit-notice latency of the live collector: SIGKILL sent -> `CollectEvent::Exited`
//! received, with a one-hour refresh interval (only the pidfd watcher can see it).
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use lifecycle_top::collect::pidfd::PidFd;
use lifecycle_top::collect::{CollectEvent, Collector, CollectorOptions, live};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Workload {
    child: Child,
    pid: i32,
    _dir: tempfile::TempDir,
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Its children have PDEATHSIG=SIGKILL: killing the parent takes the tree down.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_workload() -> Workload {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/tree_target.c");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("tree_target");
    let status = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-lpthread")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "gcc is needed to build {} ({e}): install gcc",
                src.display()
            )
        });
    assert!(status.success(), "gcc failed on {}", src.display());
    let mut child = Command::new(&bin).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = line.trim().parse().unwrap();
    Workload {
        child,
        pid,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let w = start_workload();
    let mut g = c.benchmark_group("collector");
    g.sample_size(30).measurement_time(Duration::from_secs(6));

    let mut steady = Collector::attach(w.pid, CollectorOptions::default()).unwrap();
    let snap = steady.refresh();
    eprintln!(
        "workload pid {}: {} threads, {} processes",
        w.pid,
        snap.threads.len(),
        snap.processes.len()
    );
    assert!(snap.threads.len() >= 1000 && snap.processes.len() >= 200);
    g.bench_function("refresh_1000_threads_200_children", |b| {
        b.iter(|| steady.refresh())
    });

    let full_opts = CollectorOptions {
        full_reread_every: 1,
        ..CollectorOptions::default()
    };
    let mut full = Collector::attach(w.pid, full_opts).unwrap();
    full.refresh();
    g.bench_function("refresh_recheck_all_every_time", |b| {
        b.iter(|| full.refresh())
    });

    g.sample_size(10);
    g.bench_function("attach_and_first_refresh", |b| {
        b.iter(|| {
            let mut c = Collector::attach(w.pid, CollectorOptions::default()).unwrap();
            c.refresh()
        })
    });
    g.finish();
}

fn exit_notice(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("collector");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("exit_notice_sigkill_to_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
                let opts = CollectorOptions {
                    launch_mode: true,
                    threads: false,
                    ..CollectorOptions::default()
                };
                let collector = Collector::attach(child.id() as i32, opts).unwrap();
                let key = collector.target();
                total += rt.block_on(async {
                    let mut lc = live::spawn(collector, Duration::from_secs(3600));
                    // The first snapshot means the watcher has the target's pidfd.
                    while !matches!(lc.events.recv().await, Some(CollectEvent::Snapshot(_))) {}
                    let fd = PidFd::open(key).unwrap();
                    let sent = Instant::now();
                    lifecycle_top::teardown::exec::signal(fd.key(), 9).unwrap();
                    loop {
                        match lc.events.recv().await {
                            Some(CollectEvent::Exited { key: k, .. }) if k == key => {
                                break sent.elapsed();
                            }
                            Some(_) => {}
                            None => panic!("live collector stopped"),
                        }
                    }
                });
                let _ = child.wait(); // already reaped by the collector: ECHILD is fine
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench, exit_notice);
criterion_main!(benches);
