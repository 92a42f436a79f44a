//! Command-line parsing at the edge: clap types stay in this file and are turned into a
//! validated [`Config`] that the rest of the program reads. Nothing else imports clap. The
//! config file (`config`) is merged here: a flag given on the command line wins over it.
//! It also writes shell completions and the man page from the same definitions.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lifecycle-top",
    version,
    args_conflicts_with_subcommands = true,
    about = "top for shutdowns: watch a process tree and drive its teardown phase by phase",
    after_help = "Examples:\n  lifecycle-top --pid 4242\n  lifecycle-top -- python3 app.py\n  lifecycle-top demo\n  lifecycle-top --pid 4242 --headless --plan python-asyncio --report out.json"
)]
struct RawCli {
    #[command(subcommand)]
    command: Option<RawCommand>,
    #[command(flatten)]
    run: RawRunArgs,
    /// Config file (default: $XDG_CONFIG_HOME/lifecycle-top/config.toml, else
    /// ~/.config/lifecycle-top/config.toml); `lifecycle-top config --default` prints one.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `--interval`: a duration between 20ms and 60s.
fn interval_value(v: &str) -> Result<Duration, String> {
    let d = crate::duration::parse_duration(v).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(20)..=Duration::from_secs(60)).contains(&d) {
        return Err(format!("`{v}`: must be between 20ms and 60s"));
    }
    Ok(d)
}

