//! One live connection to an agent: greets and subscribes, decodes lines, reassembles
//! chunked reports, routes responses to their requests by id, and returns the one-line
//! reason the connection ended. Bad input ends the session with a clear reason (the client
//! then reconnects); input the protocol says to ignore is only counted.

use super::client::{AgentError, AgentEvent, ClientOptions, ClientStats, Command, Leftover};
use super::fold::Folded;
use super::framing::{FrameError, LineDecoder};
use super::protocol::{
    ACCEPT, ClientInfo, Incoming, MAX_LINE, MAX_REPORT_STRING_BYTES, Outgoing, PROTOCOL_VERSION,
    Report, ReportChunk, ReportDelta, Response, TaskInfo, encode,
};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Rows per chunk the agent sends (docs/protocol.md §5); bounds how many chunks a report
/// listing `max_tasks` tasks can honestly need.
const ROWS_PER_CHUNK: u64 = 500;
/// Consecutive well-formed but invalid messages tolerated before the connection is dropped.
const MAX_INVALID_IN_A_ROW: u32 = 3;

struct Pending {
    method: String,
    reply: oneshot::Sender<Result<Value, AgentError>>,
}

struct Partial {
    report: Box<Report>,
    /// Set for a `report_delta`: its `base` and removed threads (the header is `report`).
    delta: Option<(u64, Vec<u64>)>,
    /// Delta chunks: task ids removed since the base.
    removed: Vec<u64>,
    chunks: Vec<Option<Vec<TaskInfo>>>,
    received: usize,
    /// Rows received so far (bounded by the subscription's `max_tasks`).
    rows: u64,
    /// String bytes the report may still decode to.
    budget: usize,
}

