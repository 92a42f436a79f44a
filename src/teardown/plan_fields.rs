//! Field-by-field reading of one `[[phase]]` table. Kept apart from `plan.rs` so the error
//! plumbing (file and phase names) stays there and the per-field rules stay readable here.

use super::plan::{Action, AgentRequest, OnTimeout, Phase, Scope, SuccessRule};
use std::time::Duration;
use toml::{Table, Value};

type FieldError = (Option<String>, String);

fn ferr(field: &str, msg: impl Into<String>) -> FieldError {
    (Some(field.to_string()), msg.into())
}

const FIELDS: &[&str] = &[
    "name",
    "key",
    "action",
    "request",
    "app_phase",
    "kinds",
    "signals",
    "scope",
    "timeout",
    "on_timeout",
    "success",
    "stacks",
];

fn string<'a>(t: &'a Table, field: &str) -> Result<Option<&'a str>, FieldError> {
    match t.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ferr(field, "must be a string")),
    }
}

fn choice<T: Copy>(
    t: &Table,
    field: &str,
    options: &[(&str, T)],
    default: T,
) -> Result<T, FieldError> {
    match string(t, field)? {
        None => Ok(default),
        Some(s) => options
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                ferr(
                    field,
                    format!("\"{s}\" is not one of: {}", names.join(", ")),
                )
            }),
    }
}

/// `"3s"`, `"500ms"`, `"1.5s"` or a number of seconds.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let secs = match v {
        Value::Integer(i) => *i as f64,
        Value::Float(f) => *f,
        Value::String(s) => {
            let s = s.trim();
            let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
                (n, 0.001)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else {
                (s, 1.0)
            };
            num.trim()
                .parse::<f64>()
                .map_err(|_| format!("\"{s}\" is not a duration (try \"3s\" or \"500ms\")"))?
                * scale
        }
        _ => return Err("must be a duration like \"3s\", \"500ms\" or a number of seconds".into()),
    };
    if !(0.0..=86_400.0).contains(&secs) || !secs.is_finite() {
        return Err(format!("{secs} s is out of range (0 to 86400 s)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(v: &Value) -> Result<i32, String> {
    use nix::sys::signal::Signal;
    let sig = match v {
        Value::Integer(i) => i32::try_from(*i)
            .ok()
            .and_then(|n| Signal::try_from(n).ok()),
        Value::String(s) => {
            let up = s.trim().to_ascii_uppercase();
            let full = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            full.parse::<Signal>().ok()
        }
        _ => None,
    };
    sig.map(|s| s as i32)
        .ok_or_else(|| format!("{v} is not a signal (e.g. \"SIGTERM\", \"INT\", 9)"))
}

/// Job-control signals and SIGCONT: they pause or resume a process, never stop it (a phase
/// "escalating" with SIGSTOP would leave the tree frozen, not gone).
const PAUSING: &[i32] = &[
    libc::SIGSTOP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCONT,
];

fn signals(t: &Table, default: &[i32]) -> Result<Vec<i32>, FieldError> {
    match t.get("signals") {
        None => Ok(default.to_vec()),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                let sig = parse_signal(v).map_err(|m| ferr("signals", m))?;
                if PAUSING.contains(&sig) {
                    return Err(ferr(
                        "signals",
                        format!(
                            "{v} ({}) pauses or resumes a process, it does not stop it; use \
                             SIGTERM, SIGINT, SIGQUIT or SIGKILL",
                            super::plan::signal_name(sig)
                        ),
                    ));
                }
                Ok(sig)
            })
            .collect(),
        Some(_) => Err(ferr(
            "signals",
            "must be a non-empty list like [\"SIGTERM\", \"SIGKILL\"]",
        )),
    }
}

/// `kinds` of a `close_handles` phase: groups the Node.js agent knows (empty: all).
fn handle_kinds(t: &Table) -> Result<Vec<String>, FieldError> {
    const KINDS: &[&str] = &[
        "server", "timer", "socket", "child", "worker", "other", "all",
    ];
    match t.get("kinds") {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_str() {
                Some(k) if KINDS.contains(&k) => Ok(k.to_string()),
                _ => Err(ferr(
                    "kinds",
                    format!("{v} is not one of {}", KINDS.join(", ")),
                )),
            })
            .collect(),
        Some(_) => Err(ferr("kinds", "must be a list like [\"server\", \"timer\"]")),
    }
}

