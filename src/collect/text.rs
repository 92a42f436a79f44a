//! Plain-text rendering of a [`Snapshot`] for `lifecycle-top snapshot` (without `--json`):
//! a header line, the process tree and the target's threads. No terminal codes, so it can
//! be piped, diffed and pasted into bug reports.

use crate::model::{ExitStatus, ProcInfo, Snapshot, ThreadInfo};
use std::fmt::Write;

/// Render `snap` as a header line, a process-tree table and a thread table.
pub fn snapshot_text(snap: &Snapshot) -> String {
    let mut out = String::new();
    header(&mut out, snap);
    out.push('\n');
    processes(&mut out, snap);
    out.push('\n');
    threads(&mut out, &snap.threads);
    out
}

fn header(out: &mut String, snap: &Snapshot) {
    let t = snap.target_info();
    let name = t.map_or_else(|| "?".to_owned(), |p| p.name.to_string());
    let state = match t {
        Some(p) => match p.exit {
            Some(x) => format!("exited ({})", exit_text(x.status)),
            None => p.state.as_char().to_string(),
        },
        None => "?".into(),
    };
    let uptime = t.map_or_else(String::new, |p| duration(p.age_secs));
    let descendants = snap.live_descendants().count();
    let orphans = snap.live_descendants().filter(|p| p.orphan).count();
    let exited = snap.processes.iter().filter(|p| p.exit.is_some()).count();
    let s = &snap.system;
    let _ = writeln!(
        out,
        "pid {} ({name}) state {state} up {uptime} | threads {} children {descendants} \
         orphans {orphans} exited {exited} | cpus {} mem avail {} / {} load {:.2} {:.2} {:.2}",
        snap.target.pid,
        snap.threads.len(),
        s.cpus,
        bytes(s.mem_available_bytes),
        bytes(s.mem_total_bytes),
        s.load_avg[0],
        s.load_avg[1],
        s.load_avg[2],
    );
    if let Some(cmd) = t.map(|p| p.cmdline.join(" ")).filter(|c| !c.is_empty()) {
        let _ = writeln!(out, "cmd {}", one_line(&cmd));
    }
}

fn processes(out: &mut String, snap: &Snapshot) {
    let _ = writeln!(
        out,
        "{:>7} {:>7} {:>7} {:2} {:>8} {:>6} {:>8} {:>7}  {:<12} COMMAND",
        "PID", "PPID", "PGID", "ST", "AGE", "CPU%", "CPU", "RSS", "NOTE"
    );
    for p in &snap.processes {
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:>7} {:2} {:>8} {:>6.1} {:>8} {:>7}  {:<12} {}{}",
            p.key.pid,
            p.ppid,
            p.pgid,
            p.state.as_char(),
            duration(p.age_secs),
            p.cpu_percent,
            ticks(p.cpu_ticks),
            bytes(p.rss_bytes),
            note(p),
            "  ".repeat(p.depth as usize),
            command(p),
        );
    }
}

fn threads(out: &mut String, threads: &[ThreadInfo]) {
    let _ = writeln!(
        out,
        "{:>7} {:<16} {:2} {:>6} {:>8} {:<16} {:<24} {:>8} {:>8}",
        "TID", "NAME", "ST", "CPU%", "CPU", "SYSCALL", "WCHAN", "VCSW", "NVCSW"
    );
    for t in threads {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{:>7} {:<16} {:2} {:>6.1} {:>8} {:<16} {:<24} {:>8} {:>8}",
            t.tid,
            one_line(&t.name),
            t.state.as_char(),
            t.cpu_percent,
            ticks(t.cpu_ticks),
            t.wait.syscall.as_deref().unwrap_or("-"),
            t.wait.wchan.as_deref().unwrap_or("-"),
            opt(t.voluntary_ctxt_switches),
            opt(t.nonvoluntary_ctxt_switches),
        );
    }
}

