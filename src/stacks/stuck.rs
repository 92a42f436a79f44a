//! Pure "is this thread stuck?" logic. A thread is stuck when, between two observations, it
//! made no CPU progress, its voluntary context switches did not change (it was not woken and
//! put back to sleep) and it sits at the same wait point. The teardown engine adds "past a
//! phase deadline" and snapshots the stuck threads; this file only compares observations.

use super::ThreadStacks;
use crate::model::{RunState, ThreadInfo, WaitPoint};
use serde::{Deserialize, Serialize};

/// The facts compared across two observations of one thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub tid: i32,
    pub state: RunState,
    pub cpu_ticks: u64,
    pub voluntary_ctxt_switches: Option<u64>,
    pub wait: WaitPoint,
}

impl From<&ThreadInfo> for Observation {
    fn from(t: &ThreadInfo) -> Self {
        Self {
            tid: t.tid,
            state: t.state,
            cpu_ticks: t.cpu_ticks,
            voluntary_ctxt_switches: t.voluntary_ctxt_switches,
            wait: (*t.wait).clone(),
        }
    }
}

impl Observation {
    /// From a stack snapshot's kernel view (`None` if the thread vanished while read).
    pub fn from_stacks(t: &ThreadStacks) -> Option<Self> {
        let k = t.kernel.as_ref()?;
        Some(Self {
            tid: t.tid,
            state: k.state,
            cpu_ticks: k.cpu_ticks,
            voluntary_ctxt_switches: k.voluntary_ctxt_switches,
            wait: k.wait.clone(),
        })
    }
}

/// Two wait points are "the same place": same syscall, same wait channel and, for the
/// syscall, the same object (first argument: fd, futex word, pid). Timeouts and buffers in
/// later arguments may differ between two calls from the same loop, so they are ignored.
pub fn same_wait_point(a: &WaitPoint, b: &WaitPoint) -> bool {
    a.syscall_nr == b.syscall_nr
        && a.wchan == b.wchan
        && a.syscall_args.first() == b.syscall_args.first()
}

/// Why a thread is (not) stuck, so the UI can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Stuck,
    /// Different threads were compared.
    NotSameThread,
    /// Zombie, dead or running: exiting or working, not stuck.
    NotBlocked,
    CpuProgress,
    WokeUp,
    MovedWaitPoint,
}

/// Compare two observations of one thread, `before` then `after`.
pub fn verdict(before: &Observation, after: &Observation) -> Verdict {
    if before.tid != after.tid {
        return Verdict::NotSameThread;
    }
    if matches!(
        after.state,
        RunState::Running | RunState::Zombie | RunState::Dead
    ) {
        return Verdict::NotBlocked;
    }
    if after.cpu_ticks != before.cpu_ticks {
        return Verdict::CpuProgress;
    }
    if after.voluntary_ctxt_switches != before.voluntary_ctxt_switches {
        return Verdict::WokeUp;
    }
    if !same_wait_point(&before.wait, &after.wait) {
        return Verdict::MovedWaitPoint;
    }
    Verdict::Stuck
}

pub fn is_stuck(before: &Observation, after: &Observation) -> bool {
    verdict(before, after) == Verdict::Stuck
}

/// Tids present in both lists that are stuck, in `after`'s order.
pub fn stuck_tids(before: &[Observation], after: &[Observation]) -> Vec<i32> {
    after
        .iter()
        .filter(|a| before.iter().any(|b| b.tid == a.tid && is_stuck(b, a)))
        .map(|a| a.tid)
        .collect()
}

/// Same, straight from two collector thread lists.
pub fn stuck_threads(before: &[ThreadInfo], after: &[ThreadInfo]) -> Vec<i32> {
    let b: Vec<Observation> = before.iter().map(Observation::from).collect();
    let a: Vec<Observation> = after.iter().map(Observation::from).collect();
    stuck_tids(&b, &a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(tid: i32, cpu: u64, vol: u64, nr: i64, arg0: u64) -> Observation {
        Observation {
            tid,
            state: RunState::Sleeping,
            cpu_ticks: cpu,
            voluntary_ctxt_switches: Some(vol),
            wait: WaitPoint {
                wchan: Some("futex_wait_queue".into()),
                syscall_nr: Some(nr),
                syscall: None,
                syscall_args: vec![arg0, 0x80, 0, 0, 0, 0],
            },
        }
    }

    #[test]
    fn identical_blocked_thread_is_stuck() {
        assert_eq!(
            verdict(&obs(1, 5, 9, 202, 0x10), &obs(1, 5, 9, 202, 0x10)),
            Verdict::Stuck
        );
    }

    #[test]
    fn each_kind_of_progress_is_not_stuck() {
        let b = obs(1, 5, 9, 202, 0x10);
        assert_eq!(verdict(&b, &obs(1, 6, 9, 202, 0x10)), Verdict::CpuProgress);
        assert_eq!(verdict(&b, &obs(1, 5, 10, 202, 0x10)), Verdict::WokeUp);
        assert_eq!(verdict(&b, &obs(1, 5, 9, 0, 0x10)), Verdict::MovedWaitPoint);
        assert_eq!(
            verdict(&b, &obs(1, 5, 9, 202, 0x20)),
            Verdict::MovedWaitPoint
        );
        assert_eq!(
            verdict(&b, &obs(2, 5, 9, 202, 0x10)),
            Verdict::NotSameThread
        );
        let mut running = obs(1, 5, 9, 202, 0x10);
        running.state = RunState::Running;
        assert_eq!(verdict(&b, &running), Verdict::NotBlocked);
        let mut zombie = running.clone();
        zombie.state = RunState::Zombie;
        assert!(!is_stuck(&b, &zombie));
    }

    #[test]
    fn later_args_may_change() {
        let b = obs(1, 5, 9, 7, 3);
        let mut a = b.clone();
        a.wait.syscall_args[2] = 1000;
        assert!(is_stuck(&b, &a));
    }

    #[test]
    fn stuck_tids_joins_by_tid_and_ignores_new_threads() {
        let before = vec![obs(1, 5, 9, 202, 1), obs(2, 5, 9, 202, 2)];
        let after = vec![
            obs(3, 0, 0, 202, 3),
            obs(2, 5, 9, 202, 2),
            obs(1, 7, 9, 202, 1),
        ];
        assert_eq!(stuck_tids(&before, &after), vec![2]);
    }
}
