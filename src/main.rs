//! lifecycle-top's entry point: parse the CLI into a validated config, set up diagnostics
//! (to a file, never the screen), run the chosen mode and map the outcome to an exit code:
//! 0 ok / clean, 1 something lingered (headless), 2 usage or attach error.

use lifecycle_top::cli::{self, Config, Target};
use lifecycle_top::{access, agent, app, collect, diagnose, headless, session, stacks};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let parsed = match cli::parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e.to_string()),
    };
    let config = parsed.config;
    if let Config::Run(run) = &config {
        init_tracing(run.log.as_deref());
    }
    // The dashboard's colours and extra keys from the config file (validated there).
    lifecycle_top::ui::theme::install(parsed.file.colors);
    lifecycle_top::ui::keys::install_aliases(parsed.file.key_aliases);
    // A kernel thread or a process the kernel will not let us read: say what it is.
    if let Some(pid) = config.pid()
        && let Err(why) = access::preflight(pid)
    {
        return usage_error(&why);
    }
    match run(config) {
        Ok(code) => code,
        Err(e) => usage_error(&format!("{e:#}")),
    }
}

fn run(config: Config) -> anyhow::Result<ExitCode> {
    match config {
        Config::Snapshot {
            pid,
            watch: Some(interval),
            ..
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut out = std::io::stdout().lock();
            let end = runtime.block_on(session::watch(pid, interval, &mut out))?;
            Ok(match end {
                session::WatchEnd::Interrupted => ExitCode::from(130),
                session::WatchEnd::Exited | session::WatchEnd::Closed => ExitCode::SUCCESS,
            })
        }
        Config::Snapshot {
            pid,
            json,
            cpu_window,
            ..
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let full = runtime.block_on(session::snapshot_with_agent(pid, cpu_window))?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &full)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", collect::snapshot_text(&full.snapshot))?;
                write!(out, "{}", session::agent_text(&full))?;
                write!(out, "{}", full.cpu_line())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Config::Why { pid, json } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let full = runtime.block_on(session::snapshot_with_agent(pid, None))?;
            // A JVM runs no agent: its thread dump stands in for one.
            let jvm = full.jvm.and_then(|j| j.report);
            let report = full.agent.and_then(|a| a.report).or(jvm);
            let status = full.agent_status;
            let facts = diagnose::Facts::gather(full.snapshot, report, libc::SIGTERM);
            let why = diagnose::why(&facts, status.as_deref());
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &why)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", diagnose::why_text(&why))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Config::Stacks {
            pid,
            json,
            seize,
            debug_info,
        } => {
            let flags = stacks::cli::Flags {
                json,
                seize,
                debug_info,
            };
            stacks::cli::run_with(pid, flags, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Config::Check(cfg) => {
            init_tracing(cfg.log.as_deref());
            Ok(lifecycle_top::check::run(&cfg))
        }
        Config::Replay(cfg) => {
            if cfg.interactive() {
                need_terminal()?;
            }
            lifecycle_top::replay::run(&cfg)
        }
        Config::AgentPrint => {
            print!("{}", agent::embedded::AGENT_SOURCE);
            Ok(ExitCode::SUCCESS)
        }
        Config::Completions(shell) => {
            cli::write_completions(shell, &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Config::Man => {
            cli::write_man(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Config::ConfigDefault => {
            print!("{}", lifecycle_top::config::default_text());
            Ok(ExitCode::SUCCESS)
        }
        Config::ConfigPath => {
            match lifecycle_top::config::default_path() {
                Some(p) if p.exists() => println!("{} (in use)", p.display()),
                Some(p) => println!(
                    "{} (absent: built-in defaults; `lifecycle-top config --default > {}` writes one)",
                    p.display(),
                    p.display()
                ),
                None => println!("no config path: neither XDG_CONFIG_HOME nor HOME is set"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Config::AgentPath => {
            let dir = agent::embedded::install_dir()?;
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Config::Run(cfg) if cfg.headless => Ok(headless::run(&cfg)),
        Config::Run(cfg) => {
            // Before anything is launched; after attaching, so a bad --pid is named first.
            if !matches!(cfg.target, Target::Pid(_)) {
                need_terminal()?;
            }
            // One thread is plenty for the dashboard's event loop (the collector has its own
            // thread, stack captures go to the blocking pool) and keeps RSS small.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let attached = app::attach(&cfg)?;
            need_terminal()?;
            runtime.block_on(app::run(cfg, attached))
        }
    }
}

/// glibc gives each thread that allocates its own malloc arena (64 MB reserved, a few MB
/// touched): the collector, the event loop, the process-events reader and blocking-pool
/// threads each kept one, ~4.5 MB of peak RSS in all. None allocates much or in contention
/// with the others: two arenas are plenty. Best effort (a no-op on other allocators).
///
/// Fixed mmap and trim thresholds (128 KiB) were tried and left out: they return the big
/// short-lived buffers (a refresh's thread list, the verdict's wait graph) to the kernel,
/// -0.5 MB peak RSS at 1,000 threads and nothing at 10,000, but those buffers are then
/// faulted in again every refresh: +60 % CPU at 10,000 threads (3,300 page faults per 10 s).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called first thing in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn need_terminal() -> anyhow::Result<()> {
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        return Ok(());
    }
    anyhow::bail!(
        "the dashboard needs a terminal: run it in one, or use --headless or `snapshot` from scripts"
    )
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("lifecycle-top: {msg}");
    ExitCode::from(2)
}

/// Diagnostics go to `--log FILE` / `LIFECYCLE_TOP_LOG`; without one, nowhere (the TUI owns
/// the screen).
fn init_tracing(path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("LIFECYCLE_TOP_LOG_LEVEL")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .try_init();
        }
        Err(e) => eprintln!(
            "lifecycle-top: cannot open log file {}: {e}",
            path.display()
        ),
    }
}
