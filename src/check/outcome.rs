//! From what a `check` run saw to its verdict: the facts (how and when the target ended,
//! what was left, what it warned about, merged from the agent and the log), the verdict of
//! [`crate::verdict::judge`], and the report and JUnit written from them.

use super::config::CheckConfig;
use super::evidence::Evidence;
use super::junit;
use super::logscan;
use super::run::Run;
use crate::model::RunState;
use crate::report::json::{Report, TargetInfo};
use crate::session::Model;
use crate::teardown::Timeline;
use crate::teardown::plan::signal_name;
use crate::teardown::timeline::{Leftover, LeftoverKind, Outcome as PhaseOutcome, PhaseRecord};
use crate::verdict::{Facts, Mode, TargetExit, TargetWarning, Verdict, WarningSource};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// How far a run got.
#[derive(Debug)]
pub enum Stage {
    /// Readiness failed (the command exited first, or never became ready in time).
    NeverReady(String),
    /// Ctrl-C / SIGTERM to lifecycle-top.
    Interrupted,
    /// The target exited within the budget.
    Exited { stop_ms: u64 },
    /// The budget ran out (evidence and forced phases follow).
    Overrun { stop_ms: u64 },
    /// Over budget: evidence captured, forced phases run.
    Forced {
        stop_ms: u64,
        evidence: Box<Evidence>,
        timeline: Option<Box<Timeline>>,
        interrupted: bool,
    },
}

impl Stage {
    fn stop_ms(&self) -> Option<u64> {
        match self {
            Stage::Exited { stop_ms }
            | Stage::Overrun { stop_ms }
            | Stage::Forced { stop_ms, .. } => Some(*stop_ms),
            _ => None,
        }
    }
}

/// The judged run.
pub struct Outcome {
    pub facts: Facts,
    pub verdict: Verdict,
    pub evidence: Option<Evidence>,
    pub forced: Option<Timeline>,
    pub stop_ms: Option<u64>,
    pub duration_ms: u64,
}

/// Processes of the tree still alive once the target is gone (never lifecycle-top's own).
pub fn leftovers(m: &Model, launched: bool) -> Vec<Leftover> {
    let Some(snap) = m.snapshot.as_deref() else {
        return Vec::new();
    };
    let own = std::process::id() as i32;
    snap.processes
        .iter()
        .filter(|p| p.key != snap.target && p.key.pid != own)
        .filter(|p| p.exit.is_none() && !m.exits.contains_key(&p.key))
        .filter(|p| !matches!(p.state, RunState::Zombie | RunState::Dead))
        .map(|p| {
            let reason = if p.orphan || launched && p.ppid == own {
                format!(
                    "still running after the target exited (orphan, its parent is gone; {})",
                    if launched {
                        "killed by lifecycle-top now"
                    } else {
                        "left running: kill it yourself"
                    }
                )
            } else {
                format!(
                    "still running after the target exited (parent pid {})",
                    p.ppid
                )
            };
            Leftover {
                pid: p.key.pid,
                name: p.name.to_string(),
                kind: if p.orphan {
                    LeftoverKind::Orphan
                } else {
                    LeftoverKind::Alive
                },
                reason,
            }
        })
        .collect()
}

/// Non-daemon threads the agent said were still running at `atexit`: the interpreter
/// stopped waiting for them (its join was cut short) and its exit abandons them mid-work.
/// A clean exit status does not make that clean.
pub fn abandoned_threads(m: &Model) -> Vec<Leftover> {
    let reason = match m.abandoned_by.as_deref() {
        Some("os_exit") => {
            "non-daemon thread still running when the program called os._exit(), which \
             skips joining threads and the atexit handlers: the exit killed it mid-work; stop \
             it and join it before the exit"
        }
        _ => {
            "non-daemon thread still running when the interpreter exited: the wait for it in \
             threading._shutdown was cut short (by KeyboardInterrupt, say), so the exit \
             abandoned it; stop it and join it before the exit"
        }
    };
    m.abandoned_threads
        .iter()
        .map(|t| Leftover {
            pid: t.native_id,
            name: t.name.clone(),
            kind: LeftoverKind::NonDaemonThread,
            reason: reason.to_string(),
        })
        .collect()
}

