//! The bundled demo target: a Python service that will not exit cleanly (see
//! `assets/demo/demo.py`). Its files are embedded in the binary and unpacked to the
//! private runtime directory, so `lifecycle-top demo` works from any directory.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

const DEMO_FILES: &[(&str, &str)] = &[
    ("demo.py", include_str!("../assets/demo/demo.py")),
    (
        "demo_async.py",
        include_str!("../assets/demo/demo_async.py"),
    ),
    (
        "demo_guard.py",
        include_str!("../assets/demo/demo_guard.py"),
    ),
];

/// Unpacks the demo and returns the command that runs it.
pub fn command(extra_args: &[String]) -> Result<Vec<String>> {
    let python = find_python()?;
    // Content-addressed: demos of two different builds never import each other's files.
    let dir = crate::agent::embedded::unpack("demo", DEMO_FILES)
        .context("cannot unpack the demo (check /tmp or $XDG_RUNTIME_DIR)")?;
    let mut cmd = vec![
        python,
        "-u".to_string(),
        dir.join("demo.py").to_string_lossy().into_owned(),
    ];
    cmd.extend(extra_args.iter().cloned());
    Ok(cmd)
}

/// The demo needs a Python 3 interpreter; say which and how to get one when missing.
/// Resolves wrappers (pyenv shims, for one) to the real interpreter, so the demo's process
/// is python from its first snapshot.
pub fn find_python() -> Result<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|c: &PathBuf| c.is_file())
    else {
        bail!(
            "python3 not found on PATH: the demo target is a Python 3 script (apt install python3)"
        );
    };
    // A registered helper: a launch-mode collector must not adopt it as part of a tree.
    let real = crate::collect::helpers::output(
        std::process::Command::new(&found).args(["-c", "import sys; print(sys.executable)"]),
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .filter(|s| !s.is_empty());
    Ok(real.unwrap_or_else(|| found.to_string_lossy().into_owned()))
}
