//! What lifecycle-top may read of a process, and why not: kernel threads (nothing to
//! inspect), processes the kernel will not let it read at all (a clear reason instead of
//! "permission denied"), and processes it can watch only in part ("limited mode": no native
//! frames, no wait targets, no agent), each with the remedy. It owns these facts only; the
//! collector keeps reading what it can, and the header and `snapshot` show [`banner`].

use serde::{Deserialize, Serialize};

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags field.
const PF_KTHREAD: u64 = 0x0020_0000;
const CAP_SYS_PTRACE: u32 = 19;

/// What cannot be had of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Native user-space stacks (process_vm_readv / ptrace).
    NativeFrames,
    /// The current syscall and its decoded wait target (`/proc/TID/syscall`, fds).
    WaitTargets,
    /// The in-process agent (it serves only its own user or root).
    Agent,
}

impl Missing {
    fn text(self) -> &'static str {
        match self {
            Missing::NativeFrames => "native frames",
            Missing::WaitTargets => "wait targets",
            Missing::Agent => "agent",
        }
    }
}

/// Why a process can be watched only in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// It runs as another user and lifecycle-top is not root.
    OtherUser { uid: u32 },
    /// It made itself non-dumpable (prctl PR_SET_DUMPABLE 0, a setuid or file-capability
    /// binary): its /proc files need CAP_SYS_PTRACE.
    NotDumpable,
    /// Same user, but ptrace access is refused (Yama's ptrace_scope, or it holds
    /// capabilities lifecycle-top lacks) and lifecycle-top has no CAP_SYS_PTRACE.
    NoPtraceRights { detail: String },
}

/// One process lifecycle-top watches in limited mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limitation {
    pub pid: i32,
    pub name: String,
    #[serde(flatten)]
    pub reason: Reason,
    pub missing: Vec<Missing>,
    /// What to do about it, in a few words.
    pub remedy: String,
}

/// What `/proc` says about a process and about lifecycle-top itself.
struct Facts {
    name: String,
    flags: u64,
    uid: u32,
    /// Owner of `/proc/PID`: root for a non-dumpable process.
    proc_owner: Option<u32>,
    cap_prm: u64,
    my_euid: u32,
    my_caps: u64,
}

fn facts(pid: i32) -> Option<Facts> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on; flags is field 9.
    let flags = after.split_whitespace().nth(6)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |text: &str, key: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let name = field(&status, "Name:").unwrap_or_default();
    let uid = field(&status, "Uid:")
        .and_then(|v| v.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        .unwrap_or(0);
    let cap_prm = field(&status, "CapPrm:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    let me = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let my_caps = field(&me, "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    use std::os::unix::fs::MetadataExt;
    let proc_owner = std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid());
    Some(Facts {
        name,
        flags,
        uid,
        proc_owner,
        cap_prm,
        my_euid: nix::unistd::geteuid().as_raw(),
        my_caps,
    })
}

/// Whether ptrace-attach access to `pid` is granted: opening `/proc/PID/mem` makes the
/// kernel's check (the one process_vm_readv, ptrace and `/proc/PID/syscall` need) without
/// reading anything. Reading `syscall` instead would wait for a running task to come off the
/// CPU (`wait_task_inactive`), which stalls the session's event loop.
fn attachable(pid: i32) -> bool {
    let r = std::fs::File::open(format!("/proc/{pid}/mem"));
    !matches!(
        r.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EACCES | libc::EPERM))
    )
}

/// Whether `/proc/PID/<file>` can be read (false only for a refusal).
fn readable(pid: i32, file: &str) -> bool {
    use std::io::Read;
    let r = std::fs::File::open(format!("/proc/{pid}/{file}")).and_then(|mut f| {
        let mut b = [0u8; 64];
        f.read(&mut b)
    });
    !matches!(
        r.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EACCES | libc::EPERM))
    )
}

