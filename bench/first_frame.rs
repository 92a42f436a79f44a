//! First full frame: how long from starting `lifecycle-top --pid PID` in a 160x48 pty until
//! the screen shows a known thread name of the target (whole process, cold: the time includes
//! exec, attach, the first /proc read and the first draw). Run by `bench/first_frame.sh`.
//!
//!   first_frame BINARY PID NAME [RUNS]
//!
//! Prints each run's time and the median, in ms, and the median time to the first frame of
//! any kind (the dashboard's frame before the first snapshot arrived): the difference is
//! what the first full frame waits for, the collector's first refresh.

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROWS: u16 = 48;
const COLS: u16 = 160;

/// Time to the first frame of any kind (the header's program name drawn) and to the first
/// full frame (the thread name on screen).
struct Times {
    shell: Duration,
    full: Duration,
}

fn one_run(bin: &str, pid: &str, name: &str) -> Result<Times, String> {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| format!("cannot open a pty: {e}"))?;
    let mut cmd = CommandBuilder::new(bin);
    cmd.args(["--pid", pid]);
    cmd.env("TERM", "xterm-256color");
    let mut reader = pty
        .master
        .try_clone_reader()
        .map_err(|e| format!("pty reader: {e}"))?;
    let mut writer = pty
        .master
        .take_writer()
        .map_err(|e| format!("pty writer: {e}"))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut child = pty
        .slave
        .spawn_command(cmd)
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let mut parser = vt100::Parser::new(
        std::num::NonZeroU16::new(ROWS).ok_or("rows")?,
        std::num::NonZeroU16::new(COLS).ok_or("cols")?,
        0,
    );
    let deadline = start + Duration::from_secs(30);
    let mut shell = None;
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => {
                parser.process(&bytes);
                // A thread row: the name as a whole word on the screen.
                let screen = parser.screen().contents();
                if shell.is_none() && screen.contains("lifecycle-top") {
                    shell = Some(start.elapsed());
                }
                if screen
                    .split(|c: char| c.is_whitespace() || c == '│')
                    .any(|w| w == name)
                {
                    break Some(start.elapsed());
                }
            }
            Err(_) => break None,
        }
    };
    let _ = writer.write_all(b"q");
    let _ = writer.flush();
    let _ = child.wait();
    let full = found.ok_or_else(|| format!("{name:?} did not appear on screen within 30 s"))?;
    Ok(Times {
        shell: shell.unwrap_or(full),
        full,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bin), Some(pid), Some(name)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: first_frame BINARY PID THREAD_NAME [RUNS]");
        return std::process::ExitCode::from(2);
    };
    let runs: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(10);
    if runs == 0 {
        eprintln!("error: RUNS must be at least 1");
        return std::process::ExitCode::from(2);
    }
    let mut times = Vec::new();
    let mut shells = Vec::new();
    for _ in 0..runs {
        match one_run(bin, pid, name) {
            Ok(t) => {
                times.push(t.full.as_secs_f64() * 1e3);
                shells.push(t.shell.as_secs_f64() * 1e3);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let runs_text: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    let n = times.len();
    let waits: Vec<f64> = times.iter().zip(&shells).map(|(f, s)| f - s).collect();
    let full = median(times);
    let shell = median(shells);
    let wait = median(waits);
    println!(
        "first frame showing {name:?} (whole process, cold start, {COLS}x{ROWS} pty): median {full:.1} ms over {n} runs [{}]",
        runs_text.join(", ")
    );
    println!(
        "first frame of any kind (before the first snapshot): median {shell:.1} ms; the full frame came a median {wait:.1} ms after it (the first refresh)"
    );
    std::process::ExitCode::SUCCESS
}
