//! The agent client against a fake agent written here (a tokio UnixListener speaking raw
//! bytes): malformed JSON, a line over the cap, an unknown message type, a response to an
//! unknown id, an agent that stops answering, a disconnect mid-message, chunk reassembly,
//! and reports built to blow up the client's memory (shared long strings, too many rows or
//! chunks).
//! Each gives a clear event or error and the client keeps going (reconnects).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_common;

use agent_common::{next_event, own_key, wait_for};
use lifecycle_top::agent::{AgentError, AgentEvent, AgentHandle, ClientOptions, spawn_client_with};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Clone)]
enum Step {
    Send(String),
    /// Wait for the client's next request and answer it with this result.
    Answer(serde_json::Value),
    /// Wait until the client sends a message of this `type`.
    Expect(&'static str),
    /// Keep the connection open, reading and ignoring everything.
    Hold,
}

fn hello() -> String {
    let k = own_key();
    format!(
        "{}\n",
        json!({"type":"hello","protocol":1,"agent":{"kind":"fake","version":"0","instance":"x"},
               "target":{"pid":k.pid,"start_time":k.start_time},"capabilities":["ping"]})
    )
}

fn report(seq: u64, chunks: u32) -> String {
    format!(
        "{}\n",
        json!({"type":"report","seq":seq,"task_chunks":chunks,"tasks_total":3})
    )
}

/// Serves connection n with `scripts[n]` (the last script for any later connection).
fn fake_agent(scripts: Vec<Vec<Step>>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let script = scripts[n.min(scripts.len() - 1)].clone();
            n += 1;
            tokio::spawn(serve(stream, script));
        }
    });
    (dir, path)
}

async fn serve(stream: UnixStream, script: Vec<Step>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    for step in script {
        match step {
            Step::Send(s) => {
                if wr.write_all(s.as_bytes()).await.is_err() {
                    return;
                }
            }
            Step::Answer(result) => loop {
                let Ok(Some(line)) = lines.next_line().await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["type"] == "request" {
                    let resp = json!({"type":"response","id":v["id"],"ok":true,"result":result});
                    let _ = wr.write_all(format!("{resp}\n").as_bytes()).await;
                    break;
                }
            },
            Step::Expect(kind) => loop {
                let Ok(Some(line)) = lines.next_line().await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["type"] == kind {
                    break;
                }
            },
            Step::Hold => while let Ok(Some(_)) = lines.next_line().await {},
        }
    }
    // Script over: dropping the halves closes the connection.
}

fn client(path: PathBuf, stale_after: Duration) -> AgentHandle {
    let me = own_key().pid;
    let mut opts = ClientOptions::new(Duration::from_millis(100));
    opts.socket = Some(path);
    opts.retry = Duration::from_millis(50);
    opts.stale_after = stale_after;
    spawn_client_with(own_key(), Arc::new(move |p| p == me), opts)
}