fn is_python(m: &Model) -> bool {
    m.hello
        .as_ref()
        .is_some_and(|h| h.runtime.name.to_ascii_lowercase().contains("python"))
        || m.snapshot
            .as_ref()
            .and_then(|s| s.target_info())
            .is_some_and(|t| {
                t.name.starts_with("python")
                    || t.cmdline.first().is_some_and(|c| c.contains("python"))
            })
}

/// Words for the moments outside any phase: before / after the start (the stop signal, or
/// the plan's start in headless mode).
pub(crate) type Labels = (&'static str, &'static str);
const CHECK_LABELS: Labels = ("before the stop signal", "after the stop signal");
pub(crate) const HEADLESS_LABELS: Labels = ("before the plan started", "between phases");

/// Which phase of the run a moment (Unix ms) falls in, in words.
fn phase_at(
    at_unix_ms: u64,
    stop_unix: Option<u64>,
    forced: Option<&Timeline>,
    labels: Labels,
) -> String {
    if let Some(t) = forced {
        for p in &t.phases {
            let (a, b) = (
                t.started_unix_ms + p.start_ms,
                t.started_unix_ms + p.end_ms.max(p.start_ms),
            );
            if (a..=b).contains(&at_unix_ms) {
                return format!("phase \"{}\"", p.name);
            }
        }
    }
    match stop_unix {
        Some(s) if at_unix_ms < s => labels.0.into(),
        Some(_) => labels.1.into(),
        None => "while waiting for readiness".into(),
    }
}

/// The agent's warnings, plus what only the log shows: per kind, log findings beyond the
/// number the agent reported (the agent may miss what happens after its last push).
/// Shared by check and headless.
pub(crate) fn warnings(
    m: &Model,
    log: Option<&Path>,
    stop_unix: Option<u64>,
    forced: Option<&Timeline>,
    end_unix: u64,
    labels: Labels,
) -> Vec<TargetWarning> {
    let mut out: Vec<TargetWarning> = m
        .warnings
        .iter()
        .map(|w| TargetWarning {
            at_unix_ms: w.at_unix_ms,
            kind: w.kind.clone(),
            message: w.message.clone(),
            detail: w.detail.clone(),
            exc_type: w.exc_type.clone(),
            source: WarningSource::Agent,
            phase: Some(phase_at(w.at_unix_ms, stop_unix, forced, labels)),
            after_budget: false,
        })
        .collect();
    let Some(path) = log else { return out };
    let Ok(found) = logscan::scan_file(path) else {
        return out;
    };
    let mut by_agent: HashMap<String, usize> = HashMap::new();
    for w in &out {
        *by_agent.entry(w.kind.clone()).or_default() += 1;
    }
    let mut by_log: HashMap<String, Vec<logscan::LogFinding>> = HashMap::new();
    for f in found {
        by_log
            .entry(f.kind.as_str().to_string())
            .or_default()
            .push(f);
    }
    let mut kinds: Vec<_> = by_log.into_iter().collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    for (kind, list) in kinds {
        let known = by_agent.get(&kind).copied().unwrap_or(0);
        let extra = list.len().saturating_sub(known);
        for f in list.into_iter().skip(known).take(extra) {
            out.push(TargetWarning {
                at_unix_ms: end_unix,
                kind: kind.clone(),
                message: f.message,
                detail: Some(f.detail),
                exc_type: f.exc_type,
                source: WarningSource::Log,
                phase: Some(format!("from the output, line {}", f.line)),
                after_budget: false,
            });
        }
    }
    out
}

