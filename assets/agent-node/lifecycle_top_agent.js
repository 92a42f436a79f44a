'use strict';
/*
 * lifecycle-top Node.js agent, protocol v1 (docs/protocol.md in the lifecycle-top repo).
 *
 * What it owns: telling lifecycle-top what keeps this process's event loop alive (ref'ed
 * handles and requests with the line that created them, worker threads, child processes),
 * whether the loop is blocked (and the JS stack it is blocked in), and acting on request
 * (close or unref handles by kind, run app-registered phases, process.exit).
 *
 * Load it with no code change:  NODE_OPTIONS="--require /path/lifecycle_top_agent.js"
 * (lifecycle-top -- node app.js does this), or by hand:  require('/path/lifecycle_top_agent.js')
 * (it starts itself when required; `install()` is idempotent).  Stdlib only, Node 16+.
 *
 * Layout: the socket server runs in a worker thread of its own (unref'ed: it never keeps
 * the process alive), so it answers while the main event loop is blocked.  It asks the
 * main thread for a snapshot over a MessagePort; a main thread that does not answer within
 * 100 ms is reported as a blocked loop, and the worker reads the main thread's JS stack
 * with the inspector (Session.connectToMainThread + Debugger.pause: a V8 interrupt, so it
 * works inside a busy `while`).  In other worker threads the preload only tells the agent
 * its kernel tid (BroadcastChannel) and does nothing else.
 *
 * Node cannot read SO_PEERCRED: the 0700 directory and the 0600 socket are this side's
 * guard (lifecycle-top still checks the peer pid on its side).
 *
 * Creation sites come from wrapping setTimeout/setInterval, net.Server#listen,
 * net.Socket#connect, ChildProcess#spawn and the Worker constructor (one captured,
 * lazily formatted stack per creation).  LIFECYCLE_TOP_NODE_ASYNC_HOOKS=1 adds async_hooks
 * for every other resource (costly on promise-heavy code: see bench/node_agent_overhead.js).
 * Nothing here may break the host: every hook swallows its own errors.
 */

const KEY = Symbol.for('lifecycle-top.agent');
const PROTOCOL_VERSION = 1;
const AGENT_VERSION = '0.1.0';
const MAX_LINE = 1 << 20;
const CHUNK_TASKS = 500;
const MAX_INFLIGHT = 4;
const PROBE_TIMEOUT_MS = 100;
const CHANNEL = 'lifecycle-top-agent';

const wt = require('worker_threads');

function debug(msg) {
  if (process.env.LIFECYCLE_TOP_AGENT_DEBUG) {
    try { require('fs').writeSync(2, 'lifecycle-top agent: ' + msg + '\n'); } catch (_) { /* ignore */ }
  }
}

function threadTid() {
  // Sync fs runs on the calling thread, so /proc/thread-self is this thread.
  try {
    const stat = require('fs').readFileSync('/proc/thread-self/stat', 'utf8');
    return parseInt(stat, 10) || null;
  } catch (_) {
    return null;
  }
}

function selfStartTime() {
  try {
    const data = require('fs').readFileSync('/proc/self/stat', 'utf8');
    const rest = data.slice(data.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]) || 0;
  } catch (_) {
    return 0;
  }
}

function defaultPaths(pid) {
  const out = [];
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg) out.push(require('path').join(xdg, 'lifecycle-top', pid + '.sock'));
  out.push('/tmp/lifecycle-top-' + process.getuid() + '/' + pid + '.sock');
  return out;
}

/** Where this process's agent listens (first candidate; the server falls back down the list). */
function socketPath(pid) {
  pid = pid || process.pid;
  return process.env.LIFECYCLE_TOP_SOCKET || defaultPaths(pid)[0];
}

// ============================================================================ main thread

const state = {
  started: false,
  worker: null,
  socket: null,
  phases: new Map(),
  timers: new Set(), // Timeout objects created through the wrapped timer functions
  workers: new Map(), // Worker -> {id, threadId, name, site, ref, alive, exitCode}
  children: [], // {cp, site, args, created}
  sites: new WeakMap(), // resource -> captured stack holder
  ids: new WeakMap(),
  nextId: 1,
  asyncHooks: false,
  warnings: [],
  warningsTotal: 0,
  orig: {},
  closing: new Set(), // answers of close requests still waiting for handles to go
};

function idOf(obj) {
  let id = state.ids.get(obj);
  if (id === undefined) {
    id = state.nextId++;
    state.ids.set(obj, id);
  }
  return id;
}

function capture(skip) {
  const holder = {};
  const lim = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = 12;
    Error.captureStackTrace(holder, skip);
  } catch (_) { /* ignore */ } finally {
    Error.stackTraceLimit = lim;
  }
  return holder;
}

const SELF = __filename;

function userFrame(stack) {
  const path = require('path');
  for (const line of String(stack || '').split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):\d+\)?\s*$/.exec(line.trim());
    if (!m) continue;
    let file = m[1].replace(/^file:\/\//, '');
    if (file === SELF || file.startsWith('node:') || file.startsWith('internal/') || !file.includes('/') && !file.includes('.') && !file.startsWith('[')) continue;
    if (path.isAbsolute(file)) {
      const rel = path.relative(process.cwd(), file);
      if (!rel.startsWith('..')) file = rel;
    }
    return file + ':' + m[2];
  }
  return null;
}

function holderSite(h) {
  if (!h) return null;
  if (h.site === undefined) {
    try { h.site = userFrame(h.stack); } catch (_) { h.site = null; }
  }
  return h.site;
}

function siteOf(obj) {
  let h = state.sites.get(obj);
  if (!h && obj && obj._handle) h = state.sites.get(obj._handle);
  if (!h) return null;
  if (h.site === undefined) {
    try { h.site = userFrame(h.stack); } catch (_) { h.site = null; }
  }
  return h.site;
}

