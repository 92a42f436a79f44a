//! End to end (issue 13): the real binary in a pty against real targets, for the layout
//! (too small, resize, NO_COLOR selection), the mouse (click selects, wheel scrolls, a click on
//! a phase runs nothing) and the truthful, lasting information (gone processes kept, `n`,
//! aborts, timeouts, the audit line, capture and write messages, no detach for the demo, the
//! exited target's last tasks, the stack pane's scroll). Waits on the screen, never on sleeps
//! (one exception, named where it is: outlasting the collector's 10 s linger).

mod pty_util;

use pty_util::{Session, Target, alive, demo_tree, python, wait_until};
use std::time::Duration;

/// A Python target with three named threads, printing `ready` once they run.
const THREADS: &str = r#"
import ctypes, threading, time
def named(n):
    ctypes.CDLL(None).prctl(15, n.encode(), 0, 0, 0)
    threading.Event().wait()
for n in ("e2e-alpha", "e2e-beta", "e2e-gamma"):
    threading.Thread(target=named, args=(n,), daemon=True).start()
time.sleep(0.2)
print("ready", flush=True)
time.sleep(600)
"#;

fn attach(target: &Target, cols: u16, rows: u16, env: &[(&str, &str)]) -> Session {
    let pid = target.pid().to_string();
    Session::start_with(&["--pid", &pid, "--interval", "100"], cols, rows, env)
}

/// Waits until the layout stops moving: the header's verdict line (the first diagnosis)
/// pushes the panels one row down when it arrives. Tests that click wait for it first.
fn settled(s: &Session) {
    s.wait_for("why (");
}

fn quit(mut s: Session) {
    s.press(b"q");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn too_small_then_resized_redraws_each_layout() {
    let target = python(THREADS);
    let mut s = attach(&target, 40, 10, &[]);
    s.wait_for("terminal too small");
    s.wait_for("need 60x16");
    // Bigger: the grid, every panel at once.
    s.resize(140, 40);
    s.wait_for("e2e-alpha");
    s.wait_for("Process tree");
    s.wait_gone("terminal too small");
    // 80x24: one panel at a time, with tabs.
    s.resize(80, 24);
    s.wait_for("Tab: next panel");
    s.wait_gone("Process tree");
    s.press(b"\t");
    s.wait_for("Process tree");
    quit(s);
    assert!(alive(target.pid()));
}

/// Row of the first thread row and column of its first cell (under the `TID` header).
fn first_thread_row(s: &Session) -> (u16, u16) {
    let (r, c) = s.find("TID ").expect("the threads table");
    (r + 1, c)
}

#[test]
fn no_color_keeps_the_selected_row_reversed() {
    let target = python(THREADS);
    let s = attach(&target, 140, 40, &[("NO_COLOR", "1")]);
    s.wait_for("e2e-alpha");
    settled(&s);
    let (r, c) = first_thread_row(&s);
    wait_until("the selected thread row is in reverse video", || {
        s.inverse(r, c + 2)
    });
    assert!(s.row(r).contains('▶'), "a marker too: {:?}", s.row(r));
    let raw = s.raw_text();
    // crossterm writes colours as `38;5;N` / `48;5;N` (cursor moves like `ESC[38;1H` are
    // not colours).
    assert!(
        !raw.contains("38;5;") && !raw.contains("48;5;"),
        "no colour is emitted under NO_COLOR"
    );
    quit(s);
}

#[test]
fn a_click_selects_a_thread_row_and_the_wheel_scrolls() {
    let target = python(THREADS);
    let mut s = attach(&target, 140, 40, &[]);
    s.wait_for("e2e-gamma");
    settled(&s);
    let (first, c) = first_thread_row(&s);
    let (gamma, _) = s.find("e2e-gamma").expect("a thread row");
    assert!(gamma > first, "gamma is not the first row");
    s.wait_screen("the first row starts selected", |s| s.inverse(first, c + 1));
    s.click(gamma, c + 2);
    s.wait_screen("the clicked row is selected", |s| {
        s.inverse(gamma, c + 1) && !s.inverse(first, c + 1)
    });
    // The wheel up moves the selection back to the top (3 rows a notch, clamped).
    s.wheel(gamma, c + 2, false);
    s.wheel(gamma, c + 2, false);
    s.wait_screen("the wheel moved the selection up", |s| {
        s.inverse(first, c + 1) && !s.inverse(gamma, c + 1)
    });
    quit(s);
}

#[test]
fn a_click_on_a_phase_selects_it_and_runs_nothing() {
    let target = python(THREADS);
    let mut s = attach(&target, 140, 40, &[]);
    s.wait_for("[3|");
    settled(&s);
    let (r, c) = s.find("[3|").expect("phase 3 in the list");
    s.click(r, c + 4);
    s.press(b"\r");
    s.wait_for("Phase 3/");
    s.wait_for("not run yet");
    assert!(!s.contents().contains("started"), "{}", s.contents());
    s.press(b"\x1b");
    s.wait_gone("Phase 3/");
    quit(s);
    assert!(alive(target.pid()));
}

/// A target with a child `sleep` it never reaps (it stays a zombie, its exit readable).
const PARENT: &str = r#"
import subprocess, time
child = subprocess.Popen(["sleep", "600"])
print("ready", flush=True)
time.sleep(600)
"#;

#[test]
fn a_killed_child_stays_listed_as_gone_until_del() {
    let target = python(PARENT);
    let mut s = attach(&target, 140, 40, &[]);
    s.wait_for("└ sleep");
    let child = pty_util::children_named(target.pid(), "sleep");
    assert_eq!(child.len(), 1, "{child:?}");
    let child = child[0];
    // SAFETY: kill(2) on the child of the target this test started.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let gone_row = |s: &Session| {
        s.contents().lines().any(|l| {
            l.contains(&format!("{child} "))
                && l.contains("└ sleep")
                && l.contains(" X ")
                && l.contains("killed by SIGKILL")
        })
    };
    s.wait_text("the child listed as gone, X, with its full exit", |_| {
        gone_row(&s)
    });
    // The only sleep in these tests: outlast the collector's 10 s linger, after which it
    // stops listing exited processes. The dashboard keeps them until Del.
    std::thread::sleep(Duration::from_secs(11));
    assert!(gone_row(&s), "still listed after 11 s:\n{}", s.contents());
    s.press(b"\x1b[3~");
    s.wait_text("Del cleared it", |t| !t.contains("└ sleep"));
    s.wait_for("cleared 1 gone process");
    quit(s);
}

