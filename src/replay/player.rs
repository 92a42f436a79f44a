//! The replay controller: the recording (read lazily, frame by frame), where the replay is
//! (events folded, session time shown), its speed and whether it is paused. Opening folds
//! the whole recording once into a Model (snapshots decoded without their threads), keeping
//! a light checkpoint (the Model without its snapshot) every [`CHECKPOINT_EVERY`] heavy
//! events (at most [`CHECKPOINT_MAX_EVENTS`] apart), and no decoded events: an hour of a 1,000-thread target would be 7,200 decoded snapshots. Moving forward a little folds the
//! next events into the dashboard; any other move restores the checkpoint at or before the
//! target (with the playback's place and its snapshot chain, kept compressed: no reading
//! from a keyframe), decodes the one snapshot it lacks and folds at most
//! [`CHECKPOINT_EVERY`] heavy events. Pure: no terminal, no clock, no session, so it has
//! nothing to signal with.

use crate::record::Resume;
use crate::session::{CoreEvent, Depth, Model, Playback};
use crate::state::{Dashboard, GoneBook, ReplayBar};
use std::sync::Arc;

/// Speeds `<` / `>` step through.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
const ONE_X: usize = 2;
/// A checkpoint every this many heavy events (snapshots, agent reports, stack captures), so
/// a seek decodes fewer than this many (each snapshot folded is a decode of 1,000 threads;
/// bench/replay_seek.sh).
pub const CHECKPOINT_EVERY: usize = 8;
/// ... or every this many events of any kind. A tree forking 50 children a second records
/// 50 small exit events a second: a checkpoint per 8 of them (a Model with thousands of
/// exits each) made a 15-minute recording take 140 MB to open, while folding a few hundred
/// exits costs microseconds.
pub const CHECKPOINT_MAX_EVENTS: usize = 256;

/// Whether folding `ev` again on a seek costs a decode worth a checkpoint.
fn heavy(ev: &CoreEvent) -> bool {
    matches!(
        ev,
        CoreEvent::Snapshot { .. } | CoreEvent::AgentReport { .. } | CoreEvent::Stacks { .. }
    )
}
/// `<-` / `->` seek by this much.
pub const SEEK_STEP_MS: u64 = 5_000;

/// The Model after the first `n` events, without its snapshot (the bulk of a Model), and
/// the playback's place right after them: its snapshot chain compressed, from which the
/// snapshot is decoded again on restore (when `has_snapshot`).
struct Checkpoint {
    n: usize,
    model: Model,
    resume: Resume,
    has_snapshot: bool,
    /// What the events had made of the View's event-driven part there: the status line,
    /// the phase running and the phase selected with it (a fold from the start would show).
    status: Option<String>,
    started_phase: Option<usize>,
    selected_phase: usize,
    /// The View's gone book there ([`GoneBook::pack`]; shared with the checkpoint before
    /// when unchanged; None when empty).
    gone: Option<Arc<[u8]>>,
    /// The Model's `phase_events`, taken out of `model` and kept as zstd-compressed JSON
    /// (shared with the checkpoint before when unchanged): under churn they are hundreds of
    /// exit events of 288 bytes each, and a checkpoint comes every 8 snapshots.
    phase_events: Option<Arc<[u8]>>,
}

/// zstd-compressed JSON of `v`.
fn pack<T: serde::Serialize + ?Sized>(v: &T) -> Option<Arc<[u8]>> {
    let json = serde_json::to_vec(v).ok()?;
    zstd::bulk::compress(&json, 1).ok().map(Into::into)
}

fn unpack<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(&zstd::stream::decode_all(bytes).ok()?).ok()
}

pub struct Player {
    source: Playback,
    /// Per event, in order: its session time.
    times: Vec<u64>,
    /// The first is (0, empty).
    checkpoints: Vec<Checkpoint>,
    boundaries: Vec<u64>,
    /// Events folded into the dashboard; `source` is positioned right after the last.
    applied: usize,
    pos_ms: u64,
    speed: usize,
    paused: bool,
    notes: Vec<String>,
}

