//! The TUI event loop: one task owns [`AppState`]; a `select!` folds collector, agent,
//! teardown and key events into it and redraws when something changed. The terminal is
//! restored on every way out (normal quit, SIGTERM/SIGINT/SIGHUP, panic via ratatui's hook).

use crate::agent::{self, AgentEvent};
use crate::cli::RunConfig;
use crate::collect::{self, CollectEvent, Collector};
use crate::session::TreePids;
use crate::stacks::StackSnapshot;
use crate::state::{AgentStatus, AppState, Command, Event, Mode, QuitChoice};
use crate::teardown::{Plan, plan};
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

mod commands;
use commands::TeardownSlot;

/// What was attached to, before the terminal is touched.
pub struct Attached {
    pub pid: i32,
    /// `--plan`, loaded and validated before the terminal is touched.
    pub plan: Option<Plan>,
    pub mode: Mode,
    pub log_path: Option<PathBuf>,
    pub collector: Collector,
}

/// Resolves the target (attach, launch or demo) and attaches the collector. Errors here
/// are printed as one line by `main`, with the terminal untouched.
pub fn attach(cfg: &RunConfig) -> Result<Attached> {
    let plan = cfg.plan.as_deref().map(plan::load).transpose()?;
    let started = crate::launch::start_target(&cfg.target, cfg.inject_agent)?;
    let collector = crate::launch::attach_collector(&started)?;
    let pid = started.pid;
    let (mode, log_path) = match &started.launched {
        None => (Mode::Attach, None),
        Some(l) => (
            Mode::Launch { demo: started.demo },
            Some(l.log_path.clone()),
        ),
    };
    Ok(Attached {
        pid,
        plan,
        mode,
        log_path,
        collector,
    })
}

/// Runs the dashboard until the user quits; returns the process exit code.
pub async fn run(cfg: RunConfig, attached: Attached) -> Result<ExitCode> {
    let Attached {
        pid,
        plan,
        mode,
        log_path,
        collector,
    } = attached;
    let mut state = AppState::new(mode.clone(), pid);
    state.log_path = log_path.as_ref().map(|p| p.display().to_string());
    let target = collector.target();
    let tree = TreePids::new(target);
    let mut live = collect::live::spawn(collector, cfg.interval);
    let mut agent = agent::spawn_client(target, tree.checker(), cfg.interval);
    let mut teardown = TeardownSlot::new(plan);
    // The demo dies with us on every way out, a panic included; a launched command only
    // when the user says so.
    let guard = crate::launch::TreeGuard::new(mode == Mode::Launch { demo: true });
    let mut collector_open = true;
    let mut log_len = 0u64;
    let (stacks_tx, mut stacks_rx) = mpsc::channel::<(StackSnapshot, bool)>(4);

    let (key_tx, mut key_rx) = mpsc::channel::<KeyEvent>(64);
    let stop_keys = Arc::new(AtomicBool::new(false));
    spawn_key_reader(key_tx, stop_keys.clone());
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));

    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mut dirty = true;
    let outcome: Result<Option<QuitChoice>> = loop {
        if dirty {
            if let Err(e) = terminal.draw(|f| ui::draw(f, &state)) {
                break Err(e.into());
            }
            dirty = false;
        }
        tokio::select! {
            ev = live.events.recv(), if collector_open => {
                match ev {
                    Some(CollectEvent::Snapshot(s)) => {
                        tree.update(&s);
                        guard.update(&s);
                        teardown.on_snapshot(&mut state, &s, &agent);
                        state.apply(Event::Snapshot(s));
                    }
                    Some(CollectEvent::Exited { key, status, at_unix_ms }) => {
                        if let Some(r) = teardown.runner() {
                            r.handle.exited(key, status);
                        }
                        state.apply(Event::Exited { key, status, at_unix_ms });
                    }
                    Some(CollectEvent::Error(e)) => state.apply(Event::CollectError(e)),
                    None => {
                        collector_open = false;
                        state.apply(Event::CollectError(
                            "the collector stopped; see --log for why".into(),
                        ));
                    }
                }
                dirty = true;
            }
            Some(ev) = agent.events.recv() => {
                state.apply(agent_event(ev));
                if let Some(r) = teardown.runner() {
                    r.handle.agent_facts(state.agent_facts.clone());
                }
                dirty = true;
            }
            Some(pe) = teardown.next_event() => {
                if commands::on_phase_event(&mut state, pe, &live, &agent, &stacks_tx) {
                    // The plan the user ran before quitting is done: the demo still does
                    // not outlive us, a launched command keeps what the plan left.
                    break Ok(default_signal_choice(&state));
                }
                dirty = true;
            }
            Some((snap, asked)) = stacks_rx.recv() => {
                state.apply(Event::Stacks { snap: Box::new(snap), asked });
                dirty = true;
            }
            key = key_rx.recv() => {
                // No more keys (the terminal went away): leave as a hangup would.
                let Some(key) = key else { break Ok(default_signal_choice(&state)) };
                if let Some(action) = ui::keys::action_for(key, &state.overlay) {
                    for cmd in state.act(action) {
                        if let Command::Quit(choice) = cmd {
                            return finish(&stop_keys, &state, &guard, Ok(choice));
                        }
                        commands::dispatch(&mut state, cmd, &mut teardown, &agent, &stacks_tx);
                    }
                }
                dirty = true;
            }
            _ = tick.tick() => {
                state.apply(Event::Now(collect::exits::now_unix_ms()));
                if state.timeline.as_ref().is_some_and(|t| t.running.is_some()) {
                    dirty = true;
                }
                // Re-read the log's tail only when it grew.
                if let Some(path) = &log_path {
                    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    if len != log_len {
                        log_len = len;
                        state.apply(Event::LogTail(crate::launch::tail_log(path, 200)));
                        dirty = true;
                    }
                }
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: restoring the terminal and quitting");
                break Ok(default_signal_choice(&state));
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: restoring the terminal and quitting");
                break Ok(default_signal_choice(&state));
            }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: restoring the terminal and quitting");
                break Ok(default_signal_choice(&state));
            }
        }
    };
    finish(&stop_keys, &state, &guard, outcome)
}