/// The dashboard's refresh interval without `--interval` or a config file.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Args, Clone)]
struct RawRunArgs {
    /// Attach to this process (and its descendants).
    #[arg(long, short = 'p')]
    pid: Option<i32>,
    #[command(flatten)]
    common: RawCommonRun,
    /// Command to launch and attach to (after `--`).
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// The options of a watch/teardown run that the demo shares.
#[derive(Debug, Args, Clone)]
struct RawCommonRun {
    /// Refresh interval (500ms, 1s, 0.5s; a bare number is milliseconds; 20ms..60s)
    /// [default: the config file's, else 500ms].
    #[arg(long, value_name = "DURATION", value_parser = interval_value)]
    interval: Option<Duration>,
    /// Run the teardown plan without a TUI; exit 0 clean, 1 lingering/escalated, 2 error.
    #[arg(long)]
    headless: bool,
    /// Teardown plan: a built-in name (python-asyncio, native, jvm) or a TOML file
    /// [default: the config file's, else chosen by target kind].
    #[arg(long)]
    plan: Option<String>,
    /// Write the JSON report here (headless).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a Chrome trace-event file here (headless; opens in Perfetto).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Record the session to this file (`lifecycle-top replay FILE` plays it back). Headless
    /// with --report records next to the report by default (report.json -> report.ltrec).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// lifecycle-top's own diagnostics go to this file (also LIFECYCLE_TOP_LOG).
    #[arg(long, env = "LIFECYCLE_TOP_LOG")]
    log: Option<PathBuf>,
    /// Do not inject the Python agent into a launched command.
    #[arg(long)]
    no_agent: bool,
}

/// Shells `completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
enum RawCommand {
    /// Print one snapshot of the tree and threads, then exit; with --watch, one JSON object
    /// per line at each refresh until the target exits.
    #[command(
        after_help = "--watch prints one compact JSON object per line, each of the `--json` shape, \
then a last line {\"end\":\"exited\",\"target\":{..},\"status\":..,\"at_ms\":N} when the target exits \
(exit code 0; status is \"Unknown\" for an attached target: its exit code goes to its parent). Ctrl-C or SIGTERM prints {\"end\":\"interrupted\"} and exits 130; a closed pipe ends it \
quietly with 0.\n\nExamples:\n  lifecycle-top snapshot --pid 4242 --json | jq '.threads | length'\n  \
lifecycle-top snapshot --pid 4242 --watch 500ms | jq -c 'select(.end == null) | [.threads | length, .agent_status]'"
    )]
    Snapshot {
        /// The process to snapshot (and its descendants).
        #[arg(long, short = 'p')]
        pid: i32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print one JSON object per line every DURATION (500ms, 1s...) until the target
        /// exits.
        #[arg(long, value_name = "DURATION", value_parser = interval_value)]
        watch: Option<Duration>,
        /// CPU% over a window of DURATION (two reads that far apart: the command takes that
        /// much longer) instead of since each process and thread started.
        #[arg(long, value_name = "DURATION", value_parser = interval_value, conflicts_with = "watch")]
        cpu_window: Option<Duration>,
    },
    /// Why it won't exit: one snapshot (plus the agent's report) folded into a wait-for
    /// graph; prints one line per cause, root cause first. Exit 0.
    #[command(
        after_help = "Examples:\n  lifecycle-top why --pid 4242\n  lifecycle-top why --pid 4242 --json | jq '.causes[].line'"
    )]
    Why {
        /// The process to diagnose (and its descendants).
        #[arg(long, short = 'p')]
        pid: i32,
        /// JSON (causes with their nodes, edges and evidence) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Capture the stacks of every thread (kernel wait point + native + Python), then exit.
    Stacks {
        /// The process whose threads to capture.
        #[arg(long, short = 'p')]
        pid: i32,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Allow PTRACE_SEIZE+INTERRUPT for threads the ptrace-free path cannot read.
        #[arg(long)]
        seize: bool,
        /// Also read debug info for file:line of the frames that are named from symbol
        /// tables without it: system libraries (their separate debug packages, such as
        /// libc6-dbg) and, when Python frames were read, the interpreter's own (libpython's
        /// DWARF); slower cold. Names come without it.
        #[arg(long)]
        debug_info: bool,
    },
    /// The shutdown gate for CI: launch CMD (or attach to --pid), wait until it is ready,
    /// stop it the way production does (one signal and a budget) and judge the shutdown.
    /// Exit 0 clean, 1 not clean, 2 usage or attach error.
    #[command(
        after_help = "Examples:\n  lifecycle-top check -- python3 app.py\n  lifecycle-top check --ready-port 8000 --budget 15s --junit shutdown.xml -- uvicorn app:app --port 8000\n  lifecycle-top check --pid 4242 --report shutdown.json"
    )]
    Check(RawCheckArgs),
    /// Play a recording back in the dashboard, read-only, with time travel; or print the
    /// Model at a moment (--at T --json), the recorded timeline's trace, or its summary.
    #[command(
        after_help = "Examples:\n  lifecycle-top replay report.ltrec\n  lifecycle-top replay report.ltrec --at 12.5s --json\n  lifecycle-top replay report.ltrec --trace out.json --summary"
    )]
    Replay {
        /// The recording (`--record FILE`, or the .ltrec next to a headless/check report).
        file: PathBuf,
        /// The moment to show, in session time (e.g. 12.5s, 800ms); default: the end with
        /// --json, the start in the dashboard.
        #[arg(long, value_name = "DURATION")]
        at: Option<String>,
        /// Print the Model at --at as JSON instead of opening the dashboard.
        #[arg(long)]
        json: bool,
        /// Write the recorded timeline as a Chrome trace-event file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Print the closing lines headless printed (phases and verdict).
        #[arg(long)]
        summary: bool,
    },
    /// Launch the bundled demo target (it will not exit cleanly) and attach to it.
    Demo {
        #[command(flatten)]
        run: RawCommonRun,
    },
    /// The in-process agents (Python and Node.js).
    Agent {
        /// Write the Python agent's source to stdout.
        #[arg(long, conflicts_with = "path")]
        print: bool,
        /// Install the agents to a private directory and print it. Python: put it on
        /// PYTHONPATH, then `import lifecycle_top_agent; lifecycle_top_agent.install()`.
        /// Node.js: NODE_OPTIONS="--require DIR/lifecycle_top_agent.js" (no code change), or
        /// `require('DIR/lifecycle_top_agent.js')` in the app.
        #[arg(long)]
        path: bool,
    },
    /// Write a shell completion script to stdout (for packagers: see README).
    #[command(
        after_help = "Examples:\n  lifecycle-top completions bash > /usr/share/bash-completion/completions/lifecycle-top\n  lifecycle-top completions zsh > /usr/share/zsh/site-functions/_lifecycle-top\n  lifecycle-top completions fish > /usr/share/fish/vendor_completions.d/lifecycle-top.fish"
    )]
    Completions {
        /// The shell to write the script for.
        shell: Shell,
    },
    /// Write the man page (roff) to stdout: `lifecycle-top man > lifecycle-top.1`.
    Man,
    /// The config file: where it is read from, or a commented default one.
    Config {
        /// Print a commented config file with every default (it parses back as is).
        #[arg(long)]
        default: bool,
    },
}

