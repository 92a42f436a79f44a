//! The verdict, computed from facts: how the target exited, what was left when it was gone,
//! what it warned about, how the phases went, and what could not be known. One pure function
//! ([`judge`]) for headless mode and `lifecycle-top check`, so the answer depends on what
//! happened, never on which message won a race.
//!
//! Rules (each failed rule gives plain one-line reasons; exit code 0 clean, 1 not clean):
//! - **exit status** (systemd's success rule): exit 0, or death by a signal lifecycle-top
//!   itself sent to the target (check: the stop signal; headless: any signal of the plan),
//!   is clean. A non-zero exit, or death by another signal, is not. A Python target that died
//!   by SIGTERM's default action is clean, and the summary says no `finally`/`atexit` code ran.
//! - **exited within budget** (check only): the target exited within the budget after the
//!   stop signal.
//! - **no unhandled exceptions**: an `unhandled_exception` (the exception that ended the
//!   program) is never clean, `allow_warnings` or not, except a `KeyboardInterrupt` raised
//!   by our own SIGINT (that is how Python < 3.11 takes SIGINT).
//! - **no left-over processes**, **no lingering non-daemon threads**, **no pending tasks**:
//!   anything left when the target was gone.
//! - **no warnings**: any warning (exceptions in threads and unhandled exceptions too, but
//!   our own SIGINT's KeyboardInterrupt), unless `allow_warnings`.
//! - **teardown phases** (headless only): a phase that timed out, failed or escalated, or a
//!   needed SIGKILL. Skipped and "target exited" phases are fine. In check mode the forced
//!   phases run after the budget, which already failed: they are listed, not judged.
//! - What could not be known (`unknowns`, e.g. thread daemon flags without the agent) is said
//!   as such in the thread check's message and is not unclean by itself: while the target is
//!   alive at the final audit the target itself is a left-over; once it exited, its threads
//!   went with it.

use crate::model::ExitStatus;
use crate::teardown::plan::signal_name;
use crate::teardown::timeline::{
    Leftover, LeftoverKind, PhaseRecord, Timeline, leftover_line, phase_reasons,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// The whole teardown plan ran.
    Headless,
    /// One stop signal and a budget (`lifecycle-top check`).
    Check { stop_signal: i32, budget_ms: u64 },
}

/// How the target ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetExit {
    pub status: ExitStatus,
    /// Since the stop signal (check) or the plan start (headless).
    pub after_ms: u64,
    /// Signals lifecycle-top sent to the target, in order.
    pub our_signals: Vec<i32>,
    /// Check: exited within the budget (`None`: judged from `after_ms`).
    #[serde(default)]
    pub within_budget: Option<bool>,
    /// The target is a Python interpreter (for what SIGTERM's default action means).
    #[serde(default)]
    pub python: bool,
}

/// Where a warning was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningSource {
    /// Pushed by the in-process agent.
    Agent,
    /// Read from the target's output.
    Log,
}

/// Something the target warned about: asyncio's "Task was destroyed but it is pending!",
/// "Event loop is closed", an unhandled exception, an exception in a thread...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetWarning {
    pub at_unix_ms: u64,
    /// e.g. `unhandled_exception`, `thread_exception`, `task_destroyed_pending`, `log`.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// The exception's type name, when there is one (`KeyboardInterrupt`, `ValueError`).
    #[serde(default)]
    pub exc_type: Option<String>,
    pub source: WarningSource,
    /// The phase running when it was seen.
    #[serde(default)]
    pub phase: Option<String>,
    /// Check mode: pushed by the agent after the budget ran out, while lifecycle-top forced
    /// the exit (its own phases and signals may have caused it): listed, not judged. The
    /// budget already failed the run; what the forcing provokes depends on the signals'
    /// dispositions (a CI runner that starts jobs with SIGINT ignored), not on the program.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_budget: bool,
}

/// Everything the verdict is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub mode: Mode,
    /// `None`: still alive when we stopped looking.
    pub target_exit: Option<TargetExit>,
    /// Processes, threads and tasks left when the target was gone (the final audit, or the
    /// check's sweep).
    pub leftovers: Vec<Leftover>,
    pub warnings: Vec<TargetWarning>,
    pub allow_warnings: bool,
    /// Headless: the timeline; check: the forced phases run after the budget (maybe none).
    pub phases: Vec<PhaseRecord>,
    /// What could not be known, one plain line each.
    pub unknowns: Vec<String>,
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// "exited within budget", "exit status", "no unhandled exceptions", "no left-over
    /// processes", "no lingering non-daemon threads", "no pending tasks", "no warnings",
    /// "teardown phases".
    pub name: String,
    /// Skipped checks count as passed.
    pub passed: bool,
    pub message: String,
    /// Not applicable here (no budget in headless mode, no exit to judge...).
    pub skipped: bool,
}

