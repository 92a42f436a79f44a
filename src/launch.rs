//! Launch mode: start `-- CMD` as our child in its own process group, with lifecycle-top as
//! child subreaper (so orphans of the tree are reparented to us, not to init, and we can
//! read their exit status), its output captured in a log file (the TUI owns the terminal),
//! and the agents injected when asked: Python through PYTHONPATH + sitecustomize, Node.js
//! through `NODE_OPTIONS=--require` (appended to the user's NODE_OPTIONS).

use anyhow::{Context, Result, bail};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
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
    /// Directory holding the agents: prepended to PYTHONPATH (the Python agent and its
    /// sitecustomize) and `--require`d through NODE_OPTIONS (the Node.js agent).
    pub agent_dir: Option<PathBuf>,
    /// Kill the launched process if lifecycle-top dies (used by the demo, which must never
    /// be left behind).
    pub die_with_us: bool,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

/// Private per-user directory for logs, sockets and unpacked assets: 0700, ours.
pub fn runtime_dir() -> Result<PathBuf> {
    crate::agent::embedded::private_base()
        .context("cannot use the private runtime directory: check $XDG_RUNTIME_DIR or /tmp")
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
    prune_launch_logs(&dir, KEEP_LAUNCH_LOGS);
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
        let js = agent_dir.join(crate::agent::embedded::NODE_AGENT_FILE);
        command.env(
            "NODE_OPTIONS",
            node_options(std::env::var("NODE_OPTIONS").ok().as_deref(), &js),
        );
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
    // The watchdog that kills the tree if lifecycle-top dies without cleaning up (SIGKILL):
    // started before the command, told of it right after.
    if let Err(e) = crate::collect::guard::ensure_started() {
        tracing::warn!(
            "cannot start the tree watchdog: {e} (a killed lifecycle-top may leave the tree)"
        );
    }
    let child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("cannot launch `{program}`: command not found (check PATH)")
        } else {
            anyhow::anyhow!("cannot launch `{program}`: {e}")
        }
    })?;
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    if let Ok(start_time) = crate::collect::procfs::read_start_time(pid) {
        crate::collect::guard::launch_target(crate::model::ProcKey { pid, start_time });
    }
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
    launch_injected(cmd, inject_agent, false)
}

/// Launches the demo: like [`launch`], but the demo tree dies with lifecycle-top.
pub fn launch_demo(cmd: &[String], inject_agent: bool) -> Result<Launched> {
    launch_injected(cmd, inject_agent, true)
}

fn launch_injected(cmd: &[String], inject_agent: bool, die_with_us: bool) -> Result<Launched> {
    let agent_dir = if inject_agent {
        agent_install_dir()?
    } else {
        None
    };
    let mut env = Vec::new();
    if die_with_us {
        // The demo's own children watch this pid and leave when it is gone, so even a
        // SIGKILLed lifecycle-top leaves no demo process behind.
        env.push((
            "LIFECYCLE_TOP_DEMO_PARENT".to_string(),
            std::process::id().to_string(),
        ));
    }
    launch_with(
        cmd,
        &LaunchOptions {
            agent_dir,
            die_with_us,
            env,
        },
    )
}

/// The target of a run: attached to, or started by us.
#[derive(Debug, Clone)]
pub struct Started {
    pub pid: i32,
    /// Set when we launched it (`-- CMD` or the demo).
    pub launched: Option<Launched>,
    pub demo: bool,
}

/// Resolves `--pid`, `-- CMD` or `demo` to a running target (shared by TUI and headless).
pub fn start_target(target: &crate::cli::Target, inject_agent: bool) -> Result<Started> {
    use crate::cli::Target;
    Ok(match target {
        Target::Pid(pid) => Started {
            pid: *pid,
            launched: None,
            demo: false,
        },
        Target::Launch(cmd) => {
            let l = launch(cmd, inject_agent)?;
            Started {
                pid: l.pid,
                launched: Some(l),
                demo: false,
            }
        }
        Target::Demo => {
            let l = launch_demo(&crate::demo::command(&[])?, inject_agent)?;
            Started {
                pid: l.pid,
                launched: Some(l),
                demo: true,
            }
        }
    })
}

