//! The readable headless summary: one block per phase as it finishes, then a verdict. Plain
//! text (no colours) so CI logs stay readable.

use super::json::Verdict;
use crate::teardown::timeline::{Counts, Outcome, PhaseRecord, Timeline};

fn opt(n: Option<usize>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

fn counts(c: &Counts) -> String {
    format!(
        "threads {} (non-daemon {}), children {}, tasks {}",
        c.threads,
        opt(c.non_daemon_threads),
        c.children,
        opt(c.pending_tasks)
    )
}

pub fn started(index: usize, total: usize, name: &str, action: &str) -> String {
    format!("[{}/{total}] {name}: {action} ...", index + 1)
}

pub fn finished(r: &PhaseRecord) -> String {
    let mut s = format!(
        "      {} after {:.2} s",
        match &r.outcome {
            Outcome::Failed { reason } => format!("FAILED: {reason}"),
            Outcome::Skipped { reason } => format!("skipped: {reason}"),
            o => o.label().to_uppercase(),
        },
        r.duration_ms() as f64 / 1000.0
    );
    s.push_str(&format!(
        "\n      before: {}\n      after:  {}",
        counts(&r.before),
        counts(&r.after)
    ));
    for n in &r.notes {
        s.push_str(&format!("\n      - {n}"));
    }
    s
}

/// The closing lines of a headless run: the one-line summary, then each reason and what could
/// not be known.
pub fn verdict(t: &Timeline) -> String {
    verdict_text(&Verdict::of(t), &t.unknowns)
}

/// The same for any verdict (headless with warnings, `check`).
pub fn verdict_text(v: &Verdict, unknowns: &[String]) -> String {
    let mut s = if v.clean {
        v.summary.clone()
    } else {
        format!("NOT clean (exit {}):", v.exit_code)
    };
    for r in &v.reasons {
        s.push_str(&format!("\n  - {r}"));
    }
    for u in unknowns {
        s.push_str(&format!("\n  unknown: {u}"));
    }
    s
}

pub fn exit_status(s: crate::model::ExitStatus) -> String {
    use crate::model::ExitStatus;
    match s {
        ExitStatus::Code(c) => format!("exit code {c}"),
        ExitStatus::Signal(sig) => format!("killed by {}", crate::teardown::plan::signal_name(sig)),
        ExitStatus::Unknown => "exited (status not knowable: not our child)".into(),
    }
}

/// The line printed for a runner event as it happens (`None`: nothing to print).
pub fn event(
    plan: &crate::teardown::Plan,
    target: crate::model::ProcKey,
    ev: &crate::teardown::PhaseEvent,
) -> Option<String> {
    use crate::teardown::PhaseEvent;
    use crate::teardown::plan::signal_name;
    Some(match ev {
        PhaseEvent::Started { index, name } => {
            let action = plan
                .phases
                .get(*index)
                .map(|p| p.action.describe())
                .unwrap_or_default();
            started(*index, plan.phases.len(), name, &action)
        }
        PhaseEvent::Finished(rec) => finished(rec),
        PhaseEvent::Signal {
            key,
            sig,
            name,
            result,
            ..
        } => match result {
            Ok(()) => format!("      {} -> pid {} ({name})", signal_name(*sig), key.pid),
            Err(e) => format!(
                "      {} -> pid {} ({name}): {e}",
                signal_name(*sig),
                key.pid
            ),
        },
        PhaseEvent::ExitNoticed { key, status, .. } => {
            let who = if *key == target { "target" } else { "child" };
            format!(
                "      {who} pid {} exited: {}",
                key.pid,
                exit_status(*status)
            )
        }
        PhaseEvent::Progress { note, .. } => format!("      {note}"),
        PhaseEvent::SnapshotStacks { .. }
        | PhaseEvent::RefreshNow
        | PhaseEvent::Timeline(_)
        | PhaseEvent::AllDone(_) => return None,
    })
}
