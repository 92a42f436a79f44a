//! The replay dashboard: the live dashboard's Model, View and widgets driven by a
//! [`Player`] instead of a session. Keys move in time; the dashboard's read-only actions
//! (panels, selection, sort, help, stack pages, writing the viewed stacks) work; teardown
//! keys and stack captures only say "replay: read-only". There is no session here, so
//! there is nothing a key could signal.

use super::player::Player;
use crate::state::{Action, Command, Dashboard, Overlay};
use crate::ui::{self, keys::ReplayKey};
use anyhow::{Context, Result};
use crossterm::event as term;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// How often a playing replay moves.
const FRAME: Duration = Duration::from_millis(50);
/// What the dashboard's acting keys say in a replay.
pub const READ_ONLY: &str = "replay: read-only (a recording cannot signal or talk to an agent)";

/// What a key does to the replay; `true`: quit.
pub fn on_key(player: &mut Player, dash: &mut Dashboard, key: ReplayKey) -> bool {
    match key {
        ReplayKey::PlayPause => player.toggle_pause(),
        ReplayKey::Slower => player.slower(),
        ReplayKey::Faster => player.faster(),
        ReplayKey::StepBack => player.step_back(dash),
        ReplayKey::StepForward => player.step_forward(dash),
        ReplayKey::PrevBoundary => {
            if !player.prev_boundary(dash) {
                dash.say("replay: no phase boundary before this");
            }
        }
        ReplayKey::NextBoundary => {
            if !player.next_boundary(dash) {
                dash.say("replay: no phase boundary after this");
            }
        }
        ReplayKey::SeekBack => player.seek_by(dash, true),
        ReplayKey::SeekForward => player.seek_by(dash, false),
        // Quitting a replay never asks about the tree: it is not ours to touch.
        ReplayKey::Dashboard(Action::Quit | Action::ForceQuit) => return true,
        ReplayKey::Dashboard(Action::Choose(_)) => {}
        ReplayKey::Dashboard(action) => {
            for cmd in dash.act(action) {
                match cmd {
                    Command::Quit(_) => return true,
                    Command::WriteStacks => crate::app::commands::write_viewed_stacks(dash),
                    Command::Teardown(_) | Command::CaptureStacks(_) => dash.say(READ_ONLY),
                }
            }
            if dash.view.overlay == Overlay::QuitPrompt {
                dash.view.overlay = Overlay::None;
            }
        }
    }
    dash.view.replay = Some(player.bar());
    false
}

/// Runs the replay dashboard until `q`; `start_ms` is where it opens (paused there when
/// given). Damage `notes` were printed already; the first is shown on the status line.
pub fn run(mut player: Player, start_ms: Option<u64>, notes: &[String]) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut dash = Dashboard::new();
    // NO_COLOR as the live dashboard does it (ui::draw_measured strips the colours and the
    // selection keeps its marker).
    dash.view.no_color = ui::theme::no_color_env();
    match start_ms {
        Some(at) => {
            player.set_paused(true);
            player.seek(&mut dash, at);
        }
        None => player.seek(&mut dash, player.start_ms()),
    }
    if let Some(first) = notes.first() {
        dash.say(format!(
            "{first} ({} note(s), printed again on exit)",
            notes.len()
        ));
    }
    let result = runtime.block_on(event_loop(&mut player, &mut dash));
    for n in notes {
        eprintln!("lifecycle-top: {n}");
    }
    result
}

async fn event_loop(player: &mut Player, dash: &mut Dashboard) -> Result<ExitCode> {
    let mut keys = crate::app::Input::open();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut frame = tokio::time::interval(FRAME);
    let mut last = Instant::now();
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mouse = crate::app::MouseCapture::enable();
    let mut dirty = true;
    let outcome: Result<()> = loop {
        if dirty {
            let mut geometry = None;
            if let Err(e) = terminal.draw(|f| geometry = Some(ui::draw_measured(f, &dash.screen())))
            {
                break Err(e.into());
            }
            // Where the panels are: clicks select there, scroll limits follow.
            if let Some(g) = geometry {
                dash.set_geometry(g);
            }
            dirty = false;
        }
        tokio::select! {
            input = keys.next() => {
                let Some(input) = input else { break Ok(()) };
                dirty = true;
                let key = match input {
                    term::Event::Key(key) => ui::keys::replay_action_for(key, &dash.view.overlay),
                    // Clicks and the wheel only select and scroll: on_key runs the action
                    // through the dashboard, and a replay has nothing to run a phase with.
                    term::Event::Mouse(m) => ui::keys::mouse_action(m).map(ReplayKey::Dashboard),
                    _ => None,
                };
                if let Some(k) = key
                    && on_key(player, dash, k)
                {
                    break Ok(());
                }
                last = Instant::now();
            }
            _ = frame.tick() => {
                let now = Instant::now();
                let real = u64::try_from(now.duration_since(last).as_millis()).unwrap_or(0);
                last = now;
                if !player.paused() {
                    player.tick(dash, real);
                    dirty = true;
                }
            }
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
            _ = sighup.recv() => break Ok(()),
        }
    };
    keys.close().await;
    drop(mouse);
    ratatui::restore();
    outcome.map(|()| ExitCode::SUCCESS)
}
