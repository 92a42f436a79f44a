//! The key map: terminal key and mouse events to [`Action`]s. The help overlay is generated
//! from [`BINDINGS`], so what `?` shows is what the keys do (README "Key bindings" says the
//! same in more words).

use crate::state::{Action, MouseKind, Overlay, QuitChoice};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

/// (keys, what they do) for the help overlay and the README. Each description fits the help
/// at 80 columns (60 characters; a test checks), and every key [`action_for`] handles is
/// listed (a test checks that too, both ways).
pub const BINDINGS: &[(&str, &str)] = &[
    ("q", "quit (attach mode never touches the target)"),
    (
        "Ctrl-C",
        "quit now (kills a launched demo, detaches a command)",
    ),
    (
        "Tab / Shift-Tab",
        "next / previous panel (one at a time below 120x30)",
    ),
    (
        "j k / Down Up",
        "move selection (a phase in the teardown panel)",
    ),
    ("PgDn / PgUp", "a page down / up"),
    ("g Home / G End", "top / bottom"),
    (
        "mouse",
        "click selects (a phase too: it never runs); wheel scrolls",
    ),
    (
        "o / r",
        "cycle sort (tid name state cpu% time daemon) / reverse it",
    ),
    ("Enter", "phase: every note of it · task: its await chain"),
    (
        "Del / Backspace",
        "clear gone processes (kept listed, X, until cleared)",
    ),
    ("n", "run the first teardown phase not yet run"),
    ("1..9", "run that phase"),
    (
        "other letters",
        "run the phase with that key in the plan (global keys win)",
    ),
    ("a", "run all remaining phases"),
    ("x", "abort the running phase (recorded as aborted)"),
    ("+", "extend the running phase's timeout"),
    (
        "s / S",
        "stacks of the selected thread / non-daemon threads + tasks",
    ),
    (
        "w",
        "write the viewed stack snapshot to files (.txt and .json)",
    ),
    ("[ / ]", "older / newer kept stack snapshot (compare two)"),
    ("y", "why the target won't exit, root cause first"),
    ("?", "this help (j/k scroll it when it does not fit)"),
    ("Esc", "close an overlay"),
];

/// A replay's own keys (chosen to clash with no dashboard key: `[` `]` page stacks there).
pub const REPLAY_BINDINGS: &[(&str, &str)] = &[
    ("Space", "replay: pause / play"),
    ("< / >", "replay: slower / faster (0.25x .. 16x)"),
    (", / .", "replay: one event back / forward"),
    ("{ / }", "replay: previous / next phase boundary"),
    ("Left / Right", "replay: seek 5 s back / forward"),
];

/// A key in a replay: time travel, or a dashboard action (read-only ones do something).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKey {
    PlayPause,
    Slower,
    Faster,
    StepBack,
    StepForward,
    PrevBoundary,
    NextBoundary,
    SeekBack,
    SeekForward,
    Dashboard(Action),
}

/// Maps a key press in a replay: its own keys first, then the dashboard's.
pub fn replay_action_for(key: KeyEvent, overlay: &Overlay) -> Option<ReplayKey> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let plain = !key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
    let own = match key.code {
        KeyCode::Char(' ') => Some(ReplayKey::PlayPause),
        KeyCode::Char('<') => Some(ReplayKey::Slower),
        KeyCode::Char('>') => Some(ReplayKey::Faster),
        KeyCode::Char(',') => Some(ReplayKey::StepBack),
        KeyCode::Char('.') => Some(ReplayKey::StepForward),
        KeyCode::Char('{') => Some(ReplayKey::PrevBoundary),
        KeyCode::Char('}') => Some(ReplayKey::NextBoundary),
        KeyCode::Left => Some(ReplayKey::SeekBack),
        KeyCode::Right => Some(ReplayKey::SeekForward),
        _ => None,
    };
    match own {
        Some(k) if plain => Some(k),
        _ => action_for(key, overlay).map(ReplayKey::Dashboard),
    }
}

static ALIASES: std::sync::OnceLock<Vec<(char, char)>> = std::sync::OnceLock::new();

/// Extra keys from the config file's `[keys]`: (extra key, built-in key of the action),
/// validated by `config`; the first call wins. The built-in keys keep working.
pub fn install_aliases(aliases: Vec<(char, char)>) {
    let _ = ALIASES.set(aliases);
}

/// Help entries for the config file's extra keys (`Q`, "quit (extra key from the config
/// file's [keys])"), built once: the aliases are installed once at start.
pub fn alias_entries() -> &'static [(&'static str, &'static str)] {
    static ENTRIES: std::sync::OnceLock<Vec<(&'static str, &'static str)>> =
        std::sync::OnceLock::new();
    ENTRIES.get_or_init(|| {
        let aliases = ALIASES.get().map_or(&[][..], Vec::as_slice);
        alias_lines(aliases)
            .into_iter()
            .map(|(k, w)| {
                (
                    &*Box::leak(k.into_boxed_str()),
                    &*Box::leak(w.into_boxed_str()),
                )
            })
            .collect()
    })
}

