//! The key map: terminal key events to [`Action`]s. The help overlay is generated from
//! [`BINDINGS`], so what `?` shows is what the keys do.

use crate::state::{Action, Overlay, QuitChoice};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// (keys, what they do) for the help overlay and the README.
pub const BINDINGS: &[(&str, &str)] = &[
    ("q", "quit (attach mode never touches the target)"),
    (
        "Ctrl-C",
        "quit now (a launched demo is killed, a launched command detached)",
    ),
    ("Tab / Shift-Tab", "next / previous panel"),
    ("j k / Down Up", "move selection"),
    ("PgDn PgUp g G", "page, top, bottom"),
    ("o / r", "cycle thread sort column / reverse it"),
    ("n", "run the next teardown phase"),
    ("1..9", "run that phase"),
    (
        "other letters",
        "run the phase with that key in the plan (global keys win)",
    ),
    ("a", "run all remaining phases"),
    ("x", "abort the running phase"),
    ("+", "extend the running phase's timeout"),
    (
        "s / S",
        "stack snapshot of the selected thread / of non-daemon threads",
    ),
    ("w", "write the viewed stack snapshot to a file"),
    ("[ / ]", "older / newer kept stack snapshot (compare two)"),
    ("?", "this help"),
    ("Esc", "close an overlay"),
];

/// Maps a key press to an action, given which overlay is open.
pub fn action_for(key: KeyEvent, overlay: &Overlay) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::ForceQuit);
    }
    // Other Ctrl/Alt chords mean nothing here (Ctrl-D must not read as `d`, detach).
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return None;
    }
    if *overlay == Overlay::QuitPrompt {
        return match key.code {
            KeyCode::Char('d') => Some(Action::Choose(QuitChoice::Detach)),
            KeyCode::Char('k') => Some(Action::Choose(QuitChoice::KillTree)),
            KeyCode::Char('p') => Some(Action::Choose(QuitChoice::RunPlan)),
            KeyCode::Esc | KeyCode::Char('q') => Some(Action::Escape),
            _ => None,
        };
    }
    let action = match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextPanel,
        KeyCode::BackTab => Action::PrevPanel,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Char('o') => Action::CycleSort,
        KeyCode::Char('r') => Action::ReverseSort,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Esc => Action::Escape,
        KeyCode::Char('n') => Action::NextPhase,
        KeyCode::Char('a') => Action::RunAll,
        KeyCode::Char('x') => Action::AbortPhase,
        KeyCode::Char('+') => Action::ExtendTimeout,
        KeyCode::Char('s') => Action::StackSelected,
        KeyCode::Char('S') => Action::StackAll,
        KeyCode::Char('w') => Action::WriteStacks,
        KeyCode::Char('[') => Action::PrevStacks,
        KeyCode::Char(']') => Action::NextStacks,
        KeyCode::Char(c @ '1'..='9') => Action::RunPhase(c as usize - '1' as usize),
        KeyCode::Char(c) if c.is_ascii_alphabetic() => Action::PhaseKey(c),
        _ => return None,
    };
    Some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn digits_are_zero_based_phases() {
        assert_eq!(
            action_for(key(KeyCode::Char('1')), &Overlay::None),
            Some(Action::RunPhase(0))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('9')), &Overlay::None),
            Some(Action::RunPhase(8))
        );
    }

    #[test]
    fn quit_prompt_has_its_own_keys() {
        assert_eq!(
            action_for(key(KeyCode::Char('k')), &Overlay::QuitPrompt),
            Some(Action::Choose(QuitChoice::KillTree))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('k')), &Overlay::None),
            Some(Action::Up)
        );
    }

    #[test]
    fn control_chords_are_not_letters() {
        let k = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert_eq!(action_for(k, &Overlay::QuitPrompt), None);
    }

    #[test]
    fn ctrl_c_force_quits_everywhere() {
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(k, &Overlay::Help), Some(Action::ForceQuit));
    }
}
