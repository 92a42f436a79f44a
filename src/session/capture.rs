//! Stack captures for a session: kernel and native frames on a blocking thread while the
//! agent is asked for Python frames, py-spy when no agent answered, Java frames from the
//! JVM's thread dump (joined by `nid`) when the target is a JVM; and the agent client serving
//! as the teardown engine's [`AgentPort`].

use crate::agent::{AgentError, AgentRequester};
use crate::stacks::{self, StackOptions, StackSnapshot};
use crate::teardown::{AgentFuture, AgentPort, AgentPortError};
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

    fn request_typed(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> AgentFuture<'_, AgentPortError> {
        let method = method.to_string();
        Box::pin(async move {
            self.0
                .request(&method, params, timeout)
                .await
                .map_err(|e| match e {
                    AgentError::NotConnected(_) | AgentError::Lost { .. } | AgentError::Closed => {
                        AgentPortError::Gone(e.to_string())
                    }
                    AgentError::Remote { ref code, .. } if code == "unavailable" => {
                        AgentPortError::Gone(e.to_string())
                    }
                    AgentError::Timeout { .. } => AgentPortError::Timeout(e.to_string()),
                    AgentError::Remote { code, message, .. } => {
                        AgentPortError::Refused { code, message }
                    }
                })
        })
    }
}

/// Captures stacks of `tids` (all when empty) of the process `target` (pid + start time, so a
/// reused pid is refused): Python frames from the agent when one is
/// connected, then native and kernel sources on a blocking thread; for a JVM (`jvm`), its
/// Java frames from a thread dump taken at the same time.
pub async fn capture_stacks(
    target: crate::model::ProcKey,
    tids: Vec<i32>,
    agent: Option<AgentRequester>,
    seize: bool,
    jvm: bool,
) -> StackSnapshot {
    let pid = target.pid;
    let opts = StackOptions {
        seize,
        // Refuses a reused pid: the snapshot's start time must still match.
        expect_start_time: Some(target.start_time),
        // Python frames come from the agent (asked concurrently) or from py-spy below.
        pyspy: false,
        ..StackOptions::default()
    };
    // Kernel and native stacks are taken at once, while the agent is asked for Python
    // frames: a teardown that moves on (and kills) right after asking loses nothing.
    let native = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || stacks::capture(pid, &tids, &opts))
    };
    let python = async {
        match agent {
            Some(a) => a
                .request("stacks", Value::Null, AGENT_STACKS_TIMEOUT)
                .await
                .map_err(|e| tracing::info!("no Python stacks from the agent: {e}"))
                .ok(),
            None => None,
        }
    };
    let java = async {
        if !jvm {
            return None;
        }
        tokio::task::spawn_blocking(move || crate::jvm::thread_dump(pid))
            .await
            .ok()
    };
    let (native, python, java) = tokio::join!(native, python, java);
    let mut snap = native.unwrap_or_else(|e| StackSnapshot {
        pid,
        taken_at_unix_ms: 0,
        capture_us: 0,
        threads: Vec::new(),
        errors: vec![stacks::SourceError {
            source: stacks::SourceKind::Kernel,
            message: format!("stack capture crashed: {e}"),
        }],
        tasks: Vec::new(),
    });
    if let Some(dump) = &java {
        let dump = dump.as_ref().map(|d| &d.dump).map_err(String::as_str);
        crate::jvm::join_into(dump, &mut snap.threads, &mut snap.errors);
    }
    let joined =
        python.is_some_and(|v| stacks::python::join_agent(&v, &mut snap.threads, &mut snap.errors));
    if !joined && java.is_none() && !snap.threads.is_empty() {
        // No agent: py-spy reads the interpreter's own structures (CPython only).
        let opts = StackOptions {
            pyspy: true,
            ..opts
        };
        let (mut threads, mut errors) = (std::mem::take(&mut snap.threads), Vec::new());
        let joined = tokio::task::spawn_blocking(move || {
            stacks::python::join_into(pid, None, &mut threads, &opts, &mut errors);
            (threads, errors)
        })
        .await;
        if let Ok((threads, errors)) = joined {
            snap.threads = threads;
            snap.errors.extend(errors);
        }
    }
    snap
}