fn note(p: &ProcInfo) -> String {
    match (p.exit, p.orphan) {
        (Some(x), _) => exit_text(x.status),
        (None, true) => "orphan".into(),
        (None, false) => String::new(),
    }
}

fn command(p: &ProcInfo) -> String {
    if p.cmdline.is_empty() {
        format!("[{}]", p.name)
    } else {
        one_line(&p.cmdline.join(" "))
    }
}

/// Control characters (a `python -c` script's newlines) would break the table's rows.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `exit 0`, `killed SIGKILL`, `exited ?`.
pub fn exit_text(s: ExitStatus) -> String {
    match s {
        ExitStatus::Code(c) => format!("exit {c}"),
        ExitStatus::Signal(sig) => format!("killed {}", signal_name(sig)),
        ExitStatus::Unknown => "exited ?".into(),
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// CPU ticks (1/100 s on every mainstream Linux configuration) as seconds.
fn ticks(t: u64) -> String {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    format!("{:.2}s", t as f64 / hz as f64)
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{
        ExitInfo, ProcKey, RunState, SignalMasks, SystemInfo, ThreadInfo, WaitPoint,
    };

    fn proc(pid: i32, ppid: i32, depth: u32, name: &str) -> ProcInfo {
        ProcInfo {
            key: ProcKey {
                pid,
                start_time: pid as u64,
            },
            ppid,
            pgid: 10,
            sid: 10,
            name: name.into(),
            cmdline: vec![name.into(), "-c\nx".into()],
            state: RunState::Sleeping,
            cpu_ticks: 250,
            cpu_percent: 1.5,
            rss_bytes: 3 << 20,
            num_threads: 1,
            age_secs: 65.0,
            depth,
            orphan: false,
            signals: SignalMasks::default(),
            exit: None,
        }
    }

    #[test]
    fn table_shows_tree_orphans_exits_and_threads() {
        let mut orphan = proc(30, 1, 2, "sleep");
        orphan.orphan = true;
        let mut gone = proc(40, 10, 1, "worker");
        gone.exit = Some(ExitInfo {
            status: ExitStatus::Signal(15),
            at_unix_ms: 1,
        });
        let snap = Snapshot {
            taken_at_unix_ms: 0,
            target: ProcKey {
                pid: 10,
                start_time: 10,
            },
            processes: vec![proc(10, 1, 0, "app"), proc(20, 10, 1, "sh"), orphan, gone],
            threads: vec![ThreadInfo {
                tid: 10,
                name: "app".into(),
                state: RunState::Sleeping,
                wait: WaitPoint {
                    wchan: Some("futex_wait_queue".into()),
                    syscall_nr: Some(202),
                    syscall: Some("futex".into()),
                    syscall_args: vec![],
                }
                .into(),
                cpu_ticks: 0,
                cpu_percent: 0.0,
                voluntary_ctxt_switches: Some(4),
                nonvoluntary_ctxt_switches: None,
            }],
            system: SystemInfo::default(),
        };
        let text = snapshot_text(&snap);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("pid 10 (app) state S up 1m05s"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("threads 1 children 2 orphans 1 exited 1"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "cmd app -c x", "control characters flattened");
        let row = |pid: &str| {
            *lines
                .iter()
                .find(|l| l.trim_start().starts_with(pid))
                .expect("row")
        };
        assert!(
            row("20 ").contains("    sh -c x"),
            "indented by depth: {}",
            row("20 ")
        );
        assert!(row("30 ").contains("orphan"));
        assert!(row("40 ").contains("killed SIGTERM"));
        let t = lines
            .iter()
            .find(|l| l.contains("futex_wait_queue"))
            .expect("thread row");
        assert!(t.contains("futex") && t.contains(" 4 ") && t.trim_end().ends_with('-'));
    }

    #[test]
    fn units() {
        assert_eq!(duration(5.0), "5s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(7300.0), "2h01m");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0M");
        assert_eq!(exit_text(ExitStatus::Signal(9)), "killed SIGKILL");
        assert_eq!(exit_text(ExitStatus::Code(3)), "exit 3");
    }
}
