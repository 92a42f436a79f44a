//! The agent client against the real Python agent in a real python3 process, over the real
//! Unix socket: hello, reports joined to /proc tids, cancel results, a blocked loop, a
//! peer outside the target tree, and a squatted socket path skipped for the real agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_common;

use agent_common::{Target, next_event, wait_for};
use lifecycle_top::agent::{
    AgentError, AgentEvent, ClientOptions, spawn_client, spawn_client_with,
};
use lifecycle_top::model::AgentFacts;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const APP: &str = r#"
import asyncio, threading, time, lifecycle_top_agent as agent
stop = threading.Event()
threading.Thread(target=stop.wait, name="worker-nd").start()
threading.Thread(target=stop.wait, name="worker-d", daemon=True).start()
async def sleeper():
    await asyncio.sleep(3600)
async def swallower():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
loop = asyncio.new_event_loop()
tracked = [loop.create_task(sleeper(), name="tracked-%d" % i) for i in range(3)]
agent.register_tasks(tracked)
loop.create_task(sleeper(), name="untracked")
loop.create_task(swallower(), name="swallower")
agent.register_phase("flush", lambda: "flushed", "flush buffers")
def block():
    time.sleep(30)
import os
if os.environ.get("BLOCK"):
    loop.call_later(0.3, block)
agent.install()
try:
    loop.run_forever()
finally:
    stop.set()
"#;

fn only(pid: i32) -> Arc<dyn Fn(i32) -> bool + Send + Sync> {
    Arc::new(move |p| p == pid)
}

#[tokio::test]
async fn hello_and_report_join_daemon_flags_to_native_tids() {
    let t = Target::spawn(APP);
    let mut h = spawn_client(t.key(), only(t.pid()), Duration::from_millis(100));
    let hello = wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Connected(_))).await;
    let AgentEvent::Connected(hello) = hello else {
        unreachable!()
    };
    assert_eq!(hello.identity(), t.key());
    assert_eq!(hello.agent.kind, "python");
    assert!(hello.has("cancel_tasks") && hello.has("chunked_tasks"));
    // sitecustomize starts the agent before the script registers its phase, so the hello
    // may predate it: reports list phases as they are now.
    let _ = hello.phases;

    let ev = wait_for(
        &mut h,
        10,
        |e| matches!(e, AgentEvent::Report(r) if r.tasks.len() == 5 && r.phases.iter().any(|p| p.name == "flush")),
    )
    .await;
    let AgentEvent::Report(r) = ev else {
        unreachable!()
    };
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{}/task", t.pid()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    let thread = |name: &str| r.threads.iter().find(|th| th.name == name).expect(name);
    assert!(!thread("worker-nd").daemon);
    assert!(thread("worker-d").daemon);
    assert!(thread("lifecycle-top-agent").agent);
    for th in &r.threads {
        assert!(
            tids.contains(&th.native_id.unwrap()),
            "{} not a tid of the target",
            th.name
        );
    }
    assert_eq!(r.loops.len(), 1);
    assert!(r.loops[0].running && !r.loops[0].blocked);
    assert!(r.loops[0].lag_ms.is_some());
    assert!(r.tracking);
    let tracked: Vec<&str> = r
        .tasks
        .iter()
        .filter(|t| t.tracked == Some(true))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tracked.len(), 3, "{tracked:?}");
    let untracked = r.tasks.iter().find(|t| t.name == "untracked").unwrap();
    assert_eq!(untracked.tracked, Some(false));
    assert_eq!(untracked.coro.as_deref(), Some("sleeper"));
    assert!(
        untracked
            .where_
            .as_deref()
            .unwrap()
            .starts_with("<string>:"),
        "{untracked:?}"
    );

    let facts = AgentFacts::from(&*r);
    assert_eq!(facts.non_daemon_threads(), 2, "main + worker-nd");
    assert_eq!(facts.pending_tasks, 5);
    assert_eq!(
        facts.thread(t.pid()).map(|f| f.name.as_str()),
        Some("MainThread")
    );

    let res = h
        .requester()
        .request(
            "run_phase",
            json!({"name": "flush"}),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(res["result"], "'flushed'");
    let err = h
        .requester()
        .request("no_such_method", json!({}), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AgentError::Remote { code, .. } if code == "unknown_method"),
        "{err}"
    );
}

