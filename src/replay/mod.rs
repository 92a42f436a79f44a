//! `lifecycle-top replay FILE`: a recording read back into the same fold as a live session
//! (the Model), shown in the same dashboard, read-only, with time travel ([`Player`]); or,
//! scripted, the Model at a moment as JSON (`--at T --json`), the recorded timeline as a
//! Chrome trace (`--trace`) and the closing lines headless printed (`--summary`). Damage in
//! the file (a cut tail, a bad checksum) is one line on stderr per note; the replay goes on
//! with what is readable.
//!
//! A replay can never signal or talk to an agent, by construction: nothing on this path
//! holds a [`SessionHandle`](crate::session::SessionHandle) (the only way to send teardown
//! commands, stack captures or agent requests), and one cannot be made here: its field is
//! private to `session` and only `Session::start` (which needs a `Collector` attached to a
//! live process) returns one. The player offers no handle:
//!
//! ```compile_fail,E0599
//! use lifecycle_top::replay::Player;
//! use lifecycle_top::session::SessionHandle;
//! fn handle_of(p: &Player) -> SessionHandle {
//!     p.handle() // no such method: a replay has no session
//! }
//! ```
//!
//! nor can a handle be assembled outside the session:
//!
//! ```compile_fail,E0451
//! use lifecycle_top::session::SessionHandle;
//! let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
//! let _h = SessionHandle { tx }; // private field
//! ```
//!
//! nor does the replay's key handler take one (it is given the player and the dashboard):
//!
//! ```compile_fail,E0061
//! use lifecycle_top::replay::{Player, on_key};
//! use lifecycle_top::state::{Action, Dashboard};
//! use lifecycle_top::ui::keys::ReplayKey;
//! fn run_all(p: &mut Player, d: &mut Dashboard, h: &lifecycle_top::session::SessionHandle) {
//!     on_key(p, d, ReplayKey::Dashboard(Action::RunAll), h);
//! }
//! ```
//!
//! while the same code without the handle compiles (so the failures above are the
//! property, not a typo):
//!
//! ```
//! use lifecycle_top::replay::{Player, on_key};
//! use lifecycle_top::state::{Action, Dashboard};
//! use lifecycle_top::ui::keys::ReplayKey;
//! fn run_all(p: &mut Player, d: &mut Dashboard) -> bool {
//!     on_key(p, d, ReplayKey::Dashboard(Action::RunAll))
//! }
//! ```
//!
//! `teardown::exec` (the signal sender) stays `pub` for `check` and `launch`; a test below
//! checks this module's sources never name it, the session or the collector.

mod player;
mod tui;

pub use player::{CHECKPOINT_EVERY, Player, SEEK_STEP_MS, SPEEDS};
pub use tui::{READ_ONLY, on_key};

use crate::cli::ReplayConfig;
use crate::report::summary;
use crate::session::{Model, Playback};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

/// Entry point used by `main` for `replay`.
pub fn run(cfg: &ReplayConfig) -> Result<ExitCode> {
    let at_ms = cfg
        .at
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if cfg.interactive() {
        let (playback, mut notes) = Playback::open(&cfg.file)
            .with_context(|| format!("cannot replay {}", cfg.file.display()))?;
        let mut player = Player::new(playback);
        notes.extend(player.take_notes());
        for n in &notes {
            eprintln!("lifecycle-top: {n}");
        }
        if player.is_empty() {
            anyhow::bail!("{}: no events to replay", cfg.file.display());
        }
        return tui::run(player, at_ms, &notes);
    }
    let model = model_at(cfg, at_ms)?;
    let mut out = std::io::stdout().lock();
    if cfg.json {
        // Whole or nothing: a Model that cannot be serialized prints no half document.
        let value = serde_json::to_value(&model).context("cannot serialize the Model")?;
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    }
    if cfg.summary {
        for line in summary_lines(&model) {
            writeln!(out, "{line}")?;
        }
    }
    if let Some(path) = &cfg.trace {
        let Some(t) = &model.timeline else {
            anyhow::bail!(
                "{}: the recording has no teardown timeline (no phase ran) to export",
                cfg.file.display()
            );
        };
        crate::report::trace::write(t, path)
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
        writeln!(
            out,
            "trace written to {} (open it in ui.perfetto.dev)",
            path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The Model folded from every event at or before `at_ms` (all without it); damage notes go
/// to stderr, one line each.
pub fn model_at(cfg: &ReplayConfig, at_ms: Option<u64>) -> Result<Model> {
    let (mut playback, notes) = Playback::open(&cfg.file)
        .with_context(|| format!("cannot replay {}", cfg.file.display()))?;
    for n in &notes {
        eprintln!("lifecycle-top: {n}");
    }
    let mut model = Model::new();
    for ev in playback.by_ref() {
        if at_ms.is_some_and(|t| ev.at.at_ms > t) {
            break;
        }
        model.apply(&ev);
    }
    for n in playback.take_notes() {
        eprintln!("lifecycle-top: {n}");
    }
    Ok(model)
}

/// What headless printed as phases ran, then its verdict line.
pub fn summary_lines(model: &Model) -> Vec<String> {
    let plan = model.plan.as_ref().and_then(|p| p.load().ok());
    let mut lines = Vec::new();
    if let (Some(plan), Some(target)) = (&plan, model.target()) {
        if model.phase_exits_dropped > 0 {
            lines.push(format!(
                "({} earlier exit lines not kept: the recording's Model keeps the last {})",
                model.phase_exits_dropped,
                crate::session::MAX_EXIT_EVENTS
            ));
        }
        lines.extend(
            model
                .phase_events
                .iter()
                .filter_map(|(_, ev)| summary::event(plan, target, ev)),
        );
    }
    // What the run itself concluded (check judges more than the timeline: budget, exit
    // status, warnings, left-overs after the exit); older recordings are judged again.
    match (&model.verdict, &model.timeline) {
        (Some(v), _) => lines.extend(v.lines.iter().cloned()),
        (None, Some(t)) => lines.push(summary::verdict(t)),
        (None, None) => lines.push("no teardown phase ran in this recording".into()),
    }
    lines
}

#[cfg(test)]
mod tests {
    /// The type-level property has a source-level backstop: this module never names the
    /// things that signal or talk to a target.
    #[test]
    fn replay_sources_name_nothing_that_signals() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/replay");
        let banned = [
            "teardown::exec",
            "SessionHandle {",
            "Session::start",
            "Collector",
            "agent::spawn_client",
            "libc::kill",
            "pidfd_send_signal",
        ];
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("src/replay") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            // The docs above explain the property by naming them; code below the docs may not.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .filter(|l| !l.contains("let banned") && !l.trim_start().starts_with('"'))
                .collect::<Vec<_>>()
                .join("\n");
            for b in banned {
                assert!(!code.contains(b), "{} names {b}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 3);
    }
}