fn agent_event(ev: AgentEvent) -> Event {
    match ev {
        AgentEvent::Connected(hello) => Event::AgentHello(Box::new(hello)),
        AgentEvent::Report(report) => Event::AgentReport(report),
        AgentEvent::Lost(why) => Event::Agent(AgentStatus::Lost(why)),
        AgentEvent::NotFound(why) => Event::Agent(AgentStatus::NotFound(why)),
        AgentEvent::Warning(w) => Event::Status(format!("target warning: {}", w.message)),
        AgentEvent::Exiting(why) => Event::Status(format!("the target is exiting ({why})")),
    }
}

/// Killed by a signal: the demo never outlives us, anything else is left alone.
fn default_signal_choice(state: &AppState) -> Option<QuitChoice> {
    match state.mode {
        Mode::Launch { demo: true } => Some(QuitChoice::KillTree),
        _ => None,
    }
}

fn finish(
    stop_keys: &AtomicBool,
    state: &AppState,
    guard: &crate::launch::TreeGuard,
    outcome: Result<Option<QuitChoice>>,
) -> Result<ExitCode> {
    stop_keys.store(true, Ordering::Relaxed);
    // Even when the loop failed (say the terminal went away: EIO after a hangup), the
    // demo must not outlive us: fall back to what a signal would have done.
    let (choice, error) = match outcome {
        Ok(choice) => (choice, None),
        Err(e) => (default_signal_choice(state), Some(e)),
    };
    tracing::info!(?choice, error = ?error, "leaving the dashboard");
    // Act on the tree before touching the terminal: after a hangup, writing to it may be
    // the last thing this process gets to do.
    let killed = match choice {
        Some(QuitChoice::KillTree) => Some(guard.kill()),
        _ => {
            guard.disarm();
            None
        }
    };
    ratatui::restore();
    match (choice, killed) {
        (Some(QuitChoice::KillTree), Some(n)) => eprintln!(
            "lifecycle-top: killed {n} process(es) of the tree rooted at {}",
            state.target_pid
        ),
        (Some(QuitChoice::Detach), _) => eprintln!(
            "lifecycle-top: detached; pid {} keeps running (kill it with `kill {}`)",
            state.target_pid, state.target_pid
        ),
        _ => {}
    }
    match error {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
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
