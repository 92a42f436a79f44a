//! The TUI event loop, a thin consumer of a [`Session`]: one task owns the [`Dashboard`]; a
//! `select!` folds session events and keys into it, re-reads the log tail and moves the
//! running phase's clock on a tick, and redraws only when something changed (a resize
//! included). Mouse clicks and the wheel are captured while it runs. The terminal is restored
//! on every way out (normal quit, SIGTERM/SIGINT/SIGHUP, panic via ratatui's hook; mouse
//! capture by a guard), and the demo never outlives us (its session's tree guard is armed).

use crate::cli::{RunConfig, Target};
use crate::collect::Collector;
use crate::launch::Started;
use crate::session::{Recorder, Session, SessionConfig, SystemClock};
use crate::state::{Command, Dashboard, QuitChoice};
use crate::teardown::{Plan, plan};
use crate::ui;
use anyhow::{Context, Result};
use crossterm::event as term;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub mod commands;

/// How often the screen's clocks move and the log tail is looked at.
const TICK: Duration = Duration::from_millis(500);
/// A tick redraws the verdict's age only when no event drew the screen for this long: at
/// refresh intervals up to a second each refresh's redraw moves the age too, so the screen
/// is drawn once per refresh, not once more for the clock (a third of the TUI's CPU).
const CLOCK_REDRAW_AFTER: Duration = Duration::from_millis(1_500);
/// Thread rows either side of those drawn whose wait points are read too (a short scroll
/// finds them ready).
const SHOWN_MARGIN: usize = 5;

/// What was attached to, before the terminal is touched.
pub struct Attached {
    started: Started,
    collector: Collector,
    /// `--plan`, loaded and validated before the terminal is touched.
    plan: Option<Plan>,
}

/// Resolves the target (attach, launch or demo) and attaches the collector. Errors here
/// are printed as one line by `main`, with the terminal untouched.
pub fn attach(cfg: &RunConfig) -> Result<Attached> {
    let plan = cfg.plan.as_deref().map(plan::load).transpose()?;
    let started = crate::launch::start_target(&cfg.target, cfg.inject_agent)?;
    let collector = crate::launch::attach_collector(&started)?;
    Ok(Attached {
        started,
        collector,
        plan,
    })
}

