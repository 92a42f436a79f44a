//! Wire types of the agent protocol v1 (docs/protocol.md): what the agent sends
//! ([`Incoming`]), what lifecycle-top sends ([`Outgoing`]), and the version check.
//! Every struct tolerates missing fields (`serde(default)`) and ignores unknown ones, so a
//! newer agent still talks to this client; unknown message types decode to
//! [`Incoming::Unknown`]. The report types live in `protocol/report.rs` (re-exported here).

use crate::model::ProcKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod report;
use report::null_as_default;
pub use report::*;

/// What this client accepts beyond the base protocol (sent in its hello).
pub const ACCEPT: &[&str] = &["report_delta"];

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Hard cap on one NDJSON line, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

/// A message from the agent, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
    Hello(Hello),
    Report(Box<Report>),
    /// The changes since report `base` (docs/protocol.md §5.3), to clients that accept them.
    ReportDelta(Box<ReportDelta>),
    ReportChunk(ReportChunk),
    Response(Response),
    Error(WireError),
    /// Pushed at once when the target logs one of the warnings lifecycle-top watches for.
    Warning(WarningMsg),
    /// Pushed when the target's interpreter starts exiting (atexit, main thread done).
    Exiting(ExitingMsg),
    /// A message type this build does not know: ignored (forward compatibility).
    #[serde(other)]
    Unknown,
}

/// `{"type":"warning","warning":{...}}` (docs/protocol.md §5.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarningMsg {
    pub warning: AgentWarning,
}

/// `{"type":"exiting","at_unix_ms":T,"reason":"atexit","abandoned":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExitingMsg {
    #[serde(deserialize_with = "null_as_default")]
    pub at_unix_ms: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub reason: String,
    /// `atexit` only: non-daemon threads still running once the interpreter stopped waiting
    /// for them (its join was cut short, by KeyboardInterrupt say): the exit abandons them.
    #[serde(deserialize_with = "null_as_default")]
    pub abandoned: Vec<AbandonedThread>,
}

/// A non-daemon thread alive at `atexit` (see [`ExitingMsg::abandoned`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AbandonedThread {
    /// The kernel's thread id (`Thread.native_id`); 0 if unknown.
    #[serde(deserialize_with = "null_as_default")]
    pub native_id: i32,
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
}

/// A message to the agent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing<'a> {
    Hello {
        protocol: u32,
        client: ClientInfo,
        /// Optional message kinds this client understands (`report_delta`).
        accept: &'a [&'a str],
    },
    /// Asks for the next report in full (the client lost track of the deltas).
    FullReport,
    Subscribe {
        interval_ms: u64,
        max_tasks: u64,
    },
    Request {
        id: u64,
        method: &'a str,
        params: &'a Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            name: "lifecycle-top".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// First message of a connection, sent by the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hello {
    pub protocol: u32,
    pub agent: AgentInfo,
    pub runtime: RuntimeInfo,
    pub target: Identity,
    pub capabilities: Vec<String>,
    pub phases: Vec<PhaseInfo>,
    pub max_line: Option<usize>,
}

impl Hello {
    /// The process the agent runs in, as (pid, start time).
    pub fn identity(&self) -> ProcKey {
        ProcKey {
            pid: self.target.pid,
            start_time: self.target.start_time,
        }
    }

    /// Whether the agent supports a capability (a missing one greys out a panel/action).
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// `Err` with a one-line message when the agent speaks another protocol version.
    pub fn check_version(&self) -> Result<(), String> {
        if self.protocol == PROTOCOL_VERSION {
            Ok(())
        } else {
            Err(format!(
                "agent speaks protocol v{}, lifecycle-top speaks v{PROTOCOL_VERSION}: upgrade the older side",
                self.protocol
            ))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentInfo {
    pub kind: String,
    pub version: String,
    /// Changes every time an agent starts, even in the same process.
    pub instance: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeInfo {
    pub name: String,
    pub version: String,
    pub executable: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat, clock ticks since boot.
    pub start_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseInfo {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Response {
    pub id: u64,
    pub ok: bool,
    pub result: Value,
    pub error: Option<WireError>,
}

/// A structured error, in a response or as a connection-level `error` message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireError {
    pub code: String,
    pub message: String,
    pub data: Value,
}

/// Encodes one outgoing message as a newline-terminated line.
pub fn encode(msg: &Outgoing<'_>) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty line is harmless if it did.
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_and_fields_are_tolerated() {
        let m: Incoming = serde_json::from_str(r#"{"type":"party","x":1}"#).expect("decode");
        assert_eq!(m, Incoming::Unknown);
        let m: Incoming =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"new_field":{"a":2}}"#)
                .expect("decode");
        let Incoming::Hello(h) = m else {
            panic!("not a hello")
        };
        assert!(h.check_version().is_ok());
    }

    #[test]
    fn version_mismatch_is_a_message() {
        let h = Hello {
            protocol: 2,
            ..Hello::default()
        };
        let err = h.check_version().expect_err("mismatch");
        assert!(err.contains("v2") && err.contains("v1"), "{err}");
    }
}