impl Player {
    /// Folds the whole recording once, keeping checkpoints, the phase boundaries and, per
    /// event, where its frame is. Notes on undecodable events are in [`Player::take_notes`].
    pub fn new(mut source: Playback) -> Self {
        let mut checkpoints = vec![Checkpoint {
            n: 0,
            model: Model::new(),
            resume: source.save(None),
            has_snapshot: false,
            status: None,
            started_phase: None,
            selected_phase: 0,
            gone: None,
            phase_events: None,
        }];
        let mut last_book = GoneBook::default();
        let mut last_events = Vec::new();
        let mut boundaries = Vec::new();
        let mut times = Vec::new();
        // The whole fold, as the dashboard does it (its View keeps what events say).
        let mut shadow = Dashboard::new();
        let mut last = (0usize, false);
        let mut has_snapshot = false;
        let (mut heavy_since, mut since) = (0usize, 0usize);
        // Snapshots without their threads: `Model::apply` reads only processes and times
        // of a snapshot, and checkpoints keep none (the seek tests compare with a straight
        // fold of full snapshots, so a fold that starts reading threads fails them).
        while let Some((_, ev)) = source.next_at(Depth::NoThreads) {
            let i = times.len();
            times.push(ev.at.at_ms);
            let _ = shadow.apply(&ev);
            since += 1;
            heavy_since += usize::from(heavy(&ev.event));
            match &ev.event {
                CoreEvent::Snapshot { .. } => has_snapshot = true,
                CoreEvent::Timeline { timeline } | CoreEvent::PlanDone { timeline } => {
                    // A boundary wherever the timeline panel gains a phase or one starts.
                    let now = (timeline.phases.len(), timeline.running.is_some());
                    if now != last && (now.0 != last.0 || now.1) {
                        boundaries.push(ev.at.at_ms);
                    }
                    last = now;
                }
                _ => {}
            }
            if heavy_since >= CHECKPOINT_EVERY || since >= CHECKPOINT_MAX_EVENTS {
                (heavy_since, since) = (0, 0);
                let mut model = shadow.model.clone();
                model.snapshot = None;
                let events = std::mem::take(&mut model.phase_events);
                let phase_events = match checkpoints.last() {
                    _ if events.is_empty() => None,
                    Some(prev) if events == last_events => prev.phase_events.clone(),
                    _ => pack(&events),
                };
                last_events = events;
                let resume = source.save(checkpoints.last().map(|c| &c.resume));
                let book = GoneBook::of(&shadow);
                let gone = match checkpoints.last() {
                    Some(prev) if book == last_book => prev.gone.clone(),
                    _ => book.pack(),
                };
                last_book = book;
                checkpoints.push(Checkpoint {
                    n: i + 1,
                    model,
                    resume,
                    has_snapshot,
                    status: shadow.view.status.clone(),
                    started_phase: shadow.view.started_phase,
                    selected_phase: shadow.view.selected_phase,
                    gone,
                    phase_events,
                });
            }
        }
        boundaries.dedup();
        let notes = source.take_notes();
        source.restore(&checkpoints[0].resume);
        let pos_ms = times.first().copied().unwrap_or(0);
        Self {
            source,
            times,
            checkpoints,
            boundaries,
            applied: 0,
            pos_ms,
            speed: ONE_X,
            paused: false,
            notes,
        }
    }

    /// Events in the recording that decode.
    pub fn len(&self) -> usize {
        self.times.len()
    }
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
    /// Bytes the checkpoints hold in compressed snapshot chains, the Models aside (bytes
    /// shared by checkpoints with the same snapshot are counted for each).
    pub fn checkpoint_bytes(&self) -> usize {
        self.checkpoints.iter().map(|c| c.resume.bytes()).sum()
    }