#[derive(Debug, Args, Clone)]
struct RawCheckArgs {
    /// Check an already running process (and its descendants) instead of launching one.
    #[arg(long, short = 'p')]
    pid: Option<i32>,
    /// Ready after this long (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION")]
    ready_after: Option<String>,
    /// Ready when a process of the tree LISTENs on this TCP port (read from /proc).
    #[arg(long, value_name = "PORT")]
    ready_port: Option<u16>,
    /// Ready when a line of the command's output matches this regex (launch mode).
    #[arg(long, value_name = "REGEX")]
    ready_log: Option<String>,
    /// Longest wait for readiness; past it the run is not clean ("never became ready").
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    ready_timeout: String,
    /// The one signal sent to stop the program (as Kubernetes and systemd send SIGTERM).
    #[arg(long, value_name = "SIGNAL", default_value = "SIGTERM")]
    stop_signal: String,
    /// How long the program gets to exit after the stop signal.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    budget: String,
    /// Plan whose forced phases run after a budget overrun (default: by target kind).
    #[arg(long)]
    plan: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write JUnit XML here (one testcase per check).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a Chrome trace-event file here (opens in Perfetto).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Record the session to this file (default with --report: next to it, as .ltrec).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Warnings (asyncio errors, exceptions in threads...) are reported but do not fail.
    #[arg(long)]
    allow_warnings: bool,
    /// Do not inject the Python agent into the launched command.
    #[arg(long)]
    no_agent: bool,
    /// Refresh interval (500ms, 1s, 0.5s; a bare number is milliseconds; 20ms..60s).
    #[arg(long, value_name = "DURATION", default_value = "200ms")]
    interval: String,
    /// lifecycle-top's own diagnostics go to this file (also LIFECYCLE_TOP_LOG).
    #[arg(long, env = "LIFECYCLE_TOP_LOG")]
    log: Option<PathBuf>,
    /// Command to launch and check (after `--`).
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

fn duration_arg(flag: &str, v: &str) -> Result<Duration, UsageError> {
    crate::duration::parse_duration(v).map_err(|e| UsageError(format!("{flag} {e}")))
}

impl RawCheckArgs {
    fn validate(
        self,
        file: &crate::config::FileConfig,
    ) -> Result<crate::check::config::CheckConfig, UsageError> {
        use crate::check::config::{CheckConfig, Ready};
        let target = match (self.pid, self.cmd.is_empty()) {
            (Some(pid), true) if pid > 0 => Target::Pid(pid),
            (Some(pid), true) => {
                return Err(UsageError(format!(
                    "--pid {pid}: a pid is a positive number (see `ps -e`)"
                )));
            }
            (None, false) => Target::Launch(self.cmd),
            (Some(_), false) => {
                return Err(UsageError("give either --pid N or -- CMD, not both".into()));
            }
            (None, true) => {
                return Err(UsageError(
                    "check: nothing to check: give a command after `--` (or --pid N)".into(),
                ));
            }
        };
        let ready = match (self.ready_after, self.ready_port, self.ready_log) {
            (None, None, None) => Ready::Settled,
            (Some(d), None, None) => Ready::After(duration_arg("--ready-after", &d)?),
            (None, Some(p), None) => Ready::Port(p),
            (None, None, Some(re)) => {
                if matches!(target, Target::Pid(_)) {
                    return Err(UsageError(
                        "--ready-log reads the output of a launched command: with --pid use --ready-after or --ready-port".into(),
                    ));
                }
                Ready::Log(regex::Regex::new(&re).map_err(|e| {
                    UsageError(format!("--ready-log {re:?}: not a valid regex: {e}"))
                })?)
            }
            _ => {
                return Err(UsageError(
                    "give one of --ready-after, --ready-port, --ready-log".into(),
                ));
            }
        };
        let interval = duration_arg("--interval", &self.interval)?;
        if !(Duration::from_millis(20)..=Duration::from_secs(60)).contains(&interval) {
            return Err(UsageError("--interval must be between 20ms and 60s".into()));
        }
        let record = self
            .record
            .clone()
            .or_else(|| default_recording(self.report.as_deref()));
        Ok(CheckConfig {
            record,
            target,
            ready,
            ready_timeout: duration_arg("--ready-timeout", &self.ready_timeout)?,
            stop_signal: crate::check::config::parse_stop_signal(&self.stop_signal)
                .map_err(UsageError)?,
            budget: duration_arg("--budget", &self.budget)?,
            plan: self.plan.or_else(|| file.plan.clone()),
            report: self.report,
            junit: self.junit,
            trace: self.trace,
            allow_warnings: self.allow_warnings,
            inject_agent: !self.no_agent,
            interval,
            log: self.log,
        })
    }
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
    /// Where to record the session (`--record`, or next to a headless `--report`).
    pub record: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub inject_agent: bool,
}

/// `lifecycle-top replay`, validated.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub file: PathBuf,
    /// Session time to show.
    pub at: Option<Duration>,
    pub json: bool,
    pub trace: Option<PathBuf>,
    pub summary: bool,
}

