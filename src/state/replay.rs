//! What the View knows about a replay (position, speed, paused, phase boundaries; drawn by
//! the header and the scrub bar) and rebuilding the View around a Model folded again after a
//! backwards seek. The replay controller (`crate::replay`) owns the position; the Model
//! never holds replay state.

use super::procs::Gone;
use super::{Dashboard, Overlay};
use crate::model::ProcKey;
use crate::session::Model;

/// The replay's position as the screen shows it, set by the controller after every move.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayBar {
    /// Session time shown, and the recording's span.
    pub pos_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub speed: f64,
    pub paused: bool,
    /// Session times where a phase started or ended.
    pub boundaries: Vec<u64>,
    /// Events folded so far, of all.
    pub event: usize,
    pub events: usize,
}

/// The View's gone book (processes kept listed after they exited, where each came from)
/// as a fold of the events made it, compressed: a replay checkpoint keeps one, shared with
/// the checkpoint before when it did not change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GoneBook {
    gone: Vec<(ProcKey, Gone)>,
    dropped: u64,
    first_ppid: Vec<(ProcKey, i32)>,
}

type GoneWire = (Vec<(ProcKey, Gone)>, u64, Vec<(ProcKey, i32)>);

impl GoneBook {
    /// The book `dash`'s View holds now.
    pub fn of(dash: &Dashboard) -> Self {
        let mut first_ppid: Vec<(ProcKey, i32)> =
            dash.view.first_ppid.iter().map(|(k, v)| (*k, *v)).collect();
        first_ppid.sort_unstable();
        Self {
            gone: dash
                .view
                .gone
                .iter()
                .map(|(k, g)| (*k, g.clone()))
                .collect(),
            dropped: dash.view.gone_dropped,
            first_ppid,
        }
    }

    /// zstd-compressed JSON; None when the book is empty (nothing to keep).
    pub fn pack(&self) -> Option<std::sync::Arc<[u8]>> {
        if self.gone.is_empty() && self.dropped == 0 {
            return None;
        }
        let wire = (&self.gone, self.dropped, &self.first_ppid);
        let json = serde_json::to_vec(&wire).ok()?;
        zstd::bulk::compress(&json, 1).ok().map(Into::into)
    }

    fn unpack(bytes: &[u8]) -> Option<Self> {
        let json = zstd::stream::decode_all(bytes).ok()?;
        let (gone, dropped, first_ppid): GoneWire = serde_json::from_slice(&json).ok()?;
        Some(Self {
            gone,
            dropped,
            first_ppid,
        })
    }
}

impl Dashboard {
    /// Replaces the Model (folded again from a checkpoint) and keeps the View consistent
    /// with it: the gone book the same fold made (`gone`, from [`GoneBook::pack`]), the
    /// parsed plan, selections, the stack pane's page.
    pub fn replace_model(&mut self, model: Model, gone: Option<&[u8]>) {
        self.model = model;
        // The gone book as the fold up to the checkpoint made it (processes the user
        // cleared stay cleared); nothing when it was empty there.
        let book = gone.and_then(GoneBook::unpack).unwrap_or_default();
        let cleared = &self.view.cleared;
        self.view.gone = book
            .gone
            .into_iter()
            .filter(|(k, _)| !cleared.contains(k))
            .collect();
        self.view.gone_dropped = book.dropped;
        self.view.first_ppid = book.first_ppid.into_iter().collect();
        self.view.plan = self.model.plan.as_ref().and_then(|p| p.load().ok());
        self.fix_selection();
        let stacks = self.model.stacks.len();
        if stacks == 0 {
            self.view.stack_view = 0;
            if self.view.overlay == Overlay::Stacks {
                self.view.overlay = Overlay::None;
            }
        } else {
            self.view.stack_view = self.view.stack_view.min(stacks - 1);
        }
        let tasks = self.model.report.as_ref().map_or(0, |r| r.tasks.len());
        self.view.selected_task = self.view.selected_task.min(tasks.saturating_sub(1));
    }
}
