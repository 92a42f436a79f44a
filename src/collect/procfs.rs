//! Low-level /proc access: files kept open and re-read with `pread` (no re-open, no path
//! walk per refresh), and small allocation-free parsers for the files the collector reads
//! every refresh (`stat`, `schedstat`, `syscall`, `wchan`) or rarely (`status`, `cmdline`).
//! Nothing here knows about trees or snapshots.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{CWD, Mode, OFlags, openat};
use std::ffi::CStr;
use std::io;

/// Open a directory under /proc (e.g. `/proc/42` or `/proc/42/task/43`) to open files
/// relative to it. An fd on `/proc/PID` keeps pointing at *that* process: after it dies and
/// the pid is reused, reads through it fail instead of returning the new process.
pub fn open_dir(path: &str) -> io::Result<OwnedFd> {
    Ok(openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open a directory relative to another one (e.g. `task/43` under `/proc/42`).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// A /proc file kept open; each read is one `pread` at offset 0 (plus more only when the
/// content does not fit the buffer).
#[derive(Debug)]
pub struct ProcFile {
    fd: OwnedFd,
}

impl ProcFile {
    pub fn open_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Self> {
        let fd = openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Self { fd })
    }

    /// Read the whole file into `buf` (its length is reused as capacity, never shrunk) and
    /// return the filled part. A short read ends the file: /proc seq files return all they
    /// have when the buffer is large enough, which saves the second, empty `pread`.
    pub fn read<'a>(&self, buf: &'a mut Vec<u8>) -> io::Result<&'a [u8]> {
        if buf.len() < 512 {
            buf.resize(512, 0);
        }
        let mut filled = 0usize;
        loop {
            let room = buf.len() - filled;
            let n = rustix::io::pread(self.fd.as_fd(), &mut buf[filled..], filled as u64)?;
            filled += n;
            if n < room {
                break;
            }
            let grown = buf.len() * 2;
            buf.resize(grown, 0);
        }
        Ok(&buf[..filled])
    }
}

impl AsFd for ProcFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Read a /proc file by path once (for files read rarely).
pub fn read_path(path: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// The fields of `/proc/PID/stat` (or `/proc/PID/task/TID/stat`) the collector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    pub num_threads: u32,
    /// Clock ticks since boot.
    pub start_time: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// Fields 32-34: blocked, ignored and caught signals, as masks of signals 1-31 only (the
    /// kernel masks them to 31 bits; real-time ones are in `status`).
    pub sig_blocked: u64,
    pub sig_ignored: u64,
    pub sig_caught: u64,
    /// Field 52: the status a parent's waitpid would get (zombies only), if present.
    pub exit_code: Option<i32>,
}

/// The bits of signals 1-31: what `stat` reports of the signal masks.
pub const LOW_SIGNALS: u64 = 0x7fff_ffff;

/// Parse a `stat` line. `comm` is taken between the first `(` and the *last* `)`, since a
/// process may name itself `a) R (b`.
pub fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&buf[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(buf.get(close + 1..)?).ok()?;
    // Field N of stat(5) is rest[N - 3].
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    let mut num = |skip: usize| -> Option<i64> { f.nth(skip)?.parse().ok() };
    let ppid = num(0)? as i32; // 4
    let pgrp = num(0)? as i32; // 5
    let session = num(0)? as i32; // 6
    let utime = num(7)?; // 14
    let stime = num(0)?; // 15
    let num_threads = num(4)?; // 20
    let start_time = num(1)?; // 22
    let rss = num(1)?; // 24
    let sig_blocked = num(7).unwrap_or(0); // 32
    let sig_ignored = num(0).unwrap_or(0); // 33
    let sig_caught = num(0).unwrap_or(0); // 34
    let exit_code = num(17).map(|c| c as i32); // 52
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        session,
        cpu_ticks: (utime.max(0) + stime.max(0)) as u64,
        num_threads: u32::try_from(num_threads).unwrap_or(0),
        start_time: u64::try_from(start_time).unwrap_or(0),
        rss_pages: u64::try_from(rss).unwrap_or(0),
        sig_blocked: sig_blocked as u64 & LOW_SIGNALS,
        sig_ignored: sig_ignored as u64 & LOW_SIGNALS,
        sig_caught: sig_caught as u64 & LOW_SIGNALS,
        exit_code,
    })
}

