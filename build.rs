//! Link options of the `lifecycle-top` binary that cut its resident memory (issue 14's
//! peak-RSS goal), for the binary only (tests and examples link as before), and only where
//! the linker is known to take them: x86_64 Linux, rustc 1.90 or newer (which links with its
//! own LLD there) and no linker chosen by the user.
//!
//! - `-z pack-relative-relocs` (RELR): the 550 KB of relative relocations (`.rela.dyn`) the
//!   loader reads at every start become ~11 KB: `lifecycle-top --version` took 27 ms wall,
//!   22 ms CPU (median of 30, interleaved), 3.2 / 2.7 ms with it; every command starts that
//!   much sooner. Only with glibc 2.36 or newer on the building machine: an older one refuses
//!   such a binary (`GLIBC_ABI_DT_RELR not found`).
//! - `--icf=all`: identical functions (generic copies, mostly) folded into one, text 9.1 ->
//!   8.9 MB, so fewer 64 KB fault-around windows of code are mapped. LLD folds code only, not
//!   data; nothing here compares function addresses (two folded functions share one, which
//!   Rust allows).
//!
//! - `--symbol-ordering-file=assets/symbol-order.txt` (the `lifecycle-top` binary only): the
//!   ~2,500 functions the dashboard runs, in the order they first run, laid out side by side
//!   (written by `bench/symbol_order.py`). Without it the code that runs is spread over the
//!   whole 8.9 MB text and keeps 5.3 MB of it resident through fault-around; with it 1.4 MB
//!   (watching 1,000 threads: VmHWM 11.7 -> 8.2 MB). Names the binary no longer has (after a
//!   toolchain or dependency update changes their hashes) are skipped silently: a stale file
//!   orders less, it never breaks the link; `bench/symbol_order.py --check` counts them.
//!
//! Peak RSS watching 1,000 threads, median of 5 same-run rounds: 13.18 MB without, 12.94 with
//! RELR, 12.76 with both (the saving is file-backed pages; `bench/rss_breakdown.py`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if !links_with_rust_lld() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/symbol-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=lifecycle-top=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=lifecycle-top=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc links x86_64-unknown-linux-gnu binaries with its bundled LLD from 1.90 on, unless
/// a linker or linker flavour was chosen.
fn links_with_rust_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    if std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    text.contains("release: 1.") && minor.is_some_and(|m| m >= 90)
}

/// The building machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