/// Judges the run.
pub fn judge(
    cfg: &CheckConfig,
    m: &Model,
    stage: &Stage,
    leftovers: Vec<Leftover>,
    log: Option<&Path>,
    duration_ms: u64,
) -> Outcome {
    let stop_ms = stage.stop_ms();
    let stop_unix = stop_ms.map(|s| m.now.unix_ms.saturating_sub(m.now.at_ms) + s);
    let (forced, evidence) = match stage {
        Stage::Forced {
            timeline, evidence, ..
        } => (
            timeline.as_deref().cloned(),
            Some(evidence.as_ref().clone()),
        ),
        _ => (None, None),
    };
    let target = m.target();
    let mut our_signals = vec![cfg.stop_signal];
    if let (Some(t), Some(target)) = (&forced, target) {
        our_signals.extend(
            t.phases
                .iter()
                .flat_map(|p| &p.signals)
                .filter(|s| s.pid == target.pid && s.error.is_none())
                .filter_map(|s| s.signal.parse::<nix::sys::signal::Signal>().ok())
                .map(|s| s as i32),
        );
    }
    if matches!(stage, Stage::Forced { .. }) && !our_signals.contains(&libc::SIGKILL) {
        // check's own last resort after the forced phases.
        our_signals.push(libc::SIGKILL);
    }
    let target_exit = m.target_exit().map(|x| TargetExit {
        status: x.status,
        after_ms: stop_ms.map_or(0, |s| x.at_ms.saturating_sub(s)),
        our_signals: our_signals.clone(),
        within_budget: Some(matches!(stage, Stage::Exited { .. })),
        python: is_python(m),
    });
    let mut unknowns = Vec::new();
    if m.report.is_none() {
        unknowns.push(
            "no agent: thread daemon flags, tasks and Python warnings are not known (launched Python commands get the agent unless --no-agent)".to_string(),
        );
    }
    let budget_ms = u64::try_from(cfg.budget.as_millis()).unwrap_or(u64::MAX);
    let mut warnings = warnings(
        m,
        log,
        stop_unix,
        forced.as_ref(),
        m.now.unix_ms,
        CHECK_LABELS,
    );
    if let (Stage::Forced { .. }, Some(stop)) = (stage, stop_unix) {
        // Pushed after the budget ran out: while the exit was forced. (A log finding's time
        // is not known: it stays judged.)
        let end = stop.saturating_add(budget_ms);
        for w in &mut warnings {
            w.after_budget = w.source == WarningSource::Agent && w.at_unix_ms >= end;
        }
    }
    let facts = Facts {
        mode: Mode::Check {
            stop_signal: cfg.stop_signal,
            budget_ms,
        },
        target_exit,
        leftovers,
        warnings,
        allow_warnings: cfg.allow_warnings,
        phases: forced
            .as_ref()
            .map(|t| t.phases.clone())
            .unwrap_or_default(),
        unknowns,
    };
    let mut verdict = crate::verdict::judge(&facts);
    match stage {
        Stage::NeverReady(why) => {
            verdict.clean = false;
            verdict.exit_code = 1;
            let line = format!("never became ready: {why}");
            verdict.summary = line.clone();
            verdict.reasons.insert(0, line);
        }
        Stage::Interrupted
        | Stage::Forced {
            interrupted: true, ..
        } => {
            verdict.clean = false;
            verdict.exit_code = 2;
            verdict.reasons.insert(
                0,
                "interrupted: lifecycle-top was stopped before the verdict".into(),
            );
        }
        _ => {}
    }
    Outcome {
        facts,
        verdict,
        evidence,
        forced,
        stop_ms,
        duration_ms,
    }
}

/// The JSON report of a check run: the common report plus what only check has.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub base: Report,
    pub mode: &'static str,
    pub command: Vec<String>,
    /// The launched command's stdout + stderr.
    pub log_file: Option<String>,
    pub stop_signal: String,
    pub budget_ms: u64,
    /// Threads, tasks, children and stacks captured when the budget ran out.
    pub evidence: Option<Evidence>,
    pub leftovers: Vec<Leftover>,
    pub duration_ms: u64,
}

