//! Issue 11, fault 3: SIGQUIT to the dashboard restores the terminal (raw mode off, the
//! alternate screen left) and then keeps SIGQUIT's meaning: lifecycle-top dies of SIGQUIT.
//! The real binary in a pty, attached to a real process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(30);
    while Instant::now() < guard {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never happened: {what}");
}

#[test]
fn sigquit_restores_the_terminal_then_dies_of_sigquit() {
    let mut target = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 140,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    // `FAULTS_BIN`: the same test against another build (how main was measured).
    let bin = std::env::var("FAULTS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_lifecycle-top").to_string());
    let mut cmd = CommandBuilder::new(bin);
    cmd.args(["--pid", &target.id().to_string(), "--interval", "100"]);
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    let raw = Arc::new(Mutex::new(Vec::new()));
    let mut reader = pty.master.try_clone_reader().unwrap();
    let r2 = raw.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            r2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&raw.lock().unwrap()).into_owned();
    wait_until("the dashboard is drawn", || {
        text().contains("\x1b[?1049h") && text().contains("sleep")
    });
    let fd = pty.master.as_raw_fd().expect("pty master fd");
    let lflag = || {
        // SAFETY: tcgetattr into a zeroed termios; on a pty master it reports the slave's.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    };
    assert_eq!(lflag() & libc::ICANON, 0, "the dashboard runs in raw mode");
    let pid = child.process_id().unwrap() as i32;
    // SAFETY: kill(2) on the lifecycle-top this test started.
    unsafe { libc::kill(pid, libc::SIGQUIT) };
    let status = child.wait().unwrap();
    assert!(
        status.signal().is_some_and(|s| s.contains("Quit")),
        "lifecycle-top must die of SIGQUIT, got {status:?}"
    );
    let lf = lflag();
    assert!(
        lf & libc::ICANON != 0 && lf & libc::ECHO != 0,
        "terminal left raw after SIGQUIT (c_lflag {lf:#o})"
    );
    // The reader thread may not have taken in the last bytes yet: wait for them.
    wait_until("the alternate screen is left", || {
        let out = text();
        let entered = out.rfind("\x1b[?1049h");
        out.rfind("\x1b[?1049l")
            .is_some_and(|left| Some(left) > entered)
    });
    let out = text();
    let entered = out.rfind("\x1b[?1049h").unwrap();
    assert!(
        out.rfind("\x1b[?1049l").is_some_and(|left| left > entered),
        "the alternate screen was not left"
    );
    assert!(
        target.try_wait().unwrap().is_none(),
        "attach mode never touches the target"
    );
    target.kill().unwrap();
    target.wait().unwrap();
}
