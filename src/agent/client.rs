//! The agent client: one tokio task that finds the target's agent socket, checks the peer
//! (SO_PEERCRED pid in the target tree, protocol version, identity), subscribes, and then
//! runs a [`session`](super::session) until the connection is lost; then it polls for the
//! agent again. Its state is visible only as [`AgentEvent`]s: connected / not found /
//! lost (reason). Requests go through a cloneable [`AgentRequester`].

use super::framing::LineDecoder;
use super::path;
use super::protocol::{Hello, Incoming, MAX_LINE};
use super::session::Session;
use crate::model::ProcKey;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// What the client reports about its connection, in order.
// `Connected(Hello)` is the agreed contract shape; it is sent once per connection, so its
// size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// A (new) agent answered. When `hello.identity()` or `hello.agent.instance` differs
    /// from the previous `Connected`, the target or its agent restarted: forget old facts.
    Connected(Hello),
    /// A complete report (task chunks reassembled into `tasks`).
    Report(Box<super::protocol::Report>),
    /// The connection ended; the reason is one line for the UI. The client polls again.
    Lost(String),
    /// No usable agent (no socket, refused peer, wrong version...). Sent on change only.
    NotFound(String),
    /// A warning the agent pushed the moment it was caught (also listed in later reports).
    Warning(super::protocol::AgentWarning),
    /// The agent said its interpreter is exiting: a disconnect that follows is the exit.
    Exiting(super::protocol::ExitingMsg),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    #[error("agent not connected ({0})")]
    NotConnected(String),
    #[error("agent did not answer `{method}` within {timeout_ms} ms")]
    Timeout { method: String, timeout_ms: u64 },
    #[error("agent connection lost before `{method}` was answered: {reason}")]
    Lost { method: String, reason: String },
    #[error("agent refused `{method}`: {code}: {message}")]
    Remote {
        method: String,
        code: String,
        message: String,
        data: Value,
    },
    #[error("agent client stopped")]
    Closed,
}

/// Knobs; [`ClientOptions::new`] gives the defaults [`spawn_client`] uses.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Report interval to subscribe at.
    pub interval: Duration,
    /// Use this socket instead of the path rules (tests, explicit `--agent-socket`).
    pub socket: Option<PathBuf>,
    /// How long to wait for the agent's hello.
    pub hello_timeout: Duration,
    /// Delay between connection attempts while not connected.
    pub retry: Duration,
    /// Declare the agent lost after this long without any message.
    pub stale_after: Duration,
    /// Most tasks listed per report (all are counted).
    pub max_tasks: u64,
}

impl ClientOptions {
    pub fn new(interval: Duration) -> Self {
        // The agent clamps to 20 ms anyway; zero would also panic tokio's interval timer.
        let interval = interval.max(Duration::from_millis(20));
        Self {
            interval,
            socket: None,
            hello_timeout: Duration::from_secs(2),
            retry: Duration::from_millis(500),
            stale_after: interval * 4 + Duration::from_secs(2),
            max_tasks: 20_000,
        }
    }
}

/// Counters of input the client tolerated (ignored or dropped), for diagnostics and tests.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub unknown_types: AtomicU64,
    pub unknown_ids: AtomicU64,
    pub invalid_messages: AtomicU64,
    pub bad_rows: AtomicU64,
    pub stray_chunks: AtomicU64,
    pub incomplete_reports: AtomicU64,
    pub dropped_reports: AtomicU64,
    pub agent_errors: AtomicU64,
    /// Deltas refused (not following the last report): a full report was asked for.
    pub delta_gaps: AtomicU64,
    /// Deltas folded into full reports.
    pub deltas_folded: AtomicU64,
}

/// Plain copy of [`ClientStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub unknown_types: u64,
    pub unknown_ids: u64,
    pub invalid_messages: u64,
    pub bad_rows: u64,
    pub stray_chunks: u64,
    pub incomplete_reports: u64,
    pub dropped_reports: u64,
    pub agent_errors: u64,
    pub delta_gaps: u64,
    pub deltas_folded: u64,
}

impl ClientStats {
    pub(super) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            unknown_types: g(&self.unknown_types),
            unknown_ids: g(&self.unknown_ids),
            invalid_messages: g(&self.invalid_messages),
            bad_rows: g(&self.bad_rows),
            stray_chunks: g(&self.stray_chunks),
            incomplete_reports: g(&self.incomplete_reports),
            dropped_reports: g(&self.dropped_reports),
            agent_errors: g(&self.agent_errors),
            delta_gaps: g(&self.delta_gaps),
            deltas_folded: g(&self.deltas_folded),
        }
    }
}

