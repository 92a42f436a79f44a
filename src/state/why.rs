//! The Why overlay and the header's verdict: what the dashboard knows of the last diagnosis
//! (`diagnose`), as data. The diagnosis itself reads /proc, so the app computes it on the
//! blocking pool when [`Dashboard::take_why_request`] says so and hands the result back with
//! [`Dashboard::apply_why`]; nothing here does I/O.

use super::{Dashboard, Overlay};

/// How often the verdict is refreshed on its own (opening the overlay refreshes it at once).
pub const WHY_EVERY_MS: u64 = 5_000;
/// The automatic refresh never takes more than 1/WHY_COST_SHARE of the time: a diagnosis that
/// took 400 ms (a 1,000-thread tree) is repeated every 8 s, not every 5 s.
pub const WHY_COST_SHARE: u64 = 20;
/// While the overlay is closed and the verdict comes out the same, each repeat waits twice
/// as long, up to this: 5, 10, 20, 30 s. A change in the tree (a process or thread more or
/// less, an exit) or a different verdict goes back to [`WHY_EVERY_MS`].
pub const WHY_MAX_EVERY_MS: u64 = 30_000;

/// One diagnosis, as the app delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WhyResult {
    /// One plain line per cause, root cause first in each, the target's first.
    pub causes: Vec<String>,
    /// What was not known (no agent report, unreadable /proc files).
    pub unknowns: Vec<String>,
    /// Set when the diagnosis could not run at all (no snapshot yet, a failed task).
    pub error: Option<String>,
    pub computed_at_unix_ms: u64,
    /// Wall time the diagnosis took (it reads /proc of the whole tree).
    pub took_ms: u64,
}

impl WhyResult {
    /// The header's one line: the first cause's short form and how many there are.
    pub fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("cannot diagnose: {e}");
        }
        let n = self.causes.len();
        let Some(first) = self.causes.first() else {
            return "nothing found that blocks the exit".into();
        };
        // The fold stops at MAX_CAUSES: there may be more.
        let count = if n >= crate::diagnose::fold::MAX_CAUSES {
            format!("{n} or more")
        } else {
            n.to_string()
        };
        match first.strip_prefix("exit blocked: ") {
            Some(rest) => format!("exit blocked by {count}: {rest}"),
            None if n == 1 => first.clone(),
            None => format!("{count} causes: {first}"),
        }
    }
}

/// The diagnosis as the View keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhyView {
    /// Wanted and not yet handed to the app (it takes it with `take_why_request`).
    pub requested: bool,
    /// Handed to the app, no result yet.
    pub computing: bool,
    pub result: Option<WhyResult>,
    /// When the last diagnosis was asked for (for the automatic refresh).
    pub asked_at_unix_ms: Option<u64>,
    /// How far the overlay is scrolled.
    pub scroll: u16,
    /// Results in a row that said the same as the one before (the automatic refresh backs
    /// off while it stays the same: see [`WHY_MAX_EVERY_MS`]).
    pub same_in_a_row: u32,
    /// The tree's shape (processes, threads, exits) when the last diagnosis was asked for.
    pub shape_at_ask: Option<(usize, usize, usize)>,
}

impl Dashboard {
    /// `y`: opens the overlay and asks for a fresh diagnosis, or closes it.
    pub(super) fn toggle_why(&mut self) {
        if self.view.overlay == Overlay::Why {
            self.view.overlay = Overlay::None;
            return;
        }
        self.view.overlay = Overlay::Why;
        self.view.why.scroll = 0;
        self.ask_why();
    }

    /// Asks for a diagnosis unless one is already under way. A replay has no live /proc to
    /// read: it is never asked there.
    pub fn ask_why(&mut self) {
        let w = &mut self.view.why;
        if self.view.replay.is_some() || w.computing {
            return;
        }
        w.requested = true;
    }

    /// The app's side: true once per request (it then computes and calls `apply_why`).
    pub fn take_why_request(&mut self) -> bool {
        let w = &mut self.view.why;
        if !w.requested {
            return false;
        }
        w.requested = false;
        w.computing = true;
        w.asked_at_unix_ms = Some(self.view.now_unix_ms);
        let shape = self.tree_shape();
        self.view.why.shape_at_ask = shape;
        true
    }

    /// What the automatic refresh compares to know the tree changed: live processes, the
    /// target's threads, exits seen.
    fn tree_shape(&self) -> Option<(usize, usize, usize)> {
        let snap = self.model.snapshot.as_ref()?;
        let live = snap.processes.iter().filter(|p| p.exit.is_none()).count();
        Some((live, snap.threads.len(), self.model.exits.len()))
    }

    /// A diagnosis is delivered.
    pub fn apply_why(&mut self, result: WhyResult) {
        let w = &mut self.view.why;
        w.computing = false;
        let same = w
            .result
            .as_ref()
            .is_some_and(|r| r.causes == result.causes && r.error == result.error);
        w.same_in_a_row = if same { w.same_in_a_row + 1 } else { 0 };
        w.result = Some(result);
    }

    /// From the redraw tick: whether the verdict is due for its automatic refresh (every
    /// [`WHY_EVERY_MS`], backing off to [`WHY_MAX_EVERY_MS`] while nothing changes and the
    /// overlay is closed, or [`WHY_COST_SHARE`] times what the last one took if longer,
    /// while the target runs and a snapshot exists; never twice at once).
    pub(super) fn why_due(&self, now_unix_ms: u64) -> bool {
        let w = &self.view.why;
        let steady = self.view.overlay != Overlay::Why && w.shape_at_ask == self.tree_shape();
        let base = match steady {
            true => (WHY_EVERY_MS << w.same_in_a_row.min(3)).min(WHY_MAX_EVERY_MS),
            false => WHY_EVERY_MS,
        };
        let every = w.result.as_ref().map_or(WHY_EVERY_MS, |r| {
            base.max(r.took_ms.saturating_mul(WHY_COST_SHARE))
        });
        let s = self.screen();
        !w.computing
            && !w.requested
            && self.view.replay.is_none()
            && s.snapshot().is_some()
            && s.target_exit().is_none()
            && w.asked_at_unix_ms
                .is_none_or(|at| now_unix_ms.saturating_sub(at) >= every)
    }
}
