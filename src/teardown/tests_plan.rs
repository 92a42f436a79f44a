//! Unit tests of plan parsing and validation: the built-in plans, errors that name the file,
//! phase and field, and the keys phases may take.
#![allow(clippy::unwrap_used)]

use super::plan::{self, Action, OnTimeout, SuccessRule};

#[test]
fn builtin_plans_parse() {
    let p = plan::load("python-asyncio").unwrap();
    assert_eq!(p.phases.len(), 8);
    assert!(matches!(
        p.phases[0].action,
        Action::Agent(plan::AgentRequest::CancelTasks)
    ));
    assert_eq!(p.phases[0].success, SuccessRule::NoPendingTasks);
    match &p.phases[6].action {
        Action::SignalTarget { signals } => {
            assert_eq!(signals, &vec![libc::SIGINT, libc::SIGTERM, libc::SIGKILL])
        }
        other => panic!("{other:?}"),
    }
    let n = plan::load("native").unwrap();
    assert_eq!(n.phases.len(), 3);
    assert_eq!(n.phases[0].on_timeout, OnTimeout::Escalate);
}

#[test]
fn a_phase_cannot_take_a_dashboard_key() {
    let text = "[[phase]]\nname = \"drain\"\nkey = \"s\"\naction = \"wait_exit\"\n";
    let e = plan::parse(text, "my.toml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("key"));
    assert!(e.to_string().contains("dashboard's own keys"), "{e}");
}

#[test]
fn plan_errors_name_file_phase_and_field() {
    let text = "[[phase]]\nname = \"drain\"\naction = \"signal_children\"\ntimeout = \"soon\"\n";
    let e = plan::parse(text, "my.toml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeout"));
    let msg = e.to_string();
    assert!(
        msg.contains("my.toml") && msg.contains("drain") && msg.contains("timeout"),
        "{msg}"
    );

    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"agent\"\nrequest = \"run_phase\"\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("app_phase"), "{e}");
    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"signal_target\"\nsignals = [\"SIGFOO\"]\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("signals"), "{e}");
    let e = plan::parse(
        "[[phase]]\nname = \"x\"\naction = \"audit\"\nsucess = \"none\"\n",
        "f.toml",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("sucess"), "{e}");
    let e = plan::parse("phase = [", "broken.toml").unwrap_err();
    assert!(e.to_string().starts_with("broken.toml"), "{e}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    let ok = plan::parse(
        "name=\"p\"\n[[phase]]\nname = \"flush\"\naction = \"agent\"\nrequest = \"run_phase\"\napp_phase = \"flush-db\"\ntimeout = 1.5\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(ok.phases[0].timeout.as_millis(), 1500);
    assert_eq!(ok.phases[0].key, '1');
}

fn phases(n: usize, extra: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[phase]]\nname = \"p{i}\"\naction = \"wait_exit\"\n{}",
                if i == 0 { extra } else { "" }
            )
        })
        .collect()
}

#[test]
fn keys_are_letters_the_dashboard_dispatches() {
    for bad in ["\"1\"", "\"-\"", "\"é\"", "\"ab\""] {
        let e = plan::parse(&phases(1, &format!("key = {bad}\n")), "k.toml").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("key"), "{bad}: {e}");
        assert!(e.to_string().contains("k.toml: phase #1 \"p0\""), "{e}");
        assert!(e.to_string().contains("ASCII letter"), "{e}");
    }
    // Phases 1..9 get their digit; later ones the first free letter, never a dashboard key
    // and never one a later phase asked for.
    let p = plan::parse(&phases(12, "key = \"b\"\n"), "k.toml").unwrap();
    let keys: String = p.phases.iter().map(|ph| ph.key).collect();
    assert_eq!(keys, "b23456789cde");
    for ph in &p.phases {
        assert!(!plan::GLOBAL_KEYS.contains(ph.key), "{}", ph.key);
    }
    let many = plan::parse(&phases(60, ""), "k.toml").unwrap_err();
    assert_eq!(many.field.as_deref(), Some("key"), "{many}");
    let dup =
        phases(2, "key = \"z\"\n") + "[[phase]]\nname = \"q\"\nkey = \"z\"\naction = \"audit\"\n";
    let e = plan::parse(&dup, "k.toml").unwrap_err();
    assert!(
        e.to_string().contains("already used by phase \"p0\""),
        "{e}"
    );
}

#[test]
fn node_plan_loads_and_close_handles_kinds_are_checked() {
    let p = plan::load("node").expect("builtin node plan");
    let methods: Vec<String> = p
        .phases
        .iter()
        .filter_map(|ph| match &ph.action {
            Action::Agent(r) => Some(format!("{r:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        methods,
        [
            "CloseHandles([\"server\"])",
            "CloseHandles([\"timer\"])",
            "CloseHandles([\"socket\"])",
            "CloseHandles([\"worker\"])",
            "RunPhases",
            "Exit"
        ]
    );
    let bad = "[[phase]]\nname = \"x\"\naction = \"agent\"\nrequest = \"close_handles\"\nkinds = [\"sockets\"]\n";
    let err = plan::parse(bad, "t.toml")
        .expect_err("bad kind")
        .to_string();
    assert!(
        err.contains("kinds") && err.contains("\"sockets\" is not one of"),
        "{err}"
    );
}
