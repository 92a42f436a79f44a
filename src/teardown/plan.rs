//! Teardown plans: an ordered list of phases, built in (`python-asyncio`, `native`, `jvm`,
//! `node`, embedded from `assets/plans/`) or read from a user TOML file. Validation happens here, once, so the
//! engine only ever sees a well-formed [`Plan`]; every error names the file, phase and field.

use std::path::Path;
use std::time::Duration;
use toml::{Table, Value};

const PYTHON_ASYNCIO: &str = include_str!("../../assets/plans/python-asyncio.toml");
const NATIVE: &str = include_str!("../../assets/plans/native.toml");
const JVM: &str = include_str!("../../assets/plans/jvm.toml");
const NODE: &str = include_str!("../../assets/plans/node.toml");

/// Names of the built-in plans, for help texts and error remedies.
pub const BUILTIN: &[&str] = &["python-asyncio", "native", "jvm", "node"];

/// Keys the dashboard keeps for itself (quit, move, sort, run next/all, abort, stacks,
/// help...). A plan phase may not take one; `ui::keys` has a test that keeps the two in step.
pub const GLOBAL_KEYS: &str = "qjkgGornaxsSwy?[]+";

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// `builtin:NAME` or the file path: shown in reports.
    pub source: String,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Runs this phase in the dashboard: a letter never in [`GLOBAL_KEYS`], or for phases 1..9
    /// given no key their digit (digits run phases by position).
    pub key: char,
    pub action: Action,
    /// Per step: re-armed for every signal of an escalation list, as systemd does.
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
    pub success: SuccessRule,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Agent(AgentRequest),
    SignalChildren { signals: Vec<i32>, scope: Scope },
    SignalTarget { signals: Vec<i32> },
    WaitExit,
    Audit { stacks: bool },
}

/// Requests the in-process agent understands (see docs/protocol.md of the agent helper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRequest {
    CancelTasks,
    ShutdownExecutors,
    StopLoop,
    CloseLoop,
    /// A phase the application registered with `agent.register_phase(name, fn)`.
    RunPhase(String),
    /// Every phase the application registered, in registration order (Node.js agent).
    RunPhases,
    /// Close (or unref) what keeps a Node.js event loop alive, by group: `server`, `timer`,
    /// `socket`, `child`, `worker`, `other` (empty: all).
    CloseHandles(Vec<String>),
    /// `process.exit(0)` inside the target (Node.js agent), as its last step.
    Exit,
}

impl AgentRequest {
    pub fn method(&self) -> &'static str {
        match self {
            Self::CancelTasks => "cancel_tasks",
            Self::ShutdownExecutors => "shutdown_executors",
            Self::StopLoop => "stop_loop",
            Self::CloseLoop => "close_loop",
            Self::RunPhase(_) | Self::RunPhases => "run_phase",
            Self::CloseHandles(_) => "close_handles",
            Self::Exit => "exit",
        }
    }
}

/// How children are addressed. pidfds cannot name a group, so `Group` signals every known
/// member of each process group through its own pidfd, in one step ordered group by group
/// (the group holding the deepest process first); `Process` orders processes leaves first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Process,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Next signal of the escalation list (signal actions); other actions just time out.
    Escalate,
    /// Ask for stack snapshots of what is stuck, then time out.
    Snapshot,
    /// Record the timeout and move on.
    Continue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessRule {
    NoChildren,
    NoPendingTasks,
    TargetExited,
    NoNonDaemonThreads,
    None,
}

impl Action {
    /// Short human description for timelines and reports.
    pub fn describe(&self) -> String {
        match self {
            Action::Agent(AgentRequest::RunPhase(n)) => format!("agent run_phase {n}"),
            Action::Agent(AgentRequest::RunPhases) => "agent run_phase (all registered)".into(),
            Action::Agent(AgentRequest::CloseHandles(k)) if !k.is_empty() => {
                format!("agent close_handles {}", k.join(", "))
            }
            Action::Agent(r) => format!("agent {}", r.method()),
            Action::SignalChildren { signals, scope } => format!(
                "signal children {} ({})",
                signal_list(signals),
                if *scope == Scope::Group {
                    "per group"
                } else {
                    "per process"
                }
            ),
            Action::SignalTarget { signals } => format!("signal target {}", signal_list(signals)),
            Action::WaitExit => "wait for exit".into(),
            Action::Audit { .. } => "left-over audit".into(),
        }
    }
}

