//! `lifecycle-top check` against two real servers from PyPI (installed by .ci/run):
//! uvicorn serving a tiny ASGI app and aiohttp's `web.run_app`. Each handles SIGTERM
//! itself; both must come out clean, ready by their LISTEN port (a free one per test).
//! A missing package fails the test and names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "targets/check/harness.rs"]
mod harness;

use harness::*;

fn serve(app: &str, module: &str) -> Run {
    need_python_module(module);
    let port = free_port().to_string();
    let prog = target(app);
    let run = check(
        &["--ready-port", &port, "--budget", "10s"],
        &["python3", &prog, &port],
    );
    run.assert_clean();
    assert!(run.report()["evidence"].is_null(), "{}", run.describe());
    run
}

#[test]
fn uvicorn_shuts_down_clean() {
    let run = serve("uvicorn_app.py", "uvicorn");
    let log = run.log_text();
    // Its graceful path ran (lifespan shutdown), not just a death by SIGTERM.
    assert!(log.contains("LIFESPAN SHUTDOWN"), "{log}");
    assert!(log.contains("Finished server process"), "{log}");
}

#[test]
fn aiohttp_shuts_down_clean() {
    let run = serve("aiohttp_app.py", "aiohttp");
    let log = run.log_text();
    assert!(log.contains("AIOHTTP CLEANUP"), "{log}");
    assert!(
        json_has_number(&run.report()["target_exit"]["status"], 0),
        "{}",
        run.describe()
    );
}

#[test]
fn uvicorn_ready_by_its_log_line() {
    need_python_module("uvicorn");
    let port = free_port().to_string();
    let prog = target("uvicorn_app.py");
    let run = check(
        &["--ready-log", "Uvicorn running on"],
        &["python3", &prog, &port],
    );
    run.assert_clean();
}
