//! Success rules and the left-over audit: the judgements the engine makes over [`World`].

use super::engine::Effect;
use super::plan::SuccessRule;
use super::timeline::{LeftoverKind, Outcome, Timeline};
use super::world::World;

/// Is the phase's goal reached? Rules that need the agent count as met without one (agent
/// phases are skipped then; other phases cannot know and must not wait for nothing).
pub fn met(rule: SuccessRule, world: &World) -> bool {
    match rule {
        SuccessRule::NoChildren => world.live_children().is_empty(),
        SuccessRule::NoPendingTasks => world.pending_tasks().is_none_or(|n| n == 0),
        SuccessRule::TargetExited => world.target_exited(),
        SuccessRule::NoNonDaemonThreads => world.non_daemon_threads().is_none_or(|v| v.is_empty()),
        SuccessRule::None => true,
    }
}

/// Lists what is left (stored in the timeline), asks for stacks of non-daemon threads and
/// unkillable processes, and judges: ok when nothing is left. What cannot be known (threads
/// without the agent) is said as such, never as "nothing left".
pub fn audit(
    timeline: &mut Timeline,
    world: &World,
    now: u64,
    stacks: bool,
    notes: &mut Vec<String>,
    out: &mut Vec<Effect>,
) -> Outcome {
    let left = world.leftovers(now);
    for l in &left {
        notes.push(format!("{} ({}): {}", l.pid, l.name, l.reason));
    }
    if stacks {
        let tids: Vec<i32> = left
            .iter()
            .filter(|l| l.kind == LeftoverKind::NonDaemonThread)
            .map(|l| l.pid)
            .collect();
        // Thread ids are the agent's process's, which may be a descendant of the target.
        if let (false, Some(key)) = (tids.is_empty(), world.agent_process()) {
            out.push(Effect::SnapshotStacks {
                key,
                tids,
                reason: "non-daemon threads at the audit".into(),
            });
        }
        let listed = world.snapshot.iter().flat_map(|s| &s.processes);
        for l in left.iter().filter(|l| l.kind == LeftoverKind::Unkillable) {
            // Left-overs are listed by pid; their key comes from the same snapshot.
            if let Some(p) = listed.clone().find(|p| p.key.pid == l.pid) {
                out.push(Effect::SnapshotStacks {
                    key: p.key,
                    tids: Vec::new(),
                    reason: l.reason.clone(),
                });
            }
        }
    }
    let unknowns = world.unknowns();
    notes.extend(unknowns.iter().cloned());
    let outcome = if left.is_empty() {
        notes.push(if unknowns.is_empty() {
            "nothing left".into()
        } else {
            "no left-over processes".into()
        });
        Outcome::Ok
    } else {
        Outcome::Failed {
            reason: format!("{} left over", left.len()),
        }
    };
    timeline.leftovers = left;
    timeline.unknowns = unknowns;
    outcome
}