/// Attaches the collector to a started target. A launched command that already ended is
/// explained ("exited with code 7") rather than reported as a zombie, and a launched tree
/// is never left behind when attaching fails.
pub fn attach_collector(started: &Started) -> Result<crate::collect::Collector> {
    crate::collect::raise_nofile_limit();
    let opts = crate::collect::CollectorOptions {
        launch_mode: started.launched.is_some(),
        ..Default::default()
    };
    match (
        crate::collect::Collector::attach(started.pid, opts),
        &started.launched,
    ) {
        (Ok(c), _) => Ok(c),
        (Err(e), None) => Err(e.into()),
        (Err(e), Some(l)) => {
            // "No such process" or "zombie" for our own child means it is ending: its exit
            // status is ours to collect, within moments (the kernel tears a process down
            // before its parent can wait for it; bounded generously: a machine at load 60
            // once took longer than 2 s).
            let ending = matches!(
                e,
                crate::collect::AttachError::NoSuchProcess(_)
                    | crate::collect::AttachError::Zombie(_)
            );
            let patience = if ending {
                std::time::Duration::from_secs(10)
            } else {
                std::time::Duration::ZERO
            };
            if let Some(why) = early_exit(l, patience) {
                bail!(why);
            }
            TreeGuard::new(true).kill();
            Err(e.into())
        }
    }
}

/// Why a launched command could not be attached to, when it already exited (or exits
/// within `patience`): reaps it and says how it ended, pointing at its output. `None` if
/// it is still running.
pub fn early_exit(launched: &Launched, patience: std::time::Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + patience;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with WNOHANG; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(launched.pid, &mut status, libc::WNOHANG) };
        if rc == launched.pid {
            break;
        }
        if rc != 0 || std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let how = if libc::WIFEXITED(status) {
        status_words(crate::model::ExitStatus::Code(libc::WEXITSTATUS(status)))
    } else {
        status_words(crate::model::ExitStatus::Signal(libc::WTERMSIG(status)))
    };
    Some(ended_before_attach(&how, launched))
}

/// `exited with code 7`, `was killed by signal 9`.
fn status_words(status: crate::model::ExitStatus) -> String {
    match status {
        crate::model::ExitStatus::Code(c) => format!("exited with code {c}"),
        crate::model::ExitStatus::Signal(s) => format!("was killed by signal {s}"),
        crate::model::ExitStatus::Unknown => "ended".into(),
    }
}

fn ended_before_attach(how: &str, launched: &Launched) -> String {
    format!(
        "the command {how} before lifecycle-top could attach (its output: {})",
        launched.log_path.display()
    )
}

/// The processes of a launched tree, kept current from snapshots, so the tree can be
/// killed on the way out, including on a panic (the guard kills on drop when armed).
#[derive(Debug, Default)]
pub struct TreeGuard {
    known: std::sync::Mutex<Vec<(u32, crate::model::ProcKey)>>,
    armed: std::sync::atomic::AtomicBool,
    /// The tree's root (from the first snapshot), as the watchdog knows it.
    root: std::sync::Mutex<Option<i32>>,
}

impl TreeGuard {
    /// `armed`: kill the tree when dropped (the demo, which must never outlive us).
    pub fn new(armed: bool) -> Self {
        Self {
            known: Default::default(),
            armed: std::sync::atomic::AtomicBool::new(armed),
            root: Default::default(),
        }
    }

    /// The user chose to leave the tree running: do not kill it on drop.
    pub fn disarm(&self) {
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(root) = self.root.lock().ok().and_then(|r| *r) {
            crate::collect::guard::forget(root);
        }
    }