/// Runs the dashboard until the user quits; returns the process exit code.
pub async fn run(cfg: RunConfig, attached: Attached) -> Result<ExitCode> {
    let Attached {
        started,
        mut collector,
        plan,
    } = attached;
    // Wait points only for the rows on screen (`show_threads` after each draw), from the
    // first refresh on: the first frame does not wait for every thread's syscall.
    collector.set_wait_demand(crate::collect::WaitDemand::Tids(Default::default()));
    let launched = started.launched.is_some();
    let log_path: Option<PathBuf> = started.launched.as_ref().map(|l| l.log_path.clone());
    // The demo dies with us on every way out, a panic included (the session's guard kills
    // it when dropped); a launched command only when the user says so.
    let mut session = Session::start(
        &started,
        collector,
        SessionConfig {
            interval: cfg.interval,
            plan,
            guard_armed: started.demo,
            cmd: match &cfg.target {
                Target::Launch(c) => c.clone(),
                _ => Vec::new(),
            },
            agent_injected: launched && cfg.inject_agent,
        },
        Arc::new(SystemClock::new()),
    );
    let handle = session.handle();
    let mut dash = Dashboard::new();
    dash.view.no_color = ui::theme::no_color_env();
    let (mut rec, why) = Recorder::create_or_say(cfg.record.as_deref());
    if let Some(why) = why {
        dash.say(why);
    }
    // `Attached` is queued by `start`: what quitting means is known before the first key.
    while let Ok(ev) = session.events.try_recv() {
        record(&mut dash, &mut rec, &ev);
        dash.apply(&ev);
    }
    let mut log_len = 0u64;

    let mut keys = Input::open();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut sigquit = signal(SignalKind::quit()).context("cannot watch SIGQUIT")?;
    let mut quit_signal = false;
    let mut tick = tokio::time::interval(TICK);
    // Diagnoses computed on the blocking pool come back here, applied as data.
    let (why_tx, mut why_rx) = mpsc::channel::<crate::state::WhyResult>(4);

    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mouse = MouseCapture::enable();
    let mut dirty = true;
    let mut last_draw = std::time::Instant::now();
    let outcome: Result<Option<QuitChoice>> = 'run: loop {
        if dirty {
            let mut geometry = None;
            let mut rows = 0;
            if let Err(e) = terminal.draw(|f| {
                rows = f.area().height;
                geometry = Some(ui::draw_measured(f, &dash.screen()));
            }) {
                break Err(e.into());
            }
            if let Some(g) = geometry {
                dash.set_geometry(g);
            }
            dirty = false;
            last_draw = std::time::Instant::now();
            // The collector reads wait points (and `stat`) only for the rows on screen:
            // those drawn plus a few either side, else a page either side of the selection.
            let screen = dash.screen();
            let shown = screen
                .thread_tids_drawn(SHOWN_MARGIN)
                .unwrap_or_else(|| threads_on_screen(&screen, rows));
            handle.show_threads(shown);
        }
        let cmds = tokio::select! {
            ev = session.events.recv() => {
                // The session ended (its task stopped): leave as a hangup would.
                let Some(ev) = ev else { break Ok(dash.screen().default_quit_choice()) };
                dirty |= crate::state::shows(&ev.event);
                dirty |= record(&mut dash, &mut rec, &ev);
                dash.apply(&ev)
            }
            input = keys.next() => {
                // No more keys (the terminal went away): leave as a hangup would.
                let Some(input) = input else { break Ok(dash.screen().default_quit_choice()) };
                tracing::debug!(?input, "terminal input");
                dirty = true;
                let action = match input {
                    term::Event::Key(key) => ui::keys::action_for(key, &dash.view.overlay),
                    term::Event::Mouse(m) => ui::keys::mouse_action(m),
                    // A resize only redraws (ratatui resizes its buffers on draw).
                    _ => None,
                };
                match action {
                    Some(action) => dash.act(action),
                    None => Vec::new(),
                }
            }
            Some(result) = why_rx.recv() => {
                dash.apply_why(result);
                dirty = true;
                Vec::new()
            }
            _ = tick.tick() => {
                let moved = dash.tick(crate::collect::exits::now_unix_ms());
                dirty |= redraw_on_tick(moved, dash.phase_running(), last_draw.elapsed());
                // Re-read the log's tail only when it grew.
                if let Some(path) = &log_path {
                    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    if len != log_len {
                        log_len = len;
                        dash.set_log_tail(crate::launch::tail_log(path, 200));
                        dirty = true;
                    }
                }
                Vec::new()
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: restoring the terminal and quitting");
                break Ok(dash.screen().default_quit_choice());
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: restoring the terminal and quitting");
                break Ok(dash.screen().default_quit_choice());
            }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: restoring the terminal and quitting");
                break Ok(dash.screen().default_quit_choice());
            }
            _ = sigquit.recv() => {
                tracing::info!("SIGQUIT: restoring the terminal, then dying of SIGQUIT");
                quit_signal = true;
                break Ok(dash.screen().default_quit_choice());
            }
        };
        for cmd in cmds {
            if let Command::Quit(choice) = cmd {
                break 'run Ok(choice);
            }
            commands::dispatch(&mut dash, cmd, &handle);
        }
        // `y`, or the verdict's automatic refresh, asked for a diagnosis.
        if dash.take_why_request() {
            commands::diagnose(&dash, why_tx.clone());
            dirty = true;
        }
    };
    keys.close().await;
    drop(mouse);
    let result = finish(&dash, &session, outcome);
    if let Some(summary) = rec.finish() {
        eprintln!("lifecycle-top: {}", summary.line());
    }
    if quit_signal {
        // The terminal is restored; now keep SIGQUIT's meaning (exit, core dump if enabled).
        // An armed guard (the demo) kills the tree first, as dropping the session would.
        let guard = session.guard();
        if guard.is_armed() {
            guard.kill();
        }
        reraise_sigquit();
    }
    result
}

/// Whether a tick redraws: a running phase's clock moves every tick; the verdict's age
/// (`moved`, whole seconds) waits for the next refresh's redraw unless none came lately.
fn redraw_on_tick(moved: bool, phase_running: bool, since_draw: Duration) -> bool {
    phase_running || (moved && since_draw >= CLOCK_REDRAW_AFTER)
}

/// Tids of the threads that may be on screen: a terminal height of rows either side of the
/// selection covers the Threads panel's page whatever the layout.
fn threads_on_screen(s: &crate::state::Screen<'_>, rows: u16) -> Vec<i32> {
    let h = usize::from(rows);
    let sel = s.selected_thread_index().unwrap_or(0);
    let rows = s.thread_rows(sel.saturating_sub(h)..sel + h);
    rows.iter().map(|r| r.thread.tid).collect()
}

/// Records one event; a recording that stopped says so on the status line (true: redraw).
fn record(dash: &mut Dashboard, rec: &mut Recorder, ev: &crate::session::Stamped) -> bool {
    match rec.record(ev) {
        Some(line) => {
            dash.say(line);
            true
        }
        None => false,
    }
}

/// Dies of SIGQUIT with its default action (terminate + core dump where enabled).
fn reraise_sigquit() {
    // SAFETY: resetting one signal's disposition, unblocking it and raising it; no pointers
    // except the locally built set.
    unsafe {
        libc::signal(libc::SIGQUIT, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGQUIT);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGQUIT);
    }
}

