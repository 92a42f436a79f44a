//! Starting a phase (what to signal or request, or why it is skipped) and judging the running
//! one (done, escalate, timed out) for the [`Engine`].

use super::reply::Judgement;
use super::{Active, Effect, Engine, Kind};
use crate::teardown::AgentPortError;
use crate::teardown::plan::{Action, OnTimeout, Phase};
use crate::teardown::signal_phase::SignalState;
use crate::teardown::timeline::Outcome;
use serde_json::json;

impl Engine {
    pub(super) fn start(&mut self, now: u64, index: usize, out: &mut Vec<Effect>) {
        let phase = self.plan.phases[index].clone();
        self.next_index = index + 1;
        self.all_done_sent = false;
        out.push(Effect::PhaseStarted {
            index,
            name: phase.name.clone(),
        });
        out.push(Effect::RefreshNow);
        self.runs += 1;
        let mut a = Active {
            index,
            run: self.runs,
            start_ms: now,
            deadline_ms: now.saturating_add(phase.timeout.as_millis() as u64),
            before: self.world.counts(),
            notes: Vec::new(),
            signals: Vec::new(),
            exits: Vec::new(),
            snapshots_at_start: self.world.snapshots_seen,
            kind: Kind::Wait,
        };
        let skip = |reason: &str| {
            Some(Outcome::Skipped {
                reason: reason.to_string(),
            })
        };
        let skipped = match &phase.action {
            Action::Agent(_) if self.world.target_exited() => skip("the target has exited"),
            Action::Agent(_) if self.world.agent_exiting => {
                // Whether the agent's "exiting" came just before this phase or just after its
                // request went out must not change the outcome: wait (briefly) for the exit
                // the agent announced, as the phase would have with its request in flight.
                let until_ms = now
                    .saturating_add(super::GONE_CONFIRM_MS)
                    .min(a.deadline_ms);
                a.deadline_ms = until_ms;
                a.kind = Kind::AgentExiting;
                out.push(Effect::RefreshNow);
                None
            }
            Action::Agent(_) if self.world.agent.is_none() => skip(
                "no agent connected (launch with `-- CMD` to inject it, or call lifecycle_top_agent.install())",
            ),
            Action::Agent(req) => {
                let timeout_ms = phase.timeout.as_millis() as u64;
                let mut params = json!({ "timeout_ms": timeout_ms });
                use crate::teardown::plan::AgentRequest;
                match req {
                    AgentRequest::RunPhase(name) => params["name"] = json!(name),
                    AgentRequest::RunPhases => params["name"] = json!("*"),
                    AgentRequest::CloseHandles(kinds) => params["kinds"] = json!(kinds),
                    AgentRequest::Exit => params = json!({ "mode": "exit", "code": 0 }),
                    _ => {}
                }
                out.push(Effect::AgentRequest {
                    run: a.run,
                    phase: index,
                    method: req.method().to_string(),
                    params,
                    timeout: phase.timeout,
                });
                a.kind = Kind::Agent {
                    replied: false,
                    error: None,
                    gone: None,
                    judgement: None,
                    result: None,
                };
                None
            }
            Action::SignalTarget { .. } if self.world.target_exited() => {
                skip("the target has already exited")
            }
            Action::SignalTarget { signals }
                if self.world.agent_exiting || self.world.main_resumed =>
            {
                self.world.target_signalled = true;
                a.notes.push(if self.world.agent_exiting {
                    format!(
                        "the target is exiting on its own (its agent said so): it gets {:.1} s before any signal",
                        phase.timeout.as_secs_f64()
                    )
                } else {
                    format!(
                        "the main task resumed after its awaited task was cancelled: the target gets {:.1} s to finish on its own before any signal",
                        phase.timeout.as_secs_f64()
                    )
                });
                // Once: a target still running after that grace is signalled as usual.
                self.world.main_resumed = false;
                a.kind = Kind::ExitingOnItsOwn {
                    signals: signals.clone(),
                    until_ms: a.deadline_ms,
                };
                None
            }
            Action::SignalTarget { signals } => {
                self.world.target_signalled = true;
                let st = SignalState::for_target(&self.world, signals.clone(), now);
                a.kind = Kind::Signal(st);
                None
            }
            Action::SignalChildren { signals, scope } => {
                a.kind = Kind::Signal(SignalState::for_children(
                    &self.world,
                    signals.clone(),
                    *scope,
                    now,
                ));
                None
            }
            Action::WaitExit => None,
            Action::Audit { .. } => {
                a.kind = Kind::Audit;
                None
            }
        };
        if let Kind::Signal(st) = &mut a.kind {
            st.send_current(&self.world, now, None, &mut a.notes, out);
        }
        self.active = Some(a);
        if let Some(outcome) = skipped {
            self.finish(now, outcome, out);
        }
    }

