//! The config file: `$XDG_CONFIG_HOME/lifecycle-top/config.toml` (else
//! `~/.config/lifecycle-top/config.toml`), or `--config FILE`. It owns reading, validating
//! and describing that file: a default interval and plan (command-line flags win), colours
//! for the theme and extra keys for dashboard actions. A bad file is one error naming the
//! file, the line and the key. It does not apply anything: `main` installs the theme and the
//! keys, `cli` merges interval and plan.

use crate::duration::parse_duration;
use ratatui::style::Color;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Theme slots a `[colors]` table may set (see `ui::theme`), with their default colour.
pub const COLOR_SLOTS: &[(&str, &str, &str)] = &[
    ("focused_border", "cyan", "border of the focused panel"),
    ("border", "darkgray", "border of the other panels"),
    (
        "header_key",
        "darkgray",
        "labels in the header (pid, up, threads...)",
    ),
    ("table_header", "yellow", "column titles"),
    (
        "non_daemon",
        "lightred",
        "non-daemon threads (they keep Python alive)",
    ),
    ("dim", "darkgray", "secondary text"),
    ("ok", "green", "success: agent connected, phase ok"),
    ("warn", "yellow", "warnings, timed-out phases"),
    ("bad", "red", "failures, exits, the replay banner"),
    ("orphan", "magenta", "orphaned processes"),
];

/// Dashboard actions a `[keys]` table may give an extra key, with their built-in key.
pub const KEY_ACTIONS: &[(&str, char)] = &[
    ("quit", 'q'),
    ("down", 'j'),
    ("up", 'k'),
    ("top", 'g'),
    ("bottom", 'G'),
    ("sort", 'o'),
    ("reverse_sort", 'r'),
    ("help", '?'),
    ("next_phase", 'n'),
    ("run_all", 'a'),
    ("abort", 'x'),
    ("extend_timeout", '+'),
    ("stack", 's'),
    ("stack_all", 'S'),
    ("write_stacks", 'w'),
    ("why", 'y'),
    ("prev_stacks", '['),
    ("next_stacks", ']'),
];

/// The file as written (spans kept so a bad value can be reported with its line).
/// A duration in the file: `"500ms"`, or a bare number of milliseconds as on the CLI.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Millis(u64),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    interval: Option<Spanned<RawDuration>>,
    plan: Option<Spanned<String>>,
    #[serde(default)]
    colors: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    keys: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// The validated file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// Where it was read from (`None`: no file, built-in defaults).
    pub path: Option<PathBuf>,
    pub interval: Option<Duration>,
    pub plan: Option<String>,
    /// Theme slot -> colour.
    pub colors: BTreeMap<String, Color>,
    /// Extra key -> the built-in key of the action it triggers.
    pub key_aliases: Vec<(char, char)>,
}

/// A config file that cannot be used: one line naming the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the config file is looked for when `--config` is not given.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("lifecycle-top").join("config.toml"))
}

/// Loads `--config FILE` (which must exist), else the default path if it exists, else the
/// built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok(FileConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError(format!(
            "config file {}: cannot read it: {e} (check the path given to --config; \
             `lifecycle-top config --default` prints a valid file)",
            path.display()
        ))
    })?;
    let mut cfg = parse(&text, &path.display().to_string())?;
    cfg.path = Some(path);
    Ok(cfg)
}

