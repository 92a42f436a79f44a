//! The command line as a user and a packager meet it: durations read as durations, help
//! that fits the subcommand, completions, the man page and the config file. The real binary.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-top");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .output()
        .expect("run lifecycle-top")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn duration_errors_name_the_unit() {
    for args in [
        &["--interval", "2x", "--pid", "1"][..],
        &["snapshot", "--pid", "1", "--watch", "3h"][..],
        &["demo", "--interval", "5sec"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("unknown unit") && err.contains("use ms, s or m"),
            "{args:?}: {err}"
        );
    }
    let out = run(&["--interval", "5ms", "--pid", "1"]);
    assert!(text(&out.stderr).contains("must be between 20ms and 60s"));
}

#[test]
fn demo_help_shows_only_what_applies_to_the_demo() {
    let out = run(&["demo", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("--interval <DURATION>"), "{help}");
    assert!(help.contains("--headless"), "{help}");
    assert!(
        !help.contains("--pid"),
        "demo launches its own target: {help}"
    );
    assert!(!help.contains("CMD"), "demo takes no command: {help}");
    // Top-level run flags do not leak into a subcommand either.
    let out = run(&["--pid", "1", "demo"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_for_each_shell() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("snapshot") && script.contains("--watch"),
        "{script}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lifecycle-top.bash");
    std::fs::write(&file, &script).expect("write script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash is needed for this test (apt install bash)");
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));

    let zsh = text(&run(&["completions", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef lifecycle-top"), "{zsh}");
    assert!(zsh.contains("--watch"));
    let fish = text(&run(&["completions", "fish"]).stdout);
    assert!(fish.contains("complete -c lifecycle-top"), "{fish}");
    assert!(fish.contains("-l watch"), "{fish}");
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("possible values: bash, zsh, fish"));
}

#[test]
fn man_page_has_every_subcommand() {
    let out = run(&["man"]);
    assert!(out.status.success());
    let roff = text(&out.stdout);
    assert!(roff.contains(".TH lifecycle-top 1"), "{roff}");
    for sub in [
        "snapshot",
        "stacks",
        "why",
        "check",
        "replay",
        "demo",
        "completions",
        "config",
    ] {
        assert!(
            roff.contains(&format!(".TH lifecycle-top-{sub} 1")),
            "page for {sub}"
        );
    }
    assert!(roff.contains("\\-\\-watch"), "options are documented");
}

#[test]
fn default_config_parses_back_and_a_bad_one_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default = run(&["config", "--default"]);
    assert!(default.status.success());
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &default.stdout).expect("write config");
    // `replay` reads the config file first, then fails on the missing recording.
    let missing = dir.path().join("missing.ltrec");
    let missing = missing.to_str().expect("utf-8 path");
    let out = run(&[
        "replay",
        "--json",
        "--config",
        good.to_str().expect("utf-8"),
        missing,
    ]);
    let err = text(&out.stderr);
    assert!(
        !err.contains("config file"),
        "the default file is valid: {err}"
    );
    assert!(err.contains("missing.ltrec"), "{err}");

    // The default location, found through XDG_CONFIG_HOME.
    let conf = dir.path().join("lifecycle-top");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let bad = conf.join("config.toml");
    std::fs::write(&bad, "interval = \"1s\"\n[keys]\nquitt = \"Q\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["replay", "--json", missing])
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run lifecycle-top");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "config file {} line 3: unknown key `keys.quitt`",
            bad.display()
        )),
        "{err}"
    );
    // `config --default` still works with a broken file in place (it is the repair).
    let out = Command::new(BIN)
        .args(["config", "--default"])
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run lifecycle-top");
    assert!(out.status.success());
    let out = Command::new(BIN)
        .args(["config"])
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run lifecycle-top");
    assert!(
        text(&out.stdout).contains("(in use)"),
        "{}",
        text(&out.stdout)
    );
}