pub(super) struct Session<'a> {
    opts: &'a ClientOptions,
    events: &'a mpsc::Sender<AgentEvent>,
    stats: &'a ClientStats,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    partial: Option<Partial>,
    invalid_in_a_row: u32,
    /// Rows and threads of the last report, for folding deltas into full reports.
    folded: Option<Folded>,
    /// A delta did not follow the last report: ask for a full one (sent by `run`).
    need_full: bool,
    /// Chunks of this seq belong to a refused delta: dropped without counting them stray.
    skip_seq: Option<u64>,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        opts: &'a ClientOptions,
        events: &'a mpsc::Sender<AgentEvent>,
        stats: &'a ClientStats,
    ) -> Self {
        Self {
            opts,
            events,
            stats,
            pending: HashMap::new(),
            next_id: 1,
            partial: None,
            invalid_in_a_row: 0,
            folded: None,
            need_full: false,
            skip_seq: None,
        }
    }

    /// Runs until the connection is lost; returns why.
    pub(super) async fn run(
        mut self,
        stream: UnixStream,
        mut decoder: LineDecoder,
        leftover: Leftover,
        commands: &mut mpsc::Receiver<Command>,
    ) -> String {
        let (mut rd, mut wr) = stream.into_split();
        let mut greeting = encode(&Outgoing::Hello {
            protocol: PROTOCOL_VERSION,
            client: ClientInfo::default(),
            accept: ACCEPT,
        });
        greeting.extend(encode(&Outgoing::Subscribe {
            interval_ms: u64::try_from(self.opts.interval.as_millis()).unwrap_or(u64::MAX),
            max_tasks: self.opts.max_tasks,
        }));
        // A failed write is not the end yet: what the agent sent before closing is still
        // readable and says more (e.g. an error line, or a message cut in the middle).
        let greeting_failed = wr.write_all(&greeting).await.err();
        for f in leftover {
            if let Err(r) = self.frame(f) {
                return self.finish(r);
            }
        }
        if let Err(r) = self.ask_full(&mut wr).await {
            return self.finish(r);
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut frames = Vec::new();
        let mut last_seen = Instant::now();
        let period = self
            .opts
            .interval
            .clamp(Duration::from_millis(20), Duration::from_millis(250));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) => {
                        let reason = if decoder.pending() > 0 || decoder.is_discarding() {
                            format!("agent disconnected mid-message ({} bytes of an unfinished line)", decoder.pending())
                        } else if let Some(e) = &greeting_failed {
                            format!("agent closed the connection (could not subscribe: {e})")
                        } else {
                            "agent closed the connection".to_string()
                        };
                        return self.finish(reason);
                    }
                    Err(e) => return self.finish(format!("reading from agent: {e}")),
                    Ok(n) => {
                        last_seen = Instant::now();
                        decoder.push(&buf[..n], &mut frames);
                        for f in frames.drain(..) {
                            if let Err(r) = self.frame(f) {
                                return self.finish(r);
                            }
                        }
                        if let Err(r) = self.ask_full(&mut wr).await {
                            return self.finish(r);
                        }
                    }
                },
                cmd = commands.recv() => match cmd {
                    None => return self.finish("client stopped".into()),
                    Some(c) => {
                        if let Err(r) = self.send_request(&mut wr, c).await {
                            return self.finish(r);
                        }
                    }
                },
                _ = tick.tick() => {
                    if last_seen.elapsed() > self.opts.stale_after {
                        return self.finish(format!(
                            "agent stopped answering (nothing received for {:.1} s)",
                            last_seen.elapsed().as_secs_f64()));
                    }
                    // Requests whose caller gave up (timed out) are forgotten.
                    self.pending.retain(|_, p| !p.reply.is_closed());
                }
            }
        }
    }

    /// Sends `full_report` when a refused delta asked for it.
    async fn ask_full(&mut self, wr: &mut tokio::net::unix::OwnedWriteHalf) -> Result<(), String> {
        if !std::mem::take(&mut self.need_full) {
            return Ok(());
        }
        let line = encode(&Outgoing::FullReport);
        match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to agent: {e}")),
            Err(_) => Err("agent stopped reading its socket (write blocked 5 s)".into()),
        }
    }

    async fn send_request(
        &mut self,
        wr: &mut tokio::net::unix::OwnedWriteHalf,
        c: Command,
    ) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let line = encode(&Outgoing::Request {
            id,
            method: &c.method,
            params: &c.params,
        });
        if line.len() > MAX_LINE {
            let _ = c.reply.send(Err(AgentError::Remote {
                method: c.method,
                code: "too_large".into(),
                message: format!("request over the {MAX_LINE}-byte line cap"),
                data: Value::Null,
            }));
            return Ok(());
        }
        let _ = c.timeout; // the requester enforces it; the agent gets timeout_ms
        match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&line)).await {
            Ok(Ok(())) => {
                self.pending.insert(
                    id,
                    Pending {
                        method: c.method,
                        reply: c.reply,
                    },
                );
                Ok(())
            }
            Ok(Err(e)) => Err(format!("writing to agent: {e}")),
            Err(_) => Err("agent stopped reading its socket (write blocked 5 s)".into()),
        }
    }

    fn finish(mut self, reason: String) -> String {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(AgentError::Lost {
                method: p.method,
                reason: reason.clone(),
            }));
        }
        reason
    }

    fn frame(&mut self, f: Result<Vec<u8>, FrameError>) -> Result<(), String> {
        let line = f.map_err(|e| format!("agent sent a {e}; dropped the connection"))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let msg: Incoming = match serde_json::from_slice(&line) {
            Ok(m) => {
                self.invalid_in_a_row = 0;
                m
            }
            // Valid JSON of the wrong shape: skip that message, but not forever.
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                ClientStats::bump(&self.stats.invalid_messages, 1);
                tracing::warn!(error = %e, "skipped an invalid message from the agent");
                self.invalid_in_a_row += 1;
                if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW {
                    return Err(format!(
                        "agent keeps sending invalid messages ({e}); dropped the connection"
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "agent sent malformed JSON ({e}); dropped the connection"
                ));
            }
        };
        match msg {
            Incoming::Hello(_) => {}
            Incoming::Report(r) => self.report(r, None)?,
            Incoming::ReportDelta(d) => self.delta(d)?,
            Incoming::ReportChunk(c) => self.chunk(c)?,
            Incoming::Response(r) => self.response(r),
            Incoming::Error(e) => {
                ClientStats::bump(&self.stats.agent_errors, 1);
                tracing::warn!(code = %e.code, message = %e.message, "agent error");
                if matches!(
                    e.code.as_str(),
                    "version_mismatch" | "forbidden" | "line_too_long"
                ) {
                    return Err(format!("agent error {}: {}", e.code, e.message));
                }
            }
            // Also listed in later reports (by `seq`): one lost to a full channel is not lost.
            Incoming::Warning(w) => self.push(AgentEvent::Warning(w.warning))?,
            Incoming::Exiting(e) => self.push(AgentEvent::Exiting(e))?,
            Incoming::Unknown => {
                ClientStats::bump(&self.stats.unknown_types, 1);
                tracing::debug!("ignored a message of unknown type from the agent");
            }
        }
        Ok(())
    }

    fn response(&mut self, r: Response) {
        let Some(p) = self.pending.remove(&r.id) else {
            ClientStats::bump(&self.stats.unknown_ids, 1);
            tracing::warn!(
                id = r.id,
                "agent answered a request id we never sent (or gave up on)"
            );
            return;
        };
        let result = if r.ok {
            Ok(r.result)
        } else {
            let e = r.error.unwrap_or_default();
            Err(AgentError::Remote {
                method: p.method,
                code: if e.code.is_empty() {
                    "unknown".into()
                } else {
                    e.code
                },
                message: e.message,
                data: e.data,
            })
        };
        let _ = p.reply.send(result);
    }

    /// A `report_delta` header: folded when it follows the last report, else refused (the
    /// agent is asked for a full report).
    fn delta(&mut self, d: Box<ReportDelta>) -> Result<(), String> {
        let ReportDelta {
            base,
            threads_removed,
            report,
        } = *d;
        if self.folded.as_ref().map(|f| f.seq) != Some(base) {
            return self.refuse_delta(
                report.seq,
                format!(
                    "delta report {} is based on report {base}, which was not folded",
                    report.seq
                ),
            );
        }
        self.report(Box::new(report), Some((base, threads_removed)))
    }

    /// Drops the fold state and asks the agent for a full report.
    fn refuse_delta(&mut self, seq: u64, why: String) -> Result<(), String> {
        ClientStats::bump(&self.stats.delta_gaps, 1);
        tracing::debug!(reason = %why, "asking the agent for a full report");
        self.folded = None;
        self.partial = None;
        self.need_full = true;
        self.skip_seq = Some(seq);
        Ok(())
    }

    fn report(&mut self, r: Box<Report>, delta: Option<(u64, Vec<u64>)>) -> Result<(), String> {
        if self.partial.take().is_some() {
            ClientStats::bump(&self.stats.incomplete_reports, 1);
        }
        self.skip_seq = None;
        let n = usize::try_from(r.task_chunks).unwrap_or(usize::MAX);
        if n == 0 {
            return self.complete(r, delta, Vec::new(), Vec::new());
        }
        let max = self.max_chunks();
        if n > max {
            return Err(format!(
                "agent announced {n} task chunks for at most {} tasks (max {max}); dropped the connection",
                self.opts.max_tasks
            ));
        }
        self.partial = Some(Partial {
            report: r,
            delta,
            removed: Vec::new(),
            chunks: vec![None; n],
            received: 0,
            rows: 0,
            budget: MAX_REPORT_STRING_BYTES,
        });
        Ok(())
    }

    fn chunk(&mut self, c: ReportChunk) -> Result<(), String> {
        let idx = usize::try_from(c.index).unwrap_or(usize::MAX);
        if self.skip_seq == Some(c.seq) {
            return Ok(());
        }
        let Some(p) = self
            .partial
            .as_mut()
            .filter(|p| p.report.seq == c.seq && idx < p.chunks.len())
        else {
            ClientStats::bump(&self.stats.stray_chunks, 1);
            return Ok(());
        };
        if p.chunks[idx].is_some() {
            ClientStats::bump(&self.stats.stray_chunks, 1);
            return Ok(());
        }
        p.rows = p.rows.saturating_add(c.tasks.len() as u64);
        if p.rows > self.opts.max_tasks {
            return Err(format!(
                "agent sent more than {} task rows in one report (the subscription's max_tasks); dropped the connection",
                self.opts.max_tasks
            ));
        }
        if p.delta.is_some() {
            p.removed.extend_from_slice(&c.removed);
            if p.removed.len() as u64 > self.opts.max_tasks {
                return Err(format!(
                    "agent removed more than {} task rows in one delta (the subscription's max_tasks); dropped the connection",
                    self.opts.max_tasks
                ));
            }
        }
        let (tasks, bad) = c.decode(&mut p.budget);
        ClientStats::bump(&self.stats.bad_rows, bad as u64);
        p.chunks[idx] = Some(tasks);
        p.received += 1;
        if p.received < p.chunks.len() {
            return Ok(());
        }
        let Some(done) = self.partial.take() else {
            return Ok(());
        };
        let rows = done.chunks.into_iter().flatten().flatten().collect();
        self.complete(done.report, done.delta, rows, done.removed)
    }

    /// A report with all its chunks: a full one resets the fold state, a delta is folded
    /// into it; either way the full report goes out.
    fn complete(
        &mut self,
        mut r: Box<Report>,
        delta: Option<(u64, Vec<u64>)>,
        rows: Vec<TaskInfo>,
        removed: Vec<u64>,
    ) -> Result<(), String> {
        let Some((base, threads_removed)) = delta else {
            r.tasks = rows;
            self.folded = Some(Folded::from_full(&r));
            return self.emit(r);
        };
        let seq = r.seq;
        let d = ReportDelta {
            base,
            threads_removed,
            report: *r,
        };
        let Some(folded) = self.folded.as_mut() else {
            return self.refuse_delta(seq, "no report to fold the delta into".into());
        };
        match folded.apply(d, rows, &removed) {
            Ok(full) if full.tasks.len() as u64 > self.opts.max_tasks => Err(format!(
                "agent's deltas add up to more than {} task rows (the subscription's max_tasks); dropped the connection",
                self.opts.max_tasks
            )),
            Ok(full) => {
                ClientStats::bump(&self.stats.deltas_folded, 1);
                self.emit(full)
            }
            Err(why) => self.refuse_delta(seq, why),
        }
    }

    /// Chunks a report may announce: twice what `max_tasks` rows need, plus one (slack for
    /// an agent that splits chunks to stay under the line cap).
    fn max_chunks(&self) -> usize {
        let need = self.opts.max_tasks.div_ceil(ROWS_PER_CHUNK);
        usize::try_from(need.saturating_mul(2).saturating_add(1)).unwrap_or(usize::MAX)
    }

    fn push(&self, ev: AgentEvent) -> Result<(), String> {
        match self.events.try_send(ev) {
            Err(mpsc::error::TrySendError::Closed(_)) => Err("client stopped".into()),
            _ => Ok(()),
        }
    }

    fn emit(&self, r: Box<Report>) -> Result<(), String> {
        match self.events.try_send(AgentEvent::Report(r)) {
            Ok(()) => Ok(()),
            // The UI is behind: drop this report, the next one supersedes it anyway.
            Err(mpsc::error::TrySendError::Full(_)) => {
                ClientStats::bump(&self.stats.dropped_reports, 1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err("client stopped".into()),
        }
    }
}
