//! The replay controller: the recorded events, where the replay is (events folded, session
//! time shown), its speed and whether it is paused. Moving forward folds the next events
//! into the dashboard; moving back folds again from the nearest checkpoint (a Model kept
//! every [`CHECKPOINT_EVERY`] events) into a fresh Model. Pure: no terminal, no clock, no
//! session, so it has nothing to signal with.

use crate::session::{CoreEvent, Model, Stamped};
use crate::state::{Dashboard, ReplayBar};

/// Speeds `<` / `>` step through.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
const ONE_X: usize = 2;
/// A Model is kept every this many events, so a backwards seek folds at most this many.
pub const CHECKPOINT_EVERY: usize = 256;
/// `<-` / `->` seek by this much.
pub const SEEK_STEP_MS: u64 = 5_000;

pub struct Player {
    events: Vec<Stamped>,
    /// (events folded, the Model after folding them); the first is (0, empty).
    checkpoints: Vec<(usize, Model)>,
    boundaries: Vec<u64>,
    applied: usize,
    pos_ms: u64,
    speed: usize,
    paused: bool,
}

impl Player {
    /// Folds the whole recording once, keeping checkpoints and the phase boundaries.
    pub fn new(events: Vec<Stamped>) -> Self {
        let mut checkpoints = vec![(0, Model::new())];
        let mut boundaries = Vec::new();
        let mut model = Model::new();
        let mut last = (0usize, false);
        for (i, ev) in events.iter().enumerate() {
            model.apply(ev);
            if let CoreEvent::Timeline { timeline } | CoreEvent::PlanDone { timeline } = &ev.event {
                // A boundary wherever the timeline panel gains a phase or one starts.
                let now = (timeline.phases.len(), timeline.running.is_some());
                if now != last && (now.0 != last.0 || now.1) {
                    boundaries.push(ev.at.at_ms);
                }
                last = now;
            }
            if (i + 1) % CHECKPOINT_EVERY == 0 {
                checkpoints.push((i + 1, model.clone()));
            }
        }
        boundaries.dedup();
        let pos_ms = events.first().map_or(0, |e| e.at.at_ms);
        Self {
            events,
            checkpoints,
            boundaries,
            applied: 0,
            pos_ms,
            speed: ONE_X,
            paused: false,
        }
    }

    pub fn start_ms(&self) -> u64 {
        self.events.first().map_or(0, |e| e.at.at_ms)
    }
    pub fn end_ms(&self) -> u64 {
        self.events.last().map_or(0, |e| e.at.at_ms)
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
        let n = self.events.partition_point(|e| e.at.at_ms <= at_ms);
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
        let n = (self.applied + 1).min(self.events.len());
        self.fold_to(dash, n);
        self.pos_ms = self.time_of(n);
        self.show(dash);
    }

    /// One event back (pauses); the first event stays folded.
    pub fn step_back(&mut self, dash: &mut Dashboard) {
        self.paused = true;
        let n = self.applied.saturating_sub(1).max(1).min(self.events.len());
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
        match n.checked_sub(1).and_then(|i| self.events.get(i)) {
            Some(e) => e.at.at_ms,
            None => self.start_ms(),
        }
    }

    /// Exactly the first `n` events folded into `dash`: forward from where it is, or again
    /// from the nearest checkpoint at or before `n`.
    fn fold_to(&mut self, dash: &mut Dashboard, n: usize) {
        let n = n.min(self.events.len());
        if n < self.applied {
            let i = self.checkpoints.partition_point(|(at, _)| *at <= n);
            let (at, model) = match i.checked_sub(1).and_then(|i| self.checkpoints.get(i)) {
                Some((at, m)) => (*at, m.clone()),
                None => (0, Model::new()),
            };
            dash.replace_model(model);
            self.applied = at;
        }
        for ev in &self.events[self.applied..n] {
            // Commands the fold asks for (quit after a plan) mean nothing in a replay.
            let _ = dash.apply(ev);
        }
        self.applied = n;
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
            events: self.events.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Stamp;

    fn notice(i: u64) -> Stamped {
        Stamped {
            seq: i,
            at: Stamp {
                at_ms: i * 100,
                unix_ms: 1_000_000 + i * 100,
            },
            event: CoreEvent::Notice {
                message: format!("n{i}"),
            },
        }
    }

    fn folded(events: &[Stamped], n: usize) -> serde_json::Value {
        let mut m = Model::new();
        for e in &events[..n] {
            m.apply(e);
        }
        serde_json::to_value(&m).expect("a Model serializes")
    }

    #[test]
    fn seeking_back_and_forth_gives_the_model_of_a_straight_fold() {
        let events: Vec<Stamped> = (0..700).map(notice).collect();
        let mut p = Player::new(events.clone());
        assert_eq!(p.checkpoints.len(), 3);
        let mut dash = Dashboard::new();
        for at in [60_000u64, 30_050, 69_900, 100, 25_600, 0] {
            p.seek(&mut dash, at);
            let n = events.partition_point(|e| e.at.at_ms <= at);
            assert_eq!(p.applied(), n);
            assert_eq!(
                serde_json::to_value(&dash.model).ok(),
                Some(folded(&events, n))
            );
        }
        p.step_forward(&mut dash);
        assert_eq!(p.applied(), 2);
        p.step_back(&mut dash);
        p.step_back(&mut dash);
        assert_eq!(p.applied(), 1);
        assert!(p.paused());
    }

    #[test]
    fn playing_moves_with_the_speed_and_stops_at_the_end() {
        let events: Vec<Stamped> = (0..50).map(notice).collect();
        let mut p = Player::new(events);
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
    }
}
