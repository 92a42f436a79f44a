//! Words the dashboard shows about what happened, one line each: a finished phase (its real
//! outcome: aborted, timed out after its timeout), the agent phases that cannot
//! act now, by name; and the stack pane's line count (its scroll limit).

use crate::stacks::StackSnapshot;
use crate::teardown::timeline::{Outcome, PhaseRecord};
use std::time::Duration;

/// A phase record's outcome as the dashboard names it: the engine's label (an aborted run
/// is recorded as `aborted`, so a replay names it as the live dashboard did).
pub fn phase_outcome(rec: &PhaseRecord) -> &'static str {
    rec.outcome.label()
}

/// The status line after a phase finished: `phase 2 terminate children: escalated after
/// 3.0 s · pid 4711 (worker) ignored SIGTERM, killed after 3.0 s`.
pub(super) fn finished_line(rec: &PhaseRecord, timeout: Option<Duration>) -> String {
    let what = outcome_text(rec, timeout);
    let mut line = format!("phase {} {}: {what}", rec.index + 1, rec.name);
    if let Some(n) = rec.notes.last() {
        line.push_str(" · ");
        line.push_str(n);
    }
    line
}

/// How a phase ended, in words: `aborted after 0.5 s`, `timed out: its 5.0 s timeout ran
/// out`, `escalated after 3.0 s`, `failed after 0.1 s: reason`.
pub fn outcome_text(rec: &PhaseRecord, timeout: Option<Duration>) -> String {
    let took = secs(rec.duration_ms() as f64 / 1000.0);
    match (&rec.outcome, timeout) {
        (Outcome::TimedOut, Some(t)) => {
            format!("timed out: its {} timeout ran out", secs(t.as_secs_f64()))
        }
        (Outcome::Failed { reason }, _) => format!("failed after {took}: {reason}"),
        (Outcome::Skipped { reason }, _) => format!("skipped: {reason}"),
        (o, _) => format!("{} after {took}", o.label()),
    }
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

/// Agent phases that cannot act now, by name, grouped by reason: `cannot act now (no agent):
/// cancel tasks, shut down executors`.
pub(super) fn gaps_line(gaps: &[(String, String)]) -> Option<String> {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, why) in gaps {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, names)) => names.push(name),
            None => reasons.push((why, vec![name])),
        }
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|(why, names)| format!("cannot act now ({why}): {}", names.join(", ")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// How many text lines the stack pane draws for `snap` (the widget draws exactly these:
/// snapshot errors; per thread a title, per source a label and its frames, the kernel stack
/// when readable, the thread's errors; per task a title, what it awaits, a label and its
/// frames). A test in the UI keeps the two in step.
pub fn stack_line_count(snap: &StackSnapshot) -> usize {
    snap.errors.len()
        + snap
            .threads
            .iter()
            .map(|t| {
                let kernel = t
                    .kernel
                    .as_ref()
                    .filter(|k| !k.kernel_stack.is_empty())
                    .map_or(0, |k| 1 + k.kernel_stack.len());
                1 + t.stacks.iter().map(|s| 1 + s.frames.len()).sum::<usize>()
                    + kernel
                    + t.errors.len()
            })
            .sum::<usize>()
        + snap
            .tasks
            .iter()
            // Title, the awaited thing, the chain's label, its frames (or "no frames").
            .map(|t| {
                2 + usize::from(t.awaiting.is_some())
                    + usize::from(t.created_at.is_some())
                    + t.frames.len().max(1)
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teardown::timeline::Counts;

    fn rec(outcome: Outcome, ms: u64) -> PhaseRecord {
        PhaseRecord {
            index: 2,
            name: "shut down executors".into(),
            key: 'e',
            action: "agent shutdown_executors".into(),
            start_ms: 1000,
            end_ms: 1000 + ms,
            outcome,
            before: Counts::default(),
            after: Counts::default(),
            notes: vec!["1 executor still has workers".into()],
            signals: vec![],
            exits: vec![],
            agent_result: None,
        }
    }

    #[test]
    fn a_timeout_names_the_phase_timeout_not_the_elapsed_time() {
        let line = finished_line(&rec(Outcome::TimedOut, 4500), Some(Duration::from_secs(5)));
        assert_eq!(
            line,
            "phase 3 shut down executors: timed out: its 5.0 s timeout ran out · 1 executor still has workers"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn an_abort_is_named_aborted() {
        let line = finished_line(&rec(Outcome::Aborted, 800), None);
        assert!(
            line.starts_with("phase 3 shut down executors: aborted after 0.8 s"),
            "{line}"
        );
        assert_eq!(phase_outcome(&rec(Outcome::Aborted, 800)), "aborted");
        let failed = Outcome::Failed {
            reason: "aborted by the user".into(),
        };
        assert_eq!(phase_outcome(&rec(failed, 800)), "failed");
    }

    #[test]
    fn gaps_are_named() {
        let g = |n: &str, w: &str| (n.to_string(), w.to_string());
        assert_eq!(
            gaps_line(&[
                g("cancel tasks", "no agent"),
                g("stop loop", "no agent"),
                g("flush", "the app registered no phase \"flush\"")
            ])
            .as_deref(),
            Some(
                "cannot act now (no agent): cancel tasks, stop loop · cannot act now (the app \
                 registered no phase \"flush\"): flush"
            )
        );
        assert_eq!(gaps_line(&[]), None);
    }
}