#[tokio::test]
async fn cancel_tasks_reports_cancelled_and_swallowed() {
    let t = Target::spawn(APP);
    let mut h = spawn_client(t.key(), only(t.pid()), Duration::from_millis(200));
    wait_for(
        &mut h,
        10,
        |e| matches!(e, AgentEvent::Report(r) if r.tasks.len() == 5 && r.phases.iter().any(|p| p.name == "flush")),
    )
    .await;
    let res = h
        .requester()
        .request(
            "cancel_tasks",
            json!({"timeout_ms": 1000}),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let results = res["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{res}");
    for r in results {
        let want = if r["name"] == "swallower" {
            "swallowed"
        } else {
            "cancelled"
        };
        assert_eq!(r["result"], want, "{r}");
    }
    // Only the swallower is left.
    wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Report(r) if r.tasks.len() == 1 && r.tasks[0].name == "swallower")).await;
}

#[tokio::test]
async fn blocked_loop_is_reported_and_requests_still_answer() {
    let dir_script = format!("import os; os.environ['BLOCK'] = '1'\n{APP}");
    let t = Target::spawn(&dir_script);
    let mut h = spawn_client(t.key(), only(t.pid()), Duration::from_millis(100));
    let ev = wait_for(
        &mut h,
        10,
        |e| matches!(e, AgentEvent::Report(r) if r.loops.first().is_some_and(|l| l.blocked)),
    )
    .await;
    let AgentEvent::Report(r) = ev else {
        unreachable!()
    };
    assert!(
        r.loops[0]
            .blocked_at
            .as_deref()
            .unwrap()
            .starts_with("<string>:"),
        "{:?}",
        r.loops[0]
    );
    let err = h
        .requester()
        .request(
            "cancel_tasks",
            json!({"timeout_ms": 300}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    let AgentError::Remote { code, data, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(code, "blocked");
    let stack = &data["blocked"][0]["stack"];
    assert_eq!(stack[0]["function"], "block", "{data}");
    // The agent thread is independent of the blocked loop.
    let stacks = h
        .requester()
        .request("stacks", json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(stacks["threads"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn agent_outside_the_target_tree_is_refused() {
    let t = Target::spawn(APP);
    let mut h = spawn_client(t.key(), Arc::new(|_| false), Duration::from_millis(100));
    // First the socket may not exist yet (python starting): wait for the refusal itself.
    let ev = wait_for(
        &mut h,
        10,
        |e| matches!(e, AgentEvent::NotFound(m) if m.contains("not in the target's tree")),
    )
    .await;
    assert!(matches!(ev, AgentEvent::NotFound(_)));
    let err = h
        .requester()
        .request("ping", json!({}), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::NotConnected(_)), "{err}");
    let _ = next_event; // keep the helper referenced for other test files
}

#[tokio::test]
async fn agent_restart_is_a_loss_then_a_new_identity() {
    let first = Target::spawn(APP);
    let socket = first.socket.clone();
    let mut opts = ClientOptions::new(Duration::from_millis(100));
    opts.socket = Some(socket.clone());
    opts.retry = Duration::from_millis(50);
    let mut h = spawn_client_with(first.key(), Arc::new(|_| true), opts);
    let AgentEvent::Connected(h1) =
        wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Connected(_))).await
    else {
        unreachable!()
    };
    let res = h
        .requester()
        .request(
            "exit",
            json!({"mode": "exit", "code": 0}),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(res["mode"], "exit");
    let ev = wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Lost(_))).await;
    assert!(
        matches!(&ev, AgentEvent::Lost(r) if r.contains("closed")),
        "{ev:?}"
    );
    // A new process takes over the same socket path: the client connects to it and the
    // hello carries a different identity, so the app knows to reset what it knew.
    let second = Target::spawn_at(APP, tempfile::tempdir().unwrap(), socket);
    let AgentEvent::Connected(h2) =
        wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Connected(_))).await
    else {
        unreachable!()
    };
    assert_eq!(h2.identity(), second.key());
    assert_ne!(h1.identity(), h2.identity());
    assert_ne!(h1.agent.instance, h2.agent.instance);
    drop(first);
}

#[tokio::test]
async fn squatted_env_socket_is_skipped_for_the_real_agent() {
    // Someone outside the target's tree listens on the target's LIFECYCLE_TOP_SOCKET path:
    // the agent falls back to its pid path, and the client must try that candidate too.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let squatted = run.join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&squatted).unwrap();
    let me = agent_common::own_key();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let hello = json!({"type":"hello","protocol":1,
                               "target":{"pid":me.pid,"start_time":me.start_time}});
            let _ = s.write_all(format!("{hello}\n").as_bytes()).await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(s);
            });
        }
    });
    let t = Target::spawn_at(APP, dir, squatted);
    let mut opts = ClientOptions::new(Duration::from_millis(100));
    opts.retry = Duration::from_millis(50);
    let mut h = spawn_client_with(t.key(), only(t.pid()), opts);
    let AgentEvent::Connected(hello) =
        wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Connected(_))).await
    else {
        unreachable!()
    };
    assert_eq!(hello.identity(), t.key());
    // The agent was SIGKILLed: remove the socket file it left on its fallback path.
    let fallbacks = lifecycle_top::agent::path::candidates(t.pid());
    drop(t);
    for p in fallbacks.iter().skip(1) {
        let _ = std::fs::remove_file(p);
    }
}

