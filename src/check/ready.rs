//! Readiness: when to send the stop signal. Each condition is an async fn that resolves
//! to how the target became ready, or why it did not (timeout, the tree went away).
//!
//! `port` asks /proc, never the app: it reads the LISTEN sockets of the target's network
//! namespace (`/proc/PID/net/tcp` and `tcp6`) and confirms that the socket's inode is held
//! by a process of the tree (`/proc/PID/fd/* -> socket:[inode]`). A TCP connect would be a
//! connection the app sees (an accept, maybe a logged "invalid request"), would miss a
//! server bound to a non-loopback address, and could be answered by another process that
//! holds the port; /proc has none of these problems and no side effect.

use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often conditions look again.
pub const POLL: Duration = Duration::from_millis(20);

/// How the target became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyHow {
    /// The fixed delay passed.
    After(Duration),
    /// A socket LISTENs on the port; `pid` holds it (None: LISTENing in the target's
    /// network namespace, but no fd of the tree was readable to confirm the owner).
    Port {
        port: u16,
        pid: Option<i32>,
        inode: u64,
        waited: Duration,
    },
    /// Line `line` (1-based) of the log matched.
    Log {
        line: usize,
        text: String,
        waited: Duration,
    },
}

impl std::fmt::Display for ReadyHow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadyHow::After(d) => write!(f, "ready after {} ms (fixed delay)", d.as_millis()),
            ReadyHow::Port {
                port,
                pid: Some(pid),
                waited,
                ..
            } => write!(
                f,
                "ready after {} ms: pid {pid} LISTENs on TCP port {port}",
                waited.as_millis()
            ),
            ReadyHow::Port {
                port,
                pid: None,
                waited,
                ..
            } => write!(
                f,
                "ready after {} ms: TCP port {port} LISTENs (owner not readable)",
                waited.as_millis()
            ),
            ReadyHow::Log { line, text, waited } => write!(
                f,
                "ready after {} ms: log line {line} matched: {text}",
                waited.as_millis()
            ),
        }
    }
}

/// Why the target was not found ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("not ready within {} ms: {what}", waited.as_millis())]
    Timeout { what: String, waited: Duration },
    #[error("the process tree exited before it was ready ({what})")]
    TreeGone { what: String },
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: String },
}

/// Ready once `delay` has passed.
pub async fn after(delay: Duration) -> Result<ReadyHow, NotReady> {
    tokio::time::sleep(delay).await;
    Ok(ReadyHow::After(delay))
}

/// One LISTEN socket from a /proc/net/tcp{,6} table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub inode: u64,
    pub v6: bool,
}

/// Parses a `/proc/net/tcp` or `tcp6` table: the LISTEN (state `0A`) sockets.
pub fn parse_listeners(table: &str, v6: bool) -> Vec<Listener> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let port = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
            let inode = f[9].parse().ok()?;
            Some(Listener { port, inode, v6 })
        })
        .collect()
}

/// LISTEN sockets on `port` in the network namespace of `ns_pid` (the reader's own
/// namespace when None). A missing tcp6 table (IPv6 off) is not an error.
pub fn listening_inodes(ns_pid: Option<i32>, port: u16) -> std::io::Result<Vec<u64>> {
    let base = match ns_pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/net")),
        None => PathBuf::from("/proc/net"),
    };
    let mut out = Vec::new();
    for (name, v6) in [("tcp", false), ("tcp6", true)] {
        match std::fs::read_to_string(base.join(name)) {
            Ok(t) => out.extend(
                parse_listeners(&t, v6)
                    .into_iter()
                    .filter(|l| l.port == port && l.inode != 0)
                    .map(|l| l.inode),
            ),
            Err(e) if v6 && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Who holds a socket, as far as the tree's fd tables tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This pid of the tree holds the socket with this inode.
    Pid(i32, u64),
    /// No pid of the tree holds any of the sockets.
    NotInTree,
    /// No pid's fd directory was readable (another uid): cannot tell.
    Unreadable,
}

/// Which pid of `pids` holds one of `inodes` (`/proc/PID/fd/* -> socket:[inode]`).
pub fn socket_owner(pids: &[i32], inodes: &[u64]) -> Owner {
    let mut readable = false;
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        readable = true;
        for entry in dir.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                && inodes.contains(&inode)
            {
                return Owner::Pid(pid, inode);
            }
        }
    }
    if readable {
        Owner::NotInTree
    } else {
        Owner::Unreadable
    }
}

