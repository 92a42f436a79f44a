//! The validated options of `lifecycle-top check` (built by `cli.rs` from clap's raw
//! arguments; nothing here knows clap).

use crate::cli::Target;
use regex::Regex;
use std::path::PathBuf;
use std::time::Duration;

/// When the command counts as ready for its stop signal.
#[derive(Debug, Clone)]
pub enum Ready {
    /// The tree has settled (two refreshes list the same processes) and the agent answered
    /// (or its wait ran out).
    Settled,
    After(Duration),
    Port(u16),
    Log(Regex),
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub target: Target,
    pub ready: Ready,
    /// How long readiness may take before the run is judged "never became ready".
    pub ready_timeout: Duration,
    pub stop_signal: i32,
    pub budget: Duration,
    /// The plan whose forced phases run after a budget overrun.
    pub plan: Option<String>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub trace: Option<PathBuf>,
    /// Where the session is recorded (`--record`, or next to `--report`).
    pub record: Option<PathBuf>,
    pub allow_warnings: bool,
    pub inject_agent: bool,
    pub interval: Duration,
    pub log: Option<PathBuf>,
}

/// `SIGTERM`, `TERM` or `15`; job-control signals and SIGCONT are refused (they do not
/// stop a program, they pause or resume it).
pub fn parse_stop_signal(s: &str) -> Result<i32, String> {
    let v = match s.trim().parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(s.to_string()),
    };
    let sig = crate::teardown::parse_signal(&v)
        .map_err(|_| format!("--stop-signal {s}: not a signal (e.g. SIGTERM, INT, 15)"))?;
    if [
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGCONT,
    ]
    .contains(&sig)
    {
        return Err(format!(
            "--stop-signal {s}: {} pauses or resumes a process, it does not stop it; use SIGTERM, SIGINT or SIGQUIT",
            crate::teardown::plan::signal_name(sig)
        ));
    }
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_spellings() {
        for s in ["SIGTERM", "TERM", "term", "15"] {
            assert_eq!(parse_stop_signal(s), Ok(libc::SIGTERM), "{s}");
        }
        assert_eq!(parse_stop_signal("INT"), Ok(libc::SIGINT));
        assert!(parse_stop_signal("NOPE").is_err_and(|e| e.contains("NOPE")));
        assert!(parse_stop_signal("SIGSTOP").is_err_and(|e| e.contains("pauses")));
        assert!(parse_stop_signal("TSTP").is_err());
    }
}