function remember(obj, skip) {
  try { if (obj && typeof obj === 'object') state.sites.set(obj, capture(skip)); } catch (_) { /* ignore */ }
}

function sweepTimers() {
  for (const t of state.timers) if (t._destroyed) state.timers.delete(t);
}

let timerSweepAt = 1024;
function wrapTimers() {
  const timers = require('timers');
  for (const name of ['setTimeout', 'setInterval']) {
    const orig = globalThis[name];
    state.orig[name] = orig;
    const wrapped = {
      [name](...args) {
        const t = orig.apply(this, args);
        try {
          if (t && typeof t === 'object') {
            remember(t, wrapped);
            state.timers.add(t);
            if (state.timers.size >= timerSweepAt) {
              sweepTimers();
              timerSweepAt = Math.max(1024, state.timers.size * 2);
            }
          }
        } catch (_) { /* ignore */ }
        return t;
      },
    }[name];
    // Keep what hangs off the original (util.promisify.custom: `promisify(setTimeout)`).
    for (const k of Reflect.ownKeys(orig)) {
      if (k === 'name' || k === 'length' || k === 'prototype') continue;
      try { Object.defineProperty(wrapped, k, Object.getOwnPropertyDescriptor(orig, k)); } catch (_) { /* ignore */ }
    }
    globalThis[name] = wrapped;
    try { timers[name] = wrapped; } catch (_) { /* ignore */ }
  }
}

function wrapMethod(proto, name, after) {
  const orig = proto[name];
  if (typeof orig !== 'function') return;
  const wrapped = function (...args) {
    const holder = capture(wrapped);
    const r = orig.apply(this, args);
    try { after(this, holder, args); } catch (_) { /* ignore */ }
    return r;
  };
  Object.defineProperty(wrapped, 'name', { value: name });
  proto[name] = wrapped;
}

function wrapNet() {
  const net = require('net');
  wrapMethod(net.Server.prototype, 'listen', (srv, holder) => { state.sites.set(srv, holder); });
  wrapMethod(net.Socket.prototype, 'connect', (sock, holder) => {
    if (!state.sites.has(sock)) state.sites.set(sock, holder);
  });
}

function wrapChildProcess() {
  const cp = require('child_process');
  wrapMethod(cp.ChildProcess.prototype, 'spawn', (child, holder, args) => {
    state.sites.set(child, holder);
    const opts = args[0] || {};
    const argv = Array.isArray(opts.args) ? opts.args : [opts.file];
    state.children.push({ cp: child, holder, args: JSON.stringify(argv).slice(0, 300), created: Date.now() });
    if (state.children.length > 256) state.children.splice(0, state.children.length - 256);
  });
}

function wrapWorker() {
  const Orig = wt.Worker;
  state.orig.Worker = Orig;
  class Worker extends Orig {
    constructor(...args) {
      super(...args);
      try {
        const holder = capture(Worker);
        const opts = args[1] || {};
        const info = { threadId: this.threadId, name: opts.name || '', holder, ref: true, alive: true, exitCode: null };
        state.workers.set(this, info);
        this.once('exit', (code) => { info.alive = false; info.exitCode = code; });
        const ref = this.ref, unref = this.unref;
        this.ref = function () { info.ref = true; return ref.call(this); };
        this.unref = function () { info.ref = false; return unref.call(this); };
      } catch (_) { /* ignore */ }
    }
  }
  try { wt.Worker = Worker; } catch (_) { /* ignore */ }
}

function enableAsyncHooks() {
  try {
    const ah = require('async_hooks');
    ah.createHook({
      init(_id, type, _trigger, resource) {
        if (type === 'PROMISE' || !resource || typeof resource !== 'object') return;
        if (!state.sites.has(resource)) state.sites.set(resource, capture(this.init));
      },
    }).enable();
    state.asyncHooks = true;
  } catch (e) {
    debug('async_hooks not enabled: ' + e);
  }
}

/** `Error: message` for an Error, the value's text for anything else thrown. */
function errorText(err) {
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    return (err.name || 'Error') + ': ' + err.message;
  }
  try { return 'thrown ' + typeof err + ': ' + String(err); } catch (_) { return 'thrown ' + typeof err; }
}

function recordWarning(kind, message, detail, excType) {
  state.warningsTotal += 1;
  const w = {
    seq: state.warningsTotal, at_unix_ms: Date.now(), kind,
    message: String(message).replace(/\s+/g, ' ').slice(0, 300),
    detail: String(detail || message).slice(0, 4096), exc_type: excType || null,
    thread: 'main', native_id: process.pid, task: null,
  };
  state.warnings.push(w);
  if (state.warnings.length > 100) state.warnings.shift();
  if (state.worker) {
    try { state.worker.postMessage({ op: 'push', line: { type: 'warning', warning: w } }); } catch (_) { /* ignore */ }
  }
}

// ---------------------------------------------------------------- what keeps the loop alive

function handleKind(obj) {
  const h = obj && obj._handle;
  const cname = (h && h.constructor && h.constructor.name) || '';
  if (obj instanceof require('net').Server) return cname === 'Pipe' ? 'PipeServerWrap' : 'TCPServerWrap';
  if (obj instanceof require('child_process').ChildProcess) return 'ProcessWrap';
  if (obj instanceof require('net').Socket) {
    if (cname === 'TCP') return 'TCPSocketWrap';
    if (cname === 'Pipe') return 'PipeWrap';
    if (cname === 'TTY') return 'TTYWrap';
  }
  return cname ? cname + 'Wrap' : (obj && obj.constructor && obj.constructor.name) || '?';
}