/// Ready when a process of the tree LISTENs on TCP `port` (IPv4 or IPv6, any address).
/// `tree` gives the tree's live pids, target first; it is asked on every poll.
pub async fn port(
    port: u16,
    tree: &(dyn Fn() -> Vec<i32> + Send + Sync),
    timeout: Duration,
) -> Result<ReadyHow, NotReady> {
    let start = Instant::now();
    let what = format!("nothing in the tree LISTENs on TCP port {port}");
    let mut seen_tree = false;
    let mut foreign = false;
    loop {
        let pids = tree();
        if pids.is_empty() {
            if seen_tree {
                return Err(NotReady::TreeGone { what });
            }
        } else {
            seen_tree = true;
            // The target's namespace; a pid that just exited falls back to the next.
            let inodes = pids
                .iter()
                .find_map(|&p| listening_inodes(Some(p), port).ok())
                .unwrap_or_default();
            if !inodes.is_empty() {
                match socket_owner(&pids, &inodes) {
                    Owner::Pid(pid, inode) => {
                        return Ok(ReadyHow::Port {
                            port,
                            pid: Some(pid),
                            inode,
                            waited: start.elapsed(),
                        });
                    }
                    Owner::NotInTree => foreign = true,
                    Owner::Unreadable => {
                        return Ok(ReadyHow::Port {
                            port,
                            pid: None,
                            inode: inodes[0],
                            waited: start.elapsed(),
                        });
                    }
                }
            }
        }
        let waited = start.elapsed();
        if waited >= timeout {
            let what = if foreign {
                format!(
                    "TCP port {port} LISTENs, but no process of the tree holds the socket (another process has the port)"
                )
            } else {
                what
            };
            return Err(NotReady::Timeout { what, waited });
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

/// Follows a growing file from its start, line by line.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// The partial last line as of the previous poll (a line without its newline that
    /// stopped growing is matched too: `print("READY", end="")`).
    partial_before: Option<Vec<u8>>,
    line_no: usize,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
            partial_before: None,
            line_no: 0,
        }
    }

    /// New complete lines (1-based number, text), then a stalled partial line if any.
    fn poll(&mut self) -> std::io::Result<Vec<(usize, String)>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // Truncated or replaced: start again.
            self.offset = 0;
            self.partial.clear();
            self.partial_before = None;
            self.line_no = 0;
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut out = Vec::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            self.line_no += 1;
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            out.push((self.line_no, text.trim_end_matches('\r').to_string()));
        }
        if self.partial.is_empty() {
            self.partial_before = None;
        } else if self.partial_before.as_deref() == Some(&self.partial[..]) {
            out.push((
                self.line_no + 1,
                String::from_utf8_lossy(&self.partial).into_owned(),
            ));
        } else {
            self.partial_before = Some(self.partial.clone());
        }
        Ok(out)
    }
}