fn alias_lines(aliases: &[(char, char)]) -> Vec<(String, String)> {
    aliases
        .iter()
        .filter_map(|(extra, builtin)| {
            let (action, _) = crate::config::KEY_ACTIONS
                .iter()
                .find(|(_, k)| k == builtin)?;
            Some((
                extra.to_string(),
                format!("{} (as {builtin}; config [keys])", action.replace('_', " ")),
            ))
        })
        .collect()
}

/// The built-in key an extra key stands for (itself when it is no alias).
fn aliased(code: KeyCode, aliases: &[(char, char)]) -> KeyCode {
    match code {
        KeyCode::Char(c) => aliases
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(code, |(_, builtin)| KeyCode::Char(*builtin)),
        other => other,
    }
}

/// Maps a key press to an action, given which overlay is open.
pub fn action_for(mut key: KeyEvent, overlay: &Overlay) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if *overlay != Overlay::QuitPrompt {
        key.code = aliased(key.code, ALIASES.get().map_or(&[], |a| a.as_slice()));
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
        KeyCode::Enter => Action::Open,
        KeyCode::Delete | KeyCode::Backspace => Action::ClearGone,
        KeyCode::Char('n') => Action::NextPhase,
        KeyCode::Char('a') => Action::RunAll,
        KeyCode::Char('x') => Action::AbortPhase,
        KeyCode::Char('+') => Action::ExtendTimeout,
        KeyCode::Char('s') => Action::StackSelected,
        KeyCode::Char('S') => Action::StackAll,
        KeyCode::Char('w') => Action::WriteStacks,
        KeyCode::Char('y') => Action::ToggleWhy,
        KeyCode::Char('[') => Action::PrevStacks,
        KeyCode::Char(']') => Action::NextStacks,
        KeyCode::Char(c @ '1'..='9') => Action::RunPhase(c as usize - '1' as usize),
        KeyCode::Char(c) if c.is_ascii_alphabetic() => Action::PhaseKey(c),
        _ => return None,
    };
    Some(action)
}