/// Parses and validates config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        ConfigError(format!(
            "config file {origin} line {}: {msg}",
            line_of(text, span.start)
        ))
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        let msg = msg.replace("unknown field", "unknown key").replace(
            "data did not match any variant of untagged enum RawDuration",
            "`interval` is a duration: \"500ms\", \"1s\" or a number of milliseconds",
        );
        match e.span() {
            Some(span) => at(span, msg),
            None => ConfigError(format!("config file {origin}: {msg}")),
        }
    })?;
    let mut cfg = FileConfig::default();
    if let Some(v) = &raw.interval {
        let d = match v.get_ref() {
            RawDuration::Text(t) => {
                parse_duration(t).map_err(|e| at(v.span(), format!("`interval`: {e}")))?
            }
            RawDuration::Millis(ms) => Duration::from_millis(*ms),
        };
        if !(Duration::from_millis(20)..=Duration::from_secs(60)).contains(&d) {
            return Err(at(
                v.span(),
                "`interval` must be between 20ms and 60s".into(),
            ));
        }
        cfg.interval = Some(d);
    }
    if let Some(p) = &raw.plan {
        if p.get_ref().trim().is_empty() {
            return Err(at(
                p.span(),
                "`plan` is empty: a built-in (python-asyncio, native, jvm) or a TOML file".into(),
            ));
        }
        cfg.plan = Some(p.get_ref().clone());
    }
    for (slot, value) in &raw.colors {
        if !COLOR_SLOTS.iter().any(|(s, _, _)| s == slot.get_ref()) {
            let names: Vec<&str> = COLOR_SLOTS.iter().map(|(s, _, _)| *s).collect();
            return Err(at(
                slot.span(),
                format!(
                    "unknown key `colors.{}` (one of {})",
                    slot.get_ref(),
                    names.join(", ")
                ),
            ));
        }
        let color: Color = value.get_ref().parse().map_err(|_| {
            at(
                value.span(),
                format!(
                    "`colors.{}`: {:?} is not a colour (a name like red or darkgray, #rrggbb, or 0-255)",
                    slot.get_ref(),
                    value.get_ref()
                ),
            )
        })?;
        cfg.colors.insert(slot.get_ref().clone(), color);
    }
    for (action, key) in &raw.keys {
        let Some(&(_, builtin)) = KEY_ACTIONS.iter().find(|(a, _)| a == action.get_ref()) else {
            let names: Vec<&str> = KEY_ACTIONS.iter().map(|(a, _)| *a).collect();
            return Err(at(
                action.span(),
                format!(
                    "unknown key `keys.{}` (an action: {})",
                    action.get_ref(),
                    names.join(", ")
                ),
            ));
        };
        let mut chars = key.get_ref().chars();
        let c = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_graphic() => c,
            _ => {
                return Err(at(
                    key.span(),
                    format!(
                        "`keys.{}`: {:?} is not one key (one printable character, e.g. \"Q\")",
                        action.get_ref(),
                        key.get_ref()
                    ),
                ));
            }
        };
        let taken = KEY_ACTIONS.iter().find(|(_, k)| *k == c);
        if c.is_ascii_digit() || (taken.is_some() && c != builtin) {
            let what = taken.map_or("runs a phase by number".to_string(), |(a, _)| {
                format!("is the key of `{a}`")
            });
            return Err(at(
                key.span(),
                format!("`keys.{}`: {c:?} {what}; pick a free key", action.get_ref()),
            ));
        }
        if let Some((_, other)) = cfg.key_aliases.iter().find(|(k, _)| *k == c) {
            let name = KEY_ACTIONS
                .iter()
                .find(|(_, k)| k == other)
                .map_or("another action", |(a, _)| a);
            return Err(at(
                key.span(),
                format!(
                    "`keys.{}`: {c:?} is already given to `{name}`",
                    action.get_ref()
                ),
            ));
        }
        if c != builtin {
            cfg.key_aliases.push((c, builtin));
        }
    }
    Ok(cfg)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A commented file with every setting at its default (`config --default`); it parses back
