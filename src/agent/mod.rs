//! The optional in-target agent: its wire protocol (docs/protocol.md), NDJSON framing,
//! socket path rules (and the removal of sockets left by SIGKILLed hosts), the tokio client
//! state machine (connected / not found / lost), the folding of delta reports into full
//! ones (`fold`), the embedded Python agent, and the reduction of reports to
//! [`crate::model::AgentFacts`].
//! No UI code here; the tasks panel draws a [`view::TasksView`] built from a report.

pub mod client;
pub mod embedded;
pub mod facts;
mod fold;
pub mod framing;
pub mod path;
pub mod protocol;
mod session;
pub mod view;

pub use client::{
    AgentError, AgentEvent, AgentHandle, AgentRequester, ClientOptions, StatsSnapshot,
    spawn_client, spawn_client_with,
};
pub use path::socket_path_for;
pub use protocol::{Hello, Report};