/// The teardown panel's row of phase `tag` (`[2|t]`).
fn phase_row(s: &Session, tag: &str) -> String {
    s.find(tag).map(|(r, _)| s.row(r)).unwrap_or_default()
}

/// The state the phase list shows for phase `tag` (`running`, `aborted`, ...; empty when
/// it never ran).
fn phase_state(s: &Session, tag: &str) -> String {
    const STATES: [&str; 8] = [
        "running",
        "ok",
        "timed out",
        "escalated",
        "failed",
        "skipped",
        "aborted",
        "target exited",
    ];
    let row = phase_row(s, tag);
    let start = row.find(tag).unwrap_or(0);
    let cell = row[start..]
        .split(['│', '┃'])
        .next()
        .unwrap_or("")
        .trim_end();
    STATES
        .iter()
        .find(|st| cell.ends_with(&format!(" {st}")))
        .map_or_else(String::new, |st| st.to_string())
}

#[test]
fn demo_teardown_status_is_truthful() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut s = Session::start_in(&["demo", "--interval", "100"], 140, 40, &[], dir.path());
    let (demo, stubborn, helper) = demo_tree(&s);
    s.wait_for("TRACKED");
    // A capture the user asks for: once done, the status no longer says "capturing".
    s.press(b"s");
    s.wait_for("snapshot 1/1");
    s.wait_text("the capture message is gone", |t| {
        !t.contains("capturing stacks of")
    });
    // `w` names both files it wrote (in the session's directory).
    s.press(b"w");
    s.wait_for(".txt and ");
    wait_until("two files written", || {
        std::fs::read_dir(dir.path()).map_or(0, |d| d.count()) == 2
    });
    s.press(b"\x1b");
    s.wait_gone("snapshot 1/1");
    // The threads audit first; its findings stay on the teardown panel.
    s.press(b"6");
    s.wait_for("audit (6 audit threads): ");
    // `n` is the first phase not yet run: phase 1, not phase 7.
    s.press(b"n");
    wait_until("phase 1 runs", || !phase_state(&s, "[1|c]").is_empty());
    assert_eq!(phase_state(&s, "[7|i]"), "", "{}", s.contents());
    wait_until("phase 1 is done", || {
        let st = phase_state(&s, "[1|c]");
        !st.is_empty() && st != "running"
    });
    // Its record, browsable: Tab to the teardown panel (phase 1 is selected), Enter.
    s.press(b"\t\t\t\r");
    s.wait_for("Phase 1/8 · cancel tasks");
    let text = s.contents();
    assert!(!text.contains("TIMED OUT after"), "{text}");
    if text.contains("outcome timed out") {
        assert!(text.contains("its 5.0 s timeout ran out"), "{text}");
    }
    s.press(b"\x1b");
    s.wait_gone("Phase 1/8");
    // The audit line stays (waited for: the frame after the overlay may still be drawing).
    s.wait_for("audit (6 audit threads): ");
    // An abort shows as aborted, not failed.
    s.press(b"2");
    wait_until("phase 2 runs", || phase_state(&s, "[2|t]") == "running");
    s.press(b"x");
    wait_until("phase 2 is shown aborted", || {
        phase_state(&s, "[2|t]") == "aborted"
    });
    // The demo dies with lifecycle-top: no detach offered, `d` does nothing.
    s.press(b"q");
    s.wait_for("What now?");
    s.wait_for("no detach");
    s.press(b"d");
    s.press(b"k");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(!s.raw_text().contains("keeps running"));
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

