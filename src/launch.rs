//! Launch mode: start `-- CMD` as our child in its own process group, with lifecycle-top as
//! child subreaper (so orphans of the tree are reparented to us, not to init, and we can
//! read their exit status), its output captured in a log file (the TUI owns the terminal),
//! and the Python agent injected through PYTHONPATH + sitecustomize when asked.

use anyhow::{Context, Result, bail};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A command we started.
#[derive(Debug, Clone)]
pub struct Launched {
    pub pid: i32,
    /// stdout and stderr of the launched tree.
    pub log_path: PathBuf,
    /// Socket the injected agent listens on (set through `LIFECYCLE_TOP_SOCKET`).
    pub socket: PathBuf,
}

/// Extra knobs for [`launch_with`].
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// Directory to prepend to PYTHONPATH (holds the agent and its sitecustomize).
    pub agent_dir: Option<PathBuf>,
    /// Kill the launched process if lifecycle-top dies (used by the demo, which must never
    /// be left behind).
    pub die_with_us: bool,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

/// Private per-user directory for logs, sockets and unpacked assets: 0700.
pub fn runtime_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if Path::new(&dir).is_dir() => PathBuf::from(dir).join("lifecycle-top"),
        _ => std::env::temp_dir().join(format!(
            "lifecycle-top-{}",
            rustix::process::getuid().as_raw()
        )),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .with_context(|| format!("cannot create {}: check its permissions", base.display()))?;
    Ok(base)
}

/// Makes this process a child subreaper: descendants orphaned inside the launched tree are
/// reparented to us, so they stay visible and their exit codes are ours to read.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers and only flips a flag on
    // the calling process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        bail!(
            "cannot become child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Starts `cmd` in its own process group with its output going to a log file.
pub fn launch_with(cmd: &[String], opts: &LaunchOptions) -> Result<Launched> {
    let Some((program, args)) = cmd.split_first() else {
        bail!("nothing to launch: give a command after `--`");
    };
    become_subreaper()?;
    let dir = runtime_dir()?;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let log_path = dir.join(format!("launch-{stamp}.log"));
    let socket = dir.join(format!("agent-{stamp}.sock"));
    let log = open_log(&log_path)?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("cannot duplicate the log file {}", log_path.display()))?;

    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .env("LIFECYCLE_TOP_SOCKET", &socket)
        .env("PYTHONUNBUFFERED", "1");
    for (k, v) in &opts.env {
        command.env(k, v);
    }
    if let Some(agent_dir) = &opts.agent_dir {
        let mut path = agent_dir.as_os_str().to_owned();
        if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        command.env("PYTHONPATH", path);
    }
    if opts.die_with_us {
        let parent = rustix::process::getpid();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid, kill).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died between fork and prctl.
                if libc::getppid() != parent.as_raw_nonzero().get() {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
    let child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("cannot launch `{program}`: command not found (check PATH)")
        } else {
            anyhow::anyhow!("cannot launch `{program}`: {e}")
        }
    })?;
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    // The Child handle is dropped without waiting on purpose: the collector reaps through
    // the pidfd (waitid P_PIDFD) and reports the exit status.
    drop(child);
    Ok(Launched {
        pid,
        log_path,
        socket,
    })
}

/// The contract other modules use: launch, injecting the agent when asked.
pub fn launch(cmd: &[String], inject_agent: bool) -> Result<Launched> {
    let agent_dir = if inject_agent {
        agent_install_dir()?
    } else {
        None
    };
    launch_with(
        cmd,
        &LaunchOptions {
            agent_dir,
            ..LaunchOptions::default()
        },
    )
}

fn agent_install_dir() -> Result<Option<PathBuf>> {
    crate::agent::embedded::install_dir()
        .map(Some)
        .context("cannot unpack the Python agent (or pass --no-agent)")
}

/// Launches the demo: like [`launch`], but the demo tree dies with lifecycle-top.
pub fn launch_demo(cmd: &[String], inject_agent: bool) -> Result<Launched> {
    let agent_dir = if inject_agent {
        agent_install_dir()?
    } else {
        None
    };
    launch_with(
        cmd,
        &LaunchOptions {
            agent_dir,
            die_with_us: true,
            ..LaunchOptions::default()
        },
    )
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create log file {}", path.display()))
}

/// Reads the last `max_lines` lines of the launch log (for the log panel). Reads at most
/// the last 64 KiB, so a chatty child costs nothing.
pub fn tail_log(path: &Path, max_lines: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text
        .lines()
        .skip(usize::from(start > 0))
        .map(|l| l.replace('\t', "    "))
        .collect();
    let keep = lines.len().saturating_sub(max_lines);
    lines.drain(..keep);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        fs::write(&p, "a\nb\nc\nd\n").expect("write");
        assert_eq!(tail_log(&p, 2), vec!["c".to_string(), "d".to_string()]);
        assert!(tail_log(&dir.path().join("missing"), 3).is_empty());
    }
}