/// The phase, and its explicit key (`phase.key` is a placeholder when `None`).
pub fn phase_from_table(t: &Table) -> Result<(Phase, Option<char>), FieldError> {
    if let Some(k) = t.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ferr(
            k,
            format!("unknown field (known: {})", FIELDS.join(", ")),
        ));
    }
    let name = string(t, "name")?
        .ok_or_else(|| ferr("name", "missing"))?
        .to_string();
    // Only letters reach a phase in the dashboard (digits run phases by position); a phase
    // without a key gets one in `plan::parse`, once every explicit key is known.
    let key = match string(t, "key")? {
        None => None,
        Some(k) => {
            let mut chars = k.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if super::plan::GLOBAL_KEYS.contains(c) => {
                    return Err(ferr(
                        "key",
                        format!(
                            "'{c}' is one of the dashboard's own keys ({}): pick another letter",
                            super::plan::GLOBAL_KEYS
                        ),
                    ));
                }
                (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
                _ => {
                    return Err(ferr(
                        "key",
                        format!(
                            "\"{k}\" must be one ASCII letter (1..9 already run phases by position)"
                        ),
                    ));
                }
            }
        }
    };
    let action_name = string(t, "action")?.ok_or_else(|| {
        ferr(
            "action",
            "missing (agent, signal_children, signal_target, wait_exit, audit)",
        )
    })?;
    const TERM_KILL: &[i32] = &[libc::SIGTERM, libc::SIGKILL];
    let action = match action_name {
        "agent" => {
            let req = string(t, "request")?.ok_or_else(|| {
                ferr(
                    "request",
                    "missing (cancel_tasks, shutdown_executors, stop_loop, close_loop, run_phase, run_phases, close_handles, exit)",
                )
            })?;
            Action::Agent(match req {
                "cancel_tasks" => AgentRequest::CancelTasks,
                "shutdown_executors" => AgentRequest::ShutdownExecutors,
                "stop_loop" => AgentRequest::StopLoop,
                "close_loop" => AgentRequest::CloseLoop,
                "run_phase" => AgentRequest::RunPhase(
                    string(t, "app_phase")?
                        .ok_or_else(|| ferr("app_phase", "missing: the name the app registered"))?
                        .to_string(),
                ),
                "run_phases" => AgentRequest::RunPhases,
                "close_handles" => AgentRequest::CloseHandles(handle_kinds(t)?),
                "exit" => AgentRequest::Exit,
                other => return Err(ferr("request", format!("unknown request \"{other}\""))),
            })
        }
        "signal_children" => Action::SignalChildren {
            signals: signals(t, TERM_KILL)?,
            scope: choice(
                t,
                "scope",
                &[("process", Scope::Process), ("group", Scope::Group)],
                Scope::Process,
            )?,
        },
        "signal_target" => Action::SignalTarget {
            signals: signals(t, TERM_KILL)?,
        },
        "wait_exit" => Action::WaitExit,
        "audit" => Action::Audit {
            stacks: match t.get("stacks") {
                None => true,
                Some(Value::Boolean(b)) => *b,
                Some(_) => return Err(ferr("stacks", "must be true or false")),
            },
        },
        other => {
            return Err(ferr(
                "action",
                format!(
                    "unknown action \"{other}\" (agent, signal_children, signal_target, wait_exit, audit)"
                ),
            ));
        }
    };
    for (field, ok) in [
        ("request", matches!(action, Action::Agent(_))),
        (
            "app_phase",
            matches!(action, Action::Agent(AgentRequest::RunPhase(_))),
        ),
        (
            "signals",
            matches!(
                action,
                Action::SignalChildren { .. } | Action::SignalTarget { .. }
            ),
        ),
        ("scope", matches!(action, Action::SignalChildren { .. })),
        ("stacks", matches!(action, Action::Audit { .. })),
    ] {
        if !ok && t.contains_key(field) {
            return Err(ferr(field, format!("not used by action \"{action_name}\"")));
        }
    }
    let timeout = match t.get("timeout") {
        None => Duration::from_secs(5),
        Some(v) => parse_duration(v).map_err(|m| ferr("timeout", m))?,
    };
    let is_signal = matches!(
        action,
        Action::SignalChildren { .. } | Action::SignalTarget { .. }
    );
    let on_timeout = choice(
        t,
        "on_timeout",
        &[
            ("escalate", OnTimeout::Escalate),
            ("snapshot", OnTimeout::Snapshot),
            ("continue", OnTimeout::Continue),
        ],
        if is_signal {
            OnTimeout::Escalate
        } else {
            OnTimeout::Snapshot
        },
    )?;
    let default_rule = match &action {
        Action::Agent(AgentRequest::CancelTasks) => SuccessRule::NoPendingTasks,
        Action::SignalChildren { .. } => SuccessRule::NoChildren,
        Action::SignalTarget { .. } | Action::WaitExit => SuccessRule::TargetExited,
        _ => SuccessRule::None,
    };
    let success = choice(
        t,
        "success",
        &[
            ("no_children", SuccessRule::NoChildren),
            ("no_pending_tasks", SuccessRule::NoPendingTasks),
            ("target_exited", SuccessRule::TargetExited),
            ("no_non_daemon_threads", SuccessRule::NoNonDaemonThreads),
            ("none", SuccessRule::None),
        ],
        default_rule,
    )?;
    let phase = Phase {
        name,
        key: '?',
        action,
        timeout,
        on_timeout,
        success,
    };
    Ok((phase, key))
}

/// The key of a phase the plan gave none: its digit for phases 1..9 (digits run them), else the
/// first letter that is neither the dashboard's nor taken by another phase.
pub fn default_key(index: usize, taken: &[char]) -> Option<char> {
    if index < 9 {
        return char::from_digit(index as u32 + 1, 10);
    }
    ('a'..='z')
        .chain('A'..='Z')
        .find(|c| !super::plan::GLOBAL_KEYS.contains(*c) && !taken.contains(c))
}