/// 2,000 tasks; for 40 rounds of 20 ms, 20 of them move to their other await point and a
/// short task is born (each ends 0.3 s later); then nothing changes.
const CHURN_APP: &str = r#"
import asyncio, lifecycle_top_agent as agent
agent.install()
async def main():
    loop = asyncio.get_running_loop()
    futs = {}
    async def worker(i):
        while True:
            f = futs[i] = loop.create_future()
            await f
            f = futs[i] = loop.create_future()
            await f
    ts = [loop.create_task(worker(i), name="w%d" % i) for i in range(2000)]
    for k in range(40):
        await asyncio.sleep(0.02)
        for i in range(k * 20, k * 20 + 20):
            futs[i].set_result(None)
        loop.create_task(asyncio.sleep(0.3), name="short-%d" % k)
    await asyncio.sleep(1)
    print("quiet", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"#;

type Row = (
    u64,
    u64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn rows(r: &lifecycle_top::agent::Report) -> Vec<Row> {
    let mut v: Vec<Row> = r
        .tasks
        .iter()
        .map(|t| {
            let (name, state) = (t.name.clone(), t.state.clone());
            (
                t.id,
                t.loop_id,
                name,
                state,
                t.coro.clone(),
                t.where_.clone(),
                t.created_at.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A full report read by a client of the protocol before deltas (no `accept` in its hello).
async fn full_report_of_an_old_client(path: &std::path::Path) -> lifecycle_top::agent::Report {
    use lifecycle_top::agent::protocol::Incoming;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::UnixStream::connect(path).await.unwrap();
    let (rd, mut wr) = s.into_split();
    let mut lines = BufReader::new(rd).lines();
    wr.write_all(
        b"{\"type\":\"hello\",\"protocol\":1}\n{\"type\":\"subscribe\",\"interval_ms\":100}\n",
    )
    .await
    .unwrap();
    let mut report = None;
    let mut left = 0;
    let mut budget = usize::MAX;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a report within 10 s")
            .unwrap()
            .expect("agent closed");
        match serde_json::from_str::<Incoming>(&line).unwrap() {
            Incoming::Report(r) => {
                left = r.task_chunks;
                report = Some(*r);
            }
            Incoming::ReportDelta(_) => panic!("a delta to a client that did not accept them"),
            Incoming::ReportChunk(c) => {
                let r = report.as_mut().expect("chunk after its report");
                r.tasks.extend(c.decode(&mut budget).0);
                left -= 1;
            }
            _ => continue,
        }
        if left == 0
            && let Some(r) = report.take()
        {
            return r;
        }
    }
}

#[tokio::test]
async fn deltas_fold_to_what_a_full_report_says() {
    use std::io::BufRead;
    let mut t = Target::spawn_piped(CHURN_APP);
    let mut out = std::io::BufReader::new(t.child.stdout.take().expect("stdout piped"));
    let mut h = spawn_client(t.key(), only(t.pid()), Duration::from_millis(50));
    wait_for(
        &mut h,
        10,
        |e| matches!(e, AgentEvent::Report(r) if r.tasks.len() >= 2000),
    )
    .await;
    let quiet = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).map(|_| line)
    });
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), quiet)
            .await
            .expect("target quiet within 30 s")
            .unwrap()
            .unwrap(),
        "quiet\n"
    );
    // Reports built after "quiet" describe the final state (the channel still holds older
    // ones: skip those by their build time).
    let quiet_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // And once at least ten deltas were folded (a loaded machine sends fewer reports during
    // the churn; the agent goes on sending deltas while nothing changes).
    let req = h.requester();
    let AgentEvent::Report(folded) = wait_for(&mut h, 30, |e| {
        matches!(e, AgentEvent::Report(r) if r.at_unix_ms > quiet_ms + 100)
            && req.stats().deltas_folded >= 10
    })
    .await
    else {
        unreachable!()
    };
    let full = full_report_of_an_old_client(&t.socket).await;
    let stats = h.requester().stats();
    assert!(stats.deltas_folded >= 10, "deltas were used: {stats:?}");
    assert_eq!(stats.delta_gaps, 0, "{stats:?}");
    assert_eq!(folded.tasks_listed, full.tasks_listed);
    let extra: Vec<Row> = rows(&folded)
        .into_iter()
        .filter(|r| !r.2.starts_with('w'))
        .collect();
    assert_eq!(extra.len(), 1, "2,000 workers and the main task: {extra:?}");
    // Where each task was created (the script runs as `python3 -c`: file "<string>"),
    // carried through the deltas like the other row fields.
    assert_eq!(
        extra[0].6.as_deref(),
        Some("<string>:22"),
        "asyncio.run: {extra:?}"
    );
    let all = rows(&folded);
    let sites: std::collections::BTreeSet<Option<&str>> = all
        .iter()
        .filter(|r| r.2.starts_with('w'))
        .map(|r| r.6.as_deref())
        .collect();
    assert_eq!(
        sites,
        [Some("<string>:13")].into(),
        "the workers' create_task line"
    );
    let (a, b) = (rows(&folded), rows(&full));
    let only_folded: Vec<&Row> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
    let only_full: Vec<&Row> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
    assert!(
        only_folded.is_empty() && only_full.is_empty(),
        "folded deltas differ from the full report: only folded {only_folded:?}, only full {only_full:?}"
    );
    let names = |r: &lifecycle_top::agent::Report| {
        let mut v: Vec<String> = r.threads.iter().map(|t| t.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&folded), names(&full));
}