/// The answer CI wants. `exit_code` is what headless and check return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub clean: bool,
    pub exit_code: u8,
    /// One line saying what happened.
    #[serde(default)]
    pub summary: String,
    /// Why it is not clean, one line each (empty when clean).
    pub reasons: Vec<String>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
}

impl Verdict {
    /// The headless verdict of a finished teardown run (no warnings known).
    pub fn of(t: &Timeline) -> Verdict {
        judge(&Facts::from_timeline(t))
    }
}

impl Facts {
    /// Headless facts from a timeline: the target's exit as the timeline saw it, the signals
    /// the plan sent it, the last audit's left-overs and unknowns. No warnings: the caller
    /// adds them. `python`: the target's name (or the plan's) starts with "python".
    pub fn from_timeline(t: &Timeline) -> Facts {
        let exits = t
            .phases
            .iter()
            .flat_map(|p| &p.exits)
            .chain(&t.exits_outside);
        let target_exit = exits
            .filter(|x| x.pid == t.target_pid)
            .min_by_key(|x| x.at_ms);
        let our_signals = t
            .phases
            .iter()
            .flat_map(|p| &p.signals)
            .filter(|s| s.pid == t.target_pid && s.error.is_none())
            .filter_map(|s| nix::sys::signal::Signal::from_str(&s.signal).ok())
            .map(|s| s as i32)
            .collect();
        Facts {
            mode: Mode::Headless,
            target_exit: target_exit.map(|x| TargetExit {
                status: x.status,
                after_ms: x.at_ms,
                our_signals,
                within_budget: None,
                python: x.name.starts_with("python") || t.plan.starts_with("python"),
            }),
            leftovers: t.leftovers.clone(),
            warnings: Vec::new(),
            allow_warnings: false,
            phases: t.phases.clone(),
            unknowns: t.unknowns.clone(),
        }
    }

    /// Signals whose death counts as clean: check's stop signal, or any the plan sent.
    fn clean_signals(&self) -> Vec<i32> {
        match self.mode {
            Mode::Check { stop_signal, .. } => vec![stop_signal],
            Mode::Headless => self
                .target_exit
                .as_ref()
                .map(|x| x.our_signals.clone())
                .unwrap_or_default(),
        }
    }