fn finish(
    dash: &Dashboard,
    session: &Session,
    outcome: Result<Option<QuitChoice>>,
) -> Result<ExitCode> {
    let screen = dash.screen();
    // Even when the loop failed (say the terminal went away: EIO after a hangup), the
    // demo must not outlive us: fall back to what a signal would have done.
    let (choice, error) = match outcome {
        Ok(choice) => (choice, None),
        Err(e) => (screen.default_quit_choice(), Some(e)),
    };
    tracing::info!(?choice, error = ?error, "leaving the dashboard");
    // Restore the terminal first: acting on the tree may take a while (a child in
    // uninterruptible sleep), and the user must get their terminal back whatever happens.
    // After a hangup the write fails with EIO, which is harmless. Without a choice the
    // session's guard does what it was armed for (the demo is killed when it is dropped).
    ratatui::restore();
    let killed = match choice {
        Some(QuitChoice::KillTree) => Some(session.kill_tree()),
        Some(QuitChoice::Detach) => {
            session.disarm();
            None
        }
        // No choice (Ctrl-C, a lost terminal): a launched command is left running, as
        // documented, so the watchdog is told; it kills the tree only when lifecycle-top
        // dies without getting here (SIGKILL, a crash).
        None if !session.guard().is_armed() => {
            session.disarm();
            None
        }
        _ => None,
    };
    let pid = screen.target_pid();
    match (choice, killed) {
        (Some(QuitChoice::KillTree), Some(n)) => {
            eprintln!("lifecycle-top: killed {n} process(es) of the tree rooted at {pid}")
        }
        (Some(QuitChoice::Detach), _) => eprintln!(
            "lifecycle-top: detached; pid {pid} keeps running (kill it with `kill {pid}`)"
        ),
        _ => {}
    }
    match error {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Mouse reporting on while the dashboard runs; off again when dropped (a panic unwinding
/// included), so the shell does not receive mouse escape codes afterwards.
pub(crate) struct MouseCapture;

impl MouseCapture {
    pub(crate) fn enable() -> Self {
        if let Err(e) = crossterm::execute!(std::io::stdout(), term::EnableMouseCapture) {
            tracing::warn!("no mouse capture: {e}");
        }
        MouseCapture
    }
}

impl Drop for MouseCapture {
    fn drop(&mut self) {
        // After a hangup the write fails (EIO): harmless.
        let _ = crossterm::execute!(std::io::stdout(), term::DisableMouseCapture);
    }
}

/// Keys, mouse events and resizes (the live dashboard and the replay). A task owns
/// crossterm's event stream, which blocks one helper thread in `poll` on the terminal until
/// input comes: no wake-ups while nobody types (a reader polling with a 100 ms timeout woke
/// ten times a second, 4 % of the dashboard's CPU on a busy target). The task forwards over
/// a channel, so the event loop's `select!` waits on a plain receiver (cancel-safe); polling
/// the stream itself from the loop would try its reader lock (held by the helper thread) at
/// every turn. [`Input::close`] drops the stream at once, so a key typed to the shell after
/// quitting is not eaten by us while the tree is being acted on.
pub(crate) struct Input {
    rx: mpsc::Receiver<term::Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Input {
    pub(crate) fn open() -> Self {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            use futures_core::Stream;
            let mut stream = term::EventStream::new();
            loop {
                let ev = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
                match ev.await {
                    Some(Ok(
                        ev
                        @ (term::Event::Key(_) | term::Event::Mouse(_) | term::Event::Resize(..)),
                    )) => {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    // The terminal is gone: the receiver's `None` says so.
                    Some(Err(e)) => {
                        tracing::debug!("terminal input ended: {e}");
                        return;
                    }
                    None => return,
                }
            }
        });
        Input { rx, task }
    }

    /// The next key, mouse event or resize; `None` once the terminal is gone.
    pub(crate) async fn next(&mut self) -> Option<term::Event> {
        self.rx.recv().await
    }

    /// Stop reading: the task is cancelled and its stream dropped before this returns (the
    /// helper thread leaves its `poll`).
    pub(crate) async fn close(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Input {
    /// An early return (the terminal could not be set up): the task stops when the runtime
    /// next runs it, or when the runtime is dropped.
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_redraws_the_age_only_when_no_refresh_drew_lately() {
        let ms = Duration::from_millis;
        // A refresh drew 300 ms ago (1 s interval): the age waits for the next refresh.
        assert!(!redraw_on_tick(true, false, ms(300)));
        assert!(!redraw_on_tick(true, false, ms(1_000)));
        // A long interval (or a paused tree): the age still moves on its own.
        assert!(redraw_on_tick(true, false, ms(1_500)));
        assert!(!redraw_on_tick(false, false, ms(5_000)), "nothing moved");
        // A running phase's clock moves every tick.
        assert!(redraw_on_tick(false, true, ms(10)));
    }
}
