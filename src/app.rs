//! The TUI event loop: one task owns [`AppState`]; a `select!` folds collector, agent,
//! teardown and key events into it and redraws when something changed. The terminal is
//! restored on every way out (normal quit, SIGTERM/SIGINT/SIGHUP, panic via ratatui's hook).

use crate::cli::{RunConfig, Target};
use crate::collect::{self, CollectEvent, Collector, CollectorOptions};
use crate::state::{AppState, Command, Event, Mode, QuitChoice};
use crate::ui;
use anyhow::{Context, Result};
use crossterm::event::{self as term, KeyEvent};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What was attached to, before the terminal is touched.
pub struct Attached {
    pub pid: i32,
    pub mode: Mode,
    pub log_path: Option<PathBuf>,
    pub collector: Collector,
}

/// Resolves the target (attach, launch or demo) and attaches the collector. Errors here
/// are printed as one line by `main`, with the terminal untouched.
pub fn attach(cfg: &RunConfig) -> Result<Attached> {
    let (pid, mode, log_path) = match &cfg.target {
        Target::Pid(pid) => (*pid, Mode::Attach, None),
        Target::Launch(cmd) => {
            let l = crate::launch::launch(cmd, cfg.inject_agent)?;
            (l.pid, Mode::Launch { demo: false }, Some(l.log_path))
        }
        Target::Demo => {
            let cmd = crate::demo::command(&[])?;
            let l = crate::launch::launch_demo(&cmd, cfg.inject_agent)?;
            (l.pid, Mode::Launch { demo: true }, Some(l.log_path))
        }
    };
    collect::raise_nofile_limit();
    let collector = Collector::attach(pid, CollectorOptions::default())?;
    Ok(Attached {
        pid,
        mode,
        log_path,
        collector,
    })
}

/// Runs the dashboard until the user quits; returns the process exit code.
pub async fn run(cfg: RunConfig, attached: Attached) -> Result<ExitCode> {
    let Attached {
        pid,
        mode,
        log_path,
        collector,
    } = attached;
    let mut state = AppState::new(mode, pid);
    state.log_path = log_path.as_ref().map(|p| p.display().to_string());
    let mut live = collect::live::spawn(collector, cfg.interval);

    let (key_tx, mut key_rx) = mpsc::channel::<KeyEvent>(64);
    let stop_keys = Arc::new(AtomicBool::new(false));
    spawn_key_reader(key_tx, stop_keys.clone());
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));

    let mut terminal = ratatui::init();
    let mut dirty = true;
    let outcome: Result<Option<QuitChoice>> = loop {
        if dirty {
            if let Err(e) = terminal.draw(|f| ui::draw(f, &state)) {
                break Err(e.into());
            }
            dirty = false;
        }
        tokio::select! {
            ev = live.events.recv() => {
                match ev {
                    Some(CollectEvent::Snapshot(s)) => state.apply(Event::Snapshot(s)),
                    Some(CollectEvent::Exited { key, status, at_unix_ms }) => {
                        state.apply(Event::Exited { key, status, at_unix_ms });
                    }
                    Some(CollectEvent::Error(e)) => state.apply(Event::CollectError(e)),
                    None => state.apply(Event::CollectError("collector stopped".into())),
                }
                dirty = true;
            }
            key = key_rx.recv() => {
                let Some(key) = key else { break Ok(None) };
                if let Some(action) = ui::keys::action_for(key, &state.overlay) {
                    for cmd in state.act(action) {
                        if let Command::Quit(choice) = cmd {
                            return finish(&mut terminal, &stop_keys, &state, Ok(choice));
                        }
                        dispatch(&mut state, cmd);
                    }
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if let Some(path) = &log_path {
                    let tail = crate::launch::tail_log(path, 200);
                    if tail != state.log_tail {
                        state.apply(Event::LogTail(tail));
                        dirty = true;
                    }
                }
            }
            _ = sigterm.recv() => break Ok(default_signal_choice(&state)),
            _ = sigint.recv() => break Ok(default_signal_choice(&state)),
            _ = sighup.recv() => break Ok(default_signal_choice(&state)),
        }
    };
    finish(&mut terminal, &stop_keys, &state, outcome)
}

/// Killed by a signal: the demo never outlives us, anything else is left alone.
fn default_signal_choice(state: &AppState) -> Option<QuitChoice> {
    match state.mode {
        Mode::Launch { demo: true } => Some(QuitChoice::KillTree),
        _ => None,
    }
}

fn dispatch(state: &mut AppState, cmd: Command) {
    match cmd {
        Command::Quit(_) => {}
        Command::Teardown(_) | Command::CaptureStacks(_) | Command::WriteStacks => {
            state.apply(Event::Status(
                "teardown and stacks are not wired into the TUI yet".into(),
            ));
        }
    }
}

fn finish(
    _terminal: &mut ratatui::DefaultTerminal,
    stop_keys: &AtomicBool,
    state: &AppState,
    outcome: Result<Option<QuitChoice>>,
) -> Result<ExitCode> {
    stop_keys.store(true, Ordering::Relaxed);
    ratatui::restore();
    let choice = outcome?;
    match choice {
        Some(QuitChoice::KillTree) => {
            let n = kill_tree(state);
            eprintln!("lifecycle-top: killed {n} process(es) of the tree rooted at {}", state.target_pid);
        }
        Some(QuitChoice::Detach) => {
            eprintln!(
                "lifecycle-top: detached; pid {} keeps running (kill it with `kill {}`)",
                state.target_pid, state.target_pid
            );
        }
        Some(QuitChoice::RunPlan) | None => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGKILLs every live process of the tree, leaves first, through pidfds.
fn kill_tree(state: &AppState) -> usize {
    let Some(snap) = &state.snapshot else {
        return 0;
    };
    let mut procs: Vec<_> = snap.processes.iter().filter(|p| p.exit.is_none()).collect();
    procs.sort_by_key(|p| std::cmp::Reverse(p.depth));
    procs
        .iter()
        .filter(|p| {
            collect::pidfd::PidFd::open(p.key)
                .ok()
                .is_some_and(|fd| fd.send_signal(libc::SIGKILL).is_ok())
        })
        .count()
}

/// Reads terminal keys on a plain thread (crossterm's reader blocks) and forwards them.
fn spawn_key_reader(tx: mpsc::Sender<KeyEvent>, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match term::poll(Duration::from_millis(100)) {
                    Ok(true) => match term::read() {
                        Ok(term::Event::Key(k)) => {
                            if tx.blocking_send(k).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!("cannot start the key reader: {e}"));
}
