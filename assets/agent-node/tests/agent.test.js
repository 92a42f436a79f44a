'use strict';
// The Node.js agent on its own, with the stdlib test runner (`node --test assets/agent-node/tests/`):
// real node targets with the agent preloaded, a plain NDJSON client over its socket.
// Protocol framing and errors, the report's handle rows, close_handles by kind, app phases,
// exit, the blocked loop's stack, and the socket's file modes.

const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const AGENT = path.join(__dirname, '..', 'lifecycle_top_agent.js');

/** A node target running `code` with the agent preloaded; resolves once the socket exists. */
function target(code, t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lt-node-'));
  const sock = path.join(dir, 'agent.sock');
  const child = spawn(process.execPath, ['--require', AGENT, '-e', code], {
    env: Object.assign({}, process.env, { LIFECYCLE_TOP_SOCKET: sock }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  t.after(() => { child.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); });
  return waitFor(() => fs.existsSync(sock), 20000, 'agent socket ' + sock).then(() => ({ child, sock, dir, exited, out: () => out }));
}

function waitFor(cond, ms, what) {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() > until) return reject(new Error('timed out waiting for ' + what));
      setTimeout(tick, 20);
    };
    tick();
  });
}

/** A client: `next(pred)` resolves with the next message matching pred. */
function connect(sock) {
  return new Promise((resolve, reject) => {
    const s = net.connect(sock);
    const msgs = [];
    const waiters = [];
    let buf = '';
    let closed = false;
    const pump = () => {
      for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i];
        const j = msgs.findIndex(w.pred);
        if (j >= 0) { waiters.splice(i--, 1); w.resolve(msgs.splice(j, 1)[0]); }
        else if (closed) { waiters.splice(i--, 1); w.reject(new Error('connection closed; got ' + JSON.stringify(msgs))); }
      }
    };
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        msgs.push(JSON.parse(line));
      }
      pump();
    });
    s.on('close', () => { closed = true; pump(); });
    s.on('error', reject);
    s.on('connect', () => {
      let id = 0;
      const c = {
        sock: s,
        send: (o) => s.write(typeof o === 'string' ? o : JSON.stringify(o) + '\n'),
        next: (pred, ms = 15000) => new Promise((res, rej) => {
          const timer = setTimeout(() => rej(new Error('no message within ' + ms + ' ms; got ' + JSON.stringify(msgs))), ms);
          waiters.push({ pred, resolve: (m) => { clearTimeout(timer); res(m); }, reject: (e) => { clearTimeout(timer); rej(e); } });
          pump();
        }),
        request: (method, params) => {
          const rid = ++id;
          c.send({ type: 'request', id: rid, method, params: params || {} });
          return c.next((m) => m.type === 'response' && m.id === rid);
        },
        close: () => s.destroy(),
      };
      resolve(c);
    });
  });
}

async function session(sock, t) {
  const c = await connect(sock);
  t.after(() => c.close());
  const hello = await c.next((m) => m.type === 'hello');
  c.send({ type: 'hello', protocol: 1, client: { name: 'test', version: '0' } });
  return { c, hello };
}

/** The next complete report (header + its chunks' task rows). */
async function report(c) {
  const r = await c.next((m) => m.type === 'report');
  r.rows = [];
  for (let i = 0; i < r.task_chunks; i++) {
    const ch = await c.next((m) => m.type === 'report_chunk' && m.seq === r.seq);
    for (const row of ch.tasks) r.rows.push({ name: row[2], label: ch.strings[row[4]], where: ch.strings[row[5]] });
  }
  return r;
}

/** The first report once the server listens (`listen` on a host name resolves it first). */
async function listening(c) {
  for (;;) {
    const r = await report(c);
    if (r.handles.some((h) => h.kind === 'TCPServerWrap')) return r;
  }
}

