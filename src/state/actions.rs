//! What user actions do to the view: selection, sorting, overlays, quitting, and the
//! commands they become for the session (teardown, stacks). The Model is only read here.

use super::{Action, Command, Dashboard, Mode, Overlay, Panel, QuitChoice};

/// The key of the Why overlay (one of `teardown::plan::GLOBAL_KEYS`: no plan phase takes it).
pub const WHY_KEY: char = 'y';

impl Dashboard {
    /// Turns a user action into commands; purely local actions just change the view.
    pub fn act(&mut self, action: Action) -> Vec<Command> {
        if self.view.overlay == Overlay::QuitPrompt {
            return match action {
                Action::Choose(QuitChoice::RunPlan) => {
                    // Keep the dashboard up while the plan runs; quit when it is done.
                    self.view.overlay = Overlay::None;
                    self.view.quit_after_plan = true;
                    vec![Command::Teardown(Action::RunAll)]
                }
                Action::Choose(choice) => vec![Command::Quit(Some(choice))],
                Action::Escape | Action::Quit => {
                    self.view.overlay = Overlay::None;
                    Vec::new()
                }
                Action::ForceQuit => self.force_quit(),
                _ => Vec::new(),
            };
        }
        match action {
            Action::Quit => {
                let screen = self.screen();
                if matches!(screen.mode(), Mode::Launch { .. }) && screen.tree_alive() {
                    self.view.overlay = Overlay::QuitPrompt;
                    Vec::new()
                } else {
                    vec![Command::Quit(None)]
                }
            }
            Action::ForceQuit => self.force_quit(),
            Action::NextPanel => {
                self.view.focus = self.view.focus.next();
                Vec::new()
            }
            Action::PrevPanel => {
                self.view.focus = self.view.focus.prev();
                Vec::new()
            }
            Action::Up => self.moved(-1),
            Action::Down => self.moved(1),
            Action::PageUp => self.moved(-10),
            Action::PageDown => self.moved(10),
            Action::Top => self.moved(isize::MIN / 2),
            Action::Bottom => self.moved(isize::MAX / 2),
            Action::CycleSort => {
                self.view.sort = self.view.sort.next();
                self.resort();
                Vec::new()
            }
            Action::ReverseSort => {
                self.view.sort_reverse = !self.view.sort_reverse;
                self.resort();
                Vec::new()
            }
            Action::ToggleHelp => {
                self.view.overlay = if self.view.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
                Vec::new()
            }
            Action::Escape => {
                self.view.overlay = Overlay::None;
                Vec::new()
            }
            Action::Choose(_) => Vec::new(),
            Action::PhaseKey(c) => {
                let index = self
                    .view
                    .plan
                    .as_ref()
                    .and_then(|p| p.phases.iter().position(|ph| ph.key == c));
                match index {
                    Some(i) => vec![Command::Teardown(Action::RunPhase(i))],
                    None => Vec::new(),
                }
            }
            Action::ToggleWhy => {
                self.toggle_why();
                Vec::new()
            }
            Action::PrevStacks | Action::NextStacks => {
                let kept = self.model.stacks.len();
                if kept > 0 {
                    let last = kept - 1;
                    self.view.stack_view = match action {
                        Action::PrevStacks => self.view.stack_view.saturating_sub(1),
                        _ => (self.view.stack_view + 1).min(last),
                    };
                    self.view.stack_scroll = 0;
                    self.view.overlay = Overlay::Stacks;
                }
                Vec::new()
            }
            Action::StackSelected => match self.view.selected_tid {
                Some(tid) => vec![Command::CaptureStacks(vec![tid])],
                None => Vec::new(),
            },
            Action::StackAll => vec![Command::CaptureStacks(self.screen().threads_to_snapshot())],
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

    /// Ctrl-C: a launched demo never outlives us; a launched command is detached.
    fn force_quit(&mut self) -> Vec<Command> {
        let choice = match self.screen().mode() {
            Mode::Launch { demo: true } => Some(QuitChoice::KillTree),
            Mode::Launch { demo: false } => Some(QuitChoice::Detach),
            Mode::Attach => None,
        };
        vec![Command::Quit(choice)]
    }

    fn move_selection(&mut self, delta: isize) {
        if self.view.overlay == Overlay::Why {
            let v = (self.view.why.scroll as isize).saturating_add(delta);
            self.view.why.scroll = v.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        if self.view.overlay == Overlay::Stacks {
            let v = (self.view.stack_scroll as isize).saturating_add(delta);
            self.view.stack_scroll = v.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        match self.view.focus {
            Panel::Threads => {
                let tids = self.screen().ordered_tids();
                self.view.selected_tid = step(&tids, self.view.selected_tid, delta);
            }
            Panel::Tree => {
                let keys = self.screen().process_keys();
                self.view.selected_pid = step(&keys, self.view.selected_pid, delta);
            }
            Panel::Tasks => {
                let n = self.screen().report().map_or(0, |r| r.tasks.len());
                let i = (self.view.selected_task as isize).saturating_add(delta);
                self.view.selected_task = i.clamp(0, n.saturating_sub(1) as isize) as usize;
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
