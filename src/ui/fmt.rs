//! Small formatting helpers shared by the widgets (sizes, durations, CPU time, exits).

use crate::model::{ExitStatus, RunState};

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// `1h02m`, `3m05s`, `42s`, `0.3s`.
pub fn duration_secs(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// CPU time from clock ticks, as `m:ss.cc`.
pub fn cpu_time(ticks: u64) -> String {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let centis = ticks * 100 / hz;
    format!(
        "{}:{:02}.{:02}",
        centis / 6000,
        (centis / 100) % 60,
        centis % 100
    )
}

pub fn exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit {c}"),
        ExitStatus::Signal(s) => format!("killed by {}", signal_name(s)),
        ExitStatus::Unknown => "exited".to_string(),
    }
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

pub fn state_letter(s: RunState) -> char {
    s.as_char()
}

/// `s` cut to `w` cells with `…` at the end when longer.
pub fn cut(s: &str, w: u16) -> String {
    let w = usize::from(w);
    if s.chars().count() <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(w - 1).collect();
    t.push('…');
    t
}

/// A path (`dir/file.py:12`) cut from the left to `w` cells so its end survives:
/// `…/file.py:12`, or `…e.py:12` when even the last component does not fit.
pub fn cut_left_path(s: &str, w: u16) -> String {
    let w = usize::from(w);
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    // Cut at a `/` when the rest fits after "…/".
    let mut from = None;
    for (i, c) in s.char_indices() {
        if c == '/' && s[i..].chars().count() < w {
            from = Some(i);
            break;
        }
    }
    match from {
        Some(i) => format!("…{}", &s[i..]),
        None => {
            let tail: String = s.chars().skip(n - (w - 1)).collect();
            format!("…{tail}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(12 * 1024 * 1024), "12M");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(duration_secs(75.0), "1m15s");
        assert_eq!(duration_secs(0.25), "0.2s");
        assert_eq!(duration_secs(7300.0), "2h01m");
        assert_eq!(exit(ExitStatus::Signal(9)), "killed by SIGKILL");
        assert_eq!(exit(ExitStatus::Code(3)), "exit 3");
    }

    #[test]
    fn paths_keep_their_end() {
        let p = "/tmp/cargo/demo-77c6b8e43feef66a/demo.py:41";
        assert_eq!(cut_left_path(p, 60), p);
        assert_eq!(cut_left_path(p, 20), "…/demo.py:41");
        assert_eq!(cut_left_path(p, 34), "…/demo-77c6b8e43feef66a/demo.py:41");
        assert_eq!(cut_left_path(p, 8).chars().count(), 8);
        assert_eq!(cut_left_path(p, 8), "…o.py:41");
        assert_eq!(cut("killed by SIGKILL", 17), "killed by SIGKILL");
        assert_eq!(cut("killed by SIGKILL", 10), "killed by…");
    }
}