test('hello, then a report with each ref\'ed handle as a task row', async (t) => {
  const tg = await target('setInterval(function poll() {}, 1000); require("net").createServer().listen(0, "127.0.0.1");', t);
  const { c, hello } = await session(tg.sock, t);
  assert.strictEqual(hello.protocol, 1);
  assert.strictEqual(hello.agent.kind, 'node');
  assert.strictEqual(hello.runtime.name, 'node');
  assert.strictEqual(hello.target.pid, tg.child.pid);
  assert.ok(hello.capabilities.includes('close_handles'));
  assert.strictEqual((fs.statSync(tg.sock).mode & 0o777), 0o600);
  c.send({ type: 'subscribe', interval_ms: 100, max_tasks: 100 });
  const r = await listening(c);
  const kinds = r.handles.filter((h) => h.ref).map((h) => h.kind).sort();
  assert.deepStrictEqual(kinds, ['TCPServerWrap', 'Timeout']);
  assert.strictEqual(r.loops[0].tasks_total, 2);
  assert.strictEqual(r.loops[0].blocked, false);
  const poll = r.rows.find((x) => x.name === 'Timeout (poll)');
  assert.ok(poll, JSON.stringify(r.rows));
  assert.strictEqual(poll.label, 'setInterval 1000 ms');
  assert.strictEqual(poll.where, '[eval]:1');
  assert.strictEqual(r.threads[0].main, true);
  assert.ok(r.threads.some((x) => x.agent && x.daemon));
});

test('close_handles by kind: servers then timers, and the loop empties', async (t) => {
  const tg = await target('setInterval(function poll() {}, 1000); require("net").createServer().listen(0, "127.0.0.1");', t);
  const { c } = await session(tg.sock, t);
  c.send({ type: 'subscribe', interval_ms: 100 });
  await listening(c);
  c.send({ type: 'subscribe', interval_ms: 0 });
  const a = await c.request('close_handles', { kinds: ['server'], timeout_ms: 2000 });
  assert.strictEqual(a.ok, true, JSON.stringify(a));
  assert.deepStrictEqual(a.result.handles.map((h) => [h.kind, h.result]), [['TCPServerWrap', 'closed']]);
  assert.deepStrictEqual(a.result.remaining, []);
  assert.strictEqual(a.result.loop_empty, false);
  const b = await c.request('close_handles', { kinds: ['timer'], timeout_ms: 2000 });
  assert.deepStrictEqual(b.result.handles.map((h) => [h.name, h.result]), [['Timeout (poll)', 'cleared']]);
  assert.strictEqual(b.result.loop_empty, true);
  await c.next((m) => m.type === 'exiting');
  const how = await tg.exited;
  assert.strictEqual(how.code, 0);
});

test('registered phases run in order, then exit', async (t) => {
  const code = `
    const agent = globalThis[Symbol.for('lifecycle-top.agent')];
    agent.registerPhase('flush', () => { console.log('flushed'); return 3; }, 'flush writes');
    agent.registerPhase('later', () => new Promise((r) => setTimeout(() => r('ok'), 50)));
    setInterval(() => {}, 1000);`;
  const tg = await target(code, t);
  const { c, hello } = await session(tg.sock, t);
  assert.deepStrictEqual(hello.phases.map((p) => p.name), ['flush', 'later']);
  const r = await c.request('run_phase', { name: '*', timeout_ms: 3000 });
  assert.strictEqual(r.ok, true, JSON.stringify(r));
  assert.deepStrictEqual(r.result.phases.map((p) => [p.name, p.result]), [['flush', '3'], ['later', 'ok']]);
  const missing = await c.request('run_phase', { name: 'nope' });
  assert.strictEqual(missing.error.code, 'not_found');
  const e = await c.request('exit', { mode: 'exit', code: 7 });
  assert.deepStrictEqual(e.result, { mode: 'exit', code: 7 });
  const how = await tg.exited;
  assert.strictEqual(how.code, 7);
  assert.match(tg.out(), /flushed/);
});