/// Ready when a line of the log file matches `pattern`. The file is read from its start
/// and followed while it grows; it need not exist yet.
pub async fn log(path: &Path, pattern: &Regex, timeout: Duration) -> Result<ReadyHow, NotReady> {
    let start = Instant::now();
    let mut tail = Tail::new(path);
    loop {
        let lines = tail.poll().map_err(|e| NotReady::Io {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        if let Some((line, text)) = lines.into_iter().find(|(_, t)| pattern.is_match(t)) {
            return Ok(ReadyHow::Log {
                line,
                text,
                waited: start.elapsed(),
            });
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(NotReady::Timeout {
                what: format!(
                    "no line of {} matched /{}/ ({} lines read)",
                    path.display(),
                    pattern.as_str(),
                    tail.line_no
                ),
                waited,
            });
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};

    /// A real listener: python3 binds 127.0.0.1:0 (or ::1) after `delay_s`, prints the
    /// port, and stays until killed.
    struct Listening {
        child: Child,
        port: u16,
    }

    impl Listening {
        fn start(delay_s: f64, v6: bool) -> Listening {
            let (fam, host) = if v6 {
                ("AF_INET6", "::1")
            } else {
                ("AF_INET", "127.0.0.1")
            };
            let code = format!(
                "import socket,sys,time\ns=socket.socket(socket.{fam})\ns.bind(('{host}',0))\n\
                 print(s.getsockname()[1],flush=True)\ntime.sleep({delay_s})\ns.listen()\n\
                 print('LISTENING',flush=True)\ntime.sleep(60)\n"
            );
            let mut child = Command::new("python3")
                .args(["-c", &code])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
            let mut first = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut first)
                .unwrap();
            let port = first.trim().parse().expect("port line");
            Listening { child, port }
        }
        fn pid(&self) -> i32 {
            self.child.id() as i32
        }
    }

    impl Drop for Listening {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn after_waits() {
        let t = Instant::now();
        let how = rt().block_on(after(Duration::from_millis(50))).unwrap();
        assert_eq!(how, ReadyHow::After(Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 434343 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            parse_listeners(table, false),
            [Listener {
                port: 8080,
                inode: 424242,
                v6: false
            }]
        );
        let t6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_listeners(t6, true)[0].port, 80);
        assert!(parse_listeners("garbage\nmore garbage here\n", false).is_empty());
    }

    #[test]
    fn port_ready_when_a_tree_process_listens_later() {
        let l = Listening::start(0.3, false);
        let pid = l.pid();
        let tree = move || vec![pid];
        let how = rt()
            .block_on(port(l.port, &tree, Duration::from_secs(5)))
            .unwrap();
        match how {
            ReadyHow::Port {
                port: p,
                pid: Some(owner),
                waited,
                inode,
            } => {
                assert_eq!((p, owner), (l.port, pid));
                assert!(inode > 0);
                assert!(waited >= Duration::from_millis(250), "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn port_ready_over_ipv6() {
        if !Path::new("/proc/net/tcp6").exists() {
            panic!("this test needs IPv6 (/proc/net/tcp6 is missing)");
        }
        let l = Listening::start(0.0, true);
        let pid = l.pid();
        let tree = move || vec![pid];
        let how = rt()
            .block_on(port(l.port, &tree, Duration::from_secs(5)))
            .unwrap();
        assert!(matches!(how, ReadyHow::Port { pid: Some(p), .. } if p == pid));
    }

    #[test]
    fn port_held_by_another_process_is_not_ready() {
        let l = Listening::start(0.0, false);
        // Wait until it really listens, then ask with a tree that does not contain it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while listening_inodes(None, l.port).unwrap().is_empty() {
            assert!(Instant::now() < deadline, "listener never listened");
            std::thread::sleep(POLL);
        }
        let me = std::process::id() as i32;
        let tree = move || vec![me];
        let err = rt()
            .block_on(port(l.port, &tree, Duration::from_millis(200)))
            .unwrap_err();
        assert!(
            matches!(&err, NotReady::Timeout { what, .. } if what.contains("another process")),
            "{err}"
        );
    }

    #[test]
    fn port_tree_gone() {
        let mut l = Listening::start(30.0, false);
        let pid = l.pid();
        let alive = move || {
            if Path::new(&format!("/proc/{pid}/fd")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
            {
                vec![pid]
            } else {
                vec![]
            }
        };
        let killer = std::thread::spawn({
            let p = nix::unistd::Pid::from_raw(pid);
            move || {
                std::thread::sleep(Duration::from_millis(150));
                let _ = nix::sys::signal::kill(p, nix::sys::signal::SIGKILL);
            }
        });
        let err = rt()
            .block_on(port(l.port, &alive, Duration::from_secs(5)))
            .unwrap_err();
        killer.join().unwrap();
        let _ = l.child.wait();
        assert!(matches!(err, NotReady::TreeGone { .. }), "{err}");
    }

    #[test]
    fn log_ready_on_a_growing_file_written_by_a_real_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        // The file does not exist yet when we start waiting.
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sys,time\ntime.sleep(0.2)\nf=open(sys.argv[1],'w')\n\
                 f.write('starting\\n'); f.flush(); time.sleep(0.2)\n\
                 f.write('listening on 8080 READY\\n'); f.flush(); time.sleep(5)\n",
            ])
            .arg(&path)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
        let re = Regex::new(r"READY$").unwrap();
        let got = rt().block_on(log(&path, &re, Duration::from_secs(5)));
        let _ = child.kill();
        let _ = child.wait();
        match got.unwrap() {
            ReadyHow::Log { line, text, waited } => {
                assert_eq!(line, 2);
                assert_eq!(text, "listening on 8080 READY");
                assert!(waited >= Duration::from_millis(350), "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn log_stalled_partial_line_matches_and_timeout_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"one\ntwo\nREADY").unwrap();
        f.flush().unwrap();
        let re = Regex::new("^READY").unwrap();
        let how = rt()
            .block_on(log(&path, &re, Duration::from_secs(2)))
            .unwrap();
        assert!(matches!(how, ReadyHow::Log { line: 3, .. }), "{how:?}");
        let re = Regex::new("never").unwrap();
        let err = rt()
            .block_on(log(&path, &re, Duration::from_millis(100)))
            .unwrap_err();
        assert!(err.to_string().contains("/never/"), "{err}");
        assert!(err.to_string().contains("2 lines read"), "{err}");
    }

    #[test]
    fn tail_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "aaaa\nbbbb\n").unwrap();
        let mut t = Tail::new(&path);
        assert_eq!(t.poll().unwrap().len(), 2);
        std::fs::write(&path, "c\n").unwrap();
        assert_eq!(t.poll().unwrap(), [(1, "c".to_string())]);
    }
}
