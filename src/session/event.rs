//! The one event stream of a session: [`CoreEvent`]s stamped by an injected [`Clock`].
//! Everything a consumer (TUI, headless, check, recorder) learns arrives as one of these, in
//! order; all are serializable, so a recording is this stream written to a file and a replay
//! is the same stream read back.

use crate::agent::protocol::{AgentWarning, Hello, Report};
use crate::model::{ExitStatus, ProcKey, Snapshot};
use crate::stacks::StackSnapshot;
use crate::teardown::{PhaseEvent, Timeline};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// When something happened: milliseconds since the session started, and the wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub at_ms: u64,
    pub unix_ms: u64,
}

/// The session's only source of time (tests and replays inject their own).
pub trait Clock: Send + Sync {
    fn now(&self) -> Stamp;
}

/// Monotonic time since creation, anchored to the wall clock once.
pub struct SystemClock {
    t0: Instant,
    unix0: u64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            t0: Instant::now(),
            unix0: crate::collect::exits::now_unix_ms(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Stamp {
        let at_ms = u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        Stamp {
            at_ms,
            unix_ms: self.unix0.saturating_add(at_ms),
        }
    }
}

/// One event of the stream, numbered and stamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub seq: u64,
    #[serde(flatten)]
    pub at: Stamp,
    pub event: CoreEvent,
}

/// What was attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    pub target: ProcKey,
    /// Set when lifecycle-top launched the command (`-- CMD`, `demo`, `check`).
    pub launched: Option<LaunchInfo>,
    pub demo: bool,
    /// The agent was injected into a launched command (so one is expected to connect).
    pub agent_injected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchInfo {
    pub cmd: Vec<String>,
    /// stdout + stderr of the launched tree.
    pub log_path: PathBuf,
}

/// The agent connection as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum AgentState {
    /// Not looked for yet.
    Searching,
    /// Connected: runtime and version.
    Connected(String),
    NotFound(String),
    Lost(String),
}

/// The teardown plan in use, with its TOML so a replay can rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInfo {
    pub name: String,
    pub source: String,
    /// The plan's TOML text (built-in or the file's), parsed again by replay.
    pub toml: String,
}

/// Everything a session reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CoreEvent {
    Attached(AttachInfo),
    /// A collector refresh (shared: consumers clone the `Arc`, never the snapshot).
    Snapshot {
        snapshot: Arc<Snapshot>,
    },
    /// A tracked process exited (from its pidfd, or seen gone by a refresh).
    Exited {
        key: ProcKey,
        status: ExitStatus,
        at_unix_ms: u64,
    },
    CollectorError {
        message: String,
    },
    AgentHello {
        hello: Box<Hello>,
    },
    AgentReport {
        report: Arc<Report>,
    },
    AgentState {
        state: AgentState,
    },
    /// A warning the agent pushed (the seed's asyncio errors, thread exceptions...).
    AgentWarning {
        warning: AgentWarning,
    },
    /// The agent said its interpreter is exiting.
    AgentExiting {
        reason: String,
        /// Non-daemon threads the exit abandons (said at `atexit`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        abandoned: Vec<crate::agent::protocol::AbandonedThread>,
    },
    /// The plan chosen (again, while no phase has run: an agent hello may prove Python).
    Plan {
        plan: PlanInfo,
    },
    /// From the teardown runner: phase started, notes, signals, exits noticed, phase done.
    Phase {
        event: PhaseEvent,
    },
    /// The teardown timeline after a change (sent only when it changed).
    Timeline {
        timeline: Arc<Timeline>,
    },
    /// Every phase asked for has run.
    PlanDone {
        timeline: Arc<Timeline>,
    },
    /// A stack capture started (`asked`: by the user, else by the engine).
    StacksRequested {
        key: ProcKey,
        tids: Vec<i32>,
        reason: String,
        asked: bool,
    },
    Stacks {
        stacks: Arc<StackSnapshot>,
        reason: String,
        asked: bool,
    },
    /// A one-line message of the session itself ("no agent answered", "tree killed").
    Notice {
        message: String,
    },
    /// The verdict a consumer gave at the end (`by`: "check" or "headless"), with the closing
    /// lines it printed, so a replay says what CI was told rather than judging again.
    Verdict {
        by: String,
        verdict: crate::verdict::Verdict,
        lines: Vec<String>,
    },
    /// The processes of the tree watched in limited mode (missing rights), sent when the
    /// set changes; empty once none is left.
    Limitations {
        limitations: Vec<crate::access::Limitation>,
    },
}

impl PlanInfo {
    /// The plan again (built-ins by name, a file plan from its recorded text).
    pub fn load(&self) -> Result<crate::teardown::Plan, String> {
        match self.source.strip_prefix("builtin:") {
            Some(name) => crate::teardown::plan::load(name).map_err(|e| e.to_string()),
            None => {
                crate::teardown::plan::parse(&self.toml, &self.source).map_err(|e| e.to_string())
            }
        }
    }
}