/// to the defaults.
pub fn default_text() -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# lifecycle-top configuration: $XDG_CONFIG_HOME/lifecycle-top/config.toml\n\
         # (else ~/.config/lifecycle-top/config.toml), or --config FILE.\n\
         # Command-line flags win over this file. Uncomment a line to change it.\n\n\
         # Refresh interval of the dashboard and --headless (500ms, 1s, 0.5s; a bare number\n\
         # is milliseconds; 20ms..60s). `check` keeps its own 200ms unless --interval.\n\
         interval = \"500ms\"\n\n\
         # Teardown plan when --plan is not given: python-asyncio, native, jvm or a TOML file.\n\
         # Without it the plan follows the target (Python, JVM, else native).\n\
         # plan = \"python-asyncio\"\n\n\
         # Colours: a name (black red green yellow blue magenta cyan gray darkgray lightred\n\
         # lightgreen lightyellow lightblue lightmagenta lightcyan white), #rrggbb, or 0-255.\n\
         # NO_COLOR=1 in the environment turns colours off whatever is set here.\n\
         [colors]\n",
    );
    for (slot, default, what) in COLOR_SLOTS {
        let _ = writeln!(out, "# {what}\n# {slot} = \"{default}\"");
    }
    out.push_str(
        "\n# Extra keys: action = \"KEY\" (one printable character). The built-in key keeps\n\
         # working; a key already used by another action is refused; a letter given here is\n\
         # no longer a plan's phase key.\n\
         [keys]\n",
    );
    for (action, key) in KEY_ACTIONS {
        let _ = writeln!(out, "# {action} = \"{key}\"");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_file_parses_back_to_the_defaults() {
        let c = parse(&default_text(), "default").unwrap();
        assert_eq!(c.interval, Some(Duration::from_millis(500)));
        assert_eq!(c.plan, None);
        assert!(c.colors.is_empty() && c.key_aliases.is_empty());
        // Every commented line uncommented still parses (the examples are valid).
        let all: String = default_text()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = \"") && !rest.contains(':') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&all, "uncommented").unwrap();
        assert_eq!(c.plan.as_deref(), Some("python-asyncio"));
        assert_eq!(c.colors.len(), COLOR_SLOTS.len());
        assert!(c.key_aliases.is_empty(), "built-in keys are no aliases");
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "interval = \"1.5s\"\nplan = \"native\"\n[colors]\nbad = \"#ff0000\"\nok = \"10\"\n[keys]\nquit = \"Q\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.interval, Some(Duration::from_millis(1_500)));
        assert_eq!(c.plan.as_deref(), Some("native"));
        assert_eq!(c.colors["bad"], Color::Rgb(255, 0, 0));
        assert_eq!(c.colors["ok"], Color::Indexed(10));
        assert_eq!(c.key_aliases, vec![('Q', 'q')]);
        // A bare number is milliseconds, as on the command line.
        let c = parse("interval = 250\n", "t").unwrap();
        assert_eq!(c.interval, Some(Duration::from_millis(250)));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("intervall = \"1s\"\n", "line 1: unknown key `intervall`"),
            (
                "\n\ninterval = \"2x\"\n",
                "line 3: `interval`: `2x`: unknown unit x",
            ),
            ("interval = \"5ms\"\n", "line 1: `interval` must be between"),
            (
                "[colors]\nborder = \"blurple\"\n",
                "line 2: `colors.border`",
            ),
            (
                "[colors]\nbroder = \"red\"\n",
                "line 2: unknown key `colors.broder`",
            ),
            (
                "[keys]\nquit = \"j\"\n",
                "line 2: `keys.quit`: 'j' is the key of `down`",
            ),
            (
                "[keys]\nquit = \"QQ\"\n",
                "line 2: `keys.quit`: \"QQ\" is not one key",
            ),
            (
                "[keys]\nquitt = \"Q\"\n",
                "line 2: unknown key `keys.quitt`",
            ),
            (
                "[keys]\nhelp = \"Q\"\nquit = \"Q\"\n",
                "line 3: `keys.quit`: 'Q' is already given to `help`",
            ),
            ("[keys]\nquit = \"3\"\n", "runs a phase by number"),
            ("interval = true\n", "line 1: `interval` is a duration"),
        ];
        for (text, want) in cases {
            let e = parse(text, "/x/config.toml").unwrap_err().to_string();
            assert!(e.starts_with("config file /x/config.toml "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