impl CheckReport {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// The stop and its wait as the first record of the report's timeline (so the trace shows it).
fn stop_record(out: &Outcome, cfg: &CheckConfig, t: &Timeline, m: &Model) -> Option<PhaseRecord> {
    let stop_ms = out.stop_ms?;
    let base_unix = m.now.unix_ms.saturating_sub(m.now.at_ms);
    let to_timeline = |session_ms: u64| (base_unix + session_ms).saturating_sub(t.started_unix_ms);
    let end = match &out.facts.target_exit {
        Some(x) if x.within_budget == Some(true) => stop_ms + x.after_ms,
        _ => stop_ms + u64::try_from(cfg.budget.as_millis()).unwrap_or(0),
    };
    let within = out.facts.target_exit.as_ref().and_then(|x| x.within_budget) == Some(true);
    Some(PhaseRecord {
        index: 0,
        name: format!("stop ({})", signal_name(cfg.stop_signal)),
        key: ' ',
        action: format!(
            "send {} once, wait up to {:.1} s",
            signal_name(cfg.stop_signal),
            cfg.budget.as_secs_f64()
        ),
        start_ms: to_timeline(stop_ms),
        end_ms: to_timeline(end),
        outcome: if within {
            PhaseOutcome::Ok
        } else {
            PhaseOutcome::TimedOut
        },
        before: Default::default(),
        after: Default::default(),
        notes: out
            .facts
            .target_exit
            .as_ref()
            .map(|x| {
                vec![format!(
                    "target {} after {} ms",
                    crate::report::summary::exit_status(x.status),
                    x.after_ms
                )]
            })
            .unwrap_or_default(),
        signals: Vec::new(),
        exits: Vec::new(),
        agent_result: None,
    })
}

pub(super) fn report(
    cfg: &CheckConfig,
    run: &Run,
    out: &Outcome,
    log: Option<&Path>,
) -> CheckReport {
    let m = &run.model;
    let info = m.snapshot.as_ref().and_then(|s| s.target_info().cloned());
    let target = TargetInfo {
        pid: run.target.pid,
        name: info
            .as_ref()
            .map(|i| i.name.to_string())
            .unwrap_or_default(),
        cmdline: info.map(|i| i.cmdline).unwrap_or_default(),
    };
    let plan = run.plan.as_ref();
    let mut timeline = out.forced.clone().unwrap_or_else(|| {
        Timeline::new(
            plan.map_or("none", |p| p.name.as_str()),
            run.target.pid,
            m.now.unix_ms.saturating_sub(m.now.at_ms),
        )
    });
    if let Some(r) = stop_record(out, cfg, &timeline, m) {
        timeline.phases.insert(0, r);
    }
    let mut base = Report::from_facts(
        &timeline,
        plan.map_or("", |p| p.source.as_str()),
        target,
        out.facts.clone(),
    );
    base.verdict = out.verdict.clone();
    base.stacks = m.stacks.iter().map(|s| s.as_ref().clone()).collect();
    CheckReport {
        base,
        mode: "check",
        command: m
            .attach
            .as_ref()
            .and_then(|a| a.launched.as_ref())
            .map(|l| l.cmd.clone())
            .unwrap_or_default(),
        log_file: log.map(|p| p.display().to_string()),
        stop_signal: signal_name(cfg.stop_signal),
        budget_ms: u64::try_from(cfg.budget.as_millis()).unwrap_or(u64::MAX),
        evidence: out.evidence.clone(),
        leftovers: out.facts.leftovers.clone(),
        duration_ms: out.duration_ms,
    }
}

/// The five testcases of the JUnit file (the checks) and the verdict checks each
/// folds: an unhandled exception fails "exit status", pending tasks fail the thread check;
/// "teardown phases" is not judged in check mode.
const JUNIT_CASES: [(&str, &[&str]); 5] = [
    ("exited within budget", &["exited within budget"]),
    ("exit status", &["exit status", "no unhandled exceptions"]),
    ("no left-over processes", &["no left-over processes"]),
    (
        "no lingering non-daemon threads",
        &["no lingering non-daemon threads", "no pending tasks"],
    ),
    ("no warnings", &["no warnings"]),
];

/// One testcase per check; failures carry the reasons as their text.
pub fn junit(out: &Outcome, cmdline: &[String]) -> junit::Suite {
    let cmd = if cmdline.is_empty() {
        "target".to_string()
    } else {
        cmdline.join(" ")
    };
    let cases = JUNIT_CASES
        .iter()
        .map(|(name, folds)| {
            let checks: Vec<_> = out
                .verdict
                .checks
                .iter()
                .filter(|c| folds.contains(&c.name.as_str()))
                .collect();
            let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
            let outcome = if !failed.is_empty() {
                junit::Outcome::Failed {
                    message: failed
                        .iter()
                        .map(|c| c.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                    text: out.verdict.reasons.join("\n"),
                }
            } else if !checks.is_empty() && checks.iter().all(|c| c.skipped) {
                junit::Outcome::Skipped {
                    message: checks[0].message.clone(),
                }
            } else {
                junit::Outcome::Passed
            };
            junit::Case {
                name: name.to_string(),
                classname: format!("lifecycle-top.check.{}", sanitize(&cmd)),
                time_s: 0.0,
                outcome,
            }
        })
        .collect();
    junit::Suite {
        name: format!("lifecycle-top check: {cmd}"),
        time_s: out.duration_ms as f64 / 1000.0,
        cases,
    }
}

fn sanitize(s: &str) -> String {
    let base = s.rsplit('/').next().unwrap_or(s);
    base.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect()
}
