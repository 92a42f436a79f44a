//! Listing numeric entries of a /proc directory (`/proc` itself or `/proc/PID/task`) with
//! raw `getdents64` into a buffer reused across refreshes: no allocation per entry, one or
//! two syscalls for a thousand entries, and the directory fd stays open (rewound each time).

use rustix::fd::BorrowedFd;
use rustix::fs::{RawDir, SeekFrom, seek};
use std::io;

/// Reusable getdents buffer.
pub struct DirScanner {
    /// Always empty: only its spare capacity is handed to getdents.
    buf: Vec<u8>,
}

impl Default for DirScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DirScanner {
    pub fn new() -> DirScanner {
        DirScanner {
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Call `f(number, inode)` for every entry of `dir` whose name is a positive integer.
    /// The inode of a `/proc/PID` entry is allocated when the process's directory is
    /// instantiated, so a pid reused by a new process shows up with a new inode.
    pub fn scan_pids(
        &mut self,
        dir: BorrowedFd<'_>,
        mut f: impl FnMut(i32, u64),
    ) -> io::Result<()> {
        seek(dir, SeekFrom::Start(0))?;
        let mut raw = RawDir::new(dir, self.buf.spare_capacity_mut());
        while let Some(entry) = raw.next() {
            let entry = entry?;
            if let Some(pid) = parse_pid(entry.file_name().to_bytes()) {
                f(pid, entry.ino());
            }
        }
        Ok(())
    }
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &b in name {
        n = n * 10 + i64::from(b - b'0');
    }
    i32::try_from(n).ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn pid_names() {
        assert_eq!(parse_pid(b"1234"), Some(1234));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"0"), None);
        assert_eq!(parse_pid(b"99999999999"), None);
    }

    #[test]
    fn lists_self_in_proc_twice() {
        let dir = crate::collect::procfs::open_dir("/proc").expect("open /proc");
        let me = std::process::id() as i32;
        let mut s = DirScanner::new();
        for _ in 0..2 {
            let mut found = false;
            s.scan_pids(dir.as_fd(), |p, _| found |= p == me)
                .expect("scan");
            assert!(found);
        }
    }
}