/// Checks to make before attaching to `--pid`: a kernel thread is refused with what it is,
/// and a process the kernel will not let us read gets its real reason and remedy (the
/// collector alone would say "permission denied"). `Ok` also when the pid does not exist:
/// the collector names that.
pub fn preflight(pid: i32) -> Result<(), String> {
    let Some(f) = facts(pid) else { return Ok(()) };
    if f.flags & PF_KTHREAD != 0 {
        return Err(format!(
            "pid {pid} is a kernel thread: nothing to inspect ({} runs inside the kernel: no \
             user space, no stacks to unwind, no exit to wait for); pick a user process \
             (`ps -ef` shows kernel threads in [brackets])",
            f.name
        ));
    }
    if readable(pid, "environ") {
        return Ok(());
    }
    Err(denied(pid, &f))
}

/// Why the kernel refuses to let us read `pid` at all, with the remedy.
fn denied(pid: i32, f: &Facts) -> String {
    let who = format!("pid {pid} ({})", f.name);
    if f.my_euid == 0 {
        let lacking = f.cap_prm & !f.my_caps;
        let why = if lacking != 0 {
            format!(
                "it holds capabilities lifecycle-top lacks ({}), so it is more privileged than \
                 this shell (typically the init of the container or VM this shell runs in)",
                cap_names(lacking)
            )
        } else {
            "a security policy (an LSM, Landlock or the container runtime) denies ptrace \
             access to it"
                .to_string()
        };
        return format!(
            "{who} cannot be read here even as root: the kernel refuses access to its \
             /proc files (environ, syscall, maps): {why}; run lifecycle-top where it has at least \
             the target's rights (on the host, or in a privileged container), or pick another \
             pid (`ps -e`)"
        );
    }
    if f.uid != f.my_euid {
        return format!(
            "{who} belongs to uid {}: only its user or root may read it; run lifecycle-top as \
             that user (`sudo -u '#{}' lifecycle-top ...`) or with sudo",
            f.uid, f.uid
        );
    }
    format!(
        "{who} is not dumpable (it called prctl(PR_SET_DUMPABLE, 0) or runs a setuid or \
         file-capability binary): reading it needs CAP_SYS_PTRACE; run lifecycle-top with sudo"
    )
}

/// What lifecycle-top cannot have of a process it can list, or `None` when it has
/// everything. One open of `/proc/PID/mem` decides; the facts explain why.
pub fn limitation(pid: i32) -> Option<Limitation> {
    if attachable(pid) {
        return None;
    }
    let f = facts(pid)?;
    let frames = vec![Missing::NativeFrames, Missing::WaitTargets];
    let (reason, missing, remedy) = if f.uid != f.my_euid && f.my_euid != 0 {
        (
            Reason::OtherUser { uid: f.uid },
            vec![Missing::NativeFrames, Missing::WaitTargets, Missing::Agent],
            format!(
                "run lifecycle-top as uid {} (`sudo -u '#{}' lifecycle-top ...`) or with sudo",
                f.uid, f.uid
            ),
        )
    } else if not_dumpable(&f) {
        (
            Reason::NotDumpable,
            frames,
            "run lifecycle-top with sudo (CAP_SYS_PTRACE)".to_string(),
        )
    } else {
        let yama = yama_scope();
        let lacking = f.cap_prm & !f.my_caps;
        let mut detail = Vec::new();
        if let Some(y) = yama.as_deref().filter(|y| *y != "0") {
            detail.push(format!("kernel.yama.ptrace_scope={y}"));
        }
        if lacking != 0 {
            detail.push(format!("it holds {}", cap_names(lacking)));
        }
        if f.my_caps & (1 << CAP_SYS_PTRACE) == 0 {
            detail.push("no CAP_SYS_PTRACE".to_string());
        }
        let mut remedy = "run lifecycle-top with sudo, or `sudo setcap cap_sys_ptrace+ep \
                          $(command -v lifecycle-top)`"
            .to_string();
        if yama.as_deref().is_some_and(|y| y == "1") {
            remedy.push_str(", or `sudo sysctl kernel.yama.ptrace_scope=0`");
        }
        (
            Reason::NoPtraceRights {
                detail: detail.join(", "),
            },
            frames,
            remedy,
        )
    };
    Some(Limitation {
        pid,
        name: f.name,
        reason,
        missing,
        remedy,
    })
}