test('a blocked loop: reports say blocked with the JS line, requests answer blocked', async (t) => {
  const tg = await target('function spin() { for (;;) { Date.now(); } }\nsetTimeout(spin, 10);', t);
  const { c } = await session(tg.sock, t);
  c.send({ type: 'subscribe', interval_ms: 100 });
  let r;
  do { r = await report(c); } while (!r.loops[0].blocked);
  assert.match(r.loops[0].blocked_at, /:1$/);
  assert.ok(r.loops[0].lag_ms >= 100);
  assert.deepStrictEqual(r.handles, []);
  const s = await c.request('stacks', {});
  assert.strictEqual(s.result.loop_blocked, true);
  assert.strictEqual(s.result.runtime, 'node');
  assert.strictEqual(s.result.threads[0].frames[0].function, 'spin');
  const x = await c.request('close_handles', { kinds: ['timer'], timeout_ms: 2000 });
  assert.strictEqual(x.error.code, 'blocked');
  assert.match(x.error.message, /blocked at .*:1: the request did not run/);
  assert.strictEqual(x.error.data.stack[0].function, 'spin');
});

test('protocol errors: bad JSON, not an object, unknown method, version mismatch, line cap', async (t) => {
  const tg = await target('setInterval(() => {}, 1000);', t);
  const { c } = await session(tg.sock, t);
  c.send('{nope\n');
  assert.strictEqual((await c.next((m) => m.type === 'error')).code, 'bad_json');
  c.send('[1]\n');
  assert.strictEqual((await c.next((m) => m.type === 'error')).code, 'bad_message');
  const u = await c.request('dance');
  assert.strictEqual(u.error.code, 'unknown_method');
  const p = await c.request('ping');
  assert.deepStrictEqual(p.result, { pong: true, pid: tg.child.pid });
  c.send({ type: 'nonsense', x: 1 }); // unknown types are ignored
  assert.strictEqual((await c.request('ping')).ok, true);
  c.send('x'.repeat((1 << 20) + 10));
  assert.strictEqual((await c.next((m) => m.type === 'error')).code, 'line_too_long');

  const v = await connect(tg.sock);
  t.after(() => v.close());
  await v.next((m) => m.type === 'hello');
  v.send({ type: 'hello', protocol: 2 });
  const err = await v.next((m) => m.type === 'error');
  assert.strictEqual(err.code, 'version_mismatch');
});

test('a socket directory others can enter is refused (falls back to the pid path)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lt-open-'));
  fs.chmodSync(dir, 0o755);
  const asked = path.join(dir, 'agent.sock');
  const env = Object.assign({}, process.env, { LIFECYCLE_TOP_SOCKET: asked });
  delete env.XDG_RUNTIME_DIR;
  const child = spawn(process.execPath, ['--require', AGENT, '-e', 'setInterval(() => {}, 1000)'], { env, stdio: 'ignore' });
  t.after(() => { child.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); });
  const fallback = '/tmp/lifecycle-top-' + process.getuid() + '/' + child.pid + '.sock';
  await waitFor(() => fs.existsSync(fallback), 20000, fallback);
  assert.strictEqual(fs.existsSync(asked), false);
  assert.strictEqual(fs.statSync(path.dirname(fallback)).mode & 0o777, 0o700);
});

test('the app sees the timers it had: promisify(setTimeout), timers/promises, return values', async (t) => {
  const code = `
    const util = require('util');
    const t = setTimeout(() => {}, 1); const ok1 = typeof t.ref === 'function' && typeof t.hasRef === 'function';
    util.promisify(setTimeout)(10, 'v').then(async (v) => {
      const w = await require('timers/promises').setTimeout(10, 'w');
      console.log('ok', ok1, v, w);
    });`;
  const child = spawn(process.execPath, ['--require', AGENT, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const [status] = await new Promise((r) => child.once('exit', (...a) => r(a)));
  assert.strictEqual(status, 0);
  assert.match(out, /^ok true v w$/m);
});
