#!/usr/bin/env node
'use strict';
/*
 * Node.js agent overhead (issue 12), two figures:
 *
 * 1. One report with 10,000 active handles (10,000 ref'ed intervals): the main thread's
 *    snapshot time (cost.main_ms: what the app pays, on its own thread), the worker's build
 *    time (cost.build_ms), client-side time from the report header to its last chunk, and
 *    bytes per report (header + chunks). 20 reports, median and max.
 * 2. HTTP ping-pong throughput: a target http server answering "pong", a load process (no
 *    agent) sending keep-alive requests on 8 connections for --seconds. Variants, interleaved
 *    round by round to spread machine noise: no agent / agent idle (preloaded, no client) /
 *    agent + a client subscribed every 500 ms / the same with LIFECYCLE_TOP_NODE_ASYNC_HOOKS=1.
 *    Reported: median requests/s per variant, its spread (min..max), and the median's
 *    overhead against "no agent" (goal < 2 %).
 *
 * Run: node bench/node_agent_overhead.js [--rounds 5] [--seconds 3]
 */
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const AGENT = path.join(__dirname, '..', 'assets', 'agent-node', 'lifecycle_top_agent.js');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf('--' + name); return i >= 0 ? Number(args[i + 1]) : def; };
const ROUNDS = opt('rounds', 5);
const SECONDS = opt('seconds', 3);

function start(code, env) {
  const child = spawn(process.execPath, ['-e', code], { env: Object.assign({}, process.env, env), stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { resolve({ child, line: buf.slice(0, nl) }); child.stdout.removeAllListeners('data'); child.stdout.resume(); }
    });
  });
}

function waitSocket(p) {
  return new Promise((resolve) => {
    const tick = () => (fs.existsSync(p) ? resolve() : setTimeout(tick, 20));
    tick();
  });
}

function client(sock, onMsg) {
  const s = net.connect(sock);
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onMsg(JSON.parse(line), Buffer.byteLength(line) + 1);
    }
  });
  s.on('error', () => {});
  return s;
}

const median = (a) => { const b = a.slice().sort((x, y) => x - y); return b[Math.floor(b.length / 2)]; };
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'lt-bench-'));

async function reportCost() {
  const dir = tmp();
  const sock = path.join(dir, 'a.sock');
  const { child } = await start(
    'for (let i = 0; i < 10000; i++) setInterval(function poll() {}, 3600e3); console.log("ready");',
    { NODE_OPTIONS: '--require ' + JSON.stringify(AGENT), LIFECYCLE_TOP_SOCKET: sock },
  );
  await waitSocket(sock);
  const rows = [];
  await new Promise((resolve) => {
    let cur = null;
    const s = client(sock, (m, bytes) => {
      if (m.type === 'hello') {
        s.write('{"type":"hello","protocol":1}\n{"type":"subscribe","interval_ms":100,"max_tasks":20000}\n');
      } else if (m.type === 'report') {
        cur = { t0: process.hrtime.bigint(), left: m.task_chunks, bytes, tasks: m.tasks_total, main_ms: m.cost.main_ms, build_ms: m.cost.build_ms };
      } else if (m.type === 'report_chunk' && cur) {
        cur.bytes += bytes;
        if (--cur.left === 0) {
          cur.client_ms = Number(process.hrtime.bigint() - cur.t0) / 1e6;
          rows.push(cur);
          cur = null;
          if (rows.length >= 21) { s.destroy(); resolve(); }
        }
      }
    });
  });
  child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  const r = rows.slice(1); // the first report also warms up the JIT
  const col = (k) => r.map((x) => x[k]);
  console.log('report with %d active handles (%d reports):', r[0].tasks, r.length);
  for (const k of ['main_ms', 'build_ms', 'client_ms']) {
    console.log('  %s: median %s ms, max %s ms', k.padEnd(9), median(col(k)).toFixed(2), Math.max(...col(k)).toFixed(2));
  }
  console.log('  bytes:     median %d (%s KiB)', median(col('bytes')), (median(col('bytes')) / 1024).toFixed(0));
}

const SERVER = 'const http = require("http"); const s = http.createServer((q, r) => r.end("pong")); s.listen(0, "127.0.0.1", () => console.log("ready " + s.address().port));';
const LOAD = `
const http = require('http');
const port = +process.argv[1], ms = +process.argv[2] * 1000;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
let n = 0, stop = false;
const t0 = Date.now();
setTimeout(() => { stop = true; }, ms);
let live = 8;
function one() {
  if (stop) { if (--live === 0) { console.log(JSON.stringify({ n, s: (Date.now() - t0) / 1000 })); process.exit(0); } return; }
  http.get({ host: '127.0.0.1', port, path: '/', agent }, (r) => { r.resume(); r.on('end', () => { n++; one(); }); }).on('error', (e) => { console.error(e); process.exit(1); });
}
for (let i = 0; i < 8; i++) one();
console.log('ready');`;

async function pingPong(variant) {
  const dir = tmp();
  const sock = path.join(dir, 'a.sock');
  const env = { LIFECYCLE_TOP_SOCKET: sock };
  if (variant !== 'no agent') env.NODE_OPTIONS = '--require ' + JSON.stringify(AGENT);
  else env.NODE_OPTIONS = '';
  if (variant === 'agent + client + async_hooks') env.LIFECYCLE_TOP_NODE_ASYNC_HOOKS = '1';
  const { child, line } = await start(SERVER, env);
  const port = line.split(' ')[1];
  let s = null;
  if (variant.startsWith('agent + client')) {
    await waitSocket(sock);
    s = client(sock, (m) => {
      if (m.type === 'hello') s.write('{"type":"hello","protocol":1}\n{"type":"subscribe","interval_ms":500,"max_tasks":20000}\n');
    });
  }
  const load = spawn(process.execPath, ['-e', LOAD, port, String(SECONDS)], { env: Object.assign({}, process.env, { NODE_OPTIONS: '' }), stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  load.stdout.on('data', (d) => { out += d; });
  await new Promise((r) => load.on('exit', r));
  if (s) s.destroy();
  child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  const res = JSON.parse(out.trim().split('\n').pop());
  return res.n / res.s;
}

async function main() {
  await reportCost();
  const variants = ['no agent', 'agent idle', 'agent + client', 'agent + client + async_hooks'];
  const got = Object.fromEntries(variants.map((v) => [v, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order every round so no variant always runs first (warm-up, thermal).
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length];
      got[v].push(await pingPong(v));
    }
  }
  console.log('HTTP ping-pong, 8 keep-alive connections, %d s x %d interleaved rounds (requests/s):', SECONDS, ROUNDS);
  const base = median(got['no agent']);
  for (const v of variants) {
    const m = median(got[v]);
    const over = ((base - m) / base) * 100;
    console.log('  %s median %s  spread %s..%s  overhead %s%%', v.padEnd(30), m.toFixed(0), Math.min(...got[v]).toFixed(0), Math.max(...got[v]).toFixed(0), over.toFixed(1));
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