    /// Every signal lifecycle-top sent the target.
    fn sent(&self) -> Vec<i32> {
        let mut v = self
            .target_exit
            .as_ref()
            .map(|x| x.our_signals.clone())
            .unwrap_or_default();
        if let Mode::Check { stop_signal, .. } = self.mode {
            v.push(stop_signal);
        }
        v
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A check plus the reasons it adds to the verdict when it failed.
struct Judged {
    check: CheckResult,
    reasons: Vec<String>,
}

fn pass(name: &str, message: impl Into<String>) -> Judged {
    Judged {
        check: CheckResult {
            name: name.into(),
            passed: true,
            message: message.into(),
            skipped: false,
        },
        reasons: Vec::new(),
    }
}

fn skip(name: &str, message: impl Into<String>) -> Judged {
    let mut j = pass(name, message);
    j.check.skipped = true;
    j
}

fn fail(name: &str, message: impl Into<String>, reasons: Vec<String>) -> Judged {
    Judged {
        check: CheckResult {
            name: name.into(),
            passed: false,
            message: message.into(),
            skipped: false,
        },
        reasons,
    }
}

/// Computes the verdict from `f` (see the module docs for the rules).
pub fn judge(f: &Facts) -> Verdict {
    let judged = [
        budget(f),
        exit_status(f),
        exceptions(f),
        processes(f),
        threads(f),
        tasks(f),
        warnings(f),
        phases(f),
    ];
    // One line per cause, even when two checks name it (an unhandled exception fails the
    // exception check and is a warning too).
    let mut reasons: Vec<String> = Vec::new();
    for r in judged.iter().flat_map(|j| j.reasons.iter()) {
        if !reasons.contains(r) {
            reasons.push(r.clone());
        }
    }
    let checks: Vec<CheckResult> = judged.into_iter().map(|j| j.check).collect();
    let clean = checks.iter().all(|c| c.passed);
    let summary = summary(f, clean, &reasons);
    Verdict {
        clean,
        exit_code: if clean { 0 } else { 1 },
        summary,
        reasons,
        checks,
    }
}

const BUDGET: &str = "exited within budget";

fn budget(f: &Facts) -> Judged {
    let Mode::Check {
        stop_signal,
        budget_ms,
    } = f.mode
    else {
        return skip(
            BUDGET,
            "no budget in headless mode: the plan's timeouts apply",
        );
    };
    let sig = signal_name(stop_signal);
    match &f.target_exit {
        None => {
            let m = format!("still running {} after {sig}", secs(budget_ms));
            fail(
                BUDGET,
                m.clone(),
                vec![format!("the target did not exit within the budget: {m}")],
            )
        }
        Some(x) if x.within_budget.unwrap_or(x.after_ms <= budget_ms) => pass(
            BUDGET,
            format!(
                "exited {} after {sig} (budget {})",
                secs(x.after_ms),
                secs(budget_ms)
            ),
        ),
        Some(x) => {
            let m = format!(
                "exited {} after {sig}, past the budget of {}",
                secs(x.after_ms),
                secs(budget_ms)
            );
            fail(BUDGET, m.clone(), vec![format!("the target {m}")])
        }
    }
}

const STATUS: &str = "exit status";

/// SIGTERM's default action killed a Python interpreter: no cleanup code ran.
fn no_cleanup_ran(x: &TargetExit) -> bool {
    x.python && x.status == ExitStatus::Signal(libc::SIGTERM)
}

fn exit_status(f: &Facts) -> Judged {
    let Some(x) = &f.target_exit else {
        return skip(
            STATUS,
            match f.mode {
                Mode::Headless => "the target was still running when the plan ended",
                Mode::Check { .. } => "the target has not exited: no status to judge",
            },
        );
    };
    match x.status {
        ExitStatus::Code(0) => pass(STATUS, "exited with status 0"),
        ExitStatus::Code(c) => {
            let mut m = format!("exited with status {c}");
            if let Some(s) = (c > 128).then(|| c - 128).filter(|s| f.sent().contains(s)) {
                m.push_str(&format!(
                    " (128 + {}: it turned our signal into an exit status, which systemd's \
                     rule does not count as success)",
                    signal_name(s)
                ));
            }
            fail(STATUS, m.clone(), vec![format!("the target {m}")])
        }
        ExitStatus::Signal(s) if f.clean_signals().contains(&s) => {
            let mut m = format!("died by {}, which lifecycle-top sent", signal_name(s));
            if no_cleanup_ran(x) {
                m.push_str(
                    "; SIGTERM's default action ended the interpreter, so no finally blocks \
                     or atexit handlers ran",
                );
            }
            pass(STATUS, m)
        }
        ExitStatus::Signal(s) if f.sent().contains(&s) => {
            let m = format!(
                "killed by {}, which lifecycle-top sent when the budget ran out",
                signal_name(s)
            );
            fail(STATUS, m.clone(), vec![format!("the target was {m}")])
        }
        ExitStatus::Signal(s) => {
            let m = format!(
                "died by {}, which lifecycle-top did not send",
                signal_name(s)
            );
            fail(STATUS, m.clone(), vec![format!("the target {m}")])
        }
        ExitStatus::Unknown => skip(
            STATUS,
            "exited, but its status is not knowable (not lifecycle-top's child)",
        ),
    }
}

const EXCEPTIONS: &str = "no unhandled exceptions";

/// The exception that ended the program (an exception in a thread is a warning: the
/// program may still shut down clean, and `--allow-warnings` accepts it).
fn is_exception(w: &TargetWarning) -> bool {
    w.kind == "unhandled_exception"
}

/// A KeyboardInterrupt that our own SIGINT raised: how Python takes SIGINT, not a fault.
fn ours(f: &Facts, w: &TargetWarning) -> bool {
    w.exc_type.as_deref() == Some("KeyboardInterrupt") && f.sent().contains(&libc::SIGINT)
}

fn warning_line(w: &TargetWarning) -> String {
    let what = match (w.kind.as_str(), w.exc_type.as_deref()) {
        ("unhandled_exception", Some(t)) if !w.message.starts_with(t) => {
            format!("unhandled {t}: {}", w.message)
        }
        ("unhandled_exception", _) => format!("unhandled exception: {}", w.message),
        ("thread_exception", Some(t)) if !w.message.starts_with(t) => {
            format!("exception in a thread: {t}: {}", w.message)
        }
        ("thread_exception", _) => format!("exception in a thread: {}", w.message),
        (kind, _) => format!("warning ({}): {}", kind.replace('_', " "), w.message),
    };
    let mut line: String = what.lines().next().unwrap_or_default().to_string();
    if let Some(p) = &w.phase {
        line.push_str(&format!(" (during \"{p}\")"));
    }
    line
}

/// Said after a check's message when warnings seen while the exit was forced were left out.
fn not_judged(f: &Facts, keep: impl Fn(&TargetWarning) -> bool) -> String {
    let n = f
        .warnings
        .iter()
        .filter(|w| w.after_budget && keep(w))
        .count();
    if n == 0 {
        return String::new();
    }
    format!(
        " ({n} more seen after the budget ran out, while lifecycle-top forced the exit: listed, not judged)"
    )
}

fn exceptions(f: &Facts) -> Judged {
    let bad: Vec<String> = f
        .warnings
        .iter()
        .filter(|w| is_exception(w) && !ours(f, w) && !w.after_budget)
        .map(warning_line)
        .collect();
    let excused = f
        .warnings
        .iter()
        .filter(|w| is_exception(w) && ours(f, w) && !w.after_budget)
        .count();
    let later = not_judged(f, is_exception);
    if bad.is_empty() {
        let mut m = "none".to_string();
        if excused > 0 {
            m = format!(
                "none besides {} raised by our SIGINT (how Python takes SIGINT)",
                plural(excused, "KeyboardInterrupt", "KeyboardInterrupts")
            );
        }
        return pass(EXCEPTIONS, m + &later);
    }
    fail(
        EXCEPTIONS,
        plural(bad.len(), "unhandled exception", "unhandled exceptions") + &later,
        bad,
    )
}

fn leftovers_of<'a>(f: &'a Facts, kinds: &[LeftoverKind]) -> Vec<&'a Leftover> {
    f.leftovers
        .iter()
        .filter(|l| kinds.contains(&l.kind))
        .collect()
}

