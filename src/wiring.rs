//! Glue between core modules that must not know each other: the agent client serving as
//! the teardown engine's [`AgentPort`], and stack capture joined with the agent's Python
//! stacks. Used by the TUI and by headless mode alike.

use crate::agent::AgentRequester;
use crate::stacks::{self, StackOptions, StackSnapshot};
use crate::teardown::AgentPort;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long the agent gets to answer a `stacks` request before we go on without Python
/// frames from it.
const AGENT_STACKS_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent client as the engine's port: errors become the one-line reason the timeline
/// shows.
pub struct AgentPortAdapter(pub AgentRequester);

impl AgentPort for AgentPortAdapter {
    fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        let method = method.to_string();
        Box::pin(async move {
            self.0
                .request(&method, params, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Captures stacks of `tids` (all when empty): Python frames from the agent when one is
/// connected, then native and kernel sources on a blocking thread.
pub async fn capture_stacks(
    pid: i32,
    tids: Vec<i32>,
    agent: Option<AgentRequester>,
    seize: bool,
) -> StackSnapshot {
    let python_from_agent = match agent {
        Some(a) => a
            .request("stacks", Value::Null, AGENT_STACKS_TIMEOUT)
            .await
            .map_err(|e| tracing::info!("no Python stacks from the agent: {e}"))
            .ok(),
        None => None,
    };
    let opts = StackOptions {
        seize,
        python_from_agent,
        ..StackOptions::default()
    };
    let fallback_pid = pid;
    tokio::task::spawn_blocking(move || stacks::capture(pid, &tids, &opts))
        .await
        .unwrap_or_else(|e| StackSnapshot {
            pid: fallback_pid,
            taken_at_unix_ms: 0,
            capture_us: 0,
            threads: Vec::new(),
            errors: vec![stacks::SourceError {
                source: stacks::SourceKind::Kernel,
                message: format!("stack capture crashed: {e}"),
            }],
        })
}