/// `/proc/.../schedstat`: time on CPU (ns), time waiting to run (ns), timeslices run. Any
/// change means the thread was scheduled since the last look.
pub fn parse_schedstat(buf: &[u8]) -> Option<[u64; 3]> {
    let s = std::str::from_utf8(buf).ok()?;
    let mut f = s.split_ascii_whitespace().map(|x| x.parse::<u64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// The arguments of a syscall (at most six), kept inline: the verdict keeps every thread's
/// wait between two reads, and as a `Vec` each of 10,000 threads held a 64-byte heap block
/// besides its 24-byte header (`bench/rss_breakdown.py --threads 10000 --heap`). Reads,
/// compares, prints and serializes as the slice it holds.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SyscallArgs {
    len: u8,
    vals: [u64; 6],
}

impl SyscallArgs {
    pub const MAX: usize = 6;

    /// The first [`Self::MAX`] of `args`.
    pub fn new(args: &[u64]) -> Self {
        let mut out = SyscallArgs::default();
        for a in args.iter().take(Self::MAX) {
            out.push(*a);
        }
        out
    }

    fn push(&mut self, a: u64) {
        if let Some(slot) = self.vals.get_mut(usize::from(self.len)) {
            *slot = a;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for SyscallArgs {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        self.vals.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl From<&[u64]> for SyscallArgs {
    fn from(args: &[u64]) -> Self {
        SyscallArgs::new(args)
    }
}

impl std::fmt::Debug for SyscallArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for SyscallArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for SyscallArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        if v.len() > Self::MAX {
            return Err(serde::de::Error::invalid_length(
                v.len(),
                &"at most 6 syscall arguments",
            ));
        }
        Ok(SyscallArgs::new(&v))
    }
}

/// `/proc/.../syscall`: `running`, `-1 sp pc` (blocked outside a syscall) or
/// `NR a1..a6 sp pc` in hex. Returns the number and the six arguments when in a syscall.
pub fn parse_syscall(buf: &[u8]) -> Option<(i64, SyscallArgs)> {
    let s = std::str::from_utf8(buf).ok()?;
    let mut f = s.split_ascii_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = SyscallArgs::default();
    for a in f
        .take(SyscallArgs::MAX)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
    {
        args.push(a);
    }
    Some((nr, args))
}

/// `/proc/.../wchan`: a kernel symbol, or `0` when running / unknown / not permitted.
pub fn parse_wchan(buf: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(buf).ok()?.trim();
    if s.is_empty() || s == "0" {
        None
    } else {
        Some(s.to_owned())
    }
}

/// The few lines of `/proc/.../status` the collector wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFields {
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub voluntary: Option<u64>,
    pub nonvoluntary: Option<u64>,
}

pub fn parse_status(buf: &[u8]) -> StatusFields {
    let mut out = StatusFields::default();
    let text = String::from_utf8_lossy(buf);
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let hex = || u64::from_str_radix(val, 16).unwrap_or(0);
        match key {
            "SigBlk" => out.sig_blk = hex(),
            "SigIgn" => out.sig_ign = hex(),
            "SigCgt" => out.sig_cgt = hex(),
            "voluntary_ctxt_switches" => out.voluntary = val.parse().ok(),
            "nonvoluntary_ctxt_switches" => out.nonvoluntary = val.parse().ok(),
            _ => {}
        }
    }
    out
}

/// `/proc/PID/cmdline`: NUL-separated arguments (a trailing NUL is not an empty argument).
pub fn parse_cmdline(buf: &[u8]) -> Vec<String> {
    let buf = buf.strip_suffix(&[0]).unwrap_or(buf);
    if buf.is_empty() {
        return Vec::new();
    }
    buf.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Start time (clock ticks since boot) of `pid`, the second half of its [`ProcKey`].
///
/// [`ProcKey`]: crate::model::ProcKey
pub fn read_start_time(pid: i32) -> io::Result<u64> {
    let buf = read_path(&format!("/proc/{pid}/stat"))?;
    parse_stat(&buf)
        .map(|s| s.start_time)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/PID/stat"))
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(buf: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(buf);
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    (kb("MemTotal:"), kb("MemAvailable:"))
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(buf: &[u8]) -> [f64; 3] {
    let text = String::from_utf8_lossy(buf);
    let mut f = text
        .split_ascii_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(0.0));
    [
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
    ]
}

/// Read a process CPU clock in ns (the sum of its threads' `schedstat` run times, exited
/// ones included). `None` if the process is gone (or the clock unsupported).
pub fn cpu_clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The CPU clock of process `pid`: readable for any process, no permission needed.
pub fn process_cpu_clock(pid: i32) -> Option<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid, writable clockid_t for the duration of the call.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    (rc == 0 && cpu_clock_ns(clock).is_some()).then_some(clock)
}

/// The most recently allocated pid: the 5th field of `/proc/loadavg` (in the reader's pid
/// namespace; every fork and thread creation anywhere in it moves it).
pub fn parse_last_pid(buf: &[u8]) -> Option<i32> {
    std::str::from_utf8(buf)
        .ok()?
        .split_ascii_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// Seconds since boot from `/proc/uptime` (the clock `stat`'s start time counts on).
pub fn parse_uptime(buf: &[u8]) -> Option<f64> {
    std::str::from_utf8(buf)
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (a) R (b) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 3 0 \
                        123456 1000000 250 18446744073709551615 1 1 0 0 0 0 0 4 0 0 0 0 17 1 0 \
                        0 0 0 0 0 0 0 0 0 0 0 256";

    #[test]
    fn stat_with_parens_and_spaces_in_comm() {
        let s = parse_stat(LINE.as_bytes()).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a) R (b");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgrp, s.session), (1, 4242, 4242));
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.num_threads, 3);
        assert_eq!(s.start_time, 123456);
        assert_eq!(s.rss_pages, 250);
        assert_eq!((s.sig_blocked, s.sig_ignored, s.sig_caught), (0, 4, 0));
        assert_eq!(s.exit_code, Some(256));
    }

    #[test]
    fn stat_old_kernel_without_exit_code_and_garbage() {
        let short = "7 (x y) Z 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99 0 5";
        let s = parse_stat(short.as_bytes()).expect("parses");
        assert_eq!(
            (s.comm.as_str(), s.state, s.start_time, s.rss_pages),
            ("x y", 'Z', 99, 5)
        );
        assert_eq!(s.exit_code, None);
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 ) (x").is_none());
        assert!(parse_stat(b"").is_none());
    }

    #[test]
    fn real_self_stat_parses() {
        let buf = read_path("/proc/self/stat").expect("read");
        let s = parse_stat(&buf).expect("parses");
        assert_eq!(s.pid, std::process::id() as i32);
        assert!(s.num_threads >= 1);
    }

    #[test]
    fn syscall_wchan_status_cmdline() {
        assert_eq!(parse_syscall(b"running\n"), None);
        assert_eq!(parse_syscall(b"-1 0x7ffd 0x7f00\n"), None);
        let (nr, args) =
            parse_syscall(b"202 0x7f1 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x7f2\n").expect("in syscall");
        assert_eq!((nr, &args[..]), (202, &[0x7f1, 0x80, 0, 0, 0, 0][..]));
        assert_eq!(parse_wchan(b"0"), None);
        assert_eq!(
            parse_wchan(b"futex_wait_queue"),
            Some("futex_wait_queue".into())
        );
        let st = parse_status(
            b"Name:\tx\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000000004\n\
              SigCgt:\t0000000000004000\nvoluntary_ctxt_switches:\t12\n\
              nonvoluntary_ctxt_switches:\t3\n",
        );
        assert_eq!((st.sig_blk, st.sig_ign, st.sig_cgt), (0x10000, 4, 0x4000));
        assert_eq!((st.voluntary, st.nonvoluntary), (Some(12), Some(3)));
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo hi\0"),
            vec!["sh", "-c", "echo hi"]
        );
        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_schedstat(b"100 20 3\n"), Some([100, 20, 3]));
    }

    #[test]
    fn meminfo_loadavg_uptime() {
        let (t, a) =
            parse_meminfo(b"MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    8000 kB\n");
        assert_eq!((t, a), (16000 * 1024, 8000 * 1024));
        assert_eq!(
            parse_loadavg(b"0.50 1.00 2.25 1/200 999\n"),
            [0.5, 1.0, 2.25]
        );
        assert_eq!(parse_uptime(b"12.50 40.00\n"), Some(12.5));
        assert_eq!(parse_last_pid(b"0.50 1.00 2.25 1/200 999\n"), Some(999));
        assert_eq!(parse_last_pid(b"0.50 1.00 2.25 1/200\n"), None);
    }
}