    /// Lines about events that could not be decoded (found while opening).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub fn start_ms(&self) -> u64 {
        self.times.first().copied().unwrap_or(0)
    }
    pub fn end_ms(&self) -> u64 {
        self.times.last().copied().unwrap_or(0)
    }
    pub fn position_ms(&self) -> u64 {
        self.pos_ms
    }
    pub fn applied(&self) -> usize {
        self.applied
    }
    pub fn paused(&self) -> bool {
        self.paused
    }
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }
    pub fn boundaries(&self) -> &[u64] {
        &self.boundaries
    }

    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused && self.pos_ms >= self.end_ms() {
            // Play from the end: start over, like a player does.
            self.pos_ms = self.start_ms();
        }
    }
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }
    pub fn faster(&mut self) {
        self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
    }
    pub fn slower(&mut self) {
        self.speed = self.speed.saturating_sub(1);
    }

    /// Shows the dashboard as it was at session time `at_ms` (every event at or before it
    /// folded).
    pub fn seek(&mut self, dash: &mut Dashboard, at_ms: u64) {
        let at_ms = at_ms.clamp(self.start_ms(), self.end_ms());
        let n = self.times.partition_point(|&t| t <= at_ms);
        self.fold_to(dash, n);
        self.pos_ms = at_ms;
        self.show(dash);
    }

    /// The wall-clock time that passed since the last tick, scaled by the speed.
    pub fn tick(&mut self, dash: &mut Dashboard, real_ms: u64) {
        if self.paused {
            return;
        }
        let step = (real_ms as f64 * self.speed()).round() as u64;
        let to = self.pos_ms.saturating_add(step);
        if to >= self.end_ms() {
            self.paused = true;
        }
        self.seek(dash, to);
    }

    /// One event forward (pauses).
    pub fn step_forward(&mut self, dash: &mut Dashboard) {
        self.paused = true;
        let n = (self.applied + 1).min(self.len());
        self.fold_to(dash, n);
        self.pos_ms = self.time_of(n);
        self.show(dash);
    }

    /// One event back (pauses); the first event stays folded.
    pub fn step_back(&mut self, dash: &mut Dashboard) {
        self.paused = true;
        let n = self.applied.saturating_sub(1).max(1).min(self.len());
        self.fold_to(dash, n);
        self.pos_ms = self.time_of(n);
        self.show(dash);
    }

    /// To the next phase boundary after the position (pauses); false when there is none.
    pub fn next_boundary(&mut self, dash: &mut Dashboard) -> bool {
        let Some(&b) = self.boundaries.iter().find(|&&b| b > self.pos_ms) else {
            return false;
        };
        self.paused = true;
        self.seek(dash, b);
        true
    }

    /// To the phase boundary before the position (pauses); false when there is none.
    pub fn prev_boundary(&mut self, dash: &mut Dashboard) -> bool {
        let Some(&b) = self.boundaries.iter().rev().find(|&&b| b < self.pos_ms) else {
            return false;
        };
        self.paused = true;
        self.seek(dash, b);
        true
    }

    pub fn seek_by(&mut self, dash: &mut Dashboard, back: bool) {
        let to = if back {
            self.pos_ms.saturating_sub(SEEK_STEP_MS)
        } else {
            self.pos_ms.saturating_add(SEEK_STEP_MS)
        };
        self.seek(dash, to);
    }

    fn time_of(&self, n: usize) -> u64 {
        match n.checked_sub(1).and_then(|i| self.times.get(i)) {
            Some(&t) => t,
            None => self.start_ms(),
        }
    }

    /// Exactly the first `n` events folded into `dash`: forward from where it is when that
    /// reaches no later checkpoint, else from the checkpoint at or before `n`.
    fn fold_to(&mut self, dash: &mut Dashboard, n: usize) {
        let n = n.min(self.len());
        let i = self.checkpoints.partition_point(|c| c.n <= n);
        let cp = i.checked_sub(1).and_then(|i| self.checkpoints.get(i));
        if let Some(cp) = cp.filter(|cp| n < self.applied || cp.n > self.applied) {
            let mut model = cp.model.clone();
            model.phase_events = cp
                .phase_events
                .as_deref()
                .and_then(unpack)
                .unwrap_or_default();
            self.source.restore(&cp.resume);
            // The snapshot the checkpoint lacks is the snapshot chain's value there.
            if cp.has_snapshot {
                model.snapshot = self.source.last_snapshot();
            }
            dash.replace_model(model, cp.gone.as_deref());
            dash.view.status = cp.status.clone();
            dash.view.started_phase = cp.started_phase;
            dash.view.selected_phase = cp.selected_phase;
            self.applied = cp.n;
        }
        while self.applied < n {
            let Some((_, ev)) = self.source.next_indexed() else {
                break;
            };
            // Commands the fold asks for (quit after a plan) mean nothing in a replay.
            let _ = dash.apply(&ev);
            self.applied += 1;
        }
    }

    /// The View's copy of the position, and the replay's wall clock for elapsed times.
    fn show(&self, dash: &mut Dashboard) {
        let now = dash.model.now;
        let unix = now
            .unix_ms
            .saturating_add(self.pos_ms.saturating_sub(now.at_ms));
        dash.tick(unix);
        dash.view.replay = Some(self.bar());
    }

    pub fn bar(&self) -> ReplayBar {
        ReplayBar {
            pos_ms: self.pos_ms,
            start_ms: self.start_ms(),
            end_ms: self.end_ms(),
            speed: self.speed(),
            paused: self.paused,
            boundaries: self.boundaries.clone(),
            event: self.applied,
            events: self.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Recorder, Stamp, Stamped};
    use std::sync::Arc;

    fn at(i: u64, event: CoreEvent) -> Stamped {
        Stamped {
            seq: i,
            at: Stamp {
                at_ms: i * 100,
                unix_ms: 1_000_000 + i * 100,
            },
            event,
        }
    }

    /// Notices, with a snapshot every third event whose processes age and use CPU, so
    /// seeks cross delta chains and keyframes.
    fn events(n: u64) -> Vec<Stamped> {
        let mut snap = crate::state::fixture::snapshot();
        (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    snap.taken_at_unix_ms = 1_000_000 + i * 100;
                    for p in &mut snap.processes {
                        p.cpu_ticks += i % 2;
                        p.age_secs += 0.3;
                    }
                    if let Some(t) = snap.threads.first_mut() {
                        t.cpu_ticks += 1;
                    }
                    at(
                        i,
                        CoreEvent::Snapshot {
                            snapshot: Arc::new(snap.clone()),
                        },
                    )
                } else {
                    at(
                        i,
                        CoreEvent::Notice {
                            message: format!("n{i}"),
                        },
                    )
                }
            })
            .collect()
    }

    /// The player of a recording of `events`, and the events as read back in one pass (the
    /// straight fold the seeks must agree with).
    fn player_of(events: &[Stamped]) -> (Player, Vec<Stamped>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.ltrec");
        let mut rec = Recorder::create(&path).expect("create");
        for e in events {
            assert!(rec.record(e).is_none());
        }
        assert!(rec.finish().is_some_and(|s| s.stopped.is_none()));
        let (back, notes) = Playback::read_all(&path).expect("read");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(back.len(), events.len());
        let (pb, _) = Playback::open(&path).expect("open");
        (Player::new(pb), back, dir)
    }

    fn folded(events: &[Stamped], n: usize) -> serde_json::Value {
        let mut m = Model::new();
        for e in &events[..n] {
            m.apply(e);
        }
        serde_json::to_value(&m).expect("a Model serializes")
    }

    /// A dashboard that folded the first `n` events straight.
    fn straight(events: &[Stamped], n: usize) -> Dashboard {
        let mut d = Dashboard::new();
        for e in &events[..n] {
            let _ = d.apply(e);
        }
        d
    }

    /// Seeks `p` to `at` and checks it folded what a straight fold does (events and Model);
    /// returns how many events that is.
    fn seek_like_a_fold(
        p: &mut Player,
        dash: &mut Dashboard,
        events: &[Stamped],
        at: u64,
    ) -> usize {
        p.seek(dash, at);
        let n = events.partition_point(|e| e.at.at_ms <= at);
        assert_eq!(p.applied(), n, "at {at} ms");
        assert_eq!(
            serde_json::to_value(&dash.model).ok(),
            Some(folded(events, n)),
            "at {at} ms"
        );
        n
    }

    #[test]
    fn seeking_back_and_forth_gives_the_model_of_a_straight_fold() {
        let (mut p, events, _dir) = player_of(&events(700));
        assert_eq!(p.len(), 700);
        // One event in three is a snapshot.
        assert_eq!(
            p.checkpoints.len(),
            1 + 700usize.div_ceil(3) / CHECKPOINT_EVERY
        );
        let mut dash = Dashboard::new();
        for at in [
            60_000u64, 30_050, 69_900, 100, 25_600, 0, 40_000, 40_200, 12_345, 69_900,
        ] {
            let n = seek_like_a_fold(&mut p, &mut dash, &events, at);
            // The status line the events set, as a dashboard folding them all shows it.
            assert_eq!(
                dash.view.status,
                straight(&events, n).view.status,
                "at {at} ms"
            );
        }
        p.seek(&mut dash, 0);
        p.step_forward(&mut dash);
        assert_eq!(p.applied(), 2);
        p.step_back(&mut dash);
        p.step_back(&mut dash);
        assert_eq!(p.applied(), 1);
        assert!(p.paused());
        for _ in 0..40 {
            p.step_forward(&mut dash);
        }
        assert_eq!(
            serde_json::to_value(&dash.model).ok(),
            Some(folded(&events, 41))
        );
    }

    #[test]
    fn light_events_between_snapshots_are_checkpointed_by_count_and_seek_exactly() {
        // A churning tree: 300 exits between two snapshots.
        let snap = crate::state::fixture::snapshot();
        let events: Vec<Stamped> = (0..1_500u64)
            .map(|i| {
                let ev = if i % 300 == 0 {
                    CoreEvent::Snapshot {
                        snapshot: Arc::new(snap.clone()),
                    }
                } else {
                    CoreEvent::Exited {
                        key: crate::model::ProcKey {
                            pid: 50_000 + i32::try_from(i).expect("small"),
                            start_time: i,
                        },
                        status: crate::model::ExitStatus::Code(0),
                        at_unix_ms: 1_000_000 + i * 100,
                    }
                };
                at(i, ev)
            })
            .collect();
        let (mut p, events, _dir) = player_of(&events);
        // By count (at most CHECKPOINT_MAX_EVENTS apart), not one per 8 exits.
        assert_eq!(p.checkpoints.len(), 1 + 1_500 / CHECKPOINT_MAX_EVENTS);
        let mut dash = Dashboard::new();
        for at in [149_900u64, 20_000, 100_050, 0, 77_700] {
            seek_like_a_fold(&mut p, &mut dash, &events, at);
        }
    }

    #[test]
    fn a_seek_back_keeps_the_gone_processes_a_straight_fold_keeps() {
        // Each round lists a new child, which exits and is gone from the next snapshot.
        let base = crate::state::fixture::snapshot();
        let mut events = Vec::new();
        let mut i = 0u64;
        for round in 0..120i32 {
            let mut snap = base.clone();
            let mut child = crate::state::fixture::process(60_000 + round, 100, "sh", 1);
            child.key.start_time = 9_000 + u64::try_from(round).expect("small");
            snap.processes.push(child.clone());
            events.push(at(
                i,
                CoreEvent::Snapshot {
                    snapshot: Arc::new(snap),
                },
            ));
            i += 1;
            events.push(at(
                i,
                CoreEvent::Exited {
                    key: child.key,
                    status: crate::model::ExitStatus::Code(round % 3),
                    at_unix_ms: 1_000_000 + i * 100,
                },
            ));
            i += 1;
        }
        let (mut p, events, _dir) = player_of(&events);
        let mut dash = Dashboard::new();
        for at in [23_900u64, 5_000, 12_250, 0, 19_999, 7_700] {
            let n = seek_like_a_fold(&mut p, &mut dash, &events, at);
            let straight = straight(&events, n);
            assert!(!straight.view.gone.is_empty() || n < 3, "at {at} ms");
            assert_eq!(dash.view.gone, straight.view.gone, "at {at} ms");
            assert_eq!(dash.view.proc_order, straight.view.proc_order, "at {at} ms");
        }
    }

    #[test]
    fn playing_moves_with_the_speed_and_stops_at_the_end() {
        let (mut p, events, _dir) = player_of(&events(50));
        let mut dash = Dashboard::new();
        p.seek(&mut dash, 0);
        p.faster();
        p.tick(&mut dash, 1_000);
        assert_eq!(p.position_ms(), 2_000);
        for _ in 0..10 {
            p.slower();
        }
        assert_eq!(p.speed(), 0.25);
        p.tick(&mut dash, 100_000);
        assert_eq!(p.position_ms(), p.end_ms());
        assert!(p.paused());
        assert_eq!(dash.view.replay.as_ref().map(|b| b.event), Some(50));
        assert_eq!(
            serde_json::to_value(&dash.model).ok(),
            Some(folded(&events, 50))
        );
    }
}
