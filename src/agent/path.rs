//! Where a target's agent listens (docs/protocol.md §1): `$LIFECYCLE_TOP_SOCKET` from the
//! target's `/proc/PID/environ`, else `$XDG_RUNTIME_DIR/lifecycle-top/<pid>.sock`, else
//! `/tmp/lifecycle-top-<uid>/<pid>.sock`. The agent falls back down this list when a path
//! is unusable, so the client tries every candidate in the same order. Socket files left
//! behind by agents whose host was SIGKILLed are removed from this uid's agent socket
//! directories when agents are discovered ([`clean_stale_sockets`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Environment variable naming the agent socket (set by launch mode).
pub const ENV_SOCKET: &str = "LIFECYCLE_TOP_SOCKET";

/// Looks `key` up in a raw environment block (`KEY=VALUE` entries separated by NUL bytes,
/// as in /proc/PID/environ).
pub fn env_var<'a>(environ: &'a str, key: &str) -> Option<&'a str> {
    environ
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// All candidate socket paths in the order the agent tries them (pure).
pub fn candidates_from(pid: i32, uid: u32, environ: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = environ.and_then(|e| env_var(e, ENV_SOCKET)) {
        out.push(PathBuf::from(p));
    }
    if let Some(xdg) = environ.and_then(|e| env_var(e, "XDG_RUNTIME_DIR")) {
        out.push(
            PathBuf::from(xdg)
                .join("lifecycle-top")
                .join(format!("{pid}.sock")),
        );
    }
    out.push(PathBuf::from(format!(
        "/tmp/lifecycle-top-{uid}/{pid}.sock"
    )));
    out
}

/// The primary socket path of `pid`; `env_of_target` is its raw environment block
/// (contents of /proc/PID/environ), `None` when unreadable.
pub fn socket_path_for(pid: i32, env_of_target: Option<&str>) -> PathBuf {
    candidates_from(pid, uid_of(pid), env_of_target)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Reads /proc/PID/environ (the environment the process started with) as lossy UTF-8.
pub fn read_environ(pid: i32) -> std::io::Result<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Candidates for a live target (reads /proc).
pub fn candidates(pid: i32) -> Vec<PathBuf> {
    candidates_from(pid, uid_of(pid), read_environ(pid).ok().as_deref())
}

/// Owner of /proc/PID (the target's uid), else our effective uid.
fn uid_of(pid: i32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .unwrap_or_else(|_| rustix::process::geteuid().as_raw())
}

/// This uid's agent socket directories: `$XDG_RUNTIME_DIR/lifecycle-top` (ours) and
/// `/tmp/lifecycle-top-<euid>`.
pub fn own_socket_dirs() -> Vec<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let mut out = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(xdg).join("lifecycle-top"));
    }
    out.push(PathBuf::from(format!("/tmp/lifecycle-top-{uid}")));
    out
}

/// Removes the stale agent sockets of `dir` and returns how many. `dir` must be a real
/// directory (not a symlink) owned by our uid and closed to group and others, as the agent
/// makes it; else nothing is touched. A file is removed only when all hold: it is named
/// `<pid>.sock` (an agent's own) or `agent-<pid>-<ms>.sock` (the path a launching
/// lifecycle-top `<pid>` gave its tree), it is a socket (not a symlink: links are never
/// followed) owned by our uid, no process `<pid>` exists, nobody listens on it (connect is
/// refused), and it is still the same file (device and inode) right before the unlink.
pub fn clean_stale_sockets(dir: &Path) -> usize {
    use std::os::unix::fs::FileTypeExt;
    let uid = rustix::process::geteuid().as_raw();
    let Ok(d) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !d.is_dir() || d.uid() != uid || d.mode() & 0o077 != 0 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(socket_owner_pid) else {
            continue;
        };
        let path = e.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.file_type().is_socket() || m.uid() != uid {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its agent may be alive (or the pid reused): not ours to judge
        }
        match std::os::unix::net::UnixStream::connect(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
            _ => continue, // someone listens (or cannot tell): leave it
        }
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|now| now.dev() == m.dev() && now.ino() == m.ino());
        if same && std::fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "removed a stale agent socket");
            removed += 1;
        }
    }
    removed
}

/// The pid a socket file's name says it belongs to: `<pid>.sock` or `agent-<pid>-<ms>.sock`.
fn socket_owner_pid(name: &str) -> Option<u32> {
    if name.starts_with("agent-") {
        return crate::launch::parse_stamp(name, "agent-", ".sock").map(|(pid, _)| pid);
    }
    name.strip_suffix(".sock")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_sockets_of_a_private_dir_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("lt");
        std::fs::create_dir(&dir).expect("mkdir");
        // Above any pid_max: no such process. Bound then closed: connect is refused.
        let stale = dir.join("4294967295.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        let live_path = dir.join("4294967294.sock");
        let _live = std::os::unix::net::UnixListener::bind(&live_path).expect("bind");
        let plain = dir.join("4294967293.sock");
        std::fs::write(&plain, b"not a socket").expect("write");
        let launched = dir.join("agent-4294967295-1796127116132.sock");
        drop(std::os::unix::net::UnixListener::bind(&launched).expect("bind"));
        let other = dir.join("notes.sock");
        drop(std::os::unix::net::UnixListener::bind(&other).expect("bind"));
        let mode = |m| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m));
        mode(0o755).expect("chmod");
        assert_eq!(
            clean_stale_sockets(&dir),
            0,
            "a directory open to others is left alone"
        );
        assert!(stale.exists());
        mode(0o700).expect("chmod");
        assert_eq!(clean_stale_sockets(&dir), 2);
        assert!(!stale.exists(), "the stale socket is removed");
        assert!(!launched.exists(), "a stale launch-mode socket is removed");
        assert!(live_path.exists(), "a socket someone listens on is kept");
        assert!(plain.exists() && other.exists(), "other files are kept");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        assert_eq!(
            clean_stale_sockets(&link),
            0,
            "a symlinked directory is not followed"
        );
    }

    #[test]
    fn socket_names_say_whose_they_are() {
        assert_eq!(socket_owner_pid("42.sock"), Some(42));
        assert_eq!(socket_owner_pid("agent-42-1796127116132.sock"), Some(42));
        for other in [
            "agent-42.sock",
            "agent-x-1.sock",
            "agent-42-x.sock",
            "42.log",
            "notes.sock",
        ] {
            assert_eq!(socket_owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn env_var_wins_then_xdg_then_tmp() {
        let env = "A=1\0LIFECYCLE_TOP_SOCKET=/x/y.sock\0XDG_RUNTIME_DIR=/run/user/7\0";
        assert_eq!(
            candidates_from(42, 7, Some(env)),
            vec![
                PathBuf::from("/x/y.sock"),
                PathBuf::from("/run/user/7/lifecycle-top/42.sock"),
                PathBuf::from("/tmp/lifecycle-top-7/42.sock"),
            ]
        );
        assert_eq!(
            candidates_from(42, 0, None),
            vec![PathBuf::from("/tmp/lifecycle-top-0/42.sock")]
        );
        assert_eq!(env_var("LIFECYCLE_TOP_SOCKET=\0", ENV_SOCKET), None);
    }
}