/// Waits (10 s at most) until `p` exists.
async fn wait_path(p: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not appear within 10 s",
            p.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sockets_of_sigkilled_hosts_are_removed_live_ones_and_links_kept() {
    const HOST: &str = "import time, lifecycle_top_agent as a\na.install()\ntime.sleep(3600)\n";
    let mut dead = Target::spawn_default_path(HOST);
    let live = Target::spawn_default_path(HOST);
    wait_path(&dead.socket).await;
    wait_path(&live.socket).await;
    let dir = dead.socket.parent().unwrap().to_path_buf();
    dead.child.kill().unwrap(); // SIGKILL: no atexit, the socket file stays
    dead.child.wait().unwrap();
    assert!(
        dead.socket.exists(),
        "SIGKILL leaves the socket file behind"
    );
    // A symlink named like a dead host's socket, to a stale socket elsewhere: neither the
    // link nor what it points to is touched (links are never followed).
    let elsewhere = tempfile::tempdir().unwrap();
    let stale_target = elsewhere.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale_target).unwrap());
    let gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    let mut gone = gone;
    gone.wait().unwrap();
    let link = dir.join(format!("{gone_pid}.sock"));
    std::os::unix::fs::symlink(&stale_target, &link).unwrap();

    // Discovering the live host's agent cleans the directory.
    let mut h = spawn_client(live.key(), only(live.pid()), Duration::from_millis(100));
    wait_for(&mut h, 10, |e| matches!(e, AgentEvent::Connected(_))).await;
    let link_kept = std::fs::symlink_metadata(&link).is_ok();
    let _ = std::fs::remove_file(&link);
    assert!(
        !dead.socket.exists(),
        "the SIGKILLed host's socket is removed"
    );
    assert!(live.socket.exists(), "a live agent's socket is kept");
    assert!(link_kept, "a symlink is never removed");
    assert!(stale_target.exists(), "a symlink is never followed");
}