    /// `Some(outcome)` when the running phase is over.
    pub(super) fn evaluate(
        &mut self,
        now: u64,
        phase: &Phase,
        a: &mut Active,
        out: &mut Vec<Effect>,
    ) -> Option<Outcome> {
        let mut timed_out = now >= a.deadline_ms;
        let rule_met = crate::teardown::rules::met(phase.success, &self.world);
        if let Kind::ExitingOnItsOwn { signals, until_ms } = &a.kind {
            if self.world.target_exited() {
                a.notes
                    .push("the target exited on its own: no signal was needed".into());
                return Some(Outcome::Ok);
            }
            if now < *until_ms {
                return None;
            }
            // It did not: the escalation starts now, with its full timeout per step.
            a.notes.push(format!(
                "still running {:.1} s later: signalling it",
                phase.timeout.as_secs_f64()
            ));
            let mut st = SignalState::for_target(&self.world, signals.clone(), now);
            st.send_current(&self.world, now, None, &mut a.notes, out);
            a.deadline_ms = now.saturating_add(phase.timeout.as_millis() as u64);
            a.kind = Kind::Signal(st);
            return None;
        }
        match &mut a.kind {
            Kind::Agent {
                replied,
                error,
                gone,
                judgement,
                ..
            } => {
                // The same facts give the same outcome whatever arrived first: a target seen
                // gone (exit or snapshot) ends the phase as "target exited", whether the
                // agent answered, lost its connection or had not answered yet.
                if self.world.target_exited() {
                    a.notes.push(match gone {
                        Some(_) => "the target exited; the agent's connection ended with it".into(),
                        None => "the target exited during the phase".into(),
                    });
                    return Some(Outcome::TargetExited);
                }
                if let Some(g) = gone {
                    if self.world.agent_exiting {
                        a.notes.push(
                            "the agent said the interpreter is exiting, then its connection ended"
                                .into(),
                        );
                        return Some(Outcome::TargetExited);
                    }
                    let fresh = self.world.snapshots_seen > g.snapshots_at;
                    if (now >= g.confirm_ms && fresh) || timed_out {
                        return Some(Outcome::Failed {
                            reason: format!(
                                "{}; the target is still running {:.1} s later",
                                g.reason,
                                now.saturating_sub(g.at_ms) as f64 / 1000.0
                            ),
                        });
                    }
                    if now >= g.confirm_ms && !g.confirm_passed {
                        // Any snapshot now decides; until one comes, wake at the deadline.
                        g.confirm_passed = true;
                        out.push(Effect::RefreshNow);
                    }
                    return None;
                }
                match error.take() {
                    Some(AgentPortError::Timeout(why)) => {
                        a.notes.push(why);
                        timed_out = true;
                    }
                    Some(e) => {
                        return Some(Outcome::Failed {
                            reason: e.to_string(),
                        });
                    }
                    None => {}
                }
                match judgement {
                    Some(Judgement::Failed(reason)) => {
                        return Some(Outcome::Failed {
                            reason: reason.clone(),
                        });
                    }
                    // The agent already waited its budget: no use waiting for the deadline.
                    Some(Judgement::Unfinished(_)) => timed_out = true,
                    Some(Judgement::Done) | None => {}
                }
                // The answer said the target exits now: the phase ends with that exit (seen
                // above), so what follows does not depend on how fast the process went.
                if *replied && self.world.exit_announced && !timed_out {
                    return None;
                }
                if *replied && rule_met && !timed_out {
                    return Some(Outcome::Ok);
                }
            }
            Kind::ExitingOnItsOwn { .. } => return None,
            Kind::AgentExiting => {
                if self.world.target_exited() {
                    a.notes.push(
                        "the target exited (its agent had said the interpreter is exiting)".into(),
                    );
                    return Some(Outcome::TargetExited);
                }
                if timed_out {
                    return Some(Outcome::Skipped {
                        reason: "the target is exiting (its agent said so at interpreter exit)"
                            .into(),
                    });
                }
                return None;
            }
            Kind::Wait => {
                if rule_met {
                    return Some(Outcome::Ok);
                }
            }
            Kind::Signal(st) => {
                st.forget_gone(&self.world);
                if st.victims.is_empty() {
                    // "No children left" is judged on a snapshot taken after the last one
                    // went, so a child re-spawned meanwhile is not missed.
                    let seen = self.world.snapshots_seen;
                    let fresh = match st.confirm_after {
                        _ if !st.children => true,
                        None => {
                            st.confirm_after = Some(seen);
                            out.push(Effect::RefreshNow);
                            false
                        }
                        Some(n) => seen > n,
                    };
                    if !fresh && !timed_out {
                        return None;
                    }
                    if rule_met {
                        return Some(if st.step > 0 {
                            Outcome::Escalated
                        } else {
                            Outcome::Ok
                        });
                    }
                    // New children appeared (a parent re-spawned them): they get the same signal.
                    st.confirm_after = None;
                    st.adopt_new_children(&self.world);
                    st.send_current(&self.world, now, None, &mut a.notes, out);
                }
                if timed_out
                    && phase.on_timeout == OnTimeout::Escalate
                    && st.step + 1 < st.signals.len()
                {
                    let due = a.deadline_ms;
                    st.escalate(&mut self.world, now, due, &mut a.notes, out);
                    a.deadline_ms = now.saturating_add(phase.timeout.as_millis() as u64);
                    return None;
                }
                if timed_out {
                    st.note_survivors(&self.world, now, &mut a.notes);
                    if phase.on_timeout == OnTimeout::Snapshot {
                        for v in &st.victims {
                            out.push(Effect::SnapshotStacks {
                                key: v.key,
                                tids: Vec::new(),
                                reason: format!("still alive at the end of \"{}\"", phase.name),
                            });
                        }
                    }
                    return Some(Outcome::TimedOut);
                }
                return None;
            }
            Kind::Audit => {
                if self.world.snapshots_seen > a.snapshots_at_start || timed_out {
                    let stacks = matches!(phase.action, Action::Audit { stacks: true });
                    return Some(crate::teardown::rules::audit(
                        &mut self.timeline,
                        &self.world,
                        now,
                        stacks,
                        &mut a.notes,
                        out,
                    ));
                }
                return None;
            }
        }
        if timed_out {
            // Agent threads belong to the agent's process (maybe a child of the target); with
            // no agent, the whole target.
            let key = self.world.agent_process().unwrap_or(self.world.target);
            if phase.on_timeout == OnTimeout::Snapshot && !self.world.is_gone(key) {
                let tids = self
                    .world
                    .non_daemon_threads()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.0)
                    .collect();
                out.push(Effect::SnapshotStacks {
                    key,
                    tids,
                    reason: format!("\"{}\" timed out", phase.name),
                });
            }
            return Some(Outcome::TimedOut);
        }
        None
    }
}
