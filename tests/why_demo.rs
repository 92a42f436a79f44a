//! The demo's verdict (issue 10): `why --pid` on the running demo names each of its
//! blockers, root cause first, the same way every run: the non-daemon thread
//! "asyncio_1" waiting on an Event nobody sets (threading._shutdown waits for it), the
//! child "stubborn-worker" that ignores SIGTERM, and asyncio.run's main task. The demo is
//! launched through the real dashboard in a pty (it carries the agent that way).

mod pty_util;

use pty_util::{Session, alive, demo_tree, wait_until};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn why(pid: i32) -> Value {
    let out = Command::new(pty_util::bin())
        .args(["why", "--pid", &pid.to_string(), "--json"])
        .output()
        .expect("run why");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("why --json is JSON")
}

/// The cause lines with what varies between runs taken out: pids and tids (`pid N`), the
/// path of the unpacked demo, and the line numbers inside Python's own library (they differ
/// between CPython versions; the demo's own lines are kept).
fn normalised(v: &Value) -> Vec<String> {
    v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            let mut out = Vec::new();
            let mut number_next = false;
            for w in c["line"].as_str().unwrap_or("").split(' ') {
                if number_next {
                    let tail: String = w.chars().skip_while(char::is_ascii_digit).collect();
                    out.push(format!("N{tail}"));
                    number_next = false;
                    continue;
                }
                number_next = matches!(w, "pid" | "tid" | "(pid" | "(tid");
                let w = match w.rfind('/') {
                    Some(i) if w.contains(".py:") => &w[i + 1..],
                    _ => w,
                };
                match w.split_once(".py:") {
                    Some((file, rest)) if !file.starts_with("demo") => {
                        let tail: String = rest.chars().skip_while(char::is_ascii_digit).collect();
                        out.push(format!("{file}.py:N{tail}"));
                    }
                    _ => out.push(w.to_string()),
                }
            }
            let line = out.join(" ");
            // How a sleep sleeps (clock_nanosleep, or pselect6 in older CPythons) and the
            // line a multi-line `Thread(...).start()` is booked to vary by version too.
            let line = match line.find("is blocked in ") {
                Some(i) => {
                    let rest = &line[i + "is blocked in ".len()..];
                    // `SYSCALL` or `SYSCALL (WCHAN)`, then the rest of the sentence.
                    let word = rest.find([' ', ',', '.']).unwrap_or(rest.len());
                    let after = &rest[word..];
                    let after = match after.strip_prefix(" (").and_then(|a| a.find(')')) {
                        Some(j) => &after[j + 3..],
                        None => after,
                    };
                    format!("{}is blocked in SYSCALL{after}", &line[..i])
                }
                None => line,
            };
            match line.find("was started at demo.py:") {
                Some(i) => format!("{}was started at demo.py:N.", &line[..i]),
                None => line,
            }
        })
        .collect()
}

#[test]
fn the_demo_verdict_names_each_of_its_blockers() {
    let mut s = Session::start(&["demo", "--interval", "100"]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.wait_for("TRACKED");
    // The demo starts its executor worker and asyncio subprocess a moment after its tasks:
    // wait until two diagnoses in a row agree (and name the async child), 30 s at most.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut v) = (Vec::new(), why(demo));
    loop {
        let now = normalised(&v);
        if now == last && now.iter().any(|l| l.contains("\"async-child\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's verdict never settled: {now:#?}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(300));
        v = why(demo);
    }
    let lines = normalised(&v);
    let raw: Vec<&str> = v["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["line"].as_str().unwrap_or(""))
        .collect();
    // Root causes, the target's first: its main thread runs asyncio.run's main task.
    assert!(
        raw[0].starts_with(&format!(
            "exit blocked: pid {demo} \"python3\" runs an event loop whose main task is task \"Task-1\""
        )),
        "{raw:#?}"
    );
    let expected = [
        "exit blocked: pid N \"python3\" runs an event loop whose main task is task \"Task-1\", which is pending at demo_async.py:106.",
        "exit blocked: pid N \"python3\" will wait in threading._shutdown, once its main thread returns, for non-daemon thread \"asyncio_1\" (tid N), which waits on an Event at demo.py:48 that no thread is known to set; \"asyncio_1\" was started at demo.py:N.",
        "exit blocked: pid N \"python3\" will wait in threading._shutdown, once its main thread returns, for non-daemon thread \"asyncio_0\" (tid N), which waits on an Event at demo_async.py:65 that no thread is known to set; \"asyncio_0\" was started at thread.py:N.",
        "exit blocked: pid N \"stubborn-worker\" is blocked in SYSCALL and ignores SIGTERM.",
        "exit blocked: pid N \"stubborn-helper\" is blocked in SYSCALL and ignores SIGTERM.",
        "exit blocked: pid N \"sh\" waits (wait4, any child) for child pid N \"sleep\", which is blocked in SYSCALL.",
        "exit blocked: pid N \"async-child\" is blocked in SYSCALL.",
    ];
    assert_eq!(lines, expected, "the demo's verdict changed:\n{raw:#?}");
    assert!(
        raw.iter()
            .any(|l| l.contains(&format!("pid {stubborn} \"stubborn-worker\""))),
        "{raw:#?}"
    );
    s.quit_killing();
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}
