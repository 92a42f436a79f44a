//! Writing the run's files (report, JUnit, trace) and pointing at the launched command's
//! output: the lines headless and `check` print the same way.

use std::path::Path;

/// Says where `what` was written, or why not (one line with the remedy); `false` on failure
/// (the run then exits 2: a CI job must not miss its report).
pub fn written(what: &str, path: &Path, result: std::io::Result<()>, note: &str) -> bool {
    match result {
        Ok(()) => {
            println!("{what} written to {}{note}", path.display());
            true
        }
        Err(e) => {
            eprintln!(
                "lifecycle-top: cannot write the {what} to {}: {e} (check the directory)",
                path.display()
            );
            false
        }
    }
}

/// Names the launched command's log file and, for a run that is not clean, prints its tail
/// (its tracebacks are the best evidence).
pub fn output_tail(log: Option<&Path>, clean: bool) {
    let Some(path) = log else { return };
    println!("output of the command: {}", path.display());
    if clean {
        return;
    }
    let tail = crate::check::logscan::tail(path, 20);
    if !tail.is_empty() {
        println!("last lines of its output:");
        for l in tail {
            println!("  | {l}");
        }
    }
}
