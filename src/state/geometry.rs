//! Where things were drawn, as plain numbers: the UI reports it after each frame
//! ([`Dashboard::set_geometry`]) so mouse clicks and scroll limits are decided here, in pure
//! code, without the state knowing ratatui. A click selects (a panel, a row, a phase); it
//! never runs anything.

use super::{Dashboard, Overlay, Panel};

/// A screen rectangle (cells).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Area {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Area {
    pub fn contains(&self, x: u16, y: u16) -> bool {
        x >= self.x
            && y >= self.y
            && u32::from(x) < u32::from(self.x) + u32::from(self.width)
            && u32::from(y) < u32::from(self.y) + u32::from(self.height)
    }
}

/// The list rows of a panel: row `i` of `area` shows item `offset + i`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rows {
    pub area: Area,
    pub offset: usize,
}

impl Rows {
    /// The item under screen row `y`, if any.
    pub fn item_at(&self, x: u16, y: u16) -> Option<usize> {
        self.area
            .contains(x, y)
            .then(|| self.offset + usize::from(y - self.area.y))
    }
}

/// One panel on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelArea {
    pub panel: Panel,
    pub area: Area,
    /// Its selectable rows (threads, processes, tasks; the phase list for the teardown).
    pub rows: Option<Rows>,
}

/// What the last frame drew, for the mouse and the stack pane's scroll limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geometry {
    pub panels: Vec<PanelArea>,
    /// The panel tabs of the narrow layout (one panel at a time).
    pub tabs: Vec<(Panel, Area)>,
    /// Text rows of the stack pane (0 when it is closed).
    pub stack_rows: u16,
    /// How far the help overlay can scroll (0: it shows every key, or it is closed).
    pub help_max_scroll: u16,
    /// The terminal was too small to draw the dashboard.
    pub too_small: bool,
}

/// What the mouse did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseKind {
    Click,
    WheelUp,
    WheelDown,
}

/// Rows one wheel notch moves.
pub const WHEEL_ROWS: isize = 3;

impl Dashboard {
    /// The UI's report of the frame just drawn.
    pub fn set_geometry(&mut self, g: Geometry) {
        self.view.geometry = g;
        self.clamp_stack_scroll();
        self.view.help_scroll = self
            .view
            .help_scroll
            .min(self.view.geometry.help_max_scroll);
    }

    /// A mouse event at cell (`x`, `y`): a click focuses the panel (or tab) under it and
    /// selects the row or phase under it; the wheel scrolls what is under it.
    pub(super) fn mouse(&mut self, kind: MouseKind, x: u16, y: u16) {
        if self.view.geometry.too_small {
            return;
        }
        let wheel = match kind {
            MouseKind::Click => 0,
            MouseKind::WheelUp => -WHEEL_ROWS,
            MouseKind::WheelDown => WHEEL_ROWS,
        };
        match self.view.overlay {
            Overlay::None => {}
            // Overlays scroll (or page phases) with the wheel; a click does nothing there.
            Overlay::Stacks | Overlay::Why | Overlay::Phase => {
                match self.view.overlay {
                    // The phase overlay pages phases: one notch, one phase.
                    Overlay::Phase => self.move_selection(wheel.signum()),
                    _ => self.move_selection(wheel),
                }
                return;
            }
            Overlay::Help => {
                self.move_selection(wheel);
                return;
            }
            Overlay::QuitPrompt => return,
        }
        if kind == MouseKind::Click
            && let Some(&(panel, _)) = self
                .view
                .geometry
                .tabs
                .iter()
                .find(|(_, a)| a.contains(x, y))
        {
            self.view.focus = panel;
            return;
        }
        let Some(hit) = self
            .view
            .geometry
            .panels
            .iter()
            .find(|p| p.area.contains(x, y))
            .copied()
        else {
            return;
        };
        self.view.focus = hit.panel;
        if wheel != 0 {
            self.move_selection(wheel);
            return;
        }
        if let Some(item) = hit.rows.and_then(|r| r.item_at(x, y)) {
            self.select_item(hit.panel, item);
        }
    }

    /// Selects item `i` of a panel's list (a click); nothing when there is no such item.
    fn select_item(&mut self, panel: Panel, i: usize) {
        match panel {
            Panel::Threads => {
                if let Some(&tid) = self.screen().ordered_tids().get(i) {
                    self.view.selected_tid = Some(tid);
                }
            }
            Panel::Tree => {
                if let Some(&key) = self.screen().process_keys().get(i) {
                    self.view.selected_pid = Some(key);
                }
            }
            Panel::Tasks => {
                let n = self
                    .screen()
                    .last_report()
                    .map_or(0, |(r, _)| r.tasks.len());
                if i < n {
                    self.view.selected_task = i;
                }
            }
            Panel::Timeline => {
                let n = self.view.plan.as_ref().map_or(0, |p| p.phases.len());
                if i < n {
                    self.view.selected_phase = i;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_map_screen_lines_to_items() {
        let r = Rows {
            area: Area {
                x: 2,
                y: 10,
                width: 20,
                height: 5,
            },
            offset: 30,
        };
        assert_eq!(r.item_at(2, 10), Some(30));
        assert_eq!(r.item_at(21, 14), Some(34));
        assert_eq!(r.item_at(22, 14), None);
        assert_eq!(r.item_at(5, 15), None);
        assert_eq!(r.item_at(1, 12), None);
    }
}
