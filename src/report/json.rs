//! The JSON report (`--report FILE`): typed with serde so CI can decode it back and assert on
//! phases; `version` is bumped on incompatible changes.

use crate::teardown::timeline::Timeline;
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
    pub timeline: Timeline,
    /// Stacks captured when a phase timed out or an audit found non-daemon threads.
    #[serde(default)]
    pub stacks: Vec<crate::stacks::StackSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub pid: i32,
    pub name: String,
    pub cmdline: Vec<String>,
}

/// The answer CI wants: did the tree shut down clean? `exit_code` is what headless returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub clean: bool,
    pub exit_code: u8,
    /// Why it is not clean, one line each (empty when clean).
    pub reasons: Vec<String>,
}

impl Verdict {
    /// 0 clean and no escalation; 1 something lingered, timed out, failed or needed SIGKILL.
    pub fn of(t: &Timeline) -> Verdict {
        let reasons = t.unclean_reasons();
        let clean = reasons.is_empty();
        Verdict {
            clean,
            exit_code: if clean { 0 } else { 1 },
            reasons,
        }
    }
}

impl Report {
    pub fn new(timeline: &Timeline, plan_source: &str, target: TargetInfo) -> Report {
        Report {
            version: REPORT_VERSION,
            tool: format!("lifecycle-top {}", env!("CARGO_PKG_VERSION")),
            plan: timeline.plan.clone(),
            plan_source: plan_source.to_string(),
            target,
            verdict: Verdict::of(timeline),
            timeline: timeline.clone(),
            stacks: Vec::new(),
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
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
}