function group(kind) {
  if (kind === 'Timeout' || kind === 'Immediate') return 'timer';
  if (/ServerWrap$/.test(kind)) return 'server';
  if (kind === 'TCPSocketWrap' || kind === 'PipeWrap' || kind === 'TTYWrap' || kind === 'UDPWrap') return 'socket';
  if (kind === 'ProcessWrap') return 'child';
  if (kind === 'Worker') return 'worker';
  return 'other';
}

function hasRef(obj) {
  try {
    // net.Server/Socket and ChildProcess drop `_handle` when closed: a closing handle that
    // libuv still lists until its close callback no longer keeps the loop alive.
    if (obj && Object.prototype.hasOwnProperty.call(obj, '_handle') && !obj._handle) return false;
    if (obj && typeof obj.hasRef === 'function') return obj.hasRef();
    if (obj && obj._handle && typeof obj._handle.hasRef === 'function') return obj._handle.hasRef();
  } catch (_) { /* ignore */ }
  return true;
}

/**
 * stdout/stderr pipes and TTYs are ref'ed libuv handles but only active while a write is
 * pending (libuv's loop-alive check counts active handles); stdin only while it is read.
 * `getActiveResourcesInfo()` lists them anyway, so they are left out here.
 */
function idleStdio(obj) {
  try {
    if (obj === process.stdout || obj === process.stderr) return !obj.writableLength;
    if (obj === process.stdin) return !(obj._handle && obj._handle.reading);
  } catch (_) { /* ignore */ }
  return false;
}

function fnName(fn) {
  return (fn && typeof fn === 'function' && fn.name) || '';
}

function addr(a) {
  if (!a) return '';
  if (typeof a === 'string') return a;
  return (a.family === 'IPv6' ? '[' + a.address + ']' : a.address) + ':' + a.port;
}

function describe(obj, kind) {
  try {
    if (kind === 'Timeout') {
      const how = obj._repeat ? 'setInterval' : 'setTimeout';
      return how + ' ' + obj._idleTimeout + ' ms';
    }
    if (/ServerWrap$/.test(kind)) return 'listening on ' + addr(obj.address());
    if (kind === 'TCPSocketWrap') {
      const peer = obj.remoteAddress ? obj.remoteAddress + ':' + obj.remotePort : '?';
      return (obj.server ? 'connection from ' : 'connected to ') + peer;
    }
    if (kind === 'ProcessWrap') return 'child pid ' + obj.pid + ' (' + (obj.spawnfile || '?') + ')';
    if (obj === process.stdin) return 'process.stdin';
  } catch (_) { /* ignore */ }
  return '';
}

function handleEntry(obj, kind, extra) {
  const e = Object.assign({
    id: idOf(obj), kind, group: group(kind), ref: true,
    name: kind, detail: describe(obj, kind), site: siteOf(obj),
  }, extra || {});
  if (kind === 'Timeout') {
    const cb = fnName(obj._onTimeout);
    if (cb) e.name = kind + ' (' + cb + ')';
  }
  const info = kind === 'Worker' ? state.workers.get(obj) : null;
  if (info) {
    if (info.name) e.name = kind + ' (' + info.name + ')';
    e.detail = 'worker thread ' + info.threadId;
    e.site = holderSite(info.holder);
  }
  if (!e.site && kind === 'TCPSocketWrap' && obj.server) {
    const s = siteOf(obj.server);
    if (s) e.site = s + ' (its server)';
  }
  return e;
}

/** Every live thing this thread knows of that keeps (or could keep) the loop alive. */
function collect() {
  const t0 = process.hrtime.bigint();
  const out = collectNow();
  out.collect_ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return out;
}

function collectNow() {
  const handles = [];
  const seen = new Set();
  let getHandles = process._getActiveHandles;
  const objs = typeof getHandles === 'function' ? getHandles.call(process) : [];
  const idle = {}; // ref'ed but inactive stdio handles, by kind: the runtime counts them too
  for (const obj of objs) {
    if (!obj || seen.has(obj)) continue;
    seen.add(obj);
    const kind = handleKind(obj);
    if (idleStdio(obj)) {
      if (hasRef(obj)) idle[kind] = (idle[kind] || 0) + 1;
      continue;
    }
    handles.push(handleEntry(obj, kind, { ref: hasRef(obj) }));
  }
  sweepTimers();
  for (const t of state.timers) {
    if (t._destroyed) continue;
    handles.push(handleEntry(t, 'Timeout', { ref: hasRef(t) }));
  }
  for (const [w, info] of state.workers) {
    if (!info.alive) continue;
    handles.push(handleEntry(w, 'Worker', { ref: info.ref }));
  }
  const getReqs = process._getActiveRequests;
  const reqs = typeof getReqs === 'function' ? getReqs.call(process) : [];
  for (const r of reqs) {
    const kind = (r && r.constructor && r.constructor.name) || 'Request';
    handles.push(handleEntry(r, kind, { request: true }));
  }
  // Reconcile with the runtime's own count of what keeps the loop alive: kinds it counts
  // that no object above explains are listed without a site.
  let resources = [];
  try { resources = typeof process.getActiveResourcesInfo === 'function' ? process.getActiveResourcesInfo() : []; } catch (_) { /* ignore */ }
  const counted = {};
  for (const k of resources) counted[k] = (counted[k] || 0) + 1;
  const listed = Object.assign({}, idle);
  for (const h of handles) if (h.ref) listed[h.kind] = (listed[h.kind] || 0) + 1;
  for (const k of Object.keys(counted)) {
    for (let i = listed[k] || 0; i < counted[k]; i++) {
      handles.push({ id: 0, kind: k, group: group(k), ref: true, name: k, detail: 'not traced', site: null });
    }
  }
  const workers = [];
  for (const [, info] of state.workers) {
    workers.push({
      threadId: info.threadId, name: info.name, ref: info.ref, alive: info.alive,
      site: holderSite(info.holder),
    });
  }
  const subprocesses = state.children.map((c) => ({
    pid: c.cp.pid || 0, args: c.args,
    site: holderSite(c.holder),
    via: 'child_process', created_unix_ms: c.created,
    returncode: c.cp.exitCode === null || c.cp.exitCode === undefined ? null : c.cp.exitCode,
    alive: c.cp.exitCode === null && c.cp.signalCode === null && !!c.cp.pid,
  }));
  const phases = [];
  for (const [name, p] of state.phases) phases.push({ name, description: p.description });
  return { handles, workers, subprocesses, phases, resources: resources.length, warnings: state.warnings.slice(), warnings_total: state.warningsTotal };
}

