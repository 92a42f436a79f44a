//! Warm stack snapshots of 100 blocked C threads (tests/targets/stacks_blocked.c, compiled
//! with gcc into a temp dir): the ptrace-free path (kernel view + native unwinding +
//! symbols), the kernel view alone, and the opt-in seize path (every thread interrupted in
//! turn by one helper). Run: `cargo bench --bench stacks`. The side-by-side comparison with
//! eu-stack, gdb and py-spy is bench/stacks_vs_tools.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use lifecycle_top::stacks::{self, StackOptions};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Target {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stacks_blocked");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/targets/stacks_blocked.c"
    );
    let ok = Command::new("gcc")
        .args(["-O0", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(src)
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "gcc is needed to build {src}"
    );
    let mut child = Command::new(&exe)
        .arg("100")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Target { child, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let t = start();
    let pid = t.child.id() as i32;
    let mut g = c.benchmark_group("stacks_100_threads");
    g.sample_size(30);
    let cases = [
        (
            "ptrace_free",
            StackOptions {
                kernel_stack: false,
                ..Default::default()
            },
        ),
        (
            "kernel_only",
            StackOptions {
                native: false,
                kernel_stack: false,
                ..Default::default()
            },
        ),
        (
            "seize_all",
            StackOptions {
                seize: true,
                prefer_seize: true,
                kernel_stack: false,
                ..Default::default()
            },
        ),
    ];
    for (name, opts) in cases {
        stacks::capture(pid, &[], &opts); // cold: parse ELF/DWARF once
        g.bench_function(name, |b| b.iter(|| stacks::capture(pid, &[], &opts)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
