//! The Python agent (with its sitecustomize) and the Node.js agent, embedded in the binary so
//! launch mode can inject them with no install step. [`install_dir`] writes them to a private
//! (0700) directory: put on the target's PYTHONPATH, or `--require`d through NODE_OPTIONS.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `lifecycle_top_agent.py`.
pub const AGENT_SOURCE: &str = include_str!("../../assets/agent/lifecycle_top_agent.py");
/// `sitecustomize.py`: starts the agent when LIFECYCLE_TOP_SOCKET is set, chains to any
/// existing sitecustomize.
pub const SITECUSTOMIZE_SOURCE: &str = include_str!("../../assets/agent/sitecustomize.py");
/// `lifecycle_top_agent.js`: the Node.js agent, started when `--require`d (NODE_OPTIONS).
pub const NODE_AGENT_SOURCE: &str = include_str!("../../assets/agent-node/lifecycle_top_agent.js");
/// File name of the Node.js agent inside [`install_dir`].
pub const NODE_AGENT_FILE: &str = "lifecycle_top_agent.js";

/// Writes both files into a private directory and returns it:
/// `$XDG_RUNTIME_DIR/lifecycle-top/agent-<hash>` or `/tmp/lifecycle-top-<uid>/agent-<hash>`.
/// The parent must be ours and 0700 (an attacker-made directory is refused); the hash of
/// the sources keeps two lifecycle-top versions from overwriting each other's agent.
pub fn install_dir() -> io::Result<PathBuf> {
    unpack(
        "agent",
        &[
            ("lifecycle_top_agent.py", AGENT_SOURCE),
            ("sitecustomize.py", SITECUSTOMIZE_SOURCE),
            (NODE_AGENT_FILE, NODE_AGENT_SOURCE),
        ],
    )
}

/// Unpacks embedded files into a private (0700) directory named after their content, so
/// two binaries never share half-written or stale copies, and every file is written whole
/// (temp file + rename) before anyone can import it. Returns the directory.
pub fn unpack(prefix: &str, files: &[(&str, &str)]) -> io::Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let contents: Vec<&str> = files.iter().flat_map(|(n, c)| [*n, *c]).collect();
    let dir = private_base()?.join(format!("{prefix}-{:016x}", fnv1a(&contents)));
    private_dir(&dir, uid)?;
    for (name, content) in files {
        write_if_changed(&dir.join(name), content)?;
    }
    Ok(dir)
}

/// lifecycle-top's private per-user directory (logs, sockets, unpacked assets):
/// `$XDG_RUNTIME_DIR/lifecycle-top`, else `/tmp/lifecycle-top-<uid>`; created 0700 and
/// refused when owned by someone else (a planted directory in /tmp).
pub fn private_base() -> io::Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) if Path::new(&x).is_dir() => PathBuf::from(x).join("lifecycle-top"),
        _ => PathBuf::from(format!("/tmp/lifecycle-top-{uid}")),
    };
    private_dir(&base, uid)?;
    Ok(base)
}

fn private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(io::Error::other(format!(
            "{} is not a directory owned by uid {uid}; remove it and retry",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, content: &str) -> io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    // Write then rename, so a Python process starting now never imports half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_dir_is_private_and_idempotent() {
        let a = install_dir().expect("install");
        let b = install_dir().expect("install again");
        assert_eq!(a, b);
        let meta = std::fs::metadata(&a).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o700);
        let src = std::fs::read_to_string(a.join("lifecycle_top_agent.py")).expect("read");
        assert_eq!(src, AGENT_SOURCE);
        assert!(a.join("sitecustomize.py").is_file());
        let js = std::fs::read_to_string(a.join(NODE_AGENT_FILE)).expect("read js");
        assert_eq!(js, NODE_AGENT_SOURCE);
    }
}
