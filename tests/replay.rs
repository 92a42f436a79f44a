//! Record and replay against real processes: the demo's whole teardown recorded headless
//! (by default, next to `--report`) and replayed at every phase end agrees with the live
//! report of the same run; a recorder SIGKILLed mid-run leaves a file that replays up to its
//! last complete frame; a flipped byte is one note and the rest replays; the replay TUI in a
//! pty steps to a phase boundary and shows the timeline and a stack pane, read-only.

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

struct DemoRun {
    dir: PathBuf,
    stdout: String,
}

impl DemoRun {
    fn report(&self) -> Value {
        json_file(&self.dir.join("r.json"))
    }
    fn recording(&self) -> PathBuf {
        self.dir.join("r.ltrec")
    }
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("file written")).expect("JSON")
}

/// One headless demo run per test binary (it takes ~15 s), shared by the tests below.
fn demo() -> &'static DemoRun {
    static RUN: OnceLock<DemoRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let out = Command::new(BIN)
            .args(["demo", "--headless", "--interval", "100", "--report"])
            .arg(dir.join("r.json"))
            .arg("--trace")
            .arg(dir.join("live-trace.json"))
            .output()
            .expect("run the demo headless");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "the demo does not exit clean:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        DemoRun { dir, stdout }
    })
}

fn replay(args: &[&str], file: &Path) -> Output {
    Command::new(BIN)
        .arg("replay")
        .arg(file)
        .args(args)
        .output()
        .expect("run replay")
}

fn model_at(file: &Path, at: Option<&str>) -> (Value, String) {
    let mut args = vec!["--json"];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let out = replay(&args, file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    (
        serde_json::from_slice(&out.stdout).expect("the Model as JSON"),
        stderr,
    )
}

#[test]
fn the_demo_recording_replays_to_its_live_report() {
    let run = demo();
    assert!(
        run.stdout.contains("recording written to ") && run.stdout.contains("r.ltrec"),
        "the summary names the recording:\n{}",
        run.stdout
    );
    let report = run.report();
    let live = &report["timeline"];
    let phases = live["phases"].as_array().expect("phases");
    assert!(phases.len() >= 5, "{live:#}");
    // Session time 0 on the wall clock, from any event folded (at 0 s none may be yet: the
    // first one is stamped a millisecond or two after the session starts).
    let (first, _) = model_at(&run.recording(), Some("1s"));
    let unix0 = first["now"]["unix_ms"].as_u64().expect("unix_ms")
        - first["now"]["at_ms"].as_u64().expect("at_ms");
    let started = live["started_unix_ms"].as_u64().expect("started");
    for (i, p) in phases.iter().enumerate() {
        // Just after the phase's end (the session stamps the timeline when it arrives).
        let end = started + p["end_ms"].as_u64().expect("end_ms") - unix0 + 300;
        let (m, stderr) = model_at(&run.recording(), Some(&format!("{end}ms")));
        assert!(
            stderr.is_empty(),
            "an intact recording has no notes: {stderr}"
        );
        let replayed = &m["timeline"]["phases"][i];
        for field in ["name", "outcome", "before", "after", "start_ms", "end_ms"] {
            assert_eq!(
                replayed[field], p[field],
                "phase {i} ({}) {field} at {end} ms",
                p["name"]
            );
        }
    }
    // At the end: the whole timeline, as the report has it.
    let (end, _) = model_at(&run.recording(), None);
    assert_eq!(end["timeline"], *live);
    assert_eq!(end["plan_done"], true);
    // The trace of the recorded timeline is the live one.
    let trace = run.dir.join("replay-trace.json");
    let out = replay(
        &["--trace", trace.to_str().expect("utf-8")],
        &run.recording(),
    );
    assert!(out.status.success());
    assert_eq!(
        json_file(&trace),
        json_file(&run.dir.join("live-trace.json"))
    );
    // --summary ends with the verdict headless printed.
    let out = replay(&["--summary"], &run.recording());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[1/"), "{text}");
    let verdict = text
        .lines()
        .find(|l| l.starts_with("NOT clean"))
        .expect("verdict");
    assert!(run.stdout.contains(verdict), "{verdict}");
}

#[test]
fn a_flipped_byte_is_one_note_and_the_rest_replays() {
    let run = demo();
    let (whole, _) = model_at(&run.recording(), None);
    let mut bytes = std::fs::read(run.recording()).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    let copy = run.dir.join("flipped.ltrec");
    std::fs::write(&copy, &bytes).expect("write copy");
    let (m, stderr) = model_at(&copy, None);
    let notes: Vec<&str> = stderr.lines().collect();
    assert!(!notes.is_empty(), "a flipped byte must be noted");
    assert!(
        notes
            .iter()
            .all(|l| l.starts_with("lifecycle-top: recording")),
        "one line per note: {stderr}"
    );
    // Where the middle byte lands decides how it is caught: in a frame's payload by its
    // checksum, in a frame header by the header check (then the reader resyncs).
    assert!(
        stderr.contains("checksum") || stderr.contains("no valid frame header"),
        "{stderr}"
    );
    let (all, some) = (
        whole["events"].as_u64().expect("events"),
        m["events"].as_u64().expect("events"),
    );
    assert!(some < all && some > 0, "{some} of {all} events replayed");
}

#[test]
fn sigkill_while_recording_leaves_a_file_that_replays_to_its_last_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("cut.ltrec");
    let pidfile = dir.path().join("target.pid");
    // A target that ignores SIGTERM keeps the plan (and the recording) going for seconds.
    let script = format!(
        "trap '' TERM; echo $$ > {}; exec sleep 600",
        pidfile.display()
    );
    let mut child = Command::new(BIN)
        .args(["--headless", "--no-agent", "--interval", "50", "--record"])
        .arg(&rec)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn headless");
    let guard = Instant::now() + Duration::from_secs(30);
    // Ten frames or more on disk (the header alone is smaller than 1 KiB).
    while std::fs::metadata(&rec).map_or(0, |m| m.len()) < 4096 && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL: no chance to finish the file
    let _ = child.wait();
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        // The target outlived its SIGKILLed parent (no guard ran): ours to clean up.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let (m, stderr) = model_at(&rec, None);
    assert!(m["snapshots"].as_u64().unwrap_or(0) >= 2, "{stderr}");
    assert!(stderr.lines().count() <= 1, "at most one note: {stderr}");
    // Whether or not the kill landed inside a frame, a cut one is one note.
    let bytes = std::fs::read(&rec).expect("read");
    let cut = dir.path().join("cut-more.ltrec");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).expect("write");
    let (c, stderr) = model_at(&cut, None);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ends inside"), "{stderr}");
    let events = |v: &Value| v["events"].as_u64().unwrap_or(0);
    assert_eq!(events(&c) + 1, events(&m), "up to the last complete frame");
}