async fn expect_lost_then_reconnect(scripts: Vec<Vec<Step>>, reason_part: &str) {
    let (_dir, path) = fake_agent(scripts);
    let mut h = client(path, Duration::from_secs(30));
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    match next_event(&mut h, 5).await {
        AgentEvent::Lost(reason) => assert!(reason.contains(reason_part), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    // The client keeps going: it reconnects to the (now well-behaved) agent.
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    assert!(matches!(next_event(&mut h, 5).await, AgentEvent::Report(_)));
}

fn good() -> Vec<Step> {
    vec![Step::Send(hello()), Step::Send(report(1, 0)), Step::Hold]
}

#[tokio::test]
async fn malformed_json_drops_the_connection_with_a_reason() {
    let bad = vec![
        Step::Send(hello()),
        Step::Send("{\"type\": report\n".into()),
        Step::Hold,
    ];
    expect_lost_then_reconnect(vec![bad, good()], "malformed JSON").await;
}

#[tokio::test]
async fn line_over_the_cap_drops_the_connection() {
    let huge = format!("{}\n", "a".repeat((1 << 20) + 10));
    let bad = vec![Step::Send(hello()), Step::Send(huge), Step::Hold];
    expect_lost_then_reconnect(vec![bad, good()], "cap").await;
}

#[tokio::test]
async fn disconnect_mid_message_is_a_clear_loss() {
    let bad = vec![Step::Send(hello()), Step::Send("{\"type\":\"rep".into())];
    expect_lost_then_reconnect(vec![bad, good()], "mid-message").await;
}

#[tokio::test]
async fn unknown_type_unknown_id_and_invalid_message_are_skipped_and_counted() {
    let script = vec![
        Step::Send(hello()),
        Step::Send("{\"type\":\"telemetry\",\"x\":1}\n".into()),
        Step::Send("{\"type\":\"response\",\"id\":999,\"ok\":true,\"result\":1}\n".into()),
        // Valid JSON, wrong shape: skipped and counted, the connection stays.
        Step::Send("{\"type\":\"report\",\"seq\":\"seven\"}\n".into()),
        Step::Send(report(1, 0)),
        Step::Hold,
    ];
    let (_dir, path) = fake_agent(vec![script]);
    let mut h = client(path, Duration::from_secs(30));
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    assert!(matches!(next_event(&mut h, 5).await, AgentEvent::Report(_)));
    let stats = h.requester().stats();
    assert_eq!(
        (stats.unknown_types, stats.unknown_ids),
        (1, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn agent_that_stops_answering_times_out_then_is_lost() {
    let (_dir, path) = fake_agent(vec![vec![Step::Send(hello()), Step::Hold]]);
    let mut h = client(path, Duration::from_millis(800));
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    let err = h
        .requester()
        .request("ping", json!({}), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("ping"), "{err}");
    let ev = wait_for(&mut h, 5, |e| matches!(e, AgentEvent::Lost(_))).await;
    let AgentEvent::Lost(reason) = ev else {
        unreachable!()
    };
    assert!(reason.contains("stopped answering"), "{reason}");
}

#[tokio::test]
async fn responses_are_routed_and_chunks_reassembled() {
    let chunk = |i: u32, id: u64| {
        format!(
            "{}\n",
            json!({"type":"report_chunk","seq":7,"index":i,"count":2,"strings":["co","a.py:1"],
                   "tasks":[[id,1,format!("t{id}"),"pending",0,1,null]]})
        )
    };
    let script = vec![
        Step::Send(hello()),
        Step::Send(report(6, 2)),
        Step::Send(report(7, 2)), // abandons the incomplete report 6
        Step::Send(chunk(1, 2)),
        Step::Send(chunk(0, 1)),
        Step::Answer(json!({"pong": true})),
        Step::Hold,
    ];
    let (_dir, path) = fake_agent(vec![script]);
    let mut h = client(path, Duration::from_secs(30));
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    let AgentEvent::Report(r) = next_event(&mut h, 5).await else {
        panic!("no report")
    };
    assert_eq!(r.seq, 7);
    let names: Vec<&str> = r.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["t1", "t2"], "chunks are ordered by index");
    assert_eq!(r.tasks[0].where_.as_deref(), Some("a.py:1"));
    assert_eq!(h.requester().stats().incomplete_reports, 1);
    let res = h
        .requester()
        .request("ping", json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(res, json!({"pong": true}));
}

#[tokio::test]
async fn wrong_protocol_version_is_not_found_with_a_message() {
    let k = own_key();
    let v2 = format!(
        "{}\n",
        json!({"type":"hello","protocol":2,"target":{"pid":k.pid,"start_time":k.start_time}})
    );
    let (_dir, path) = fake_agent(vec![vec![Step::Send(v2), Step::Hold]]);
    let mut h = client(path, Duration::from_secs(30));
    match next_event(&mut h, 5).await {
        AgentEvent::NotFound(m) => assert!(m.contains("protocol v2"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn amplifying_chunk(seq: u64, index: u32, count: u32, rows: u64) -> String {
    // One ~900 KB string referenced by every row: decoded naively it would be copied per row.
    let tasks: Vec<_> = (0..rows)
        .map(|i| json!([i, 1, "t", "pending", 0, 0, null]))
        .collect();
    format!(
        "{}\n",
        json!({"type":"report_chunk","seq":seq,"index":index,"count":count,
               "strings":["c".repeat(900_000)],"tasks":tasks})
    )
}

fn client_max_tasks(path: PathBuf, max_tasks: u64) -> AgentHandle {
    let me = own_key().pid;
    let mut opts = ClientOptions::new(Duration::from_millis(100));
    opts.socket = Some(path);
    opts.retry = Duration::from_millis(50);
    opts.max_tasks = max_tasks;
    spawn_client_with(own_key(), Arc::new(move |p| p == me), opts)
}

#[tokio::test]
async fn shared_long_strings_are_capped_not_copied_per_row() {
    let script = vec![
        Step::Send(hello()),
        Step::Send(report(1, 1)),
        Step::Send(amplifying_chunk(1, 0, 1, 2000)),
        Step::Hold,
    ];
    let (_dir, path) = fake_agent(vec![script]);
    let mut h = client_max_tasks(path, 5000);
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    let AgentEvent::Report(r) = next_event(&mut h, 5).await else {
        panic!("no report")
    };
    assert_eq!(r.tasks.len(), 2000);
    let bytes: usize = r
        .tasks
        .iter()
        .filter_map(|t| t.coro.as_ref())
        .map(String::len)
        .sum();
    assert!(bytes <= 40 << 20, "decoded {bytes} bytes of strings");
    assert!(
        r.tasks
            .iter()
            .all(|t| t.coro.as_ref().is_some_and(|c| c.len() <= 4096))
    );
}

#[tokio::test]
async fn more_rows_than_max_tasks_drops_the_connection() {
    let bad = vec![
        Step::Send(hello()),
        Step::Send(report(1, 2)),
        Step::Send(amplifying_chunk(1, 0, 2, 80)),
        Step::Send(amplifying_chunk(1, 1, 2, 80)),
        Step::Hold,
    ];
    let (_dir, path) = fake_agent(vec![bad, good()]);
    let mut h = client_max_tasks(path, 100);
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    expect_lost(&mut h, "task rows").await;
}

#[tokio::test]
async fn too_many_chunks_for_max_tasks_drops_the_connection() {
    // 100 tasks need one chunk of 500: more than 2*1+1 chunks is garbage.
    let bad = vec![Step::Send(hello()), Step::Send(report(1, 4)), Step::Hold];
    let (_dir, path) = fake_agent(vec![bad, good()]);
    let mut h = client_max_tasks(path, 100);
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    expect_lost(&mut h, "task chunks").await;
}

/// The next event is `Lost` with a reason naming `what`.
async fn expect_lost(h: &mut AgentHandle, what: &str) {
    match next_event(h, 5).await {
        AgentEvent::Lost(reason) => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
}

fn line(v: serde_json::Value) -> Step {
    Step::Send(format!("{v}\n"))
}

#[tokio::test]
async fn deltas_fold_into_full_reports_and_a_gap_asks_for_a_full_one() {
    let row = |id: u64, state: &str| json!([id, 1, format!("t{id}"), state, 0, -1, null]);
    let th = |ident: u64, name: &str| json!({"name": name, "ident": ident, "native_id": 1});
    let script = vec![
        Step::Send(hello()),
        line(
            json!({"type":"report","seq":1,"task_chunks":1,"tasks_listed":2,
                    "threads":[th(10, "MainThread"), th(11, "w")]}),
        ),
        line(
            json!({"type":"report_chunk","seq":1,"index":0,"count":1,"strings":["co"],
                    "tasks":[row(1, "pending"), row(2, "pending")]}),
        ),
        // Report 2 never arrives: delta 3 (based on 2) is refused, a full report asked for.
        line(json!({"type":"report_delta","seq":3,"base":2,"task_chunks":1,"tasks_listed":2})),
        line(
            json!({"type":"report_chunk","seq":3,"index":0,"count":1,"strings":["co"],
                    "tasks":[row(9, "pending")],"removed":[]}),
        ),
        Step::Expect("full_report"),
        line(
            json!({"type":"report","seq":4,"task_chunks":1,"tasks_listed":2,
                    "threads":[th(10, "MainThread"), th(11, "w")]}),
        ),
        line(
            json!({"type":"report_chunk","seq":4,"index":0,"count":1,"strings":["co"],
                    "tasks":[row(1, "pending"), row(2, "pending")]}),
        ),
        line(
            json!({"type":"report_delta","seq":5,"base":4,"task_chunks":1,"tasks_listed":2,
                    "threads":[th(12, "new")],"threads_removed":[11]}),
        ),
        line(
            json!({"type":"report_chunk","seq":5,"index":0,"count":1,"strings":["co"],
                    "tasks":[row(2, "cancelling"), row(3, "pending")],"removed":[1]}),
        ),
        Step::Hold,
    ];
    let (_dir, path) = fake_agent(vec![script]);
    let mut h = client(path, Duration::from_secs(30));
    assert!(matches!(
        next_event(&mut h, 5).await,
        AgentEvent::Connected(_)
    ));
    let mut seqs = Vec::new();
    let last = loop {
        let AgentEvent::Report(r) = next_event(&mut h, 5).await else {
            panic!("expected reports")
        };
        seqs.push(r.seq);
        if r.seq == 5 {
            break r;
        }
    };
    assert_eq!(seqs, [1, 4, 5], "the refused delta 3 is not emitted");
    let rows: Vec<(u64, &str)> = last
        .tasks
        .iter()
        .map(|t| (t.id, t.state.as_str()))
        .collect();
    assert_eq!(rows, [(2, "cancelling"), (3, "pending")]);
    assert_eq!(last.tasks[1].coro.as_deref(), Some("co"));
    let threads: Vec<&str> = last.threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(threads, ["MainThread", "new"]);
    let stats = h.requester().stats();
    assert_eq!((stats.delta_gaps, stats.stray_chunks), (1, 0), "{stats:?}");
}