// ---------------------------------------------------------------- actions on the main thread

function objectsOf(groups, ids) {
  const out = [];
  const want = (g) => groups.includes('all') || groups.includes(g);
  const objs = typeof process._getActiveHandles === 'function' ? process._getActiveHandles() : [];
  for (const o of objs) {
    const kind = handleKind(o);
    if (want(group(kind)) && hasRef(o) && !idleStdio(o)) out.push([o, kind]);
  }
  for (const t of state.timers) if (!t._destroyed && want('timer') && hasRef(t)) out.push([t, 'Timeout']);
  for (const [w, info] of state.workers) if (info.alive && info.ref && want('worker')) out.push([w, 'Worker']);
  return ids && ids.length ? out.filter(([o]) => ids.includes(idOf(o))) : out;
}

function closeOne(obj, kind, mode) {
  const g = group(kind);
  if (mode === 'unref' || g === 'child') {
    if (typeof obj.unref !== 'function') return ['failed', 'cannot be unref\'ed'];
    obj.unref();
    if (g === 'child' && obj.connected && typeof obj.disconnect === 'function') obj.disconnect();
    return ['unrefed', g === 'child' ? 'the child keeps running (signal it to stop it)' : ''];
  }
  if (g === 'timer') { clearTimeout(obj); return ['cleared', '']; }
  if (g === 'server') {
    obj.close();
    if (typeof obj.closeIdleConnections === 'function') obj.closeIdleConnections();
    return ['closed', ''];
  }
  if (g === 'socket') {
    if (obj === process.stdin) { obj.pause(); if (obj.unref) obj.unref(); return ['unrefed', 'process.stdin paused']; }
    obj.destroy();
    return ['destroyed', ''];
  }
  if (g === 'worker') { obj.terminate(); return ['terminated', '']; }
  if (typeof obj.close === 'function') { obj.close(); return ['closed', '']; }
  if (typeof obj.unref === 'function') { obj.unref(); return ['unrefed', '']; }
  return ['failed', 'no close() or unref()'];
}

function opClose(msg, reply) {
  const groups = Array.isArray(msg.kinds) && msg.kinds.length ? msg.kinds.map(String) : ['all'];
  const mode = msg.mode === 'unref' ? 'unref' : 'close';
  const results = [];
  for (const [obj, kind] of objectsOf(groups, msg.ids)) {
    const e = handleEntry(obj, kind);
    let r;
    try { r = closeOne(obj, kind, mode); } catch (err) { r = ['failed', String(err && err.message || err)]; }
    results.push({ id: e.id, kind, name: e.name, site: e.site, detail: r[1] || e.detail, result: r[0] });
  }
  const deadline = Date.now() + Math.min(2000, Math.max(0, msg.wait_ms || 0));
  const check = () => {
    const all = collect().handles.filter((h) => h.ref);
    const left = all.filter((h) => (groups.includes('all') || groups.includes(h.group)) && (h.group !== 'child' || mode !== 'close'));
    const pending = left.filter((h) => !h.request);
    if (pending.length && Date.now() < deadline) {
      const t = state.orig.setTimeout(check, 10);
      if (t && t.unref) t.unref();
      return;
    }
    state.closing.delete(finish);
    // Nothing ref'ed at all: the loop ends and the process exits right after this answer.
    reply({ kinds: groups, mode, handles: results, remaining: pending, loop_empty: all.length === 0 });
  };
  // Closing the last handle ends the process before a timer could check: the exit handler
  // answers then (nothing remains once the process exits).
  const finish = () => reply({ kinds: groups, mode, handles: results, remaining: [], loop_empty: true });
  state.closing.add(finish);
  setImmediate(check);
}

function opPhase(msg, reply) {
  const names = msg.name === '*' ? Array.from(state.phases.keys()) : [String(msg.name)];
  const ran = [];
  const t0 = Date.now();
  const next = (i) => {
    if (i >= names.length) {
      reply({ name: msg.name, result: msg.name === '*' && !names.length ? 'no phases registered' : 'ok', phases: ran, duration_ms: Date.now() - t0 });
      return;
    }
    const p = state.phases.get(names[i]);
    if (!p) { reply(null, { code: 'not_found', message: 'no phase "' + names[i] + '" registered (registerPhase)' }); return; }
    const started = Date.now();
    let v;
    try { v = p.fn(); } catch (e) { reply(null, { code: 'phase_failed', message: 'phase "' + names[i] + '" threw: ' + (e && e.stack || e) }); return; }
    Promise.resolve(v).then(
      (r) => { ran.push({ name: names[i], result: r === undefined ? 'None' : String(r).slice(0, 200), duration_ms: Date.now() - started }); next(i + 1); },
      (e) => reply(null, { code: 'phase_failed', message: 'phase "' + names[i] + '" rejected: ' + (e && e.stack || e) }),
    );
  };
  next(0);
}