impl ReplayConfig {
    /// Nothing to print: open the dashboard.
    pub fn interactive(&self) -> bool {
        !self.json && self.trace.is_none() && !self.summary
    }
}

/// A headless or check run with a report records next to it: `report.json` ->
/// `report.ltrec`.
pub fn default_recording(report: Option<&std::path::Path>) -> Option<PathBuf> {
    report.map(|r| r.with_extension("ltrec"))
}

/// The validated configuration: the only thing `main` hands to the rest of the program.
#[derive(Debug, Clone)]
pub enum Config {
    Run(RunConfig),
    Snapshot {
        pid: i32,
        json: bool,
        /// `--watch`: one JSON line per refresh at this interval.
        watch: Option<Duration>,
        /// `--cpu-window`: CPU% measured over this window (else since start).
        cpu_window: Option<Duration>,
    },
    Stacks {
        pid: i32,
        json: bool,
        seize: bool,
        debug_info: bool,
    },
    Why {
        pid: i32,
        json: bool,
    },
    Check(Box<crate::check::config::CheckConfig>),
    Replay(ReplayConfig),
    AgentPrint,
    AgentPath,
    Completions(Shell),
    Man,
    /// `config`: where the file is read from (and whether it exists).
    ConfigPath,
    /// `config --default`.
    ConfigDefault,
}

