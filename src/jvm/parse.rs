//! Pure parser of a HotSpot thread dump (`jcmd PID Thread.print -l`, or the attach
//! protocol's `threaddump -l`): typed threads and the JVM's own deadlock report. Lines it does
//! not know are skipped, so a newer JDK's extra lines cost nothing but themselves.

use serde::Serialize;

/// A monitor or ownable synchronizer: its object address and class, as the dump prints them
/// (`<0x000000069ec2e598> (a LtJvm$Beta)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Monitor {
    pub addr: String,
    pub class: String,
}

/// One thread of the dump (Java threads and the JVM's own: GC, compiler, VM thread).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JavaThread {
    pub name: String,
    /// `#12` in the header; `None` for the JVM's internal threads.
    pub java_tid: Option<u64>,
    /// Linux tid (`nid=0x5cdb` in the dump), joined to /proc tids.
    pub nid: Option<i32>,
    pub daemon: bool,
    /// The thread's age (`elapsed=1.50s` in the header): a shutdown hook is started by the
    /// thread running the hooks, so it is never older than that thread.
    pub elapsed_ms: Option<u64>,
    /// `java.lang.Thread.State` (`TIMED_WAITING (sleeping)`), else the header's status
    /// (`runnable`) for internal threads.
    pub state: String,
    /// Innermost first: `LtJvm.sleepForever(LtJvm.java:41)`.
    pub frames: Vec<String>,
    /// `- waiting to lock <addr> (a Class)`: blocked entering a monitor.
    pub waiting_to_lock: Option<Monitor>,
    /// `- waiting on` (Object.wait) or `- parking to wait for` (j.u.c. locks).
    pub waiting_on: Option<Monitor>,
    /// Monitors held (`- locked`) and ownable synchronizers held ("Locked ownable
    /// synchronizers"), in dump order.
    pub locked: Vec<Monitor>,
    /// The monitor/lock lines under each frame, `(frame index, line)`, for the text output.
    #[serde(skip)]
    pub lock_lines: Vec<(usize, String)>,
}

/// One edge of the JVM's deadlock report: `thread` waits for `monitor`, held by `held_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlockEdge {
    pub thread: String,
    pub monitor: Monitor,
    pub held_by: String,
}

/// One "Found one Java-level deadlock" section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadlock {
    pub edges: Vec<DeadlockEdge>,
}