/// Maps a mouse event: left click, wheel up / down (drags and releases mean nothing).
pub fn mouse_action(ev: MouseEvent) -> Option<Action> {
    let kind = match ev.kind {
        MouseEventKind::Down(MouseButton::Left) => MouseKind::Click,
        MouseEventKind::ScrollUp => MouseKind::WheelUp,
        MouseEventKind::ScrollDown => MouseKind::WheelDown,
        _ => return None,
    };
    Some(Action::Mouse {
        kind,
        x: ev.column,
        y: ev.row,
    })
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
    fn plan_phases_cannot_take_a_global_key() {
        for c in (b'!'..=b'~').map(char::from) {
            let global = !matches!(
                action_for(key(KeyCode::Char(c)), &Overlay::None),
                None | Some(Action::PhaseKey(_)) | Some(Action::RunPhase(_))
            );
            assert_eq!(
                global,
                crate::teardown::plan::GLOBAL_KEYS.contains(c),
                "key {c:?}: keep teardown::plan::GLOBAL_KEYS in step with the key map"
            );
        }
    }

    #[test]
    fn replay_keys_take_no_dashboard_key() {
        for (code, want) in [
            (KeyCode::Char(' '), ReplayKey::PlayPause),
            (KeyCode::Char('<'), ReplayKey::Slower),
            (KeyCode::Char('>'), ReplayKey::Faster),
            (KeyCode::Char(','), ReplayKey::StepBack),
            (KeyCode::Char('.'), ReplayKey::StepForward),
            (KeyCode::Char('{'), ReplayKey::PrevBoundary),
            (KeyCode::Char('}'), ReplayKey::NextBoundary),
            (KeyCode::Left, ReplayKey::SeekBack),
            (KeyCode::Right, ReplayKey::SeekForward),
        ] {
            assert_eq!(action_for(key(code), &Overlay::None), None, "{code:?}");
            assert_eq!(replay_action_for(key(code), &Overlay::None), Some(want));
        }
        assert_eq!(
            replay_action_for(key(KeyCode::Char('[')), &Overlay::None),
            Some(ReplayKey::Dashboard(Action::PrevStacks))
        );
    }

    #[test]
    fn y_is_the_why_key() {
        // A global key: plans cannot take it (teardown::plan::GLOBAL_KEYS).
        assert_eq!(
            action_for(key(KeyCode::Char(crate::state::WHY_KEY)), &Overlay::None),
            Some(Action::ToggleWhy)
        );
        assert!(crate::teardown::plan::GLOBAL_KEYS.contains(crate::state::WHY_KEY));
    }

    #[test]
    fn config_aliases_are_listed_in_the_help_with_their_action() {
        let lines = alias_lines(&[('Q', 'q'), ('N', 'n')]);
        assert_eq!(
            lines,
            [
                ("Q".to_string(), "quit (as q; config [keys])".to_string()),
                (
                    "N".to_string(),
                    "next phase (as n; config [keys])".to_string()
                ),
            ]
        );
    }

    #[test]
    fn config_aliases_stand_for_the_builtin_key() {
        let aliases = [('Q', 'q'), ('N', 'n')];
        assert_eq!(aliased(KeyCode::Char('Q'), &aliases), KeyCode::Char('q'));
        assert_eq!(aliased(KeyCode::Char('N'), &aliases), KeyCode::Char('n'));
        assert_eq!(aliased(KeyCode::Char('q'), &aliases), KeyCode::Char('q'));
        assert_eq!(aliased(KeyCode::Tab, &aliases), KeyCode::Tab);
    }

    /// The name the help uses for a key.
    fn key_name(code: KeyCode) -> String {
        match code {
            KeyCode::Char(' ') => "Space".into(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            KeyCode::Up => "Up".into(),
            KeyCode::Down => "Down".into(),
            KeyCode::Left => "Left".into(),
            KeyCode::Right => "Right".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::Backspace => "Backspace".into(),
            other => format!("{other:?}"),
        }
    }

    /// Every key a terminal sends that the map could handle.
    fn every_key() -> Vec<KeyCode> {
        let mut keys: Vec<KeyCode> = (b' '..=b'~')
            .map(|b| KeyCode::Char(char::from(b)))
            .collect();
        keys.extend([
            KeyCode::Tab,
            KeyCode::BackTab,
            KeyCode::Up,
            KeyCode::Down,
            KeyCode::Left,
            KeyCode::Right,
            KeyCode::PageUp,
            KeyCode::PageDown,
            KeyCode::Home,
            KeyCode::End,
            KeyCode::Enter,
            KeyCode::Esc,
            KeyCode::Delete,
            KeyCode::Backspace,
            KeyCode::Insert,
        ]);
        keys.extend((1..=12).map(KeyCode::F));
        keys
    }

    /// The key names of a bindings table: each entry's keys split at spaces and `/`.
    fn names(table: &[(&str, &str)]) -> Vec<String> {
        table
            .iter()
            .flat_map(|(keys, _)| {
                if *keys == "other letters" || *keys == "1..9" || *keys == "mouse" {
                    return vec![keys.to_string()];
                }
                keys.split([' ', '/'])
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    fn listed(names: &[String], code: KeyCode, action: Option<Action>) -> bool {
        match (code, action) {
            (KeyCode::Char('1'..='9'), Some(Action::RunPhase(_))) => {
                names.iter().any(|n| n == "1..9")
            }
            (KeyCode::Char(_), Some(Action::PhaseKey(_))) => {
                names.iter().any(|n| n == "other letters")
            }
            (code, _) => names.contains(&key_name(code)),
        }
    }

    #[test]
    fn the_help_lists_every_key_the_dashboard_handles_and_no_other() {
        let names = names(BINDINGS);
        for code in every_key() {
            let action = action_for(key(code), &Overlay::None);
            if action.is_some() {
                assert!(
                    listed(&names, code, action),
                    "{code:?} ({action:?}) is bound but not in ui::keys::BINDINGS (the help)"
                );
            }
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_c, &Overlay::None), Some(Action::ForceQuit));
        assert!(names.iter().any(|n| n == "Ctrl-C"));
        // And the other way: every key the help names does something.
        for name in &names {
            let bound = match name.as_str() {
                "Ctrl-C" | "mouse" | "1..9" | "other letters" => true,
                n => every_key().into_iter().any(|code| {
                    key_name(code) == n && action_for(key(code), &Overlay::None).is_some()
                }),
            };
            assert!(
                bound,
                "the help lists {name:?}, which no key map entry handles"
            );
        }
    }

    #[test]
    fn the_replay_help_lists_every_replay_key() {
        let own = names(REPLAY_BINDINGS);
        for code in every_key() {
            let k = replay_action_for(key(code), &Overlay::None);
            if let Some(k) = k
                && !matches!(k, ReplayKey::Dashboard(_))
            {
                assert!(
                    own.contains(&key_name(code)),
                    "replay key {code:?} ({k:?}) is not in ui::keys::REPLAY_BINDINGS"
                );
            }
        }
        for name in &own {
            assert!(
                every_key().into_iter().any(|code| key_name(code) == *name
                    && !matches!(
                        replay_action_for(key(code), &Overlay::None),
                        None | Some(ReplayKey::Dashboard(_))
                    )),
                "the replay help lists {name:?}, which is no replay key"
            );
        }
    }

    #[test]
    fn each_help_line_fits_80_columns() {
        for (keys, what) in BINDINGS.iter().chain(REPLAY_BINDINGS) {
            assert!(
                keys.chars().count() <= 16,
                "{keys:?}: key column is 16 wide"
            );
            assert!(
                what.chars().count() <= 60,
                "{what:?}: {} characters, the help at 80 columns shows 60",
                what.chars().count()
            );
        }
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