#[test]
fn after_the_demo_target_exits_its_last_tasks_stay_marked() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.wait_for("TRACKED");
    // Signal target (phase 7): the demo's interpreter goes.
    s.press(b"7");
    s.wait_for("agent: target exited");
    s.wait_for("not live");
    s.wait_for("TRACKED");
    let text = s.contents();
    assert!(!text.contains("agent: not found"), "{text}");
    assert!(!text.contains("no agent report yet"), "{text}");
    s.quit_killing();
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

/// The stack pane's text rows (from its title down, the status line excluded).
fn pane_text(s: &Session) -> String {
    let Some((top, _)) = s.find("Stacks pid") else {
        return String::new();
    };
    (top..23).map(|r| s.row(r)).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_stack_pane_scroll_is_clamped() {
    // Short, so the capture is longer than the pane's page.
    let mut s = Session::start_with(&["demo", "--interval", "100"], 140, 24, &[]);
    s.wait_for("asyncio_1");
    settled(&s);
    let demo = s.header_pid();
    s.press(b"S");
    s.wait_for(&format!("Stacks pid {demo}"));
    let top = pane_text(&s);
    s.press(b"G");
    wait_until(
        "G scrolled the pane (the capture is longer than a page)",
        || pane_text(&s) != top,
    );
    let bottom = pane_text(&s);
    assert!(
        bottom
            .lines()
            .filter(|l| l.trim_matches(['│', ' ']).is_empty())
            .count()
            <= 1,
        "G keeps the last page full:\n{bottom}"
    );
    // One k after G moves the text at once (before the clamp it did nothing).
    s.press(b"k");
    wait_until("k after G moves the pane", || pane_text(&s) != bottom);
    s.press(b"\x1b");
    s.wait_gone("Esc close");
    s.quit_killing();
    wait_until("the demo is gone", || !alive(demo));
}

#[test]
fn config_extra_keys_work_and_are_listed_in_the_help() {
    let target = python(THREADS);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[keys]\nquit = \"Q\"\n").expect("write config");
    let pid = target.pid().to_string();
    let mut s = Session::start_with(
        &[
            "--pid",
            &pid,
            "--interval",
            "100",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        140,
        40,
        &[],
    );
    s.wait_for("e2e-alpha");
    s.press(b"?");
    s.wait_for("quit (as q; config [keys])");
    s.press(b"?");
    s.wait_gone("quit (as q; config [keys])");
    // The extra key does what the built-in one does.
    s.press(b"Q");
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(alive(target.pid()));
}