fn leftover_check(name: &str, left: &[&Leftover], one: &str, many: &str) -> Judged {
    if left.is_empty() {
        return pass(name, "none");
    }
    fail(
        name,
        format!("{} left", plural(left.len(), one, many)),
        left.iter().map(|l| leftover_line(l)).collect(),
    )
}

fn processes(f: &Facts) -> Judged {
    use LeftoverKind::*;
    let left = leftovers_of(f, &[Alive, Zombie, Unkillable, Orphan]);
    leftover_check("no left-over processes", &left, "process", "processes")
}

fn threads(f: &Facts) -> Judged {
    const NAME: &str = "no lingering non-daemon threads";
    let left = leftovers_of(f, &[LeftoverKind::NonDaemonThread]);
    if left.is_empty() && !f.unknowns.is_empty() {
        return skip(NAME, f.unknowns.join("; "));
    }
    leftover_check(NAME, &left, "non-daemon thread", "non-daemon threads")
}

fn tasks(f: &Facts) -> Judged {
    let left = leftovers_of(f, &[LeftoverKind::PendingTasks]);
    leftover_check(
        "no pending tasks",
        &left,
        "set of pending tasks",
        "sets of pending tasks",
    )
}

fn warnings(f: &Facts) -> Judged {
    const NAME: &str = "no warnings";
    let lines: Vec<String> = f
        .warnings
        .iter()
        .filter(|w| !ours(f, w) && !w.after_budget)
        .map(warning_line)
        .collect();
    let later = not_judged(f, |_| true);
    if lines.is_empty() {
        return pass(NAME, format!("none{later}"));
    }
    let n = plural(lines.len(), "warning", "warnings") + &later;
    if f.allow_warnings {
        return pass(NAME, format!("{n}, allowed: {}", lines.join("; ")));
    }
    fail(NAME, n, lines)
}

fn phases(f: &Facts) -> Judged {
    const NAME: &str = "teardown phases";
    let reasons = phase_reasons(&f.phases);
    match f.mode {
        Mode::Check { .. } if f.phases.is_empty() => skip(NAME, "none ran"),
        Mode::Check { .. } => skip(
            NAME,
            format!(
                "{} forced after the budget{}",
                plural(f.phases.len(), "phase", "phases"),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", reasons.join("; "))
                }
            ),
        ),
        Mode::Headless if f.phases.is_empty() => skip(NAME, "no phase ran"),
        Mode::Headless if reasons.is_empty() => pass(
            NAME,
            format!(
                "{} ran, none timed out, failed or escalated",
                plural(f.phases.len(), "phase", "phases")
            ),
        ),
        Mode::Headless => fail(NAME, plural(reasons.len(), "problem", "problems"), reasons),
    }
}