/// The replay dashboard in a 140x40 pty, with a thread feeding a VT100 parser.
struct Pty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    parser: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    _pty: portable_pty::PtyPair,
}

impl Pty {
    fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }
    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 140,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).expect("spawn replay");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(40).expect("rows"),
            std::num::NonZeroU16::new(140).expect("cols"),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let p2 = parser.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p2.lock().expect("parser").process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().expect("writer");
        Self {
            child,
            parser,
            writer,
            _pty: pty,
        }
    }
    fn contents(&self) -> String {
        self.parser.lock().expect("parser").screen().contents()
    }
    fn wait_for(&self, text: &str) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if self.contents().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{text:?} never appeared on screen:\n{}", self.contents());
    }
    fn press(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).expect("write keys");
        self.writer.flush().expect("flush keys");
    }
    /// A left click at (row, col), 0-based, SGR encoded (what crossterm enables).
    fn click(&mut self, row: usize, col: usize) {
        let (r, c) = (row + 1, col + 1);
        self.press(format!("\x1b[<0;{c};{r}M\x1b[<0;{c};{r}m").as_bytes());
    }
    fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) {
        let guard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < guard {
            if ok(&self.contents()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what} never happened:\n{}", self.contents());
    }
    fn quit(&mut self) {
        self.press(b"q");
        let guard = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > guard {
                let _ = self.child.kill();
                panic!("q did not end the replay:\n{}", self.contents());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status:?}");
    }
}