function onMainMessage(msg) {
  const reply = (result, error) => {
    try { state.worker.postMessage({ op: 'reply', id: msg.id, result, error }); } catch (_) { /* ignore */ }
  };
  try {
    switch (msg.op) {
      case 'snap': reply(collect()); break;
      case 'close': opClose(msg, reply); break;
      case 'phase': opPhase(msg, reply); break;
      case 'exit': {
        const code = Number(msg.code) || 0;
        reply({ mode: msg.mode || 'exit', code });
        const t = state.orig.setTimeout(() => {
          if (msg.mode === 'interrupt') process.kill(process.pid, 'SIGINT');
          else process.exit(code);
        }, 200);
        if (t && t.unref) t.unref();
        break;
      }
      default: reply(null, { code: 'unknown_method', message: 'unknown op ' + msg.op });
    }
  } catch (e) {
    reply(null, { code: 'internal', message: String(e && e.stack || e) });
  }
}

/** Start the agent (idempotent). Returns the socket path it tries first, or null. */
function install() {
  if (state.started) return state.socket;
  if (!wt.isMainThread) return null;
  try {
    state.started = true;
    state.socket = socketPath();
    if (process.env.LIFECYCLE_TOP_NODE_ASYNC_HOOKS === '1') enableAsyncHooks();
    wrapTimers();
    wrapNet();
    wrapChildProcess();
    wrapWorker();
    try { require('module').syncBuiltinESMExports(); } catch (_) { /* ignore */ }
    // Monitors only: neither changes what Node does (an uncaught exception, or an unhandled
    // rejection in the default `throw` mode of Node 15+, still ends the process; a 'warning'
    // listener does not silence the warning on stderr). A listener on 'unhandledRejection'
    // would, so there is none.
    process.on('uncaughtExceptionMonitor', (err, origin) => {
      const text = errorText(err);
      const how = origin === 'unhandledRejection' ? ' (an unhandled promise rejection)' : '';
      recordWarning('unhandled_exception', text + how, err && err.stack, err && err.name);
    });
    process.on('warning', (w) => {
      // `--unhandled-rejections=warn` (or `warn-with-error-code`): the process goes on. Node
      // emits the rejection's reason, then a generic explanation: only the first is kept.
      if (!w || w.name !== 'UnhandledPromiseRejectionWarning') return;
      const msg = String(w.message || '');
      if (msg.startsWith('Unhandled promise rejection.')) return;
      recordWarning('unhandled_rejection', msg.split('\n')[0], msg, null);
    });
    const sab = new SharedArrayBuffer(4);
    const fromEnv = !!process.env.LIFECYCLE_TOP_SOCKET;
    const w = new state.orig.Worker(SELF, {
      workerData: { [CHANNEL]: { role: 'server', pid: process.pid, explicit: fromEnv ? process.env.LIFECYCLE_TOP_SOCKET : null, sab, cwd: process.cwd(), node: process.version, exe: process.execPath } },
      stdin: false,
      name: 'lifecycle-top-agent',
    });
    if (fromEnv) delete process.env.LIFECYCLE_TOP_SOCKET; // children use their own pid path
    state.worker = w;
    w.on('message', onMainMessage);
    w.on('error', (e) => debug('server worker failed: ' + (e && e.stack || e)));
    w.unref();
    process.on('exit', (code) => {
      // Let the server flush what the main thread answered last and say we are exiting:
      // workers are torn down right after the exit handlers.
      try {
        for (const f of state.closing) f();
        state.closing.clear();
        Atomics.store(new Int32Array(sab), 0, 0);
        w.postMessage({ op: 'exiting', code });
        Atomics.wait(new Int32Array(sab), 0, 0, 100);
      } catch (_) { /* ignore */ }
    });
    return state.socket;
  } catch (e) {
    debug('not started: ' + (e && e.stack || e));
    return null;
  }
}

function registerPhase(name, fn, description) {
  state.phases.set(String(name), { fn, description: String(description || '') });
}

// ============================================================================ server worker