fn signal_list(signals: &[i32]) -> String {
    signals
        .iter()
        .map(|s| signal_name(*s))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// `SIGTERM` for 15; `SIG15` when unknown.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

/// A plan that cannot be used: where (file, phase, field) and why, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", phase.as_ref().map(|p| format!(": phase {p}")).unwrap_or_default(), field.as_ref().map(|f| format!(": field `{f}`")).unwrap_or_default())]
pub struct PlanError {
    pub file: String,
    pub phase: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

/// A built-in name (`python-asyncio`, `native`, `jvm`, `node`) or a path to a TOML file.
pub fn load(name_or_path: &str) -> Result<Plan, PlanError> {
    match name_or_path {
        "python-asyncio" => parse(PYTHON_ASYNCIO, "builtin:python-asyncio"),
        "native" => parse(NATIVE, "builtin:native"),
        "jvm" => parse(JVM, "builtin:jvm"),
        "node" => parse(NODE, "builtin:node"),
        path => {
            let text = std::fs::read_to_string(Path::new(path)).map_err(|e| PlanError {
                file: path.to_string(),
                phase: None,
                field: None,
                message: format!(
                    "cannot read plan ({e}); give a TOML file or a built-in plan: {}",
                    BUILTIN.join(", ")
                ),
            })?;
            parse(&text, path)
        }
    }
}

/// Parses and validates plan TOML; `file` is only used in error messages and `Plan::source`.
pub fn parse(text: &str, file: &str) -> Result<Plan, PlanError> {
    let err = |phase: Option<&str>, field: Option<&str>, message: String| PlanError {
        file: file.to_string(),
        phase: phase.map(str::to_string),
        field: field.map(str::to_string),
        message,
    };
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(None, None, one_line(&e.to_string())))?;
    for k in table.keys() {
        if !["name", "description", "phase"].contains(&k.as_str()) {
            return Err(err(
                None,
                Some(k),
                "unknown top-level field (expected name, description, [[phase]])".into(),
            ));
        }
    }
    let name = match table.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err(None, Some("name"), "must be a string".into())),
        None => Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.to_string()),
    };
    let list = match table.get("phase") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(err(
                None,
                Some("phase"),
                "a plan needs at least one [[phase]] table".into(),
            ));
        }
    };
    let mut phases: Vec<Phase> = Vec::new();
    let mut explicit: Vec<Option<char>> = Vec::new();
    let label = |i: usize, p: &Phase| format!("#{} \"{}\"", i + 1, p.name);
    for (i, v) in list.iter().enumerate() {
        let Value::Table(t) = v else {
            return Err(err(
                Some(&format!("#{}", i + 1)),
                None,
                "each phase must be a [[phase]] table".into(),
            ));
        };
        let (phase, key) =
            super::plan_fields::phase_from_table(t).map_err(|(field, message)| {
                let pname = match t.get("name") {
                    Some(Value::String(n)) => format!("#{} \"{n}\"", i + 1),
                    _ => format!("#{}", i + 1),
                };
                err(Some(&pname), field.as_deref(), message)
            })?;
        if let Some(k) = key
            && let Some(dup) = explicit.iter().position(|e| *e == Some(k))
        {
            return Err(err(
                Some(&label(i, &phase)),
                Some("key"),
                format!(
                    "key '{k}' is already used by phase \"{}\"",
                    phases[dup].name
                ),
            ));
        }
        phases.push(phase);
        explicit.push(key);
    }
    let mut taken: Vec<char> = explicit.iter().flatten().copied().collect();
    for (i, p) in phases.iter_mut().enumerate() {
        p.key = match explicit[i] {
            Some(k) => k,
            None => {
                let k = super::plan_fields::default_key(i, &taken).ok_or_else(|| {
                    err(
                        Some(&label(i, p)),
                        Some("key"),
                        "no free letter left for this phase's key: too many phases".into(),
                    )
                })?;
                taken.push(k);
                k
            }
        };
    }
    Ok(Plan {
        name,
        source: file.to_string(),
        phases,
    })
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}
