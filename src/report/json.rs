//! The JSON report (`--report FILE`): typed with serde so CI can decode it back and assert on
//! phases; `version` is bumped on incompatible changes.

use crate::teardown::timeline::Timeline;
use crate::verdict::{Facts, TargetExit, TargetWarning};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub tool: String,
    pub plan: String,
    pub plan_source: String,
    pub target: TargetInfo,
    pub verdict: Verdict,
    /// How the target ended; `None`: still running when lifecycle-top stopped looking.
    #[serde(default)]
    pub target_exit: Option<TargetExit>,
    /// What the target warned about (asyncio warnings, unhandled exceptions...).
    #[serde(default)]
    pub warnings: Vec<TargetWarning>,
    /// What could not be known (e.g. thread daemon flags without the agent), one line each.
    #[serde(default)]
    pub unknowns: Vec<String>,
    pub timeline: Timeline,
    /// Stacks captured when a phase timed out or an audit found non-daemon threads.
    #[serde(default)]
    pub stacks: Vec<crate::stacks::StackSnapshot>,
    /// stdout + stderr of a launched command (the best evidence: its tracebacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub pid: i32,
    pub name: String,
    pub cmdline: Vec<String>,
}

/// The verdict (clean or not, why, and each check) is computed by [`crate::verdict::judge`].
pub use crate::verdict::Verdict;

impl Report {
    /// The headless report: facts from the timeline alone (no warnings).
    pub fn new(timeline: &Timeline, plan_source: &str, target: TargetInfo) -> Report {
        Self::from_facts(
            timeline,
            plan_source,
            target,
            Facts::from_timeline(timeline),
        )
    }

    /// A report judged on `facts` (e.g. [`Facts::from_timeline`] plus the warnings seen).
    pub fn from_facts(
        timeline: &Timeline,
        plan_source: &str,
        target: TargetInfo,
        facts: Facts,
    ) -> Report {
        Report {
            version: REPORT_VERSION,
            tool: format!("lifecycle-top {}", env!("CARGO_PKG_VERSION")),
            plan: timeline.plan.clone(),
            plan_source: plan_source.to_string(),
            target,
            verdict: crate::verdict::judge(&facts),
            target_exit: facts.target_exit,
            warnings: facts.warnings,
            unknowns: facts.unknowns,
            timeline: timeline.clone(),
            stacks: Vec::new(),
            log_file: None,
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::teardown::timeline::{Counts, Outcome, PhaseRecord};

    fn rec(index: usize, action: &str, outcome: Outcome) -> PhaseRecord {
        PhaseRecord {
            index,
            name: format!("p{index}"),
            key: 'x',
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

    #[test]
    fn only_the_last_audit_judges() {
        let failed = Outcome::Failed {
            reason: "1 left over".into(),
        };
        let mut t = Timeline::new("p", 1, 0);
        t.phases.push(rec(0, "left-over audit", failed.clone()));
        t.phases.push(rec(1, "signal target SIGINT", Outcome::Ok));
        t.phases.push(rec(2, "left-over audit", Outcome::Ok));
        let v = Verdict::of(&t);
        assert!(v.clean, "{v:?}");
        t.phases[2].outcome = failed;
        let v = Verdict::of(&t);
        assert_eq!(
            (v.clean, v.exit_code, v.reasons.len()),
            (false, 1, 1),
            "{v:?}"
        );
    }

    #[test]
    fn reports_carry_checks_and_old_reports_still_parse() {
        let mut t = Timeline::new("p", 1, 0);
        t.phases.push(rec(0, "left-over audit", Outcome::Ok));
        t.unknowns.push("2 threads besides the main thread".into());
        let target = TargetInfo {
            pid: 1,
            name: "x".into(),
            cmdline: vec![],
        };
        let r = Report::new(&t, "", target);
        assert!(!r.verdict.checks.is_empty());
        assert_eq!(r.unknowns, t.unknowns);
        let mut v = serde_json::to_value(&r).unwrap();
        let obj = v.as_object_mut().unwrap();
        for k in ["target_exit", "warnings", "unknowns"] {
            obj.remove(k);
        }
        obj["verdict"] = serde_json::json!({"clean": true, "exit_code": 0, "reasons": []});
        obj["timeline"].as_object_mut().unwrap().remove("unknowns");
        let old: Report = serde_json::from_value(v).unwrap();
        assert!(old.warnings.is_empty() && old.verdict.summary.is_empty());
    }
}