impl Config {
    /// The `--pid` this command attaches to, if any (checked by `access::preflight`).
    pub fn pid(&self) -> Option<i32> {
        match self {
            Config::Run(RunConfig {
                target: Target::Pid(p),
                ..
            })
            | Config::Snapshot { pid: p, .. }
            | Config::Stacks { pid: p, .. }
            | Config::Why { pid: p, .. } => Some(*p),
            Config::Check(c) => match c.target {
                Target::Pid(p) => Some(p),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The command line, validated, with the config file it was merged with (the dashboard
/// takes its colours and keys from `file`).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Config,
    pub file: crate::config::FileConfig,
}

/// A usage error: one line for the user, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl RunConfig {
    fn from_raw(
        raw: RawRunArgs,
        demo: bool,
        file: &crate::config::FileConfig,
    ) -> Result<Self, UsageError> {
        let target = match (demo, raw.pid, raw.cmd.is_empty()) {
            (true, _, _) => Target::Demo,
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
        let raw = raw.common;
        if !raw.headless && (raw.report.is_some() || raw.trace.is_some()) {
            return Err(UsageError("--report and --trace need --headless".into()));
        }
        let record = match (raw.record, raw.headless) {
            (Some(r), _) => Some(r),
            (None, true) => default_recording(raw.report.as_deref()),
            (None, false) => None,
        };
        Ok(Self {
            target,
            interval: raw.interval.or(file.interval).unwrap_or(DEFAULT_INTERVAL),
            headless: raw.headless,
            plan: raw.plan.or_else(|| file.plan.clone()),
            report: raw.report,
            trace: raw.trace,
            record,
            log: raw.log,
            inject_agent: !raw.no_agent,
        })
    }
}

/// Parses `std::env::args` and the config file; `--help`/`--version`/clap errors exit
/// through clap itself.
pub fn parse() -> Result<Parsed, UsageError> {
    from_raw(RawCli::parse(), true)
}

/// Parses an explicit argument list (tests), with the config file `--config` names (the
/// default location is not read, so a developer's own file changes no test).
pub fn parse_from<I, T>(args: I) -> Result<Config, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let raw = RawCli::try_parse_from(args).map_err(|e| UsageError(e.to_string()))?;
    from_raw(raw, false).map(|p| p.config)
}

/// Writes the completion script for `shell`.
pub fn write_completions(shell: Shell, out: &mut dyn std::io::Write) {
    let sh = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(sh, &mut RawCli::command(), "lifecycle-top", out);
}

/// Writes the man page (roff), with a page section per subcommand.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = RawCli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let page = sub
            .clone()
            .display_name(format!("lifecycle-top-{}", sub.get_name()))
            .bin_name(format!("lifecycle-top {}", sub.get_name()));
        writeln!(out)?;
        clap_mangen::Man::new(page).render(out)?;
    }
    Ok(())
}

fn from_raw(raw: RawCli, default_file: bool) -> Result<Parsed, UsageError> {
    use crate::config::FileConfig;
    // Only the commands it applies to read the file: a broken file must not stop
    // `config --default` (its repair) or `completions`.
    let wants_file = matches!(
        raw.command,
        None | Some(RawCommand::Check(_))
            | Some(RawCommand::Demo { .. })
            | Some(RawCommand::Replay { .. })
    );
    let file = if wants_file && (default_file || raw.config.is_some()) {
        crate::config::load(raw.config.as_deref()).map_err(|e| UsageError(e.to_string()))?
    } else {
        FileConfig::default()
    };
    let config = command(raw.command, raw.run, &file)?;
    Ok(Parsed { config, file })
}

fn command(
    cmd: Option<RawCommand>,
    run: RawRunArgs,
    file: &crate::config::FileConfig,
) -> Result<Config, UsageError> {
    match cmd {
        None => RunConfig::from_raw(run, false, file).map(Config::Run),
        Some(RawCommand::Check(c)) => c.validate(file).map(|c| Config::Check(Box::new(c))),
        Some(RawCommand::Demo { run }) => RunConfig::from_raw(
            RawRunArgs {
                pid: None,
                common: run,
                cmd: Vec::new(),
            },
            true,
            file,
        )
        .map(Config::Run),
        Some(RawCommand::Completions { shell }) => Ok(Config::Completions(shell)),
        Some(RawCommand::Man) => Ok(Config::Man),
        Some(RawCommand::Config { default: true }) => Ok(Config::ConfigDefault),
        Some(RawCommand::Config { default: false }) => Ok(Config::ConfigPath),
        Some(RawCommand::Replay {
            file,
            at,
            json,
            trace,
            summary,
        }) => Ok(Config::Replay(ReplayConfig {
            file,
            at: at.map(|a| duration_arg("--at", &a)).transpose()?,
            json,
            trace,
            summary,
        })),
        Some(RawCommand::Snapshot { pid, .. })
        | Some(RawCommand::Stacks { pid, .. })
        | Some(RawCommand::Why { pid, .. })
            if pid <= 0 =>
        {
            Err(UsageError(format!(
                "--pid {pid}: a pid is a positive number (see `ps -e`)"
            )))
        }
        Some(RawCommand::Snapshot {
            pid,
            json,
            watch,
            cpu_window,
        }) => Ok(Config::Snapshot {
            pid,
            json,
            watch,
            cpu_window,
        }),
        Some(RawCommand::Stacks {
            pid,
            json,
            seize,
            debug_info,
        }) => Ok(Config::Stacks {
            pid,
            json,
            seize,
            debug_info,
        }),
        Some(RawCommand::Why { pid, json }) => Ok(Config::Why { pid, json }),
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
    fn why_subcommand() {
        let c = parse_from(["lifecycle-top", "why", "--pid", "42", "--json"]).expect("valid");
        assert!(
            matches!(
                c,
                Config::Why {
                    pid: 42,
                    json: true
                }
            ),
            "{c:?}"
        );
        assert!(parse_from(["lifecycle-top", "why", "--pid", "0"]).is_err());
    }

    #[test]
    fn recording_defaults_next_to_the_report() {
        let c = run(&["--pid", "1", "--headless", "--report", "out/r.json"]).expect("valid");
        assert_eq!(c.record, Some(PathBuf::from("out/r.ltrec")));
        let c = run(&["--pid", "1", "--headless"]).expect("valid");
        assert_eq!(c.record, None);
        let c = run(&["--pid", "1", "--record", "x.ltrec"]).expect("the TUI records too");
        assert_eq!(c.record, Some(PathBuf::from("x.ltrec")));
    }

    #[test]
    fn replay_subcommand() {
        match parse_from([
            "lifecycle-top",
            "replay",
            "r.ltrec",
            "--at",
            "12.5s",
            "--json",
        ]) {
            Ok(Config::Replay(r)) => {
                assert_eq!(r.at, Some(Duration::from_millis(12_500)));
                assert!(r.json && !r.interactive());
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_from(["lifecycle-top", "replay", "r.ltrec", "--at", "soon"]).is_err());
    }

    #[test]
    fn every_option_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && !a.is_hide_set() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&RawCli::command(), "lifecycle-top", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }

    #[test]
    fn durations_everywhere() {
        for (v, ms) in [("500ms", 500), ("1s", 1_000), ("0.5s", 500), ("250", 250)] {
            assert_eq!(
                run(&["--pid", "1", "--interval", v])
                    .expect("valid")
                    .interval,
                Duration::from_millis(ms),
                "{v}"
            );
        }
        let err = run(&["--pid", "1", "--interval", "2x"]).expect_err("bad unit");
        assert!(
            err.0.contains("unknown unit x; use ms, s or m"),
            "{}",
            err.0
        );
        match parse_from([
            "lifecycle-top",
            "snapshot",
            "--pid",
            "4",
            "--watch",
            "0.25s",
        ]) {
            Ok(Config::Snapshot { watch, .. }) => {
                assert_eq!(watch, Some(Duration::from_millis(250)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(&["--pid", "1"]).expect("valid").interval,
            DEFAULT_INTERVAL
        );
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "interval = \"2s\"\nplan = \"native\"\n").expect("write");
        let f = file.to_str().expect("utf-8");
        let c = run(&["--config", f, "--pid", "1"]).expect("valid");
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.plan.as_deref(), Some("native"));
        let c = run(&[
            "--config",
            f,
            "--pid",
            "1",
            "--interval",
            "1s",
            "--plan",
            "python-asyncio",
        ])
        .expect("valid");
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.plan.as_deref(), Some("python-asyncio"));
        match parse_from(["lifecycle-top", "check", "--config", f, "--", "true"]) {
            Ok(Config::Check(c)) => assert_eq!(c.plan.as_deref(), Some("native")),
            other => panic!("{other:?}"),
        }
        // A missing --config file is an error, not the defaults.
        let gone = dir.path().join("none.toml");
        let err = run(&["--config", gone.to_str().expect("utf-8"), "--pid", "1"])
            .expect_err("missing file");
        assert!(err.0.contains("none.toml: cannot read it"), "{}", err.0);
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
