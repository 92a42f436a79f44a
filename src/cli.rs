//! Command-line parsing at the edge: clap types stay in this file and are turned into a
//! validated [`Config`] that the rest of the program reads. Nothing else imports clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lifecycle-top",
    version,
    about = "top for shutdowns: watch a process tree and drive its teardown phase by phase",
    after_help = "Examples:\n  lifecycle-top --pid 4242\n  lifecycle-top -- python3 app.py\n  lifecycle-top demo\n  lifecycle-top --pid 4242 --headless --plan python-asyncio --report out.json"
)]
struct RawCli {
    #[command(subcommand)]
    command: Option<RawCommand>,
    #[command(flatten)]
    run: RawRunArgs,
}

#[derive(Debug, Args, Clone)]
struct RawRunArgs {
    /// Attach to this process (and its descendants).
    #[arg(long, short = 'p')]
    pid: Option<i32>,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    interval: u64,
    /// Run the teardown plan without a TUI; exit 0 clean, 1 lingering/escalated, 2 error.
    #[arg(long)]
    headless: bool,
    /// Teardown plan: a built-in name (python-asyncio, native) or a TOML file.
    #[arg(long)]
    plan: Option<String>,
    /// Write the JSON report here (headless).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a Chrome trace-event file here (headless; opens in Perfetto).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// lifecycle-top's own diagnostics go to this file (also LIFECYCLE_TOP_LOG).
    #[arg(long, env = "LIFECYCLE_TOP_LOG")]
    log: Option<PathBuf>,
    /// Do not inject the Python agent into a launched command.
    #[arg(long)]
    no_agent: bool,
    /// Command to launch and attach to (after `--`).
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum RawCommand {
    /// Print one snapshot of the tree and threads, then exit.
    Snapshot {
        #[arg(long, short = 'p')]
        pid: i32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Capture the stacks of every thread (kernel wait point + native + Python), then exit.
    Stacks {
        #[arg(long, short = 'p')]
        pid: i32,
        #[arg(long)]
        json: bool,
        /// Allow PTRACE_SEIZE+INTERRUPT for threads the ptrace-free path cannot read.
        #[arg(long)]
        seize: bool,
    },
    /// Launch the bundled demo target (it will not exit cleanly) and attach to it.
    Demo {
        #[command(flatten)]
        run: RawRunArgs,
    },
    /// The in-process Python agent.
    Agent {
        /// Write the agent's source to stdout.
        #[arg(long, conflicts_with = "path")]
        print: bool,
        /// Install the agent to a private directory and print it (put it on PYTHONPATH).
        #[arg(long)]
        path: bool,
    },
}

/// What to attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pid(i32),
    Launch(Vec<String>),
    Demo,
}

/// Options of a watch/teardown run, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub interval: Duration,
    pub headless: bool,
    pub plan: Option<String>,
    pub report: Option<PathBuf>,
    pub trace: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub inject_agent: bool,
}

/// The validated configuration: the only thing `main` hands to the rest of the program.
#[derive(Debug, Clone)]
pub enum Config {
    Run(RunConfig),
    Snapshot { pid: i32, json: bool },
    Stacks { pid: i32, json: bool, seize: bool },
    AgentPrint,
    AgentPath,
}

/// A usage error: one line for the user, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl RunConfig {
    fn from_raw(raw: RawRunArgs, demo: bool) -> Result<Self, UsageError> {
        let target = match (demo, raw.pid, raw.cmd.is_empty()) {
            (true, None, true) => Target::Demo,
            (true, _, _) => {
                return Err(UsageError(
                    "`demo` launches its own target: drop --pid and the command".into(),
                ));
            }
            (false, Some(pid), true) => {
                if pid <= 0 {
                    return Err(UsageError(format!(
                        "--pid {pid}: a pid is a positive number (see `ps -e`)"
                    )));
                }
                Target::Pid(pid)
            }
            (false, None, false) => Target::Launch(raw.cmd),
            (false, Some(_), false) => {
                return Err(UsageError("give either --pid N or -- CMD, not both".into()));
            }
            (false, None, true) => {
                return Err(UsageError(
                    "nothing to watch: give --pid N, -- CMD, or try `lifecycle-top demo`".into(),
                ));
            }
        };
        if !raw.headless && (raw.report.is_some() || raw.trace.is_some()) {
            return Err(UsageError("--report and --trace need --headless".into()));
        }
        Ok(Self {
            target,
            interval: Duration::from_millis(raw.interval),
            headless: raw.headless,
            plan: raw.plan,
            report: raw.report,
            trace: raw.trace,
            log: raw.log,
            inject_agent: !raw.no_agent,
        })
    }
}

/// Parses `std::env::args`; `--help`/`--version`/clap errors exit through clap itself.
pub fn parse() -> Result<Config, UsageError> {
    from_raw(RawCli::parse())
}

/// Parses an explicit argument list (tests).
pub fn parse_from<I, T>(args: I) -> Result<Config, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let raw = RawCli::try_parse_from(args).map_err(|e| UsageError(e.to_string()))?;
    from_raw(raw)
}

fn from_raw(raw: RawCli) -> Result<Config, UsageError> {
    match raw.command {
        None => RunConfig::from_raw(raw.run, false).map(Config::Run),
        Some(RawCommand::Demo { run }) => RunConfig::from_raw(run, true).map(Config::Run),
        Some(RawCommand::Snapshot { pid, json }) => Ok(Config::Snapshot { pid, json }),
        Some(RawCommand::Stacks { pid, json, seize }) => Ok(Config::Stacks { pid, json, seize }),
        Some(RawCommand::Agent { print, path }) => match (print, path) {
            (true, false) => Ok(Config::AgentPrint),
            (false, true) => Ok(Config::AgentPath),
            _ => Err(UsageError("agent: give --print or --path".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunConfig, UsageError> {
        match parse_from(std::iter::once("lifecycle-top").chain(args.iter().copied()))? {
            Config::Run(r) => Ok(r),
            other => panic!("expected run config, got {other:?}"),
        }
    }

    #[test]
    fn pid_and_interval() {
        let c = run(&["--pid", "42", "--interval", "250"]).expect("valid");
        assert_eq!(c.target, Target::Pid(42));
        assert_eq!(c.interval, Duration::from_millis(250));
        assert!(!c.headless);
    }

    #[test]
    fn launch_command_after_dashes() {
        let c = run(&["--", "python3", "app.py", "--flag"]).expect("valid");
        assert_eq!(
            c.target,
            Target::Launch(vec!["python3".into(), "app.py".into(), "--flag".into()])
        );
        assert!(c.inject_agent);
    }

    #[test]
    fn rejects_pid_and_command_together() {
        assert!(run(&["--pid", "1", "--", "true"]).is_err());
    }

    #[test]
    fn rejects_nothing_to_watch() {
        let err = run(&[]).expect_err("needs a target");
        assert!(err.0.contains("demo"), "{}", err.0);
    }

    #[test]
    fn report_needs_headless() {
        assert!(run(&["--pid", "1", "--report", "x.json"]).is_err());
        assert!(run(&["--pid", "1", "--headless", "--report", "x.json"]).is_ok());
    }

    #[test]
    fn demo_subcommand() {
        let c = parse_from(["lifecycle-top", "demo", "--headless"]).expect("valid");
        match c {
            Config::Run(r) => {
                assert_eq!(r.target, Target::Demo);
                assert!(r.headless);
            }
            other => panic!("{other:?}"),
        }
    }
}
