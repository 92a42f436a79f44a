//! First full frame: how long from starting `lifecycle-top --pid PID` in a 160x48 pty until
//! the screen shows a known thread name of the target (whole process, cold: the time includes
//! exec, attach, the first /proc read and the first draw). Run by `bench/first_frame.sh`.
//!
//!   first_frame BINARY PID NAME [RUNS]
//!
//! Prints each run's time and the median, in ms.

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROWS: u16 = 48;
const COLS: u16 = 160;

fn one_run(bin: &str, pid: &str, name: &str) -> Result<Duration, String> {
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
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => {
                parser.process(&bytes);
                // A thread row: the name as a whole word on the screen.
                let screen = parser.screen().contents();
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
    found.ok_or_else(|| format!("{name:?} did not appear on screen within 30 s"))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bin), Some(pid), Some(name)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: first_frame BINARY PID THREAD_NAME [RUNS]");
        return std::process::ExitCode::from(2);
    };
    let runs: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(10);
    let mut times = Vec::new();
    for _ in 0..runs {
        match one_run(bin, pid, name) {
            Ok(d) => times.push(d.as_secs_f64() * 1e3),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let runs_text: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "first frame showing {name:?} (whole process, cold start, {COLS}x{ROWS} pty): median {median:.1} ms over {} runs [{}]",
        times.len(),
        runs_text.join(", ")
    );
    std::process::ExitCode::SUCCESS
}
