//! Teardown: plans of phases ([`plan`]), the pure state machine that runs them ([`engine`]),
//! the executor that is the only code sending signals ([`exec`]), the timeline they produce
//! ([`timeline`]) and the tokio [`runner`] that the TUI and headless mode both drive.

pub mod engine;
pub mod exec;
pub mod plan;
mod plan_fields;
mod rules;
pub mod runner;
mod signal_phase;
pub mod timeline;
pub mod world;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_agent;
#[cfg(test)]
mod tests_plan;
#[cfg(test)]
mod tests_signal;

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use engine::{Effect, Engine, Input};
pub use plan::{Phase, Plan, PlanError};
pub use runner::{PhaseEvent, Runner, RunnerHandle};
pub use timeline::{Outcome, PhaseRecord, Timeline};

/// User commands (TUI keys `n`, `1`..`9`, `a`, `x`, `+`; headless sends `RunAll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    RunNext,
    RunPhase(usize),
    RunAll,
    Abort,
    ExtendTimeout(Duration),
}

/// The engine's view of the in-process agent, so teardown never waits for the agent client.
/// The lead implements it for `agent::AgentRequester`.
pub trait AgentPort: Send + Sync {
    fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>>;
}
