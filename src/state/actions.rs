//! What user actions do to the model: selection, sorting, overlays, quitting, and the
//! commands they become for the core (teardown, stacks).

use super::{Action, AppState, Command, Mode, Overlay, Panel, QuitChoice};
use crate::model::ProcKey;

impl AppState {
    /// Turns a user action into commands; purely local actions just change the model.
    pub fn act(&mut self, action: Action) -> Vec<Command> {
        if self.overlay == Overlay::QuitPrompt {
            return match action {
                Action::Choose(QuitChoice::RunPlan) => {
                    // Keep the dashboard up while the plan runs; quit when it is done.
                    self.overlay = Overlay::None;
                    self.quit_after_plan = true;
                    vec![Command::Teardown(Action::RunAll)]
                }
                Action::Choose(choice) => vec![Command::Quit(Some(choice))],
                Action::Escape | Action::Quit => {
                    self.overlay = Overlay::None;
                    Vec::new()
                }
                Action::ForceQuit => self.force_quit(),
                _ => Vec::new(),
            };
        }
        match action {
            Action::Quit => {
                let tree_alive = self.target_exit.is_none()
                    || self
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.live_descendants().next().is_some());
                if matches!(self.mode, Mode::Launch { .. }) && tree_alive {
                    self.overlay = Overlay::QuitPrompt;
                    Vec::new()
                } else {
                    self.quit_now(None)
                }
            }
            Action::ForceQuit => self.force_quit(),
            Action::NextPanel => {
                self.focus = self.focus.next();
                Vec::new()
            }
            Action::PrevPanel => {
                self.focus = self.focus.prev();
                Vec::new()
            }
            Action::Up => self.moved(-1),
            Action::Down => self.moved(1),
            Action::PageUp => self.moved(-10),
            Action::PageDown => self.moved(10),
            Action::Top => self.moved(isize::MIN / 2),
            Action::Bottom => self.moved(isize::MAX / 2),
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.resort();
                Vec::new()
            }
            Action::ReverseSort => {
                self.sort_reverse = !self.sort_reverse;
                self.resort();
                Vec::new()
            }
            Action::ToggleHelp => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
                Vec::new()
            }
            Action::Escape => {
                self.overlay = Overlay::None;
                Vec::new()
            }
            Action::Choose(_) => Vec::new(),
            Action::PhaseKey(c) => {
                let index = self
                    .plan
                    .as_ref()
                    .and_then(|p| p.phases.iter().position(|ph| ph.key == c));
                match index {
                    Some(i) => vec![Command::Teardown(Action::RunPhase(i))],
                    None => Vec::new(),
                }
            }
            Action::PrevStacks | Action::NextStacks => {
                if !self.stacks.is_empty() {
                    let last = self.stacks.len() - 1;
                    self.stack_view = match action {
                        Action::PrevStacks => self.stack_view.saturating_sub(1),
                        _ => (self.stack_view + 1).min(last),
                    };
                    self.stack_scroll = 0;
                    self.overlay = Overlay::Stacks;
                }
                Vec::new()
            }
            Action::StackSelected => match self.selected_tid {
                Some(tid) => vec![Command::CaptureStacks(vec![tid])],
                None => Vec::new(),
            },
            Action::StackAll => vec![Command::CaptureStacks(self.threads_to_snapshot())],
            Action::WriteStacks => vec![Command::WriteStacks],
            Action::NextPhase
            | Action::RunPhase(_)
            | Action::RunAll
            | Action::AbortPhase
            | Action::ExtendTimeout => vec![Command::Teardown(action)],
        }
    }

    fn moved(&mut self, delta: isize) -> Vec<Command> {
        self.move_selection(delta);
        Vec::new()
    }

    fn quit_now(&mut self, choice: Option<QuitChoice>) -> Vec<Command> {
        vec![Command::Quit(choice)]
    }

    /// Ctrl-C: a launched demo never outlives us; a launched command is detached.
    fn force_quit(&mut self) -> Vec<Command> {
        let choice = match self.mode {
            Mode::Launch { demo: true } => Some(QuitChoice::KillTree),
            Mode::Launch { demo: false } => Some(QuitChoice::Detach),
            Mode::Attach => None,
        };
        self.quit_now(choice)
    }

    fn move_selection(&mut self, delta: isize) {
        if self.overlay == Overlay::Stacks {
            let v = (self.stack_scroll as isize).saturating_add(delta);
            self.stack_scroll = v.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        match self.focus {
            Panel::Threads => {
                let tids = self.ordered_tids();
                self.selected_tid = step(&tids, self.selected_tid, delta);
            }
            Panel::Tree => {
                let keys: Vec<ProcKey> = self
                    .snapshot
                    .as_ref()
                    .map(|s| s.processes.iter().map(|p| p.key).collect())
                    .unwrap_or_default();
                self.selected_pid = step(&keys, self.selected_pid, delta);
            }
            Panel::Tasks => {
                let n = self.agent_report.as_ref().map_or(0, |r| r.tasks.len());
                let i = (self.selected_task as isize).saturating_add(delta);
                self.selected_task = i.clamp(0, n.saturating_sub(1) as isize) as usize;
            }
            Panel::Timeline => {}
        }
    }
}

fn step<T: Copy + PartialEq>(items: &[T], current: Option<T>, delta: isize) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let i = current
        .and_then(|c| items.iter().position(|x| *x == c))
        .unwrap_or(0) as isize;
    let j = (i.saturating_add(delta)).clamp(0, items.len() as isize - 1) as usize;
    items.get(j).copied()
}