/// One line: how the target ended and whether that is clean.
fn summary(f: &Facts, clean: bool, reasons: &[String]) -> String {
    if !clean {
        let first = reasons.first().map_or("a check failed", String::as_str);
        return match reasons.len() {
            0 | 1 => format!("NOT clean: {first}"),
            n => format!("NOT clean: {first} (and {} more)", n - 1),
        };
    }
    let how = match &f.target_exit {
        None => return "clean: the plan finished; the target is still running (the plan does not stop it)".into(),
        Some(x) => match x.status {
            ExitStatus::Code(c) => format!("the target exited with status {c} after {}", secs(x.after_ms)),
            ExitStatus::Signal(s) => format!(
                "the target died by {} (sent by lifecycle-top) after {}",
                signal_name(s),
                secs(x.after_ms)
            ),
            ExitStatus::Unknown => format!("the target exited after {} (status not knowable)", secs(x.after_ms)),
        },
    };
    let mut s = format!("clean: {how}");
    if f.target_exit.as_ref().is_some_and(no_cleanup_ran) {
        s.push_str(
            "; that was SIGTERM's default action, so no finally blocks or atexit handlers ran",
        );
    } else if f.leftovers.is_empty() {
        s.push_str(", nothing left");
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::teardown::timeline::{Counts, ExitEvent, Outcome, SignalEvent};
    use libc::{SIGINT, SIGKILL, SIGSEGV, SIGTERM};

    const CHECK: Mode = Mode::Check {
        stop_signal: SIGTERM,
        budget_ms: 5000,
    };

    fn exit(status: ExitStatus, after_ms: u64, ours: &[i32]) -> Option<TargetExit> {
        Some(TargetExit {
            status,
            after_ms,
            our_signals: ours.to_vec(),
            within_budget: None,
            python: false,
        })
    }

    fn facts(mode: Mode, target_exit: Option<TargetExit>) -> Facts {
        Facts {
            mode,
            target_exit,
            leftovers: vec![],
            warnings: vec![],
            allow_warnings: false,
            phases: vec![],
            unknowns: vec![],
        }
    }

    fn warning(kind: &str, exc: Option<&str>, message: &str) -> TargetWarning {
        TargetWarning {
            at_unix_ms: 0,
            kind: kind.into(),
            message: message.into(),
            detail: None,
            exc_type: exc.map(String::from),
            source: WarningSource::Agent,
            phase: None,
            after_budget: false,
        }
    }

    fn leftover(kind: LeftoverKind) -> Leftover {
        Leftover {
            pid: 7,
            name: "w".into(),
            kind,
            reason: "why".into(),
        }
    }

    fn rec(outcome: Outcome, action: &str) -> PhaseRecord {
        PhaseRecord {
            index: 0,
            name: "p".into(),
            key: 'p',
            action: action.into(),
            start_ms: 0,
            end_ms: 1,
            outcome,
            before: Counts::default(),
            after: Counts::default(),
            notes: vec![],
            signals: vec![],
            exits: vec![],
            agent_result: None,
        }
    }

    fn failed_checks(v: &Verdict) -> Vec<&str> {
        v.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn exit_status_follows_systemds_success_rule() {
        use ExitStatus::*;
        // (mode, status, signals we sent, clean, the failed check)
        type Row = (Mode, ExitStatus, Vec<i32>, bool, Option<&'static str>);
        let table: Vec<Row> = vec![
            (Mode::Headless, Code(0), vec![], true, None),
            (Mode::Headless, Code(0), vec![SIGINT], true, None),
            (Mode::Headless, Code(1), vec![SIGINT], false, Some(STATUS)),
            (Mode::Headless, Signal(SIGINT), vec![SIGINT], true, None),
            (
                Mode::Headless,
                Signal(SIGTERM),
                vec![SIGINT, SIGTERM],
                true,
                None,
            ),
            (
                Mode::Headless,
                Signal(SIGTERM),
                vec![SIGINT],
                false,
                Some(STATUS),
            ),
            (
                Mode::Headless,
                Signal(SIGSEGV),
                vec![SIGTERM],
                false,
                Some(STATUS),
            ),
            (Mode::Headless, Unknown, vec![SIGTERM], true, None),
            (CHECK, Code(0), vec![SIGTERM], true, None),
            (CHECK, Signal(SIGTERM), vec![SIGTERM], true, None),
            (CHECK, Code(143), vec![SIGTERM], false, Some(STATUS)),
            (CHECK, Signal(SIGINT), vec![SIGTERM], false, Some(STATUS)),
            (
                CHECK,
                Signal(SIGKILL),
                vec![SIGTERM, SIGKILL],
                false,
                Some(STATUS),
            ),
        ];
        for (mode, status, ours, clean, failed) in table {
            let v = judge(&facts(mode, exit(status, 100, &ours)));
            assert_eq!(v.clean, clean, "{mode:?} {status:?} {ours:?}: {v:#?}");
            assert_eq!(v.exit_code, u8::from(!clean));
            assert_eq!(
                failed_checks(&v),
                failed.into_iter().collect::<Vec<_>>(),
                "{v:#?}"
            );
            assert_eq!(v.checks.len(), 8);
            assert!(v.reasons.iter().all(|r| !r.contains('\n')));
            assert!(!v.summary.contains('\n'));
            assert!(
                v.summary
                    .starts_with(if clean { "clean: " } else { "NOT clean: " })
            );
        }
        let v = judge(&facts(CHECK, exit(Code(143), 100, &[SIGTERM])));
        assert!(v.reasons[0].contains("128 + SIGTERM"), "{v:#?}");
        let v = judge(&facts(Mode::Headless, exit(Signal(SIGSEGV), 100, &[])));
        assert_eq!(
            v.reasons,
            vec!["the target died by SIGSEGV, which lifecycle-top did not send"]
        );
    }

    #[test]
    fn budget_is_judged_in_check_mode_only() {
        let v = judge(&facts(CHECK, exit(ExitStatus::Code(0), 4000, &[SIGTERM])));
        assert!(v.clean);
        let v = judge(&facts(CHECK, exit(ExitStatus::Code(0), 6000, &[SIGTERM])));
        assert_eq!(failed_checks(&v), vec![BUDGET]);
        assert_eq!(
            v.reasons,
            vec!["the target exited 6.0 s after SIGTERM, past the budget of 5.0 s"]
        );
        let mut x = exit(ExitStatus::Code(0), 6000, &[SIGTERM]);
        if let Some(x) = &mut x {
            x.within_budget = Some(true); // the caller's clock says so
        }
        assert!(judge(&facts(CHECK, x)).clean);
        let v = judge(&facts(CHECK, None));
        assert_eq!(failed_checks(&v), vec![BUDGET]);
        assert!(
            v.summary.contains("did not exit within the budget"),
            "{}",
            v.summary
        );
        let v = judge(&facts(
            Mode::Headless,
            exit(ExitStatus::Code(0), 60_000, &[]),
        ));
        assert!(v.clean);
        assert!(v.checks.iter().any(|c| c.name == BUDGET && c.skipped));
        // Headless, a plan that does not stop the target: clean, and says so.
        let v = judge(&facts(Mode::Headless, None));
        assert!(v.clean, "{v:#?}");
        assert!(v.summary.contains("still running"));
    }

    #[test]
    fn what_the_forced_exit_provokes_is_listed_not_judged() {
        // The budget ran out; the forced phases' SIGTERM made the handler raise SystemExit
        // inside threading._shutdown (with SIGINT ignored by the CI runner), and a thread
        // raised: only the budget fails, the rest is counted in the checks' messages.
        let mut f = facts(CHECK, exit(ExitStatus::Code(0), 9000, &[SIGTERM]));
        let mut late = warning(
            "unraisable",
            Some("SystemExit"),
            "Exception ignored in: <module 'threading'> (SystemExit: 0)",
        );
        late.after_budget = true;
        let mut late_exc = warning("unhandled_exception", Some("ValueError"), "ValueError: x");
        late_exc.after_budget = true;
        f.warnings = vec![late, late_exc];
        let v = judge(&f);
        assert_eq!(failed_checks(&v), vec![BUDGET], "{v:#?}");
        assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
        let msg = |name: &str| {
            v.checks
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.message.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            msg("no warnings"),
            "none (2 more seen after the budget ran out, while lifecycle-top forced the exit: listed, not judged)"
        );
        assert!(msg(EXCEPTIONS).starts_with("none (1 more seen after the budget"));
        // The same warnings before the budget ran out are judged.
        for w in &mut f.warnings {
            w.after_budget = false;
        }
        let v = judge(&f);
        assert_eq!(failed_checks(&v), vec![BUDGET, EXCEPTIONS, "no warnings"]);
    }

    #[test]
    fn python_killed_by_sigterm_is_clean_but_says_no_cleanup_ran() {
        let mut x = exit(ExitStatus::Signal(SIGTERM), 200, &[SIGTERM]);
        if let Some(x) = &mut x {
            x.python = true;
        }
        let v = judge(&facts(CHECK, x));
        assert!(v.clean);
        assert_eq!(
            v.summary,
            "clean: the target died by SIGTERM (sent by lifecycle-top) after 0.2 s; that was \
             SIGTERM's default action, so no finally blocks or atexit handlers ran"
        );
        let v = judge(&facts(
            CHECK,
            exit(ExitStatus::Signal(SIGTERM), 200, &[SIGTERM]),
        ));
        assert!(!v.summary.contains("atexit"), "not Python: {}", v.summary);
        let v = judge(&facts(CHECK, exit(ExitStatus::Code(0), 1234, &[SIGTERM])));
        assert_eq!(
            v.summary,
            "clean: the target exited with status 0 after 1.2 s, nothing left"
        );
    }

    #[test]
    fn exceptions_and_warnings() {
        let ok = || exit(ExitStatus::Code(0), 10, &[SIGINT]);
        // (warnings, allow_warnings, clean, failed checks)
        let table: Vec<(Vec<TargetWarning>, bool, bool, Vec<&str>)> = vec![
            (vec![], false, true, vec![]),
            (
                vec![warning(
                    "task_destroyed_pending",
                    None,
                    "Task was destroyed but it is pending!",
                )],
                false,
                false,
                vec!["no warnings"],
            ),
            (
                vec![warning(
                    "task_destroyed_pending",
                    None,
                    "Task was destroyed but it is pending!",
                )],
                true,
                true,
                vec![],
            ),
            (
                vec![warning("unhandled_exception", Some("ValueError"), "boom")],
                true,
                false,
                vec![EXCEPTIONS],
            ),
            // An exception in a thread is a warning: the program may still shut down clean.
            (
                vec![warning("thread_exception", Some("OSError"), "gone")],
                false,
                false,
                vec!["no warnings"],
            ),
            (
                vec![warning("thread_exception", Some("OSError"), "gone")],
                true,
                true,
                vec![],
            ),
            // The exception that ended the program is never allowed, and is a warning too.
            (
                vec![warning("unhandled_exception", Some("ValueError"), "boom")],
                false,
                false,
                vec![EXCEPTIONS, "no warnings"],
            ),
            // Our SIGINT raised it: how Python takes SIGINT, not a fault.
            (
                vec![warning(
                    "unhandled_exception",
                    Some("KeyboardInterrupt"),
                    "",
                )],
                false,
                true,
                vec![],
            ),
        ];
        for (w, allow, clean, failed) in table {
            let mut f = facts(Mode::Headless, ok());
            f.warnings = w.clone();
            f.allow_warnings = allow;
            let v = judge(&f);
            assert_eq!(v.clean, clean, "{w:?} allow={allow}: {v:#?}");
            assert_eq!(failed_checks(&v), failed);
        }
        // A KeyboardInterrupt nobody of ours caused is an unhandled exception.
        let mut f = facts(CHECK, exit(ExitStatus::Code(1), 10, &[SIGTERM]));
        f.warnings = vec![warning(
            "unhandled_exception",
            Some("KeyboardInterrupt"),
            "",
        )];
        assert!(failed_checks(&judge(&f)).contains(&EXCEPTIONS));
        let mut w = warning(
            "unhandled_exception",
            Some("ValueError"),
            "boom\nTraceback...",
        );
        w.phase = Some("stop loop".into());
        assert_eq!(
            warning_line(&w),
            "unhandled ValueError: boom (during \"stop loop\")"
        );
    }

    #[test]
    fn leftovers_make_it_unclean_each_in_its_check() {
        use LeftoverKind::*;
        let table = [
            (Alive, "no left-over processes"),
            (Zombie, "no left-over processes"),
            (Unkillable, "no left-over processes"),
            (Orphan, "no left-over processes"),
            (NonDaemonThread, "no lingering non-daemon threads"),
            (PendingTasks, "no pending tasks"),
        ];
        for (kind, check) in table {
            let mut f = facts(CHECK, exit(ExitStatus::Code(0), 10, &[SIGTERM]));
            f.leftovers = vec![leftover(kind)];
            let v = judge(&f);
            assert_eq!(failed_checks(&v), vec![check], "{kind:?}");
            assert_eq!(v.reasons, vec!["left over: 7 (w): why"]);
        }
    }

    #[test]
    fn unknowns_are_said_and_not_unclean_by_themselves() {
        let mut f = facts(Mode::Headless, None);
        f.unknowns = vec!["3 threads besides the main thread; daemon flags unknown".into()];
        let v = judge(&f);
        assert!(v.clean);
        let c = v
            .checks
            .iter()
            .find(|c| c.name == "no lingering non-daemon threads")
            .unwrap();
        assert!(c.skipped && c.message.contains("unknown"), "{c:?}");
    }

    #[test]
    fn headless_phases_judge_check_phases_do_not() {
        let audit = "left-over audit";
        // (outcomes, clean)
        let table: Vec<(Vec<Outcome>, bool)> = vec![
            (vec![Outcome::Ok], true),
            (
                vec![Outcome::Skipped {
                    reason: "no agent".into(),
                }],
                true,
            ),
            (vec![Outcome::TargetExited], true),
            (vec![Outcome::TimedOut], false),
            (vec![Outcome::Escalated], false),
            (vec![Outcome::Failed { reason: "x".into() }], false),
            (vec![Outcome::Aborted], false),
        ];
        for (outcomes, clean) in table {
            let mut f = facts(Mode::Headless, exit(ExitStatus::Code(0), 10, &[]));
            f.phases = outcomes.iter().map(|o| rec(o.clone(), "agent x")).collect();
            assert_eq!(judge(&f).clean, clean, "{outcomes:?}");
            let mut f = facts(CHECK, exit(ExitStatus::Code(0), 10, &[SIGTERM]));
            f.phases = outcomes.iter().map(|o| rec(o.clone(), "agent x")).collect();
            assert!(
                judge(&f).clean,
                "check: forced phases are listed, not judged"
            );
        }
        // An earlier audit reports; only the last one judges.
        let mut f = facts(Mode::Headless, exit(ExitStatus::Code(0), 10, &[]));
        let failed = Outcome::Failed {
            reason: "1 left over".into(),
        };
        f.phases = vec![rec(failed, audit), rec(Outcome::Ok, audit)];
        assert!(judge(&f).clean);
        // A needed SIGKILL is a reason of its own.
        let mut r = rec(Outcome::Escalated, "signal target");
        r.signals.push(SignalEvent {
            at_ms: 1,
            pid: 100,
            name: "app".into(),
            signal: "SIGKILL".into(),
            error: None,
        });
        f.phases = vec![r];
        let v = judge(&f);
        assert_eq!(
            v.reasons,
            vec!["\"p\" needed escalation", "pid 100 (app) needed SIGKILL"]
        );
        assert_eq!(v.summary, "NOT clean: \"p\" needed escalation (and 1 more)");
    }

    #[test]
    fn headless_facts_come_from_the_timeline() {
        let mut t = Timeline::new("python-asyncio", 100, 0);
        let mut r = rec(Outcome::Ok, "signal target");
        r.signals.push(SignalEvent {
            at_ms: 5,
            pid: 100,
            name: "python3".into(),
            signal: "SIGINT".into(),
            error: None,
        });
        r.signals.push(SignalEvent {
            at_ms: 6,
            pid: 101,
            name: "child".into(),
            signal: "SIGTERM".into(),
            error: None,
        });
        r.exits.push(ExitEvent {
            at_ms: 40,
            pid: 100,
            name: "python3".into(),
            status: ExitStatus::Signal(SIGINT),
        });
        t.phases.push(r);
        let f = Facts::from_timeline(&t);
        let x = f.target_exit.as_ref().unwrap();
        assert_eq!(
            (x.status, x.after_ms, x.our_signals.clone(), x.python),
            (ExitStatus::Signal(SIGINT), 40, vec![SIGINT], true)
        );
        let v = Verdict::of(&t);
        assert!(v.clean, "{v:#?}");
        assert_eq!(
            v.summary,
            "clean: the target died by SIGINT (sent by lifecycle-top) after 0.0 s, nothing left"
        );
        // Serde round trip; old verdicts without summary/checks still parse.
        let back: Verdict = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        let old: Verdict =
            serde_json::from_str(r#"{"clean":true,"exit_code":0,"reasons":[]}"#).unwrap();
        assert!(old.checks.is_empty());
        let f2: Facts = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(f2, f);
    }
}