/// Like the live dashboard: under NO_COLOR the selection keeps its marker, a click on a
/// phase selects it (and runs nothing: a replay has no way to), Enter opens its notes.
#[test]
fn the_replay_dashboard_takes_the_mouse_and_no_color_like_the_live_one() {
    let run = demo();
    let report = run.report();
    let name = |i: usize| {
        report["timeline"]["phases"][i]["name"]
            .as_str()
            .expect("a phase name")
            .to_string()
    };
    let file = run.recording();
    let mut s = Pty::start_with(
        &["replay", file.to_str().expect("utf-8"), "--at", "60m"],
        &[("NO_COLOR", "1")],
    );
    s.wait_for("paused");
    // The selected row keeps a marker without colours (the tree's target row here).
    s.wait_for("▶");
    // The timeline panel lists every phase: click on the second one's name.
    let second = name(1);
    // The frame may still be arriving (under load a frame comes in pieces): wait for the
    // phase name itself before reading where it is.
    s.wait_for(&second);
    let screen = s.contents();
    let (row, col) = screen
        .lines()
        .enumerate()
        .filter_map(|(r, l)| l.find(&second).map(|c| (r, l[..c].chars().count())))
        .last()
        .unwrap_or_else(|| panic!("{second:?} on screen:\n{screen}"));
    s.click(row, col);
    // The click focused the teardown panel and selected phase 2: Enter opens its record.
    s.wait_for("┏ Teardown");
    s.press(b"\r");
    let title = "Phase 2/".to_string();
    s.wait_for(&title);
    assert!(s.contents().contains(&second), "{}", s.contents());
    assert!(
        !s.contents().contains("replay: read-only"),
        "a click is a selection, not an action:\n{}",
        s.contents()
    );
    s.press(b"\x1b");
    s.wait_until("the notes closing", |c| !c.contains(&title));
    s.quit();
}

#[test]
fn the_replay_dashboard_steps_to_a_phase_boundary_read_only() {
    let run = demo();
    let report = run.report();
    let phase = |i: usize, f: &str| {
        report["timeline"]["phases"][i][f]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                report["timeline"]["phases"][i][f]["kind"]
                    .as_str()
                    .map(str::to_string)
            })
            .expect("a phase field")
    };
    let (first, outcome, second) = (phase(0, "name"), phase(0, "outcome"), phase(1, "name"));
    let file = run.recording();
    let mut s = Pty::start(&["replay", file.to_str().expect("utf-8"), "--at", "0s"]);
    s.wait_for("REPLAY 0.0s 1x paused");
    // To the first boundary (the first phase starts), then the next (it ends).
    s.press(b"}");
    s.wait_for(&format!("phase 1 {first} started"));
    s.press(b"}");
    s.wait_for(&format!("phase 2 {second} started"));
    // The teardown panel has the first phase's outcome, as the live run had it (in its bar
    // row, or in the phase list when the panel is too short for the bars).
    let screen = s.contents();
    let row = screen
        .lines()
        .find(|l| {
            l.contains(&first) && ((l.contains("1 ") && l.contains("█")) || l.contains("[1|"))
        })
        .unwrap_or_default();
    assert!(
        row.contains(&outcome),
        "{outcome:?} in the timeline:\n{screen}"
    );
    assert!(screen.contains("━●"), "the scrub bar moved:\n{screen}");
    // Teardown keys and captures do nothing in a replay.
    s.press(b"n");
    s.wait_for("replay: read-only");
    s.press(b"s");
    s.wait_for("replay: read-only");
    // Faster, then to the end: the stack snapshots the teardown took, in their pane.
    s.press(b">");
    s.wait_for("2x paused");
    for _ in 0..20 {
        s.press(b"}");
    }
    s.press(b"\x1b[C\x1b[C\x1b[C\x1b[C");
    s.press(b"[");
    s.wait_for("snapshot ");
    s.wait_for("older/newer");
    s.press(b"\x1b");
    // Esc and q in one read would parse as Alt-q: wait for the pane to close first.
    let guard = Instant::now() + Duration::from_secs(30);
    while s.contents().contains("older/newer") && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.press(b"q");
    let guard = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > guard {
            let _ = s.child.kill();
            panic!("q did not end the replay:\n{}", s.contents());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
}

/// A `check` recording replays to what check concluded (exit status 3 is not clean, which
/// the timeline alone cannot tell: no phase ran), with the same last line CI logs showed.
#[test]
fn replay_summary_of_a_check_recording_says_what_check_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/check/exits_3.py");
    let out = Command::new(BIN)
        .args(["check", "--budget", "5s", "--report"])
        .arg(dir.path().join("c.json"))
        .args(["--", "python3"])
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let last = stdout.lines().last().expect("a last line").to_string();
    assert!(last.starts_with("NOT clean"), "{stdout}");
    let rec = dir.path().join("c.ltrec");
    let r = replay(&["--summary"], &rec);
    let replayed = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        replayed.lines().last(),
        Some(last.as_str()),
        "replay --summary:\n{replayed}\ncheck:\n{stdout}"
    );
    let (model, _) = model_at(&rec, None);
    assert_eq!(model["verdict"]["by"], "check", "{}", model["verdict"]);
    assert_eq!(model["verdict"]["verdict"]["clean"], false);
}