impl Deadlock {
    pub fn threads(&self) -> Vec<&str> {
        self.edges.iter().map(|e| e.thread.as_str()).collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ThreadDump {
    pub threads: Vec<JavaThread>,
    pub deadlocks: Vec<Deadlock>,
}

impl ThreadDump {
    pub fn by_nid(&self, tid: i32) -> Option<&JavaThread> {
        self.threads.iter().find(|t| t.nid == Some(tid))
    }
}

/// `<0x...> (a Foo)` anywhere in `s`.
fn monitor_in(s: &str) -> Option<Monitor> {
    let open = s.find('<')?;
    let close = open + s[open..].find('>')?;
    let addr = s[open + 1..close].to_string();
    let rest = &s[close + 1..];
    let class = rest
        .find("(a ")
        .and_then(|i| {
            let c = &rest[i + 3..];
            c.rfind(')').map(|j| c[..j].to_string())
        })
        .unwrap_or_default();
    Some(Monitor { addr, class })
}

fn header(line: &str) -> Option<JavaThread> {
    let body = line.strip_prefix('"')?;
    // The name ends at the last quote before the fields (a name may hold quotes itself).
    let fields_at = body.find(" tid=0x").unwrap_or(body.len());
    let end = body[..fields_at].rfind('"')?;
    let name = body[..end].to_string();
    let rest = &body[end + 1..];
    let mut t = JavaThread {
        name,
        java_tid: None,
        nid: None,
        daemon: false,
        elapsed_ms: None,
        state: String::new(),
        frames: Vec::new(),
        waiting_to_lock: None,
        waiting_on: None,
        locked: Vec::new(),
        lock_lines: Vec::new(),
    };
    let mut status_from = None;
    for (i, tok) in rest.split(' ').enumerate() {
        if let Some(n) = tok.strip_prefix('#') {
            t.java_tid = n.parse().ok().or(t.java_tid);
        } else if tok == "daemon" {
            t.daemon = true;
        } else if let Some(secs) = tok
            .strip_prefix("elapsed=")
            .and_then(|s| s.strip_suffix('s'))
        {
            t.elapsed_ms = secs
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| (s * 1000.0).round() as u64);
        } else if let Some(hex) = tok.strip_prefix("nid=0x") {
            t.nid = i32::from_str_radix(hex, 16).ok();
            status_from = Some(i + 1);
        } else if let Some(dec) = tok.strip_prefix("nid=") {
            t.nid = dec.parse().ok();
            status_from = Some(i + 1);
        }
    }
    if let Some(from) = status_from {
        let status: Vec<&str> = rest
            .split(' ')
            .skip(from)
            .take_while(|w| !w.starts_with('['))
            .filter(|w| !w.is_empty())
            .collect();
        t.state = status.join(" ");
    }
    Some(t)
}

/// Parse a whole dump. Never fails: an unknown text yields no threads.
pub fn parse(text: &str) -> ThreadDump {
    let mut dump = ThreadDump::default();
    let mut cur: Option<JavaThread> = None;
    let mut lines = text.lines().peekable();
    while let Some(raw) = lines.next() {
        let line = raw.trim_end();
        if line.starts_with("Found one Java-level deadlock") {
            if let Some(t) = cur.take() {
                dump.threads.push(t);
            }
            dump.deadlocks.push(parse_deadlock(&mut lines));
            continue;
        }
        if line.starts_with('"') && line.contains(" tid=0x") {
            if let Some(t) = cur.take() {
                dump.threads.push(t);
            }
            cur = header(line);
            continue;
        }
        let Some(t) = cur.as_mut() else { continue };
        let trimmed = line.trim_start();
        if let Some(state) = trimmed.strip_prefix("java.lang.Thread.State: ") {
            t.state = state.to_string();
        } else if let Some(frame) = trimmed.strip_prefix("at ") {
            t.frames.push(frame.to_string());
        } else if let Some(lock) = trimmed.strip_prefix("- ") {
            let at = t.frames.len().saturating_sub(1);
            let m = monitor_in(lock);
            if lock.starts_with("waiting to lock") {
                t.waiting_to_lock = m;
            } else if lock.starts_with("waiting on") || lock.starts_with("parking to wait for") {
                t.waiting_on = m;
            } else if lock.starts_with("locked") || lock.starts_with('<') {
                t.locked.extend(m);
            }
            if lock != "None" && !lock.starts_with('<') {
                t.lock_lines.push((at, lock.to_string()));
            }
        }
    }
    if let Some(t) = cur.take() {
        dump.threads.push(t);
    }
    dump
}

/// The deadlock section up to its "Java stack information" part (the stacks repeat the
/// threads' own, already parsed above).
fn parse_deadlock<'a>(lines: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>) -> Deadlock {
    let mut edges = Vec::new();
    let mut thread: Option<String> = None;
    let mut monitor: Option<Monitor> = None;
    while let Some(raw) = lines.next_if(|l| !l.starts_with("Java stack information")) {
        let line = raw.trim();
        if line.starts_with('"') && line.ends_with("\":") {
            thread = Some(line[1..line.len() - 2].to_string());
        } else if let Some(rest) = line
            .strip_prefix("waiting to lock ")
            .or_else(|| line.strip_prefix("waiting for ownable synchronizer "))
        {
            // `monitor 0x.. (object 0x.., a Foo),` or `ownable synchronizer 0x.., (a Foo),`
            let addr = rest
                .split("object ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .or_else(|| rest.split_whitespace().find(|w| w.starts_with("0x")))
                .unwrap_or("")
                .trim_end_matches(',')
                .to_string();
            let class = rest
                .rfind("a ")
                .map(|i| rest[i + 2..].trim_end_matches(',').trim_end_matches(')'))
                .unwrap_or("")
                .to_string();
            monitor = Some(Monitor { addr, class });
        } else if let Some(rest) = line.strip_prefix("which is held by \"")
            && let (Some(t), Some(m)) = (thread.take(), monitor.take())
        {
            edges.push(DeadlockEdge {
                thread: t,
                monitor: m,
                held_by: rest.trim_end_matches('"').to_string(),
            });
        }
    }
    Deadlock { edges }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DEADLOCK: &str = include_str!("../../tests/fixtures/jvm/deadlock_hook.txt");
    const PLAIN: &str = include_str!("../../tests/fixtures/jvm/plain.txt");
    const REENTRANT: &str = include_str!("../../tests/fixtures/jvm/reentrant_deadlock.txt");

    #[test]
    fn threads_daemon_flags_and_nids() {
        let d = parse(DEADLOCK);
        let w = d.threads.iter().find(|t| t.name == "lt-worker").unwrap();
        assert!(!w.daemon);
        assert_eq!(w.java_tid, Some(12));
        assert_eq!(w.nid, Some(0x5cdb));
        assert_eq!(w.state, "TIMED_WAITING (sleeping)");
        assert!(w.elapsed_ms.is_some_and(|ms| ms > 0), "{w:?}");
        assert_eq!(
            w.frames[0],
            "java.lang.Thread.sleep(java.base@17.0.15/Native Method)"
        );
        assert_eq!(w.frames[1], "LtJvm.sleepForever(LtJvm.java:41)");
        let bg = d.threads.iter().find(|t| t.name == "lt-daemon").unwrap();
        assert!(bg.daemon);
        let main = d.threads.iter().find(|t| t.name == "main").unwrap();
        assert!(!main.daemon);
        assert_eq!(main.waiting_on.as_ref().unwrap().class, "java.lang.Thread");
        let vm = d.threads.iter().find(|t| t.name == "VM Thread").unwrap();
        assert_eq!((vm.java_tid, vm.state.as_str()), (None, "runnable"));
        assert!(vm.nid.is_some());
        assert!(d.threads.iter().all(|t| t.nid.is_some()), "{:?}", d.threads);
    }

    #[test]
    fn monitors_and_the_jvm_deadlock_report() {
        let d = parse(DEADLOCK);
        let t1 = d.threads.iter().find(|t| t.name == "lt-dead-1").unwrap();
        assert_eq!(
            t1.waiting_to_lock,
            Some(Monitor {
                addr: "0x000000069ec2e598".into(),
                class: "LtJvm$Beta".into()
            })
        );
        assert_eq!(t1.locked[0].class, "LtJvm$Alpha");
        assert_eq!(
            t1.lock_lines[0],
            (
                0,
                "waiting to lock <0x000000069ec2e598> (a LtJvm$Beta)".into()
            )
        );
        assert_eq!(d.deadlocks.len(), 1);
        let dl = &d.deadlocks[0];
        assert_eq!(dl.threads(), ["lt-dead-1", "lt-dead-2"]);
        assert_eq!(dl.edges[0].held_by, "lt-dead-2");
        assert_eq!(dl.edges[0].monitor.addr, "0x000000069ec2e598");
        assert_eq!(dl.edges[0].monitor.class, "LtJvm$Beta");
        assert_eq!(dl.edges[1].monitor.class, "LtJvm$Alpha");
        // The deadlock section's repeated stacks do not add threads.
        assert_eq!(
            d.threads.iter().filter(|t| t.name == "lt-dead-1").count(),
            1
        );
    }

    #[test]
    fn no_deadlock_no_report() {
        let d = parse(PLAIN);
        assert!(d.deadlocks.is_empty());
        assert!(d.threads.iter().any(|t| t.name == "lt-worker" && !t.daemon));
    }

    #[test]
    fn ownable_synchronizers_deadlock() {
        let d = parse(REENTRANT);
        assert_eq!(d.deadlocks.len(), 1, "{d:?}");
        let dl = &d.deadlocks[0];
        assert_eq!(dl.edges.len(), 2);
        assert!(
            dl.edges[0].monitor.class.contains("ReentrantLock"),
            "{dl:?}"
        );
        let t = d.threads.iter().find(|t| t.name == "lt-rl-1").unwrap();
        assert!(
            t.waiting_on
                .as_ref()
                .unwrap()
                .class
                .contains("ReentrantLock")
        );
        assert!(
            t.locked.iter().any(|m| m.class.contains("ReentrantLock")),
            "{t:?}"
        );
    }

    #[test]
    fn garbage_gives_nothing() {
        assert_eq!(parse("hello\n\"x\n- locked\n"), ThreadDump::default());
    }
}