fn yama_scope() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Same user and ptrace refused: non-dumpable when /proc shows it owned by root, or when
/// neither Yama nor extra capabilities of the target explain the refusal.
fn not_dumpable(f: &Facts) -> bool {
    if f.uid != f.my_euid {
        return false;
    }
    let owned_by_root = f.uid != 0 && f.proc_owner == Some(0);
    let yama = yama_scope().is_some_and(|y| y != "0");
    owned_by_root || (!yama && f.cap_prm & !f.my_caps == 0)
}

/// The one banner line for the limitations of a session (`None` when there are none).
pub fn banner(limits: &[Limitation]) -> Option<String> {
    let first = limits.first()?;
    let why = match &first.reason {
        Reason::OtherUser { uid } => format!("is another user's (uid {uid})"),
        Reason::NotDumpable => "is not dumpable".to_string(),
        Reason::NoPtraceRights { detail } if detail.is_empty() => {
            "refuses ptrace access".to_string()
        }
        Reason::NoPtraceRights { detail } => format!("refuses ptrace access ({detail})"),
    };
    let mut missing: Vec<Missing> = Vec::new();
    for m in limits.iter().flat_map(|l| l.missing.iter()) {
        if !missing.contains(m) {
            missing.push(*m);
        }
    }
    let missing: Vec<&str> = missing.iter().map(|m| m.text()).collect();
    let more = match limits.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    Some(format!(
        "limited: pid {} ({}) {why}{more}: no {}; {}",
        first.pid,
        first.name,
        missing.join(", no "),
        first.remedy
    ))
}

fn cap_names(mask: u64) -> String {
    const NAMES: &[&str] = &[
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
    ];
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map_or(format!("cap_{b}"), |n| format!("cap_{n}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kthreadd_is_a_kernel_thread() {
        // pid 2 is kthreadd on every Linux with a pid namespace of its own kernel.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            let e = preflight(2).expect_err("a kernel thread");
            assert!(
                e.starts_with("pid 2 is a kernel thread: nothing to inspect"),
                "{e}"
            );
        }
        // Our own process is fully readable.
        let me = std::process::id() as i32;
        assert_eq!(preflight(me), Ok(()));
        assert_eq!(limitation(me), None);
    }

    #[test]
    fn banner_names_what_is_missing_and_the_remedy() {
        let l = |pid, reason, missing: Vec<Missing>| Limitation {
            pid,
            name: "worker".into(),
            reason,
            missing,
            remedy: "run lifecycle-top with sudo".into(),
        };
        assert_eq!(banner(&[]), None);
        let one = [l(
            7,
            Reason::OtherUser { uid: 65534 },
            vec![Missing::NativeFrames, Missing::WaitTargets, Missing::Agent],
        )];
        assert_eq!(
            banner(&one).as_deref(),
            Some(
                "limited: pid 7 (worker) is another user's (uid 65534): no native frames, \
                 no wait targets, no agent; run lifecycle-top with sudo"
            )
        );
        let two = [
            l(
                8,
                Reason::NotDumpable,
                vec![Missing::NativeFrames, Missing::WaitTargets],
            ),
            l(9, Reason::NotDumpable, vec![Missing::NativeFrames]),
        ];
        let b = banner(&two).unwrap_or_default();
        assert!(
            b.contains("pid 8 (worker) is not dumpable (+1 more)"),
            "{b}"
        );
    }

    #[test]
    fn capability_names() {
        assert_eq!(cap_names(1 << 24), "cap_sys_resource");
        assert_eq!(cap_names((1 << 19) | 1), "cap_chown, cap_sys_ptrace");
    }
}
