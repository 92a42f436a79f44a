//! Issue 11, fault 5: a plan may not "stop" a tree with a signal that only pauses it.
//! SIGSTOP/SIGTSTP (and the other job-control signals, SIGCONT) are refused at parse time
//! with an error naming the phase and the field, like `check --stop-signal` refuses them.

use lifecycle_top::teardown::plan;

fn plan_with(signals: &str) -> String {
    format!(
        "name = \"p\"\n[[phase]]\nname = \"term-kids\"\naction = \"signal_children\"\n\
         signals = {signals}\ntimeout = \"1s\"\n"
    )
}

#[test]
fn pausing_signals_are_refused_with_phase_and_field() {
    for sig in [
        "\"SIGSTOP\"",
        "\"TSTP\"",
        "19",
        "\"SIGTTIN\"",
        "\"SIGTTOU\"",
        "\"SIGCONT\"",
    ] {
        let text = plan_with(&format!("[\"SIGTERM\", {sig}]"));
        let err = plan::parse(&text, "p.toml").expect_err(sig);
        assert_eq!(
            err.phase.as_deref(),
            Some("#1 \"term-kids\""),
            "{sig}: {err:?}"
        );
        assert_eq!(err.field.as_deref(), Some("signals"), "{sig}: {err:?}");
        assert!(err.message.contains("pauses"), "{sig}: {}", err.message);
        let shown = err.to_string();
        assert!(
            shown.contains("term-kids") && shown.contains("signals"),
            "{shown}"
        );
    }
}

#[test]
fn stopping_signals_still_parse() {
    let p = plan::parse(
        &plan_with("[\"SIGTERM\", \"INT\", 3, \"SIGKILL\"]"),
        "p.toml",
    )
    .expect("stop signals are fine");
    assert_eq!(p.phases.len(), 1);
}
