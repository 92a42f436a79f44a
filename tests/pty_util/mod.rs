//! Shared by the pty end-to-end tests: the real binary in a pseudo-terminal of a chosen size
//! (resizable), its screen parsed by a VT100 emulator (text and attributes), keys and mouse
//! events written to it, real targets that are always cleaned up. Waits on what the screen
//! shows, never on sleeps; the 30 s guards only turn a hang into a failure.
//! `E2E_BIN` runs the same tests against another build (how they were checked on main).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use portable_pty::{CommandBuilder, PtyPair, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> String {
    std::env::var("E2E_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lifecycle-top").to_string())
}

/// A target process, killed and reaped when dropped, its direct children first (a test
/// that failed half-way must not leave them behind).
pub struct Target(pub Child);
impl Drop for Target {
    fn drop(&mut self) {
        for pid in children_of(self.pid()) {
            // SAFETY: kill(2) on a child of the target this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Live direct children of `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    stat.rsplit_once(") ").is_some_and(|(_, rest)| {
                        rest.split_whitespace().nth(1) == Some(ppid.to_string().as_str())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Target {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

/// `python3 -c script`, once it printed its first line (`ready`).
pub fn python(script: &str) -> Target {
    let mut target = Target(
        Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test (apt install python3)"),
    );
    let mut out = target.0.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("target said ready");
    target
}

/// Alive and not a zombie (a killed but unreaped child still has a /proc entry).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// Live processes called `comm` whose parent is `ppid`.
pub fn children_named(ppid: i32, comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((name, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            name.ends_with(&format!("({comm}"))
                && fields.first() != Some(&"Z")
                && fields.get(1) == Some(&ppid.to_string().as_str())
        })
        .collect()
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(30);
    while Instant::now() < guard {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never happened: {what}");
}

/// A screen fed by a reader thread.
pub struct Screen {
    pub parser: Arc<Mutex<vt100::Parser>>,
    pub raw: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    pub fn contents(&self) -> String {
        self.parser.lock().expect("parser").screen().contents()
    }
    pub fn wait_for(&self, text: &str) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if self.contents().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{text:?} never appeared on screen:\n{}", self.contents());
    }
    pub fn wait_gone(&self, text: &str) {
        wait_until(&format!("{text:?} leaves the screen"), || {
            !self.contents().contains(text)
        });
    }
    /// Waits until `f` holds for the screen's text.
    pub fn wait_text(&self, what: &str, f: impl Fn(&str) -> bool) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if f(&self.contents()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("never on screen: {what}:\n{}", self.contents());
    }
    /// Waits until `f` holds for the screen; the failure shows the screen.
    pub fn wait_screen(&self, what: &str, f: impl Fn(&Screen) -> bool) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let inverse: Vec<(u16, u16)> = (0..60)
            .flat_map(|r| (0..200).map(move |c| (r, c)))
            .filter(|&(r, c)| self.inverse(r, c))
            .collect();
        panic!(
            "never on screen: {what}:\n{}\nreverse-video cells: {inverse:?}",
            self.contents()
        );
    }
    /// (row, column) of the first cell of `text`, 0-based.
    pub fn find(&self, text: &str) -> Option<(u16, u16)> {
        let p = self.parser.lock().expect("parser");
        let screen = p.screen();
        let (rows, cols) = screen.size();
        let (rows, cols) = (rows.get(), cols.get());
        for r in 0..rows {
            let line = screen.contents_between(r, 0, r, cols);
            if let Some(i) = line.find(text) {
                let col = line[..i].chars().count() as u16;
                return Some((r, col));
            }
        }
        None
    }
    /// The text of row `r`.
    pub fn row(&self, r: u16) -> String {
        let p = self.parser.lock().expect("parser");
        let screen = p.screen();
        screen.contents_between(r, 0, r, screen.size().1.get())
    }
    /// Whether the cell at (row, col) is drawn in reverse video.
    pub fn inverse(&self, r: u16, c: u16) -> bool {
        let p = self.parser.lock().expect("parser");
        p.screen().cell(r, c).is_some_and(|cell| cell.inverse())
    }
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().expect("raw")).into_owned()
    }
}

/// lifecycle-top with `args` in a pty; a thread feeds the screen.
pub struct Session {
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    pub screen: Screen,
    // Taken once: dropping a pty writer sends EOF (Ctrl-D) to the program.
    writer: Box<dyn Write + Send>,
    pty: PtyPair,
}

impl Session {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, 140, 40, &[])
    }

    pub fn start_with(args: &[&str], cols: u16, rows: u16, env: &[(&str, &str)]) -> Self {
        Self::start_in(
            args,
            cols,
            rows,
            env,
            &std::env::current_dir().expect("cwd"),
        )
    }

    /// Started in directory `cwd` (files it writes land there).
    pub fn start_in(
        args: &[&str],
        cols: u16,
        rows: u16,
        env: &[(&str, &str)],
        cwd: &std::path::Path,
    ) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(bin());
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).expect("spawn lifecycle-top");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(rows).expect("rows"),
            std::num::NonZeroU16::new(cols).expect("cols"),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let (p2, r2) = (parser.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p2.lock().expect("parser").process(&buf[..n]);
                r2.lock().expect("raw").extend_from_slice(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().expect("writer");
        Self {
            child,
            screen: Screen { parser, raw },
            writer,
            pty,
        }
    }

    pub fn press(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).expect("write keys");
        self.writer.flush().expect("flush keys");
    }

    /// A left click at (row, col), 0-based (SGR mouse encoding, as crossterm asks for).
    pub fn click(&mut self, row: u16, col: u16) {
        let press = format!(
            "\x1b[<0;{};{}M\x1b[<0;{};{}m",
            col + 1,
            row + 1,
            col + 1,
            row + 1
        );
        self.press(press.as_bytes());
    }

    /// One wheel notch down (or up) at (row, col).
    pub fn wheel(&mut self, row: u16, col: u16, down: bool) {
        let b = if down { 65 } else { 64 };
        self.press(format!("\x1b[<{b};{};{}M", col + 1, row + 1).as_bytes());
    }

    /// Resizes the pty (the program gets SIGWINCH) and the emulator with it.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.screen.parser.lock().expect("parser").set_size(
            std::num::NonZeroU16::new(rows).expect("rows"),
            std::num::NonZeroU16::new(cols).expect("cols"),
        );
        self.pty
            .master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the pty");
    }

    pub fn pid(&self) -> i32 {
        self.child.process_id().expect("lifecycle-top pid") as i32
    }

    /// The target pid the header shows.
    pub fn header_pid(&self) -> i32 {
        self.screen
            .contents()
            .split("lifecycle-top pid ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("the header names the target pid")
    }

    /// Waits for lifecycle-top to exit, bounded: past the bound it is killed and the test
    /// fails with the screen, so a dashboard waiting on a prompt never hangs the suite.
    pub fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("lifecycle-top status") {
                self.drain();
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "lifecycle-top did not exit within 120 s; screen:\n{}",
                    self.screen.contents()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// After the exit: lets the reader thread take in the last bytes written (the terminal
    /// restore), waiting until the output has not grown for 500 ms (at most 10 s).
    fn drain(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        let mut len = self.screen.raw.lock().expect("raw").len();
        let mut still_since = Instant::now();
        while Instant::now() < end && still_since.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.screen.raw.lock().expect("raw").len();
            if now != len {
                len = now;
                still_since = Instant::now();
            }
        }
    }

    /// `q`, then `k` at the quit prompt when one shows; waits for the exit.
    pub fn quit_killing(&mut self) {
        self.press(b"q");
        self.screen.wait_for("What now?");
        self.press(b"k");
        let status = self.child.wait().expect("lifecycle-top exits");
        assert!(status.success(), "exit status {status:?}");
    }
}

/// A test that fails midway leaves no dashboard behind (killing one that exited is a no-op).
impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl std::ops::Deref for Session {
    type Target = Screen;
    fn deref(&self) -> &Screen {
        &self.screen
    }
}

/// The demo's tree: (demo, stubborn-worker, stubborn-helper), once all three show.
pub fn demo_tree(s: &Session) -> (i32, i32, i32) {
    s.screen.wait_for("asyncio_1");
    s.screen.wait_for("└ stubborn");
    s.screen.wait_for("ignores TERM");
    let demo = s.header_pid();
    let mut stubborn = Vec::new();
    wait_until("the stubborn child", || {
        stubborn = children_named(demo, "stubborn-worker");
        stubborn.len() == 1
    });
    let mut helper = Vec::new();
    wait_until("the stubborn grandchild", || {
        helper = children_named(stubborn[0], "stubborn-helper");
        helper.len() == 1
    });
    (demo, stubborn[0], helper[0])
}
