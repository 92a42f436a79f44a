//! README.md gives the test command and `.ci/run` must run exactly that command.

#[test]
fn ci_runs_the_readme_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).expect(".ci/run");
    let ci_cmd = ci
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .expect(".ci/run has a command")
        .trim();
    assert!(
        readme.lines().any(|l| l.trim() == ci_cmd),
        "README.md must give the exact command .ci/run runs: {ci_cmd}"
    );
}