pub(super) struct Command {
    pub method: String,
    pub params: Value,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<Value, AgentError>>,
}

/// The running client. Dropping it stops the client task.
pub struct AgentHandle {
    pub events: mpsc::Receiver<AgentEvent>,
    requester: AgentRequester,
    task: tokio::task::JoinHandle<()>,
}

impl AgentHandle {
    pub fn requester(&self) -> AgentRequester {
        self.requester.clone()
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends requests to the connected agent (Clone + Send).
#[derive(Clone)]
pub struct AgentRequester {
    tx: mpsc::Sender<Command>,
    stats: Arc<ClientStats>,
}

impl AgentRequester {
    /// One request, one answer: the `result` of an `ok` response, else an [`AgentError`].
    /// `timeout` bounds the whole round trip; 80 % of it is passed to the agent as
    /// `timeout_ms` (unless `params` sets it) so its own work ends first.
    pub async fn request(
        &self,
        method: &str,
        mut params: Value,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        if let Value::Null = params {
            params = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(m) = &mut params {
            // 80 %: the agent's answer (with its partial results) must make it back before
            // the caller's own deadline, which started earlier than the agent's.
            let inner = (timeout * 4 / 5).as_millis();
            m.entry("timeout_ms")
                .or_insert(Value::from(u64::try_from(inner).unwrap_or(u64::MAX)));
        }
        let (reply, rx) = oneshot::channel();
        let cmd = Command {
            method: method.to_string(),
            params,
            timeout,
            reply,
        };
        self.tx.send(cmd).await.map_err(|_| AgentError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(AgentError::Timeout {
                method: method.to_string(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Ok(Err(_)) => Err(AgentError::Closed),
            Ok(Ok(r)) => r,
        }
    }

    /// Counters of ignored/dropped input so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// Starts the client for `target` (needs a tokio runtime). `in_tree(pid)` must say whether
/// a pid is the target or one of its descendants.
pub fn spawn_client(
    target: ProcKey,
    in_tree: Arc<dyn Fn(i32) -> bool + Send + Sync>,
    interval: Duration,
) -> AgentHandle {
    spawn_client_with(target, in_tree, ClientOptions::new(interval))
}

/// [`spawn_client`] with explicit options.
pub fn spawn_client_with(
    target: ProcKey,
    in_tree: Arc<dyn Fn(i32) -> bool + Send + Sync>,
    opts: ClientOptions,
) -> AgentHandle {
    let (ev_tx, events) = mpsc::channel(64);
    let (tx, rx) = mpsc::channel(32);
    let stats = Arc::new(ClientStats::default());
    let task = tokio::spawn(run(target, in_tree, opts, ev_tx, rx, stats.clone()));
    AgentHandle {
        events,
        requester: AgentRequester { tx, stats },
        task,
    }
}

async fn run(
    target: ProcKey,
    in_tree: Arc<dyn Fn(i32) -> bool + Send + Sync>,
    opts: ClientOptions,
    events: mpsc::Sender<AgentEvent>,
    mut commands: mpsc::Receiver<Command>,
    stats: Arc<ClientStats>,
) {
    let mut last_not_found: Option<String> = None;
    let mut first = true;
    let mut paths = Candidates::default();
    // Attempts in a row that found no agent (see `retry_pause`).
    let mut misses = 0u32;
    loop {
        let sweep = std::mem::replace(&mut first, false);
        let reason = match connect(target, in_tree.as_ref(), &opts, sweep, &mut paths).await {
            Ok((stream, hello, decoder, leftover)) => {
                last_not_found = None;
                misses = 0;
                if events.send(AgentEvent::Connected(hello)).await.is_err() {
                    return;
                }
                let s = Session::new(&opts, &events, &stats);
                let reason = s.run(stream, decoder, leftover, &mut commands).await;
                if events.send(AgentEvent::Lost(reason.clone())).await.is_err() {
                    return;
                }
                reason
            }
            Err(reason) => {
                misses = misses.saturating_add(1);
                if last_not_found.as_ref() != Some(&reason) {
                    last_not_found = Some(reason.clone());
                    if events
                        .send(AgentEvent::NotFound(reason.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                reason
            }
        };
        // Between attempts requests fail at once instead of waiting for their timeout.
        let pause = tokio::time::sleep(retry_pause(opts.retry, misses));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                cmd = commands.recv() => match cmd {
                    Some(c) => { let _ = c.reply.send(Err(AgentError::NotConnected(reason.clone()))); }
                    // Every requester is gone (cannot happen while the handle lives):
                    // just wait out the pause instead of spinning on a closed channel.
                    None => { (&mut pause).await; break; }
                },
                _ = events.closed() => return,
            }
        }
    }
}

/// Attempts at the full pace before [`retry_pause`] slows down (10 s at the default 500 ms).
const MISSES_AT_FULL_PACE: u32 = 20;

/// The pause before the next attempt: `retry` while the agent was found lately (a lost one
/// is looked for again at once and then at full pace), four times that once
/// [`MISSES_AT_FULL_PACE`] attempts in a row found none. A target without an agent (attach
/// mode, `--no-agent`) is then looked at every 2 s instead of twice a second: each attempt
/// reads its `exe` link and looks for socket files (3.5 % of the dashboard's CPU watching a
/// busy 1,000-thread target), and an agent installed late is still found within 2 s.
fn retry_pause(retry: Duration, misses: u32) -> Duration {
    match misses > MISSES_AT_FULL_PACE {
        true => retry * 4,
        false => retry,
    }
}

/// What [`connect`] hands the session: the stream, the agent's hello, and what was read
/// after the hello.
type Connection = (UnixStream, Hello, LineDecoder, Leftover);

/// Finds and vets the agent: socket candidates in order, peer pid in the tree, hello with a
/// matching version and a consistent identity. A candidate that fails any check is skipped
/// (its reason kept for the message) so a squatted or stale path cannot hide the real agent.
/// The target's socket candidates, from its environment (`/proc/PID/environ`, a read of
/// the target's memory). A client retrying every second read it each time (5 % of the
/// dashboard thread watching 10,000 threads), yet the environment a process started with
/// only changes when it execs: once its executable has been the same for [`Candidates::STABLE`]
/// attempts in a row, the list is kept (and re-read at least every [`Candidates::REREAD`]).
/// Not sooner: a read during an exec sees the new executable with an environment not yet
/// (or only partly) set up, and a launched command read between fork and exec has ours.
#[derive(Default)]
struct Candidates {
    paths: Vec<PathBuf>,
    exe: Option<PathBuf>,
    /// Attempts in a row that found the same executable.
    same: u32,
    read_at: Option<std::time::Instant>,
}

impl Candidates {
    const REREAD: Duration = Duration::from_secs(10);
    const STABLE: u32 = 3;

    fn get(&mut self, pid: i32) -> Vec<PathBuf> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        self.same = match exe.is_some() && exe == self.exe {
            true => self.same.saturating_add(1),
            false => 0,
        };
        self.exe = exe;
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < Self::REREAD);
        if !(fresh && self.same >= Self::STABLE) {
            self.paths = path::candidates(pid);
            self.read_at = Some(std::time::Instant::now());
        }
        self.paths.clone()
    }
}

async fn connect(
    target: ProcKey,
    in_tree: &(dyn Fn(i32) -> bool + Send + Sync),
    opts: &ClientOptions,
    sweep: bool,
    paths: &mut Candidates,
) -> Result<Connection, String> {
    let candidates = match &opts.socket {
        Some(p) => vec![p.clone()],
        None => {
            // Hosts killed with SIGKILL leave their socket files behind (issue 11). On a
            // client's first attempt only: the directories can hold thousands of files,
            // and a client retrying every second must not read them all each time (a
            // churn soak's CPU grew with the files other runs left there).
            if sweep {
                for dir in path::own_socket_dirs() {
                    path::clean_stale_sockets(&dir);
                }
            }
            paths.get(target.pid)
        }
    };
    let mut why = Vec::new();
    for p in &candidates {
        if !p.exists() {
            continue;
        }
        match vet(p, target, in_tree, opts).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::debug!(reason = %e, "skipped an agent socket candidate");
                why.push(e);
            }
        }
    }
    if why.is_empty() {
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Err(format!("no agent socket (looked at {})", list.join(", ")))
    } else {
        Err(format!("no usable agent socket: {}", why.join("; ")))
    }
}

/// Connects to one candidate and checks its peer and hello; `Err` is one line naming `p`.
async fn vet(
    p: &std::path::Path,
    target: ProcKey,
    in_tree: &(dyn Fn(i32) -> bool + Send + Sync),
    opts: &ClientOptions,
) -> Result<Connection, String> {
    let stream = UnixStream::connect(p)
        .await
        .map_err(|e| format!("{}: {e}", p.display()))?;
    let peer = stream.peer_cred().ok().and_then(|c| c.pid());
    let Some(peer) = peer.filter(|&pid| in_tree(pid)) else {
        return Err(format!(
            "refused {}: served by pid {}, which is not in the target's tree",
            p.display(),
            peer.map_or_else(|| "?".into(), |p| p.to_string())
        ));
    };
    let (hello, decoder, leftover) = read_hello(&stream, opts.hello_timeout)
        .await
        .map_err(|e| format!("{}: {e}", p.display()))?;
    hello
        .check_version()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if hello.target.pid != peer {
        return Err(format!(
            "refused {}: hello says pid {} but the socket peer is pid {peer}",
            p.display(),
            hello.target.pid
        ));
    }
    if hello.target.pid == target.pid && hello.target.start_time != target.start_time {
        return Err(format!(
            "refused {}: agent's process started at tick {}, the target at {}: stale agent",
            p.display(),
            hello.target.start_time,
            target.start_time
        ));
    }
    Ok((stream, hello, decoder, leftover))
}

/// Frames already decoded but not yet handled (the bytes after the hello).
pub(super) type Leftover = Vec<Result<Vec<u8>, super::framing::FrameError>>;

/// Reads until the first complete line, which must be a hello. Lines that arrived with it
/// are returned for the session, with the decoder holding any partial line.
async fn read_hello(
    stream: &UnixStream,
    timeout: Duration,
) -> Result<(Hello, LineDecoder, Leftover), String> {
    let mut decoder = LineDecoder::new(MAX_LINE);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    while out.is_empty() {
        let n = tokio::time::timeout_at(deadline, read_shared(stream, &mut buf))
            .await
            .map_err(|_| format!("no hello within {} ms", timeout.as_millis()))?
            .map_err(|e| format!("reading hello: {e}"))?;
        if n == 0 {
            return Err("agent closed the connection before its hello".into());
        }
        decoder.push(&buf[..n], &mut out);
    }
    let rest = out.split_off(1);
    let first = out.pop().ok_or("no hello")?;
    let line = first.map_err(|e| format!("agent hello: {e}"))?;
    match serde_json::from_slice::<Incoming>(&line) {
        Ok(Incoming::Hello(h)) => Ok((h, decoder, rest)),
        Ok(Incoming::Error(e)) => Err(format!("agent said {}: {}", e.code, e.message)),
        Ok(_) => Err("agent did not start with a hello".into()),
        Err(e) => Err(format!("agent sent malformed JSON instead of a hello: {e}")),
    }
}

/// `read` on a shared reference (the hello phase happens before the stream is split).
async fn read_shared(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_search_slows_down_only_after_many_misses_in_a_row() {
        let r = Duration::from_millis(500);
        assert_eq!(
            retry_pause(r, 0),
            r,
            "after a connection or a loss: full pace"
        );
        assert_eq!(retry_pause(r, MISSES_AT_FULL_PACE), r);
        assert_eq!(
            retry_pause(r, MISSES_AT_FULL_PACE + 1),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_pause(r, u32::MAX),
            Duration::from_secs(2),
            "never slower"
        );
    }

    /// A real process that execs with a new environment: the candidates follow it (the
    /// executable changed, so the environment is read again), and once the executable has
    /// been stable the list is kept.
    #[test]
    fn candidates_follow_an_exec_that_sets_the_socket() {
        let want = PathBuf::from("/tmp/lifecycle-top-test-exec.sock");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 0.4; exec env {}={} sleep 30",
                path::ENV_SOCKET,
                want.display()
            ))
            .env_remove(path::ENV_SOCKET)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut c = Candidates::default();
        let before = c.get(pid);
        let mut seen = false;
        for _ in 0..100 {
            if c.get(pid).first() == Some(&want) {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The same executable from now on: after STABLE attempts the list is kept.
        let read_at = (0..=Candidates::STABLE).fold(None, |_, _| {
            c.get(pid);
            c.read_at
        });
        c.get(pid);
        let kept = c.read_at == read_at;
        let _ = child.kill();
        let _ = child.wait();
        assert_ne!(before.first(), Some(&want), "not set before the exec");
        assert!(
            seen,
            "the socket set by the exec never showed: {:?}",
            c.paths
        );
        assert!(
            kept,
            "a stable executable's environment is read again every attempt"
        );
    }
}
