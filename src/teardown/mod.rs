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
mod tests_agent_exit;
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
pub use plan_fields::parse_signal;
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

/// Why an agent request got no result. The engine judges each class differently: `Gone` is
/// not a failure by itself (the target is probably exiting: the phase waits to see), a
/// `Timeout` ends the phase as timed out, `Refused` and `Other` fail it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentPortError {
    /// The connection is not there (not connected, lost before the answer, client stopped,
    /// agent unavailable because the interpreter is shutting down). The text says which.
    Gone(String),
    /// No answer within the request's timeout (`AgentError::Timeout`).
    Timeout(String),
    /// The agent answered with an error (`AgentError::Remote`): its code and message.
    Refused { code: String, message: String },
    /// Anything else.
    Other(String),
}

impl AgentPortError {
    /// Classifies the Display text of `agent::AgentError` (for ports that only give a string;
    /// the typed mapping in [`AgentPort::request_typed`] is preferred).
    pub fn classify(text: String) -> Self {
        const GONE: [&str; 4] = [
            "agent not connected",
            "agent connection lost",
            "agent client stopped",
            "no agent client",
        ];
        if GONE.iter().any(|p| text.starts_with(p)) {
            return Self::Gone(text);
        }
        if text.starts_with("agent did not answer") {
            return Self::Timeout(text);
        }
        // "agent refused `m`: code: message"
        if let Some(rest) = text.strip_prefix("agent refused `")
            && let Some((_, rest)) = rest.split_once("`: ")
            && let Some((code, message)) = rest.split_once(": ")
        {
            if code == "unavailable" {
                return Self::Gone(text);
            }
            return Self::Refused {
                code: code.to_string(),
                message: message.to_string(),
            };
        }
        Self::Other(text)
    }

    /// The connection class: not a verdict until the target is seen alive or gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone(_))
    }
}

impl std::fmt::Display for AgentPortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone(s) | Self::Timeout(s) | Self::Other(s) => f.write_str(s),
            Self::Refused { code, message } => write!(f, "the agent refused: {code}: {message}"),
        }
    }
}

impl From<String> for AgentPortError {
    fn from(s: String) -> Self {
        Self::classify(s)
    }
}

impl From<&str> for AgentPortError {
    fn from(s: &str) -> Self {
        Self::classify(s.to_string())
    }
}

/// The boxed future an [`AgentPort`] returns.
pub type AgentFuture<'a, E> = Pin<Box<dyn Future<Output = Result<Value, E>> + Send + 'a>>;

/// The engine's view of the in-process agent, so teardown never waits for the agent client.
/// The lead implements it for `agent::AgentRequester`.
///
/// The runner calls [`AgentPort::request_typed`]. Its default classifies the text of
/// [`AgentPort::request`] with [`AgentPortError::classify`]; an adapter that has the typed
/// `AgentError` should override it: `NotConnected`, `Lost`, `Closed` and `Remote` with code
/// `unavailable` -> `Gone`, `Timeout` -> `Timeout`, other `Remote` -> `Refused`.
pub trait AgentPort: Send + Sync {
    fn request(&self, method: &str, params: Value, timeout: Duration) -> AgentFuture<'_, String>;

    fn request_typed(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> AgentFuture<'_, AgentPortError> {
        let fut = self.request(method, params, timeout);
        Box::pin(async move { fut.await.map_err(AgentPortError::classify) })
    }
}