    /// Will the tree be killed when the guard is dropped?
    pub fn is_armed(&self) -> bool {
        self.armed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers the live processes of the latest snapshot, with their depth.
    pub fn update(&self, snap: &crate::model::Snapshot) {
        let root = snap.target.pid;
        if let Ok(mut r) = self.root.lock()
            && r.is_none()
        {
            *r = Some(root);
        }
        if let Ok(mut known) = self.known.lock() {
            // The watchdog kills a launched tree when lifecycle-top dies without a word
            // (SIGKILL, a crash), armed or not: an unarmed guard (a command launched in the
            // TUI, which asks on quit) only means a normal quit asks first. Leaving the tree
            // running is a choice the user makes (`disarm`), never an accident.
            // Sorted once, then a binary search per process: the scan of the whole list for
            // each process was quadratic (1,000 children: a million comparisons a refresh,
            // 7 % of the dashboard thread's CPU watching 10,000 threads and 1,000 children).
            let mut was: Vec<crate::model::ProcKey> = known.iter().map(|(_, k)| *k).collect();
            was.sort_unstable();
            for p in snap.processes.iter().filter(|p| p.exit.is_none()) {
                if was.binary_search(&p.key).is_err() {
                    crate::collect::guard::note_member(root, p.key);
                }
            }
            known.clear();
            known.extend(
                snap.processes
                    .iter()
                    .filter(|p| p.exit.is_none())
                    .map(|p| (p.depth, p.key)),
            );
        }
    }

    /// SIGKILLs the tree through pidfds, leaves first; then, since we are its subreaper,
    /// everything it left reparented to us (forked after the last snapshot, daemonized),
    /// until no child of ours remains or [`KILL_SWEEP`] has passed. Never blocks on a child:
    /// one that does not die (uninterruptible sleep, a frozen cgroup) is signalled and left
    /// to the collector rather than waited for, so quitting cannot hang. Returns how many
    /// processes were killed (signalled).
    pub fn kill(&self) -> usize {
        let mut known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        known.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        let mut signalled: std::collections::HashSet<crate::model::ProcKey> = known
            .iter()
            .filter(|(_, key)| crate::teardown::exec::signal(*key, libc::SIGKILL).is_ok())
            .map(|(_, key)| *key)
            .collect();
        let deadline = std::time::Instant::now() + KILL_SWEEP;
        // Bounded sweep: each round kills what was reparented to us meanwhile and reaps,
        // without waiting, what already died.
        loop {
            reap_nonblocking(&signalled);
            let children = our_children();
            if children.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            for key in children {
                if crate::teardown::exec::signal(key, libc::SIGKILL).is_ok() {
                    signalled.insert(key);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Some(root) = self.root.lock().ok().and_then(|r| *r) {
            crate::collect::guard::forget(root);
        }
        signalled.len()
    }
}

/// How long [`TreeGuard::kill`] keeps sweeping for children that have not died yet.
pub const KILL_SWEEP: std::time::Duration = std::time::Duration::from_secs(2);

/// Reaps those of `keys` that are our own exited children, never waiting.
fn reap_nonblocking(keys: &std::collections::HashSet<crate::model::ProcKey>) {
    for key in keys {
        if crate::collect::helpers::is_helper(key.pid) {
            continue;
        }
        // SAFETY: waitpid with WNOHANG on one pid; a null status pointer is allowed. It
        // returns at once (0 if still running, -1/ECHILD if not our child or already reaped).
        unsafe { libc::waitpid(key.pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            self.kill();
        }
    }
}

/// Live children of this process, identified by (pid, start time).
fn our_children() -> Vec<crate::model::ProcKey> {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let buf = crate::collect::procfs::read_path(&format!("/proc/{pid}/stat")).ok()?;
            let stat = crate::collect::procfs::parse_stat(&buf)?;
            // lifecycle-top's own helpers (the tree's watchdog among them) are not the tree's.
            (stat.ppid == me && stat.state != 'Z' && !crate::collect::helpers::is_helper(pid))
                .then_some(crate::model::ProcKey {
                    pid,
                    start_time: stat.start_time,
                })
        })
        .collect()
}

/// NODE_OPTIONS with the Node.js agent preloaded: `--require "<js>"` appended to what the
/// user already had (Node reads it in every node process of the tree, workers included).
/// The path is quoted (NODE_OPTIONS splits on spaces; `"` and `\` are escaped inside quotes).
pub fn node_options(existing: Option<&str>, js: &Path) -> String {
    let quoted = js
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let require = format!("--require \"{quoted}\"");
    match existing.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!("{e} {require}"),
        None => require,
    }
}

fn agent_install_dir() -> Result<Option<PathBuf>> {
    crate::agent::embedded::install_dir()
        .map(Some)
        .context("cannot unpack the agents (or pass --no-agent)")
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

/// Launch logs (a launched tree's output) kept in the runtime directory: the most recent
/// ones; older ones are removed at the next launch (a CI machine ran 10,000 launches in a
/// day, and every agent lookup read the directory they filled).
pub const KEEP_LAUNCH_LOGS: usize = 200;
/// A launch log younger than this is never pruned (see [`prune_launch_logs`]).
pub const PRUNE_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes all but the `keep` most recent `launch-<pid>-<ms>.log` files of `dir` (regular
/// files of our uid, never a link), never one whose lifecycle-top `<pid>` is still running.
/// Best effort: returns how many were removed.
pub fn prune_launch_logs(dir: &Path, keep: usize) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    // Names first (no stat): most launches find nothing to prune, and a directory of
    // thousands of young logs (a CI job running `check` in a loop) cost a stat of each per
    // launch.
    let mut logs: Vec<(u64, u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let (pid, ms) = e.file_name().to_str().and_then(launch_log_stamp)?;
            Some((ms, pid, e.path()))
        })
        .collect();
    if logs.len() <= keep {
        return 0;
    }
    let excess = logs.len() - keep;
    // Oldest first; what is past `keep` (counting the running ones) goes, but never a log
    // of the last PRUNE_MIN_AGE: a run that just ended may still be read (its report names
    // it, a CI step prints it) while other launches go on beside it.
    logs.sort_by_key(|l| l.0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let young = now_ms.saturating_sub(PRUNE_MIN_AGE.as_millis() as u64);
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for (_, pid, path) in logs.iter().take_while(|l| l.0 < young) {
        if removed == excess {
            break;
        }
        let own_file = std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_file() && m.uid() == uid);
        if own_file
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_file(path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// `launch-<pid>-<ms>.log` -> (pid, ms).
fn launch_log_stamp(name: &str) -> Option<(u32, u64)> {
    parse_stamp(name, "launch-", ".log")
}

/// The `<pid>-<ms>` stamp [`launch_with`] puts in the names of a launch's files
/// (`<prefix><pid>-<ms><suffix>`): the launching lifecycle-top's pid and the time.
pub fn parse_stamp(name: &str, prefix: &str, suffix: &str) -> Option<(u32, u64)> {
    let (pid, ms) = name
        .strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .split_once('-')?;
    Some((pid.parse().ok()?, ms.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_launch_logs_are_pruned_running_ones_and_other_files_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // Pids above any pid_max: those lifecycle-tops are gone. Ours is running.
        for ms in 1..=5u64 {
            std::fs::write(dir.join(format!("launch-4294967295-{ms}.log")), b"x").expect("write");
        }
        let running = dir.join(format!("launch-{}-0.log", std::process::id()));
        std::fs::write(&running, b"x").expect("write");
        std::fs::write(dir.join("launch-notes.log"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", dir.join("launch-4294967294-0.log"))
            .expect("symlink");
        // 7 launch logs, keep 3: the 4 oldest of the gone ones go (not the running one,
        // not the link, which is not a file).
        assert_eq!(prune_launch_logs(dir, 3), 4);
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            "launch-4294967294-0.log".to_string(),
            "launch-4294967295-5.log".to_string(),
            format!("launch-{}-0.log", std::process::id()),
            "launch-notes.log".to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(prune_launch_logs(dir, 3), 0, "nothing more past the bound");
    }

    #[test]
    fn a_launch_log_of_the_last_minutes_is_never_pruned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        for i in 0..5u64 {
            let name = format!("launch-4294967295-{}.log", now - i * 1000);
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        std::fs::write(dir.join("launch-4294967295-7.log"), b"x").expect("write");
        // 6 logs, keep 1: only the old one goes; the young ones stay past the bound.
        assert_eq!(prune_launch_logs(dir, 1), 1);
        assert!(!dir.join("launch-4294967295-7.log").exists());
        assert_eq!(std::fs::read_dir(dir).expect("read_dir").count(), 5);
    }

    #[test]
    fn node_options_append_a_quoted_require() {
        let js = Path::new("/run/user/1/lifecycle-top/agent-x/lifecycle_top_agent.js");
        assert_eq!(
            node_options(None, js),
            "--require \"/run/user/1/lifecycle-top/agent-x/lifecycle_top_agent.js\""
        );
        assert_eq!(
            node_options(Some(" --max-old-space-size=64 "), js),
            "--max-old-space-size=64 --require \"/run/user/1/lifecycle-top/agent-x/lifecycle_top_agent.js\""
        );
        assert_eq!(
            node_options(Some(""), Path::new("/a b/\"x.js")),
            "--require \"/a b/\\\"x.js\""
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        fs::write(&p, "a\nb\nc\nd\n").expect("write");
        assert_eq!(tail_log(&p, 2), vec!["c".to_string(), "d".to_string()]);
        assert!(tail_log(&dir.path().join("missing"), 3).is_empty());
    }
}
