//! The header's system figures (CPUs, memory, load) through `sysinfo`, refreshing only what
//! the header shows: RAM (one read of /proc/meminfo) and the load average; the CPU count is
//! read once. It wraps sysinfo so the rest of the program sees [`SystemInfo`] only.

use crate::model::SystemInfo;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// Keeps a `sysinfo::System` with nothing loaded but what the header needs.
pub struct SystemFigures {
    sys: Option<System>,
    cpus: u32,
}

impl SystemFigures {
    pub fn new() -> Self {
        let sys = System::new().ok().map(|mut s| {
            s.refresh_cpu_list(CpuRefreshKind::nothing());
            s
        });
        let cpus = sys
            .as_ref()
            .map(|s| s.cpus().len() as u32)
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        Self { sys, cpus }
    }

    /// The figures now; `fallback` (the collector's own) when sysinfo cannot read them.
    pub fn refresh(&mut self, fallback: &SystemInfo) -> SystemInfo {
        let Some(sys) = &mut self.sys else {
            return fallback.clone();
        };
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let load = System::load_average().map_or(fallback.load_avg, |l| [l.one, l.five, l.fifteen]);
        let total = sys.total_memory();
        SystemInfo {
            cpus: self.cpus,
            mem_total_bytes: if total > 0 {
                total
            } else {
                fallback.mem_total_bytes
            },
            mem_available_bytes: if total > 0 {
                sys.available_memory()
            } else {
                fallback.mem_available_bytes
            },
            load_avg: load,
        }
    }
}

impl Default for SystemFigures {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_match_proc() {
        let mut f = SystemFigures::new();
        let s = f.refresh(&SystemInfo::default());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb = |key: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(s.mem_total_bytes, kb("MemTotal:") * 1024);
        assert!(s.mem_available_bytes > 0 && s.mem_available_bytes <= s.mem_total_bytes);
        // sysinfo counts the online CPUs, as /proc/stat lists them.
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let online = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        assert_eq!(s.cpus as usize, online);
        assert!(s.load_avg.iter().all(|l| l.is_finite() && *l >= 0.0));
    }
}