function runServer(cfg) {
  const net = require('net');
  const fs = require('fs');
  const path = require('path');
  const inspector = require('inspector');
  const port = wt.parentPort;
  const pid = cfg.pid;
  const startTime = selfStartTime();
  const myTid = threadTid();
  const instance = pid + '-' + startTime + '-' + Date.now().toString(16);
  const tids = new Map(); // threadId -> tid, from the workers' preload
  const conns = new Set();
  const pending = new Map();
  let nextOp = 1;
  let seq = 0;
  let last = null; // the last snapshot the main thread answered
  let probe = null; // {since, promise} of the outstanding snapshot request
  let blockedStack = null; // {at, frames}
  let stackBusy = false;
  let bytesSent = 0, reportsSent = 0, lastReportMs = null;
  const cpu0 = process.cpuUsage();

  const bc = new wt.BroadcastChannel(CHANNEL);
  bc.onmessage = (m) => { if (m && m.data && m.data.threadId) tids.set(m.data.threadId, m.data.tid); };
  if (bc.unref) bc.unref();
  bc.postMessage({ ask: true }); // workers started before this channel existed announce again

  function main(op, extra, timeoutMs) {
    const id = nextOp++;
    return new Promise((resolve) => {
      const t = setTimeout(() => { pending.delete(id); resolve({ timeout: true }); }, timeoutMs);
      pending.set(id, (m) => { clearTimeout(t); resolve(m); });
      port.postMessage(Object.assign({ op, id }, extra));
    });
  }

  port.on('message', (m) => {
    if (m.op === 'reply') {
      const cb = pending.get(m.id);
      if (cb) { pending.delete(m.id); cb(m); }
    } else if (m.op === 'push') {
      for (const c of conns) if (c.subscribed) send(c, m.line);
    } else if (m.op === 'exiting') {
      // After the promise jobs of replies that arrived in the same batch (their responses
      // go out first), then wake the exiting main thread.
      setImmediate(() => {
        for (const c of conns) if (c.subscribed) send(c, { type: 'exiting', at_unix_ms: Date.now(), reason: 'exit', code: m.code });
        try { Atomics.store(new Int32Array(cfg.sab), 0, 1); Atomics.notify(new Int32Array(cfg.sab), 0); } catch (_) { /* ignore */ }
      });
    }
  });

  /** A fresh snapshot, or the last one marked blocked when the main thread does not answer. */
  function snapshot() {
    if (!probe) {
      const since = Date.now();
      const p = main('snap', {}, 3600e3).then((m) => {
        if (probe && probe.promise === p) probe = null;
        last = { data: m.result, at: Date.now(), lag: Date.now() - since };
        blockedStack = null;
        return last;
      });
      probe = { since, promise: p };
    }
    const mine = probe;
    return Promise.race([
      mine.promise.then((l) => ({ snap: l.data, lag: l.lag, blocked: false })),
      new Promise((r) => setTimeout(r, PROBE_TIMEOUT_MS)).then(() => null),
    ]).then((fresh) => fresh || { snap: last && last.data, lag: Date.now() - mine.since, blocked: true });
  }

  /** The main thread's JS stack via the inspector (pauses it for an instant). */
  function mainStack(limit) {
    return new Promise((resolve) => {
      let s;
      let done = false;
      const finish = (frames) => {
        if (done) return;
        done = true;
        try { s.disconnect(); } catch (_) { /* ignore */ }
        resolve(frames);
      };
      try {
        s = new inspector.Session();
        s.connectToMainThread();
      } catch (e) {
        resolve(null);
        return;
      }
      const t = setTimeout(() => finish(null), 1000);
      const urls = new Map();
      s.on('Debugger.scriptParsed', (m) => { if (m.params.url) urls.set(m.params.scriptId, m.params.url); });
      s.on('Debugger.paused', (m) => {
        clearTimeout(t);
        const frames = (m.params.callFrames || []).slice(0, limit || 100).map((c) => ({
          file: String(c.url || urls.get(c.location && c.location.scriptId) || '').replace(/^file:\/\//, '') || '<anonymous>',
          line: (c.location && c.location.lineNumber || 0) + 1,
          function: c.functionName || '<anonymous>',
        }));
        try { s.post('Debugger.resume', () => finish(frames)); } catch (_) { finish(frames); }
      });
      s.post('Debugger.enable', (err) => {
        if (err) { finish(null); return; }
        s.post('Debugger.pause', (e2) => { if (e2) finish(null); });
      });
    });
  }

  function where(frames) {
    for (const f of frames || []) {
      if (f.file && !f.file.startsWith('node:') && f.file !== SELF) {
        let file = f.file;
        if (path.isAbsolute(file)) {
          const rel = path.relative(cfg.cwd, file);
          if (!rel.startsWith('..')) file = rel;
        }
        return file + ':' + f.line;
      }
    }
    return null;
  }

  function refreshBlockedStack() {
    if (stackBusy || (blockedStack && Date.now() - blockedStack.at < 2000)) return;
    stackBusy = true;
    mainStack(50).then((frames) => {
      stackBusy = false;
      if (probe && frames) blockedStack = { at: Date.now(), frames };
    });
  }

  function threads(snap) {
    const out = [{ name: 'main', ident: 0, native_id: pid, daemon: false, alive: true, main: true, agent: false }];
    out.push({ name: 'lifecycle-top-agent', ident: wt.threadId, native_id: myTid, daemon: true, alive: true, main: false, agent: true });
    for (const w of (snap && snap.workers) || []) {
      out.push({
        name: w.name || 'worker ' + w.threadId, ident: w.threadId, native_id: tids.get(w.threadId) || null,
        daemon: !w.ref, alive: w.alive, main: false, agent: false, started_at: w.site || undefined,
      });
    }
    return out;
  }

  function buildReport(maxTasks) {
    return snapshot().then((r) => {
      // The first report of a blocked loop waits for its stack (bounded by mainStack's 1 s),
      // so `blocked_at` is there from the start; later ones refresh it in the background.
      if (r.blocked && !blockedStack) {
        return mainStack(50).then((frames) => {
          if (frames && probe) blockedStack = { at: Date.now(), frames };
          return r;
        });
      }
      if (r.blocked) refreshBlockedStack();
      return r;
    }).then(({ snap, lag, blocked }) => {
      const t0 = Date.now();
      // While the loop is blocked the last snapshot is stale: no handle is listed then
      // (what the loop would wait for after it returns is not knowable now).
      const handles = blocked ? [] : ((snap && snap.handles) || []);
      const live = handles.filter((h) => h.ref);
      seq += 1;
      const strings = [];
      const index = new Map();
      const str = (s) => {
        if (!s) return -1;
        let i = index.get(s);
        if (i === undefined) { i = strings.length; strings.push(s); index.set(s, i); }
        return i;
      };
      const rows = [];
      let rowId = 1;
      for (const h of live.slice(0, maxTasks)) {
        const label = h.detail || null;
        rows.push([h.id || 1e9 + rowId++, 1, h.name, 'pending', str(label), str(h.site), null]);
      }
      const chunks = [];
      for (let i = 0; i < rows.length; i += CHUNK_TASKS) chunks.push(rows.slice(i, i + CHUNK_TASKS));
      const bs = blocked && blockedStack ? blockedStack : null;
      const header = {
        type: 'report', seq, at_unix_ms: Date.now(), pid,
        threads: threads(snap),
        loops: [{
          id: 1, class: 'node:libuv', thread_ident: 0, native_id: pid, running: true, closed: false,
          blocked, lag_ms: lag, main: true,
          counts: { pending: live.length, running: 0, cancelling: 0 },
          tasks_total: live.length, blocked_at: bs ? where(bs.frames) : null, main_task: null,
          blocked_for_ms: blocked ? lag : 0, snapshot_age_ms: last ? Date.now() - last.at : null,
        }],
        executors: [],
        subprocesses: (snap && snap.subprocesses) || [],
        phases: (snap && snap.phases) || [],
        tasks_total: live.length, tasks_listed: rows.length, tracking: false,
        task_chunks: chunks.length,
        handles, handles_ref: live.length,
        cost: {
          cpu_ms: (() => { const u = process.cpuUsage(cpu0); return (u.user + u.system) / 1000; })(),
          bytes_sent: bytesSent, reports_sent: reportsSent, build_ms: Date.now() - t0,
          // Main-thread time of the snapshot this report shows (the part the app pays for).
          main_ms: snap && typeof snap.collect_ms === 'number' ? snap.collect_ms : null,
          last_report_ms: lastReportMs, clients: conns.size, refused: 0,
        },
        warnings: (snap && snap.warnings) || [],
        warnings_total: (snap && snap.warnings_total) || 0,
      };
      const lines = [fit(header, ['handles', 'subprocesses', 'threads', 'phases', 'warnings'])];
      chunks.forEach((c, i) => lines.push(chunkLine(seq, i, chunks.length, c, strings)));
      return lines;
    });
  }

  function chunkLine(s, i, n, rows, strings) {
    const local = [];
    const map = new Map();
    const out = rows.map((r) => {
      const re = (k) => {
        if (k < 0) return -1;
        let j = map.get(k);
        if (j === undefined) { j = local.length; local.push(strings[k]); map.set(k, j); }
        return j;
      };
      return [r[0], r[1], r[2], r[3], re(r[4]), re(r[5]), r[6]];
    });
    return JSON.stringify({ type: 'report_chunk', seq: s, index: i, count: n, strings: local, tasks: out });
  }

  function fit(obj, keys) {
    let line = JSON.stringify(obj);
    while (Buffer.byteLength(line) > MAX_LINE) {
      let heaviest = null, size = 0;
      for (const k of keys) {
        const n = Array.isArray(obj[k]) ? obj[k].length : 0;
        if (n > size) { size = n; heaviest = k; }
      }
      if (!heaviest) break;
      if (obj[heaviest + '_total'] === undefined) obj[heaviest + '_total'] = obj[heaviest].length;
      obj[heaviest] = obj[heaviest].slice(0, Math.floor(obj[heaviest].length / 2));
      line = JSON.stringify(obj);
    }
    return line;
  }

  function send(c, obj) {
    if (c.closed) return;
    const line = (typeof obj === 'string' ? obj : JSON.stringify(obj)) + '\n';
    bytesSent += Buffer.byteLength(line);
    c.sock.write(line);
  }

  function hello() {
    return {
      type: 'hello', protocol: PROTOCOL_VERSION,
      agent: { kind: 'node', version: AGENT_VERSION, instance },
      runtime: { name: 'node', version: cfg.node.replace(/^v/, ''), executable: cfg.exe },
      target: { pid, start_time: startTime },
      capabilities: ['threads', 'handles', 'subprocesses', 'chunked_tasks', 'stacks', 'close_handles', 'run_phase', 'exit', 'ping'],
      phases: (last && last.data && last.data.phases) || [],
      max_line: MAX_LINE,
    };
  }

  function respond(c, id, result, error) {
    send(c, error ? { type: 'response', id, ok: false, error } : { type: 'response', id, ok: true, result });
  }

  function timeoutOf(p, def) {
    const t = Number(p && p.timeout_ms);
    return Number.isFinite(t) && t > 0 ? t : def;
  }

  function request(c, msg) {
    const id = msg.id;
    const p = (msg.params && typeof msg.params === 'object') ? msg.params : {};
    if (c.inflight >= MAX_INFLIGHT) {
      respond(c, id, null, { code: 'busy', message: MAX_INFLIGHT + ' requests already running on this connection; retry when one answers' });
      return;
    }
    c.inflight += 1;
    const done = (result, error) => { c.inflight -= 1; respond(c, id, result, error); };
    // A loop already known to be blocked (its probe waits for more than 0.5 s) gets 0.5 s
    // to run the request: a teardown need not wait every phase's full budget on it.
    const budget = (timeout) => (probe && Date.now() - probe.since > 500 ? Math.min(500, timeout * 0.9) : timeout * 0.9);
    const viaMain = (op, extra, timeout) => main(op, extra, budget(timeout)).then((m) => {
      if (m.timeout) {
        const since = probe ? Date.now() - probe.since : 0;
        const d = {
          code: 'blocked',
          message: 'the event loop is blocked' + (blockedStack ? ' at ' + where(blockedStack.frames) : '') + ': the request did not run',
          data: { stack: blockedStack ? blockedStack.frames : [], blocked_ms: since },
        };
        done(null, d);
      } else done(m.result, m.error);
    });
    switch (msg.method) {
      case 'ping': done({ pong: true, pid }); break;
      case 'stacks': {
        const limit = Number(p.limit) || 100;
        snapshot().then(({ snap, blocked }) => (blocked ? mainStack(limit) : Promise.resolve([])).then((frames) => {
          const ths = threads(snap).map((t) => Object.assign({}, t, { frames: t.main ? (frames || []) : [] }));
          const mainT = ths[0];
          if (!blocked) mainT.state = 'idle in the event loop';
          done({ order: 'innermost_first', runtime: 'node', threads: ths, loop_blocked: blocked });
        }));
        break;
      }
      case 'close_handles':
        viaMain('close', { kinds: p.kinds, ids: p.ids, mode: p.mode, wait_ms: timeoutOf(p, 2000) * 0.8 }, timeoutOf(p, 2000));
        break;
      case 'run_phase':
        if (typeof p.name !== 'string') { done(null, { code: 'bad_params', message: 'run_phase needs a "name" (or "*" for every registered phase)' }); break; }
        viaMain('phase', { name: p.name }, timeoutOf(p, 5000));
        break;
      case 'exit':
        viaMain('exit', { mode: p.mode, code: p.code }, 2000);
        break;
      default:
        done(null, { code: 'unknown_method', message: 'unknown method ' + JSON.stringify(msg.method) });
    }
  }

  function handle(c, line) {
    let msg;
    try { msg = JSON.parse(line); } catch (e) {
      send(c, { type: 'error', code: 'bad_json', message: 'malformed JSON: ' + e.message });
      return;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) {
      send(c, { type: 'error', code: 'bad_message', message: 'a message must be a JSON object' });
      return;
    }
    if (msg.type === 'hello') {
      if (msg.protocol !== PROTOCOL_VERSION) {
        send(c, { type: 'error', code: 'version_mismatch', message: 'client speaks protocol ' + JSON.stringify(msg.protocol) + ', this agent speaks ' + PROTOCOL_VERSION });
        c.sock.end();
      }
    } else if (msg.type === 'subscribe') {
      const ms = Number(msg.interval_ms || 0);
      const max = msg.max_tasks === undefined ? 20000 : Number(msg.max_tasks);
      if (!Number.isFinite(ms) || !Number.isFinite(max)) {
        send(c, { type: 'error', code: 'bad_message', message: 'interval_ms and max_tasks must be integers' });
        return;
      }
      c.subscribed = true;
      c.maxTasks = Math.max(0, Math.floor(max));
      if (c.timer) clearInterval(c.timer);
      c.timer = null;
      if (ms > 0) {
        const every = Math.min(Math.max(ms, 20), 60000);
        const tick = () => {
          if (c.closed || c.building || c.sock.writableLength > 0) return;
          c.building = true;
          const t0 = Date.now();
          buildReport(c.maxTasks).then((lines) => {
            c.building = false;
            for (const l of lines) send(c, l);
            reportsSent += 1;
            lastReportMs = Date.now() - t0;
          }, (e) => { c.building = false; debug('report failed: ' + (e && e.stack || e)); });
        };
        tick();
        c.timer = setInterval(tick, every);
      }
    } else if (msg.type === 'request') {
      request(c, msg);
    }
  }

  function onConn(sock) {
    const c = { sock, buf: '', subscribed: false, inflight: 0, closed: false, timer: null, maxTasks: 20000 };
    conns.add(c);
    sock.setEncoding('utf8');
    const close = () => {
      c.closed = true;
      if (c.timer) clearInterval(c.timer);
      conns.delete(c);
    };
    sock.on('close', close);
    sock.on('error', close);
    sock.on('data', (d) => {
      c.buf += d;
      let nl;
      while ((nl = c.buf.indexOf('\n')) >= 0) {
        const line = c.buf.slice(0, nl);
        c.buf = c.buf.slice(nl + 1);
        if (line.trim()) handle(c, line);
      }
      if (Buffer.byteLength(c.buf) > MAX_LINE) {
        c.buf = '';
        send(c, { type: 'error', code: 'line_too_long', message: 'line over ' + MAX_LINE + ' bytes; closing' });
        sock.end();
      }
    });
    // The phases are known once the main thread answered once.
    snapshot().then(() => send(c, hello()));
  }

  function usableDir(dir) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== process.getuid() || (st.mode & 0o077)) {
      throw new Error('directory ' + dir + ' must be ours and mode 0700');
    }
  }

  function tryListen(p) {
    return new Promise((resolve, reject) => {
      try { usableDir(path.dirname(p)); } catch (e) { reject(e); return; }
      const start = () => {
        const srv = net.createServer(onConn);
        srv.once('error', reject);
        srv.listen(p, () => {
          try { fs.chmodSync(p, 0o600); } catch (e) { srv.close(); reject(e); return; }
          srv.removeListener('error', reject);
          resolve(srv);
        });
      };
      if (!fs.existsSync(p)) { start(); return; }
      const probeSock = net.connect(p);
      probeSock.once('connect', () => { probeSock.destroy(); reject(new Error(p + ' is served by a live agent')); });
      probeSock.once('error', (e) => {
        if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') {
          try { fs.unlinkSync(p); } catch (_) { /* ignore */ }
          start();
        } else reject(e);
      });
    });
  }

  const cands = (cfg.explicit ? [cfg.explicit] : []).concat(defaultPaths(pid));
  let listening = null;
  (function next(i) {
    if (i >= cands.length) { debug('no usable socket path'); return; }
    tryListen(cands[i]).then((srv) => {
      listening = cands[i];
      debug('listening on ' + listening);
      srv.on('close', () => {});
    }, (e) => { debug('cannot listen on ' + cands[i] + ': ' + e.message); next(i + 1); });
  })(0);
  process.on('exit', () => { try { if (listening) fs.unlinkSync(listening); } catch (_) { /* ignore */ } });
}

// ============================================================================ entry

const api = { install, registerPhase, socketPath, version: AGENT_VERSION };

if (wt.isMainThread) {
  if (!globalThis[KEY]) {
    globalThis[KEY] = api;
    if (!process.env.LIFECYCLE_TOP_NO_AGENT) install();
  }
} else {
  const cfg = wt.workerData && wt.workerData[CHANNEL];
  if (cfg && cfg.role === 'server') {
    runServer(cfg);
  } else if (!globalThis[KEY]) {
    // An app's worker thread: tell the agent which kernel thread it is, nothing else.
    globalThis[KEY] = api;
    try {
      const me = { threadId: wt.threadId, tid: threadTid() };
      const bc = new wt.BroadcastChannel(CHANNEL);
      bc.onmessage = (m) => { if (m && m.data && m.data.ask) bc.postMessage(me); };
      if (bc.unref) bc.unref();
      bc.postMessage(me);
    } catch (_) { /* ignore */ }
  }
}

module.exports = api;
