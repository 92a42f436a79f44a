//! Today's panels show a Node.js target with no TUI change: a real agent report (the interval
//! and worker targets of tests/targets/node/, agent preloaded) drawn by the tasks panel in a
//! ratatui TestBackend (insta snapshot), its volatile figures (lag, cost, pids) pinned first.
//! Needs `node`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lifecycle_top::agent::Report;
use lifecycle_top::agent::view::TasksView;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::TableState;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

/// The agent report of `node <script>` once `ok` accepts it.
fn real_report(script: &str, ok: impl Fn(&Value) -> bool) -> Report {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/node");
    let agent =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/agent-node/lifecycle_top_agent.js");
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .env("NODE_OPTIONS", format!("--require \"{}\"", agent.display()))
        .env_remove("LIFECYCLE_TOP_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): these tests need Node.js (apt-get install nodejs)")
        });
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = Command::new(BIN)
            .args(["snapshot", "--pid", &child.id().to_string(), "--json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = &v["agent"]["report"];
        if !r.is_null() && ok(r) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no usable report: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let mut r: Report = serde_json::from_value(report).unwrap();
    // Pin what changes from run to run.
    r.pid = 4242;
    for l in &mut r.loops {
        l.lag_ms = Some(0.4);
        l.native_id = Some(4242);
    }
    for (i, t) in r.threads.iter_mut().enumerate() {
        t.native_id = Some(4242 + i as i32);
    }
    r.cost = Default::default();
    r
}

fn draw(r: &Report, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let view = TasksView::new("connected", Some(r));
    let mut state = TableState::default();
    terminal
        .draw(|f| {
            lifecycle_top::ui::widgets::tasks::render(f, f.area(), &view, &mut state, None, "▶ ");
        })
        .unwrap();
    terminal.backend().clone()
}

#[test]
fn tasks_panel_lists_the_ref_handles_of_a_node_target() {
    let r = real_report("interval.js", |r| r["tasks_total"] == 1);
    insta::assert_snapshot!(draw(&r, 100, 8));
}

#[test]
fn tasks_panel_lists_a_worker_that_keeps_node_alive() {
    let r = real_report("worker.js", |r| {
        r["threads"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["name"] == "ticker"))
    });
    insta::assert_snapshot!(draw(&r, 100, 8));
}
