//! What user actions do to the view: selection, sorting, overlays, quitting, and the
//! commands they become for the session (teardown, stacks). The Model is only read here.

use super::{Action, Command, Dashboard, Mode, Overlay, Panel, QuitChoice, StackAsk};
use crate::session::TaskWant;

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
                // The demo dies with lifecycle-top (it is started that way): detaching it
                // would be a lie, so the prompt does not offer it.
                Action::Choose(QuitChoice::Detach)
                    if self.screen().mode() == (Mode::Launch { demo: true }) =>
                {
                    Vec::new()
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
                self.view.help_scroll = 0;
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
            Action::Open => {
                if self.view.overlay == Overlay::Phase {
                    self.view.overlay = Overlay::None;
                } else if self.view.focus == Panel::Timeline && self.view.plan.is_some() {
                    self.view.overlay = Overlay::Phase;
                } else if self.view.focus == Panel::Tasks {
                    return self.open_task();
                }
                Vec::new()
            }
            Action::ClearGone => {
                let n = self.clear_gone();
                self.view.status = Some(format!("cleared {n} gone process(es) from the tree"));
                Vec::new()
            }
            Action::Mouse { kind, x, y } => {
                self.mouse(kind, x, y);
                Vec::new()
            }
            Action::NextPhase => self.next_phase(),
            // The engine records the run it stops as `aborted`.
            Action::AbortPhase => vec![Command::Teardown(action)],
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
                Some(tid) => vec![Command::CaptureStacks(StackAsk::threads(vec![tid]))],
                None => Vec::new(),
            },
            Action::StackAll => {
                let screen = self.screen();
                // With tasks pending, `S` takes their await chains too.
                let tasks = match screen.last_report() {
                    Some((r, _)) if !r.tasks.is_empty() => TaskWant::All,
                    _ => TaskWant::None,
                };
                vec![Command::CaptureStacks(StackAsk {
                    threads: Some(screen.threads_to_snapshot()),
                    tasks,
                })]
            }
            Action::WriteStacks => vec![Command::WriteStacks],
            Action::RunPhase(_) | Action::RunAll | Action::ExtendTimeout => {
                vec![Command::Teardown(action)]
            }
        }
    }

    /// Enter on a task: its await chain, asked of the agent.
    fn open_task(&mut self) -> Vec<Command> {
        let id = self
            .screen()
            .last_report()
            .and_then(|(r, _)| r.tasks.get(self.view.selected_task).map(|t| t.id));
        match id {
            Some(id) => vec![Command::CaptureStacks(StackAsk {
                threads: None,
                tasks: TaskWant::Ids(vec![id]),
            })],
            None => {
                self.view.status = Some("no task selected: the agent listed none".into());
                Vec::new()
            }
        }
    }

    /// `n`: the first plan phase not yet run (not "the one after the last run": running
    /// phase 3 by its key must not make `n` skip phases 1 and 2).
    fn next_phase(&mut self) -> Vec<Command> {
        let (Some(plan), Some(tl)) = (&self.view.plan, &self.model.timeline) else {
            // Nothing ran yet (or the plan is not loaded): the engine's next is the first.
            return vec![Command::Teardown(Action::NextPhase)];
        };
        let running = tl.running.as_ref().map(|r| r.index);
        match (0..plan.phases.len()).find(|&i| tl.record(i).is_none() && Some(i) != running) {
            Some(i) => vec![Command::Teardown(Action::RunPhase(i))],
            None => {
                self.view.status =
                    Some("every phase has run: its key or digit runs one again".into());
                Vec::new()
            }
        }
    }

    /// The stack pane's scroll stays within its text (the last page stays full).
    pub(super) fn clamp_stack_scroll(&mut self) {
        let lines = self
            .model
            .stacks
            .get(self.view.stack_view)
            .map_or(0, |s| super::stack_line_count(s));
        let page = usize::from(self.view.geometry.stack_rows.max(1));
        let max = u16::try_from(lines.saturating_sub(page)).unwrap_or(u16::MAX);
        self.view.stack_scroll = self.view.stack_scroll.min(max);
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

    pub(super) fn move_selection(&mut self, delta: isize) {
        if self.view.overlay == Overlay::Help {
            let v = (self.view.help_scroll as isize).saturating_add(delta);
            let max = self.view.geometry.help_max_scroll;
            self.view.help_scroll = v.clamp(0, max as isize) as u16;
            return;
        }
        if self.view.overlay == Overlay::Why {
            let v = (self.view.why.scroll as isize).saturating_add(delta);
            self.view.why.scroll = v.clamp(0, u16::MAX as isize) as u16;
            return;
        }
        if self.view.overlay == Overlay::Phase {
            // Browsing phases: j/k (and the wheel) move to the previous / next phase.
            let n = self.view.plan.as_ref().map_or(0, |p| p.phases.len());
            let i = (self.view.selected_phase as isize).saturating_add(delta);
            self.view.selected_phase = i.clamp(0, n.saturating_sub(1) as isize) as usize;
            return;
        }
        if self.view.overlay == Overlay::Stacks {
            let v = (self.view.stack_scroll as isize).saturating_add(delta);
            self.view.stack_scroll = v.clamp(0, u16::MAX as isize) as u16;
            self.clamp_stack_scroll();
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
                let n = self
                    .screen()
                    .last_report()
                    .map_or(0, |(r, _)| r.tasks.len());
                let i = (self.view.selected_task as isize).saturating_add(delta);
                self.view.selected_task = i.clamp(0, n.saturating_sub(1) as isize) as usize;
            }
            Panel::Timeline => {
                let n = self.view.plan.as_ref().map_or(0, |p| p.phases.len());
                let i = (self.view.selected_phase as isize).saturating_add(delta);
                self.view.selected_phase = i.clamp(0, n.saturating_sub(1) as isize) as usize;
            }
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
