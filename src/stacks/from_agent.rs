//! One `stacks` request to the target's in-process agent (Python or Node.js), for the
//! one-shot `stacks --pid` command: the dashboard asks its long-lived client instead (see
//! `session::capture`). Only tried when one of the agent's socket paths exists, so a process
//! without an agent costs one stat per candidate path. Uses the agent client as it is
//! (`agent::spawn_client_with`), on a small runtime of its own.

use crate::agent::{AgentEvent, ClientOptions, spawn_client_with};
use crate::model::ProcKey;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for the agent's hello, then for its `stacks` answer.
const CONNECT_WAIT: Duration = Duration::from_secs(3);
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Whether the target may run an agent (one of its socket paths exists).
pub fn may_have_agent(pid: i32) -> bool {
    crate::agent::path::candidates(pid)
        .iter()
        .any(|p| p.exists())
}

/// The agent's `stacks` answer, or why there is none (one line).
pub fn request(target: ProcKey) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the agent client: {e}"))?;
    rt.block_on(async move {
        let pid = target.pid;
        // The agent runs in the target itself: its peer pid is the target's.
        let in_tree = Arc::new(move |p: i32| p == pid);
        let mut opts = ClientOptions::new(Duration::from_secs(60));
        opts.hello_timeout = CONNECT_WAIT;
        let mut handle = spawn_client_with(target, in_tree, opts);
        let connected = tokio::time::timeout(CONNECT_WAIT, async {
            while let Some(ev) = handle.events.recv().await {
                match ev {
                    AgentEvent::Connected(_) => return Ok(()),
                    AgentEvent::NotFound(why) | AgentEvent::Lost(why) => return Err(why),
                    _ => {}
                }
            }
            Err("agent client stopped".to_string())
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(why),
            Err(_) => {
                return Err(format!(
                    "agent did not answer within {} s",
                    CONNECT_WAIT.as_secs()
                ));
            }
        }
        handle
            .requester()
            .request("stacks", Value::Null, ANSWER_WAIT)
            .await
            .map_err(|e| e.to_string())
    })
}
