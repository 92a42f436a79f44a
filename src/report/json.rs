//! The JSON report (`--report FILE`): typed with serde so CI can decode it back and assert on
//! phases; `version` is bumped on incompatible changes.

use crate::teardown::timeline::{Outcome, Timeline};
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
        let mut reasons = Vec::new();
        for p in &t.phases {
            match &p.outcome {
                Outcome::Ok | Outcome::Skipped { .. } => {}
                Outcome::Escalated => reasons.push(format!("\"{}\" needed escalation", p.name)),
                Outcome::TimedOut => reasons.push(format!("\"{}\" timed out", p.name)),
                Outcome::Failed { reason } => {
                    reasons.push(format!("\"{}\" failed: {reason}", p.name))
                }
            }
            for s in p
                .signals
                .iter()
                .filter(|s| s.signal == "SIGKILL" && s.error.is_none())
            {
                reasons.push(format!("pid {} ({}) needed SIGKILL", s.pid, s.name));
            }
        }
        for l in &t.leftovers {
            reasons.push(format!("left over: {} ({}): {}", l.pid, l.name, l.reason));
        }
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
