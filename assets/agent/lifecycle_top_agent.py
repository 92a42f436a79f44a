"""lifecycle-top Python agent, protocol v1 (see docs/protocol.md in the lifecycle-top repo).

Runs inside the target on its own daemon thread with its own selectors loop, so it answers
while the app's asyncio loop is blocked. It reports what /proc cannot know (thread daemon
flags, asyncio loops and tasks, executors, subprocesses and where they were created) and
acts on request (cancel tasks, shut down executors, stop/close loops, run app phases).

Start it with ``import lifecycle_top_agent; lifecycle_top_agent.install()``, or let
lifecycle-top inject it (PYTHONPATH + sitecustomize). Stdlib only, Python 3.8+. It never
raises into the host: every hook and handler swallows its own errors. With no client
connected the agent thread sleeps in select() with no timeout, so it costs nothing.

One file on purpose: ``lifecycle-top agent --print > lifecycle_top_agent.py`` must work.

How loops are found (robust to import order): a meta-path hook patches
``asyncio.base_events.BaseEventLoop.__init__`` (and ThreadPoolExecutor/ProcessPoolExecutor
``__init__``, ``subprocess.Popen.__init__``) when those modules are imported, or at once if
they already are; each new instance goes into a WeakSet. Loops created before install()
are found when a client connects from the threads' frames (a running loop) and the policy's
loop, and from the ``_loop`` of every live task (never ``gc.get_objects()``: see
``_scan_loops``).
"""

import collections
import itertools
import json
import operator
import resource
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time
import traceback
import types
import weakref

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"
MAX_LINE = 1 << 20
CHUNK_TASKS = 500
# Workers listed per executor (all are counted in `workers_total`).
MAX_WORKERS_LISTED = 256
# Requests one connection may have running at once; more are answered with code "busy".
MAX_INFLIGHT = 4
# Bytes queued for a client beyond the report being sent; a client that sends but does not
# read is disconnected past this instead of growing the agent's memory.
MAX_WBUF = 4 << 20
# Limits against clients of the same uid that misbehave (docs/protocol.md §2): lifecycle-top
# uses one or two connections. Beyond MAX_CONNS (or one per 64 of the host's fd limit, so the
# agent can never take the host's descriptors) a client gets `too_many_clients`; unfinished
# lines of all clients together are capped (`buffer_full`); a client that has not read any of
# what is queued for it for STALL_S is closed; the agent thread sleeps when it has used more than
# MAX_CPU_SHARE of a core over the last second (a flood costs the host at most that).
MAX_CONNS = 16
MAX_RBUF_TOTAL = 4 << 20
STALL_S = 10.0
MAX_CPU_SHARE = 0.05
ACCEPT_BACKOFF = 1.0
PROBE_TIMEOUT = 0.1
SWALLOW_GRACE = 0.5
MAX_STR = 200

_reg_lock = threading.Lock()
_loops = weakref.WeakSet()
_executors = weakref.WeakSet()
_subprocs = collections.deque(maxlen=256)
_phases = {}
_tracked = []
_agent = None
_patched = set()


# ----------------------------------------------------------------------------- public API

def install(path=None):
    """Start the agent (idempotent). Returns the socket path, or None if it could not start."""
    global _agent
    try:
        _install_hooks()
        _install_event_hooks()
        if _agent is not None:
            return _agent.path
        _agent = _Server(path)
        _agent.start()
        return _agent.path
    except Exception as exc:  # never break the host
        _debug("lifecycle-top agent: not started: %r" % (exc,))
        _agent = None
        return None


def register_phase(name, fn, description=""):
    """Register an app phase that lifecycle-top can run by name (sync fn or coroutine fn)."""
    with _reg_lock:
        _phases[str(name)] = (fn, str(description))


def register_tasks(tasks):
    """Register the app's own container of background tasks (list/set, read live)."""
    with _reg_lock:
        if not any(c is tasks for c in _tracked):
            _tracked.append(tasks)


def socket_path(pid=None):
    """Where this process's agent listens: $LIFECYCLE_TOP_SOCKET, else
    $XDG_RUNTIME_DIR/lifecycle-top/<pid>.sock, else /tmp/lifecycle-top-<uid>/<pid>.sock."""
    pid = os.getpid() if pid is None else pid
    env = os.environ.get("LIFECYCLE_TOP_SOCKET")
    if env:
        return env
    return _default_paths(pid)[0]


# ----------------------------------------------------------------------------- helpers

def _debug(msg):
    if os.environ.get("LIFECYCLE_TOP_AGENT_DEBUG"):
        try:
            sys.stderr.write(msg + "\n")
        except Exception:
            pass


def _default_paths(pid):
    out = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(os.path.join(xdg, "lifecycle-top", "%d.sock" % pid))
    out.append("/tmp/lifecycle-top-%d/%d.sock" % (os.getuid(), pid))
    return out


def _short(s, n=MAX_STR):
    s = str(s)
    return s if len(s) <= n else s[: n - 3] + "..."


def _self_start_time():
    """Field 22 of /proc/self/stat: start time in clock ticks since boot."""
    try:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        return int(rest[19])
    except Exception:
        return 0


def _where(frame):
    if frame is None:
        return None
    return "%s:%d" % (frame.f_code.co_filename, frame.f_lineno)


def _frames_of(frame, limit):
    out = []
    while frame is not None and len(out) < limit:
        out.append({"file": frame.f_code.co_filename, "line": frame.f_lineno,
                    "function": frame.f_code.co_name})
        frame = frame.f_back
    return out


def _now_ms():
    return int(time.time() * 1000)


# ----------------------------------------------------------------------------- hooks

def _wrap_init(cls, on_new):
    orig = cls.__init__
    if getattr(orig, "_lifecycle_top", False):
        return

    def __init__(self, *args, **kwargs):
        orig(self, *args, **kwargs)
        try:
            on_new(self, args, kwargs)
        except Exception:
            pass

    __init__._lifecycle_top = True
    __init__.__wrapped__ = orig
    cls.__init__ = __init__


def _on_loop(loop, args, kwargs):
    _loops.add(loop)


def _on_executor(ex, args, kwargs):
    _executors.add(ex)


_SKIP_SITE = ("subprocess.py", os.sep + "asyncio" + os.sep, "lifecycle_top_agent.py")


def _on_popen(p, args, kwargs):
    frame = sys._getframe(2)
    via = "subprocess"
    while frame is not None and any(s in frame.f_code.co_filename for s in _SKIP_SITE):
        if os.sep + "asyncio" + os.sep in frame.f_code.co_filename:
            via = "asyncio"
        frame = frame.f_back
    site = None
    if frame is not None:
        site = "%s (%s)" % (_where(frame), frame.f_code.co_name)
    cmd = args[0] if args else kwargs.get("args")
    try:
        ref = weakref.ref(p)
    except TypeError:
        ref = None
    _subprocs.append({"pid": p.pid, "args": _short(cmd, 300), "site": site, "via": via,
                      "created_unix_ms": _now_ms(), "_ref": ref})


def _patch_module(name):
    mod = sys.modules.get(name)
    if mod is None or name in _patched:
        return
    _patched.add(name)
    try:
        if name == "asyncio.base_events":
            _wrap_init(mod.BaseEventLoop, _on_loop)
            _hook_create_task(mod)
        elif name == "concurrent.futures.thread":
            _wrap_init(mod.ThreadPoolExecutor, _on_executor)
        elif name == "concurrent.futures.process":
            _wrap_init(mod.ProcessPoolExecutor, _on_executor)
        elif name == "subprocess":
            _wrap_init(mod.Popen, _on_popen)
        elif name == "asyncio.log":
            _hook_asyncio_log(mod)
    except Exception:
        pass


_HOOKED = ("asyncio.base_events", "concurrent.futures.thread",
           "concurrent.futures.process", "subprocess", "asyncio.log")


class _ImportHook:
    """Meta-path finder that patches the hooked modules right after they execute."""

    def find_spec(self, name, path=None, target=None):
        if name not in _HOOKED or name in _patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                continue
            if spec is None:
                continue
            loader = spec.loader
            if loader is None or not hasattr(loader, "exec_module"):
                return spec
            orig_exec = loader.exec_module

            class _Loader:
                def __getattr__(self, attr):
                    return getattr(loader, attr)

                def create_module(self, spec_):
                    return loader.create_module(spec_)

                def exec_module(self, module):
                    orig_exec(module)
                    _patch_module(name)

            spec.loader = _Loader()
            return spec
        return None


def _hook_thread_start():
    """Records where each thread was started (``started_at``): one frame walk per start."""
    orig = threading.Thread.start
    if getattr(orig, "_lifecycle_top", False):
        return
    # A ThreadPoolExecutor starts its workers from inside `submit`, asyncio from inside its
    # loop (run_in_executor, shutdown_default_executor): the site worth naming is the
    # caller's line outside them.
    lib = os.path.dirname(threading.__file__)
    here = frozenset((threading.__file__, os.path.join(lib, "concurrent", "futures", "thread.py")))
    aio = os.path.join(lib, "asyncio", "")

    def start(self):
        try:
            f = sys._getframe(1)
            while f is not None and (f.f_code.co_filename in here
                                     or f.f_code.co_filename.startswith(aio)
                                     or f.f_code.co_name == "start"):
                f = f.f_back
            if f is not None:  # resolved to file:line when a report lists the thread
                self._lifecycle_top_site = f.f_code, f.f_lasti
        except Exception:
            pass
        return orig(self)

    start._lifecycle_top = True
    start.__wrapped__ = orig
    threading.Thread.start = start


# ----------------------------------------------------------------------------- task creation
#
# Where each asyncio task was created (``created_at`` in its row, docs/protocol.md §5.2): the
# first frame outside asyncio (and this agent) above ``BaseEventLoop.create_task``, which
# asyncio.create_task, ensure_future, gather, TaskGroup and asyncio.run all go through (a
# task factory the program set is called from inside it, unchanged). The hot path stores the
# creator's (code object, f_lasti) on the task: no string formatting, no line-table lookup
# (``f_lineno`` costs more than the rest put together on 3.11+); the line is resolved when a
# report lists the task, memoised per (code, offset). Tasks made without create_task (a
# direct ``asyncio.Task(...)``, uvloop's own loop class) have no creation site.
#
# The recording is spliced into a copy of the stdlib's own create_task, compiled from a
# template only when that template compiles to the very bytecode, names and constants of
# the running interpreter's create_task (so behaviour is the stdlib's by construction; line
# numbers and file name are the original's, so tracebacks read the same). Any other
# create_task (a patched stdlib, a future version) gets a plain wrapper instead, which costs
# one more Python call per task (bench/agent_callgrind.py measures both).

_CREATED = "_lifecycle_top_created"

_CT_HEAD = '''if __name__ == "never":
    from asyncio import tasks
def _lifecycle_top_outer(_getframe, _lib, _deeper):
  _via = None
  class BaseEventLoop:
    def create_task(self, coro, *, name=None%(ctx_sig)s):
        """Schedule a coroutine object.

        Return a task object.
        """%(nonlocal)s
        self._check_closed()%(consume)s
        if self._task_factory is None:
            task = tasks.Task(coro, loop=self, name=name%(ctx_arg)s)
            if task._source_traceback:
                del task._source_traceback[-1]
        else:
%(factory)s
%(set_name)s
%(record)s
        return task
  return BaseEventLoop.create_task
'''

_CT_FACTORY_OLD = '''            task = self._task_factory(self, coro)'''
_CT_FACTORY_CTX = '''            if context is None:
                # Use legacy API if context is not needed
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
'''

# No loop (no backward jump) and nothing that can raise past the try: the creator is one
# asyncio frame up in the usual case (asyncio.create_task, TaskGroup); deeper chains (gather,
# ensure_future, asyncio.run on older versions) take one helper call.
# On the `self._check_closed()` line (columns and later lines unchanged): the spliced
# asyncio.create_task below records the site itself (its caller is the creator, one frame up,
# no asyncio frame object to build) and marks the call with its coroutine in `_via`; the
# mark is taken (cleared) here before anything else can happen, so a nested create_task (an
# eager task's first step) or another thread's sees only its own.
_CT_CONSUME = "; _skip = _via is coro; _via = None"
_NONLOCAL = "; nonlocal _via"  # on the docstring's last line: no code, no line moved
_CT_RECORD = '''        if not _skip:
            try:
                f = _getframe(1)
                c = f.f_code
                if c.co_filename in _lib:
                    f = f.f_back
                    c = f.f_code
                    if c.co_filename in _lib:
                        f, c = _deeper(f)
                if c is not None:
                    task.%s = c, f.f_lasti
            except Exception:
                pass''' % _CREATED

# asyncio.create_task (asyncio.tasks.create_task), spliced the same way: the recording goes
# before `return task`; the mark is set on the `loop = events.get_running_loop()` line after
# the call (no mark when there is no running loop) and cleared again before the return (a
# loop class of the program's own that never reaches BaseEventLoop.create_task).
_ACT_HEAD = '''if __name__ == "never":
    from asyncio import events
def _lifecycle_top_outer(_getframe, _lib, _deeper):
  _via = None
  def create_task(coro, *, name=None%(ctx_sig)s):
    """Schedule the execution of a coroutine object in a spawn task.

    Return a Task object.
    """%(nonlocal)s
    loop = events.get_running_loop()%(mark)s
%(body)s
%(record)s
    return task
  return create_task
'''
_ACT_MARK = "; _via = coro"
_ACT_RECORD = '''    _via = None
    try:
        f = _getframe(1)
        c = f.f_code
        if c.co_filename in _lib:
            f, c = _deeper(f)
        if c is not None:
            task.%s = c, f.f_lasti
    except Exception:
        pass''' % _CREATED
_ACT_VARIANTS = (
    # 3.8-3.10
    {"ctx_sig": "", "body": "    task = loop.create_task(coro)\n    _set_task_name(task, name)"},
    # 3.11-3.12
    {"ctx_sig": ", context=None",
     "body": "    if context is None:\n"
             "        # Use legacy API if context is not needed\n"
             "        task = loop.create_task(coro)\n"
             "    else:\n"
             "        task = loop.create_task(coro, context=context)\n"
             "\n"
             "    _set_task_name(task, name)"},
    # 3.13
    {"ctx_sig": ", context=None",
     "body": "    if context is None:\n"
             "        # Use legacy API if context is not needed\n"
             "        task = loop.create_task(coro, name=name)\n"
             "    else:\n"
             "        task = loop.create_task(coro, name=name, context=context)\n"},
)
# The mark, one cell shared by both spliced functions (a closure variable: the cheapest
# store and load there is): the coroutine an asyncio.create_task call is making a task for,
# or None.
_via_cell = types.CellType(None)


def _deeper(f):
    """(frame, code) of the first frame above `f` outside asyncio (gather, ensure_future and
    asyncio.run on 3.8-3.10 are three or four asyncio frames deep), or (None, None)."""
    lib = _create_task_lib[0]
    for _ in range(12):
        f = f.f_back
        if f is None:
            break
        if f.f_code.co_filename not in lib:
            return f, f.f_code
    return None, None


_create_task_lib = [frozenset()]

_CT_VARIANTS = (
    # 3.8-3.10
    {"ctx_sig": "", "ctx_arg": "", "factory": _CT_FACTORY_OLD,
     "set_name": "            tasks._set_task_name(task, name)\n"},
    # 3.11-3.12
    {"ctx_sig": ", context=None", "ctx_arg": ", context=context", "factory": _CT_FACTORY_CTX,
     "set_name": "            tasks._set_task_name(task, name)\n"},
    # 3.13
    {"ctx_sig": ", context=None", "ctx_arg": ", context=context", "factory": _CT_FACTORY_CTX,
     "set_name": "            task.set_name(name)\n"},
)


def _lib_files_of_asyncio(mod):
    """File names whose frames are asyncio's (or the agent's), as code objects name them."""
    out = {os.path.abspath(__file__)}
    try:
        d = os.path.dirname(mod.__file__)
        for fn in os.listdir(d):
            if fn.endswith(".py"):
                out.add(os.path.join(d, fn))
    except Exception:
        pass
    for name, m in list(sys.modules.items()):
        if (name == "asyncio" or name.startswith("asyncio.")) and getattr(m, "__file__", None):
            out.add(m.__file__)
    out.add(__file__)
    return frozenset(out)


def _same_code(a, b):
    """Same bytecode, names, constants and signature, and the same line and column of every
    instruction (so a traceback through the copy reads like one through the original),
    except on the last line (`return task`, which cannot raise: the recording goes in
    front of it)."""
    nested = 0x10  # CO_NESTED: the template is compiled inside a function
    if (a.co_flags | nested) != (b.co_flags | nested) or not all(
            getattr(a, k) == getattr(b, k) for k in ("co_code", "co_consts", "co_names",
                                                     "co_varnames", "co_argcount",
                                                     "co_kwonlyargcount", "co_firstlineno")):
        return False
    if hasattr(b, "co_positions"):  # 3.11+: lines and columns
        pa, pb = list(a.co_positions()), list(b.co_positions())
    else:
        pa, pb = ([_line_at(c, i) for i in range(0, len(c.co_code), 2)] for c in (a, b))
    lines = [p[0] if isinstance(p, tuple) else p for p in pb]
    last = max([ln for ln in lines if ln is not None] or [0])
    return len(pa) == len(pb) and all(x == y or ln == last for x, y, ln in zip(pa, pb, lines))


def _splice(mod, orig, head, variants, recorded, lib):
    """A copy of the stdlib function `orig` (of module `mod`) with the recording spliced in,
    compiled from the first template of `variants` that reproduces `orig` exactly without
    it (`recorded`: the template's fields that add it); None when none does."""
    code = getattr(orig, "__code__", None)
    if code is None or code.co_freevars:
        return None
    # 3.11/3.12 compile `module.attr(...)` differently when `module` was imported (hence the
    # never-run import in the template); the def lands on the original's line.
    at = head.split("\n").index(next(ln for ln in head.split("\n")
                                     if ln.lstrip().startswith("def " + orig.__name__)))
    pad = "\n" * max(0, code.co_firstlineno - 1 - at)
    plain = {k: "" for k in recorded}
    for v in variants:
        try:
            pristine = {"__name__": "lifecycle_top_template"}
            exec(compile(pad + head % dict(v, **plain), code.co_filename, "exec"), pristine)
            if not _same_code(pristine["_lifecycle_top_outer"](None, None, None).__code__,
                              code):
                continue
            ns = {"__name__": "lifecycle_top_template"}
            exec(compile(pad + head % dict(v, **recorded), code.co_filename, "exec"), ns)
            inner = ns["_lifecycle_top_outer"](sys._getframe, lib, _deeper)
            c = inner.__code__
            cells = tuple(_via_cell if k == "_via" else cell
                          for k, cell in zip(c.co_freevars, inner.__closure__ or ()))
            if hasattr(c, "co_qualname"):
                c = c.replace(co_qualname=code.co_qualname)
            fn = types.FunctionType(c, mod.__dict__, orig.__name__, orig.__defaults__, cells)
            fn.__kwdefaults__ = orig.__kwdefaults__
            fn.__doc__, fn.__qualname__, fn.__module__ = orig.__doc__, orig.__qualname__, \
                orig.__module__
            return fn
        except Exception:
            continue
    return None


def _spliced_create_task(mod, orig, lib):
    return _splice(mod, orig, _CT_HEAD, _CT_VARIANTS,
                   {"record": _CT_RECORD, "consume": _CT_CONSUME, "nonlocal": _NONLOCAL}, lib)


def _spliced_asyncio_create_task(mod, orig, lib):
    return _splice(mod, orig, _ACT_HEAD, _ACT_VARIANTS,
                   {"record": _ACT_RECORD, "mark": _ACT_MARK, "nonlocal": _NONLOCAL}, lib)


def _wrapped_create_task(orig, lib):
    _getframe = sys._getframe

    def create_task(self, coro, *args, **kwargs):
        task = orig(self, coro, *args, **kwargs)
        try:
            f = _getframe(1)
            n = 0
            while f is not None and f.f_code.co_filename in lib and n < 8:
                f = f.f_back
                n += 1
            if f is not None and f.f_code.co_filename not in lib:
                setattr(task, _CREATED, (f.f_code, f.f_lasti))
        except Exception:
            pass
        return task

    for k in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(create_task, k, getattr(orig, k, None))
    return create_task


# How create_task was instrumented: "spliced", "wrapped" or None (reported in `cost`).
_create_task_hook = [None]


def _hook_create_task(mod):
    cls = getattr(mod, "BaseEventLoop", None)
    orig = cls.__dict__.get("create_task") if cls is not None else None
    if orig is None or getattr(orig, "_lifecycle_top", False):
        return
    lib = _create_task_lib[0] = _lib_files_of_asyncio(mod)
    fn = None
    if not os.environ.get("LIFECYCLE_TOP_AGENT_WRAP_CREATE_TASK"):  # the bench compares both
        fn = _spliced_create_task(mod, orig, lib)
    kind = "spliced"
    if fn is None:
        fn, kind = _wrapped_create_task(orig, lib), "wrapped"
    fn._lifecycle_top = True
    fn.__wrapped__ = orig
    cls.create_task = fn
    _create_task_hook[0] = kind
    if kind == "spliced":  # only the spliced loop.create_task takes asyncio.create_task's mark
        _hook_asyncio_create_task(sys.modules.get("asyncio.tasks"), lib)


# Whether asyncio.create_task records the site itself (the spliced copy is in place).
_asyncio_create_task_spliced = [False]


def _hook_asyncio_create_task(mod, lib):
    """asyncio.create_task -> the spliced copy, in asyncio.tasks and the asyncio package (a
    program that imported the function itself before install keeps the original, which
    goes through loop.create_task's recording)."""
    orig = getattr(mod, "create_task", None)
    if orig is None or getattr(orig, "_lifecycle_top", False):
        return
    fn = _spliced_asyncio_create_task(mod, orig, lib)
    if fn is None:
        return
    fn._lifecycle_top = True
    fn.__wrapped__ = orig
    mod.create_task = fn
    pkg = sys.modules.get("asyncio")
    if pkg is not None and getattr(pkg, "create_task", None) is orig:
        pkg.create_task = fn
    _asyncio_create_task_spliced[0] = True


def _line_at(code, lasti):
    """Source line of byte offset `lasti` in `code` (what f_lineno would have said)."""
    lines = getattr(code, "co_lines", None)
    if lines is None:  # 3.8, 3.9: the line number table of co_lnotab
        line, addr, tab = code.co_firstlineno, 0, code.co_lnotab
        for i in range(0, len(tab), 2):
            addr += tab[i]
            if addr > lasti:
                break
            d = tab[i + 1]
            line += d - 256 if d >= 128 else d
        return line
    for start, end, line in lines():
        if start <= lasti < end:
            return line
    return None


# (id(code), lasti) -> (code, "file:line"); the code object is kept so the id stays its own.
_created_memo = {}


def _created_at(t):
    """`file:line` where task t was created, or None."""
    try:
        site = getattr(t, _CREATED)
    except Exception:  # AttributeError: made before install, or not through create_task
        return None
    return _site_text(site)


def _site_text(site):
    """`file:line` of a recorded (code, f_lasti), memoised; None for anything else."""
    if site is None:
        return None
    try:
        code, lasti = site
        key = (id(code), lasti)
        m = _created_memo.get(key)
        if m is None:
            if len(_created_memo) >= 20000:
                _created_memo.clear()
            line = _line_at(code, lasti)
            where = _short("%s:%s" % (code.co_filename, line if line is not None else "?"), 300)
            m = _created_memo[key] = (code, where)
        return m[1]
    except Exception:
        return None


def _install_hooks():
    try:
        _hook_thread_start()
    except Exception:
        pass
    if any(isinstance(f, _ImportHook) for f in sys.meta_path):
        return
    for name in _HOOKED:
        _patch_module(name)
    sys.meta_path.insert(0, _ImportHook())


# ----------------------------------------------------------------------------- events

# Shutdown trouble the app would print or silently ignore (the asyncio warnings of a bad
# cleanup, never-awaited coroutines, unclosed resources, exceptions in threads, in __del__,
# the one that ends the main thread), recorded with a time and pushed at once to every
# subscribed client. Every hook chains to what was there and changes nothing the app prints:
# the asyncio logger gets a filter that records and returns True (a handler would disable
# logging.lastResort), and warnings.filters gets one entry in front that never matches but
# sees every warning before the filters decide (ResourceWarning is ignored by default).
# Hooks run in the app's threads, possibly during interpreter shutdown when the agent thread
# will never run again: they push synchronously, never block, never raise.

MAX_EVENTS = 100
MAX_EVENT_MESSAGE = 300
MAX_EVENT_DETAIL = 4096
_events = collections.deque(maxlen=MAX_EVENTS)
_event_seq = itertools.count(1)
_event_count = [0]
_hook_tl = threading.local()


def _cap_utf8(text, n):
    text = str(text)
    if len(text) <= n // 4:
        return text
    b = text.encode("utf-8", "backslashreplace")
    if len(b) <= n:
        return text
    return b[:n - 3].decode("utf-8", "ignore") + "..."


def _one_line(text, n=MAX_EVENT_MESSAGE):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _running_task_name():
    try:
        ev = sys.modules.get("asyncio.events")
        lp = ev._get_running_loop() if ev is not None else None
        if lp is None:
            return None
        t = sys.modules["asyncio.tasks"].current_task(lp)
        return t.get_name() if t is not None else None
    except Exception:
        return None


_TASK_NAME = re.compile(r"<(?:Task|_\w*Task\w*) \w+ name=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def _named_task(text):
    m = _TASK_NAME.search(text or "")
    if m is None:
        return None
    return m.group(1)[1:-1]


def _format_exc(etype, value, tb):
    try:
        return "".join(traceback.format_exception(etype, value, tb))
    except Exception:
        return "%s: %s" % (getattr(etype, "__name__", etype), _short(repr(value), 300))


def _record(kind, message, detail, exc_type=None, task=None, thread=None):
    """Store one event and push it to subscribed clients. Never raises; re-entered at most
    twice per thread (a GC run inside a hook can fire another one)."""
    depth = getattr(_hook_tl, "depth", 0)
    if depth >= 2:
        return
    _hook_tl.depth = depth + 1
    try:
        if thread is not None:
            th, native = thread, getattr(thread, "native_id", None)
        else:
            # never current_thread() here: in a foreign thread it creates a _DummyThread
            th = threading._active.get(threading.get_ident())
            try:
                native = threading.get_native_id()
            except Exception:
                native = getattr(th, "native_id", None)
        ev = {"seq": next(_event_seq), "at_unix_ms": _now_ms(), "kind": kind,
              "message": _one_line(message), "detail": _cap_utf8(detail or "", MAX_EVENT_DETAIL),
              "exc_type": exc_type,
              "thread": _short(th.name) if th is not None else None, "native_id": native,
              "task": _short(task) if task else _running_task_name()}
        _events.append(ev)
        _event_count[0] += 1
        ag = _agent
        if ag is not None:
            ag.push(_encode({"type": "warning", "warning": ev}))
    except Exception:
        pass
    finally:
        _hook_tl.depth = depth


def _on_asyncio_record(record):
    text = record.getMessage()
    if "that handles pid" in text and text.startswith("Loop "):
        kind = "loop_closed_watcher"
    elif "exception was never retrieved" in text:
        kind = "exception_never_retrieved"
    elif "Task was destroyed but it is pending" in text:
        kind = "task_destroyed_pending"
    elif text.startswith("Executing ") and " took " in text:
        kind = "slow_callback"
    elif record.levelno >= 40:  # logging.ERROR
        kind = "asyncio_error"
    else:
        return
    ei = record.exc_info
    exc_type = None
    detail = text
    if isinstance(ei, tuple) and ei and ei[0] is not None:
        exc_type = getattr(ei[0], "__name__", None)
        detail = text + "\n" + _format_exc(*ei)
    task = _named_task(text)
    _record(kind, text, detail, exc_type, task)


class _AsyncioLogSpy:
    """A filter on the `asyncio` logger: records, and lets every record through."""

    def filter(self, record):
        try:
            _on_asyncio_record(record)
        except Exception:
            pass
        return True

    def __repr__(self):
        return "<lifecycle-top agent: records asyncio warnings, lets all through>"


def _hook_asyncio_log(mod):
    lg = getattr(mod, "logger", None)
    if lg is not None and not any(isinstance(f, _AsyncioLogSpy) for f in lg.filters):
        lg.addFilter(_AsyncioLogSpy())


def _warning_kind(category, text):
    try:
        if issubclass(category, ResourceWarning):
            return "resource_warning"
        if issubclass(category, RuntimeWarning) and "was never awaited" in text:
            return "never_awaited"
    except Exception:
        pass
    return None


def _where_warned():
    """A short stack of the code that warned, outside the warnings machinery and the agent."""
    try:
        f = sys._getframe(2)
        out = []
        while f is not None and len(out) < 8:
            fn = f.f_code.co_filename
            if not fn.endswith(("warnings.py", "lifecycle_top_agent.py")):
                out.append('  File "%s", line %d, in %s' % (fn, f.f_lineno, f.f_code.co_name))
            f = f.f_back
        return "\n".join(out)
    except Exception:
        return ""


def _on_warning(kind, category, text):
    where = _where_warned()
    detail = "%s: %s" % (getattr(category, "__name__", "Warning"), text)
    if where:
        detail += "\nwarned at (innermost first):\n" + where
    _record(kind, text, detail, getattr(category, "__name__", None))


class _SpyMeta(type):
    def __subclasscheck__(cls, category):
        # Called by the warnings filter search right after _WarnSpy.match(text) of the same
        # filter entry: records, and never matches, so the app's filters decide as before.
        try:
            text = getattr(_hook_tl, "wtext", None)
            _hook_tl.wtext = None
            kind = _warning_kind(category, text or "")
            if kind is not None:
                _hook_tl.wlast = (text, category)
                _on_warning(kind, category, text)
        except Exception:
            pass
        return False

    def __repr__(cls):
        return "<lifecycle-top agent: any category, never matches>"


class _WarnSpyCategory(metaclass=_SpyMeta):
    pass


class _WarnSpy:
    def match(self, text):
        try:
            _hook_tl.wtext = text
        except Exception:
            pass
        return True

    def __repr__(self):
        return "<lifecycle-top agent: records warnings, never matches>"


_WARN_SPY_ENTRY = ("ignore", _WarnSpy(), _WarnSpyCategory, None, 0)


def _hook_warnings():
    import warnings
    try:
        if not any(f is _WARN_SPY_ENTRY or (type(f) is tuple and len(f) == 5
                                            and isinstance(f[1], _WarnSpy))
                   for f in warnings.filters):
            # Inserted without _filters_mutated(): it never matches, so the outcome of every
            # warning and the "already warned" registries are unchanged.
            warnings.filters.insert(0, _WARN_SPY_ENTRY)
    except Exception:
        pass
    orig = getattr(warnings, "_showwarnmsg", None)
    if orig is None or getattr(orig, "_lifecycle_top", False):
        return

    def _showwarnmsg(msg):
        # Warnings the spy did not see (filters the app inserted in front of it) but shown.
        try:
            text = str(msg.message)
            kind = _warning_kind(msg.category, text)
            if kind is not None:
                last = getattr(_hook_tl, "wlast", None)
                _hook_tl.wlast = None
                if last is None or last[0] != text or last[1] is not msg.category:
                    _on_warning(kind, msg.category, text)
        except Exception:
            pass
        return orig(msg)

    _showwarnmsg._lifecycle_top = True
    _showwarnmsg.__wrapped__ = orig
    warnings._showwarnmsg = _showwarnmsg


def _exc_line(etype, value):
    name = getattr(etype, "__name__", str(etype))
    try:
        s = str(value)
    except Exception:
        s = ""
    return "%s: %s" % (name, s) if s else name


def _hook_threading():
    orig = getattr(threading, "excepthook", None)
    if orig is None or getattr(orig, "_lifecycle_top", False):
        return

    def excepthook(args):
        try:
            if args.exc_type is not SystemExit:  # the default hook ignores it silently
                th = args.thread
                name = getattr(th, "name", None)
                _record("thread_exception", "Exception in thread %s: %s"
                        % (name, _exc_line(args.exc_type, args.exc_value)),
                        _format_exc(args.exc_type, args.exc_value, args.exc_traceback),
                        getattr(args.exc_type, "__name__", None), thread=th)
        except Exception:
            pass
        return orig(args)

    excepthook._lifecycle_top = True
    excepthook.__wrapped__ = orig
    threading.excepthook = excepthook


def _hook_sys():
    orig = getattr(sys, "unraisablehook", None)
    if orig is not None and not getattr(orig, "_lifecycle_top", False):
        def unraisablehook(args):
            try:
                try:
                    obj = repr(args.object) if args.object is not None else None
                except Exception:
                    obj = "<object repr() failed>"
                head = args.err_msg or "Exception ignored in"
                if obj is not None:
                    head = "%s: %s" % (head, obj)
                detail = head
                if args.exc_type is not None:
                    detail += "\n" + _format_exc(args.exc_type, args.exc_value,
                                                 args.exc_traceback)
                    head += " (%s)" % _exc_line(args.exc_type, args.exc_value)
                _record("unraisable", head, detail,
                        getattr(args.exc_type, "__name__", None))
            except Exception:
                pass
            return orig(args)

        unraisablehook._lifecycle_top = True
        unraisablehook.__wrapped__ = orig
        sys.unraisablehook = unraisablehook
    orig_ex = sys.excepthook
    if not getattr(orig_ex, "_lifecycle_top", False):
        def excepthook(etype, value, tb):
            try:
                _record("unhandled_exception", "Unhandled exception: %s"
                        % _exc_line(etype, value), _format_exc(etype, value, tb),
                        getattr(etype, "__name__", None))
            except Exception:
                pass
            return orig_ex(etype, value, tb)

        excepthook._lifecycle_top = True
        excepthook.__wrapped__ = orig_ex
        sys.excepthook = excepthook


def _on_main_thread_done():
    try:
        ag = _agent
        if ag is not None:
            ag.push(_encode({"type": "exiting", "at_unix_ms": _now_ms(),
                             "reason": "main_thread_done"}), wait=0.05)
    except Exception:
        pass


_exit_hooked = []


def _abandoned_threads():
    """Non-daemon threads still running at atexit. The interpreter runs atexit handlers
    after threading._shutdown has joined every non-daemon thread, unless that wait was cut
    short (KeyboardInterrupt in the main thread, say): those threads are then abandoned by
    the exit, killed mid-work."""
    out = []
    try:
        me = threading.current_thread()
        for t in threading.enumerate():
            if t is me or t.daemon or isinstance(t, threading._DummyThread):
                continue
            if t is threading.main_thread() or not t.is_alive():
                continue
            out.append({"native_id": getattr(t, "native_id", None) or 0, "name": t.name})
    except Exception:
        pass
    return out


def _hook_os_exit():
    """os._exit skips threading's join and the atexit handlers: say which non-daemon threads
    it kills mid-work (only while a client listens: then it waits up to 0.1 s for the line
    to be written)."""
    orig = os._exit
    if getattr(orig, "_lifecycle_top", False):
        return

    def _exit(status):
        try:
            ag = _agent
            if ag is not None and os.getpid() == ag.pid:
                ag.push(_encode({"type": "exiting", "at_unix_ms": _now_ms(),
                                 "reason": "os_exit", "code": status,
                                 "abandoned": _abandoned_threads()}), wait=0.1, sent=True)
        except Exception:
            pass
        orig(status)

    _exit._lifecycle_top = True
    _exit.__wrapped__ = orig
    os._exit = _exit


def _install_event_hooks():
    """Idempotent; also re-run at each report, so a hook the app installs later is chained
    (wrapped) in its turn."""
    for fn in (_hook_warnings, _hook_threading, _hook_sys, _hook_os_exit):
        try:
            fn()
        except Exception:
            pass
    if not _exit_hooked:
        _exit_hooked.append(True)
        try:
            # 3.9+: called by threading._shutdown when the main thread is done, before the
            # interpreter joins the non-daemon threads.
            threading._register_atexit(_on_main_thread_done)
        except Exception:
            pass


# ----------------------------------------------------------------------------- inspection

def _raw_tasks():
    """Every task asyncio knows, from one C-level copy of each WeakSet's references (not by
    iterating the WeakSet: while a thread does, the set keeps dead tasks' references)."""
    if sys.modules.get("asyncio.tasks") is None:
        return []
    return [t for t in _derefs(_task_refs()) if t is not None]


def _all_loops(scan_tasks=True):
    """Known loops; with scan_tasks, also loops of live tasks (catches loops whose class
    does not derive from BaseEventLoop, e.g. uvloop)."""
    found = list(_loops)
    seen = {id(lp) for lp in found}
    for t in (_raw_tasks() if scan_tasks or not found else ()):
        lp = getattr(t, "_loop", None)
        if lp is not None and id(lp) not in seen:
            seen.add(id(lp))
            found.append(lp)
            try:
                _loops.add(lp)
            except TypeError:
                pass
    return found


_LOOP_FRAMES = ("run_forever", "run_until_complete", "_run_once")


def _scan_loops():
    """One-time search for loops created before install() patched BaseEventLoop: every
    thread's frames (a running loop is `self` of run_forever / _run_once) and the event loop
    policy's loop; loops with tasks are also found through their tasks (the task book) at
    each report. A loop made before install that is not running, has no task and is not the
    policy's is only found once it runs or gets a task.

    Never `gc.get_objects()`: from this thread it hands out references to objects another
    thread is still building. CPython builds `tuple(generator)` in place and resizes it at
    the end, which fails unless it holds the only reference; an app thread that got the GIL
    back while the list held its half-built tuple died of `SystemError: Objects/tupleobject.c:
    bad argument to internal function` (seen in CI: aiohttp's import while `check` connected).
    """
    aev = sys.modules.get("asyncio.events")
    if aev is None:
        return
    base = aev.AbstractEventLoop

    def add(o):
        try:
            if isinstance(o, base):
                _loops.add(o)
        except Exception:
            pass
    try:
        for f in _other_frames().values():
            n = 0
            while f is not None and n < 200:
                # Only the loop's own frames: reading f_locals makes (before 3.13) a dict of
                # the frame's locals that stays on the frame, keeping those objects alive.
                if f.f_code.co_name in _LOOP_FRAMES:
                    add(f.f_locals.get("self"))
                f = f.f_back
                n += 1
    except Exception:
        pass
    try:
        add(getattr(getattr(aev._event_loop_policy, "_local", None), "_loop", None))
    except Exception:
        pass


def _loop_tasks(loop):
    import asyncio
    for _ in range(10):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:
            continue
    return []


def _current_task(loop):
    import asyncio
    try:
        return asyncio.current_task(loop)
    except Exception:
        return None


# Coroutines the agent itself runs on an app loop (async phases): cancel_tasks spares them.
_agent_coros = weakref.WeakSet()


def _is_agent_task(t):
    try:
        return t.get_coro() in _agent_coros
    except Exception:
        return False


def _ruc():
    """(code of BaseEventLoop.run_until_complete, its done-callback) or (None, None)."""
    be = sys.modules.get("asyncio.base_events")
    try:
        return be.BaseEventLoop.run_until_complete.__code__, be._run_until_complete_cb
    except Exception:
        return None, None


def _has_ruc_cb(fut, cb):
    try:
        return any(c[0] is cb for c in (fut._callbacks or ()))
    except Exception:
        return False


def _main_future(loop, frames=None, scan=False):
    """The pending future `loop.run_until_complete` waits on (asyncio.run's main task; during
    asyncio.run's teardown the gather of cancelled tasks, then shutdown_asyncgens), with how
    the loop is driven: (future, "asyncio.run" | "loop.run_until_complete"), or (None, None)
    for a loop that is not running or is driven by run_forever. Stopping such a loop makes
    asyncio raise "Event loop stopped before Future completed" in the app.

    Found from the loop thread's stack (the run_until_complete frame and its `future`), so it
    works for any future; with `scan`, loops whose run_until_complete has no Python frame of
    BaseEventLoop's are scanned for the task holding its done-callback."""
    try:
        if not loop.is_running():
            return None, None
        code, cb = _ruc()
        if code is None:
            return None, None
        ident = getattr(loop, "_thread_id", None)
        if frames is None:
            frames = _other_frames()
        f = frames.get(ident)
        via = "loop.run_until_complete"
        fut = None
        n = 0
        while f is not None and n < 10000:
            c = f.f_code
            if c is code and fut is None:
                fut = f.f_locals.get("future")
            elif fut is not None and c.co_name == "run" and c.co_filename.endswith(
                    "runners.py") and _ASYNCIO_DIR in c.co_filename:
                via = "asyncio.run"
                break
            f = f.f_back
            n += 1
        if fut is None and scan:
            for t in _loop_tasks(loop):
                if _has_ruc_cb(t, cb):
                    fut = t
                    break
        if fut is None or not hasattr(fut, "done") or fut.done():
            return None, None
        return fut, via
    except Exception:
        return None, None


def _future_name(fut):
    try:
        return fut.get_name()
    except Exception:
        return type(fut).__name__


def _main_entry(fut):
    """Report/result form of a main future: only tasks (they are rows of the report)."""
    if fut is None or not hasattr(fut, "get_name"):
        return None
    return {"id": id(fut), "name": _short(_future_name(fut))}


def _spare_detail(fut, via):
    return ("runs the main task \"%s\" of %s: it ends when that task ends (SIGINT to the "
            "target)" % (_short(_future_name(fut)), via))


def _tracked_ids():
    with _reg_lock:
        containers = list(_tracked)
    if not containers:
        return None
    ids = set()
    for c in containers:
        try:
            ids.update(map(id, list(c)))
        except Exception:
            pass
    return ids


def _thread_of(ident):
    return threading._active.get(ident) if ident is not None else None


def _native_of(ident):
    th = _thread_of(ident)
    return getattr(th, "native_id", None) if th is not None else None


def _coro_chain(coro):
    """Frames from the task's coroutine down to the innermost awaited coroutine."""
    out = []
    x = coro
    while x is not None:
        fr = getattr(x, "cr_frame", None) or getattr(x, "gi_frame", None)
        if fr is None:
            break
        out.append(fr)
        nxt = getattr(x, "cr_await", None)
        x = nxt if nxt is not None else getattr(x, "gi_yieldfrom", None)
    return out


_CORO = types.CoroutineType
_ASYNCIO_DIR = os.sep + "asyncio" + os.sep
_lib_files = {}


def _is_lib(filename):
    """asyncio's own frames say nothing about the app: skip them in "where".
    Keyed by file name: str hashes are cached, code-object hashes are recomputed (slow)."""
    r = _lib_files.get(filename)
    if r is None:
        r = _lib_files[filename] = _ASYNCIO_DIR in filename
    return r


def _innermost(coro):
    """Innermost frame of the await chain outside asyncio itself (or the innermost at all).
    Hot path: a type check instead of attribute probing (a failed lookup raises, slowly)."""
    f = user = None
    x = coro
    lib = _lib_files
    while type(x) is _CORO:
        fr = x.cr_frame
        if fr is None:
            break
        f = fr
        fn = fr.f_code.co_filename
        r = lib.get(fn)
        if r is None:
            r = _is_lib(fn)
        if not r:
            user = fr
        x = x.cr_await
    if f is None and x is not None and type(x) is not _CORO:
        chain = _coro_chain(x)  # generator-based coroutines and other awaitables
        f = chain[-1] if chain else None
    return user if user is not None else f


# What blocked tasks await (``task_awaits``), at most this many entries per report.
MAX_TASK_AWAITS = 2000
_awaits_acc = []
_SUBPROC_FILE = os.sep + "asyncio" + os.sep + "subprocess.py"
_SUBPROC_WAITS = ("wait", "communicate")
_MISSING = object()


def _task_await(t, fw, loop_id, where, sub=_MISSING):
    """What task t awaits through its _fut_waiter fw: another task, a gather of tasks, or
    (walking its await chain) an asyncio subprocess; None for anything else. `sub`: the
    first coroutine of the chain running asyncio's subprocess.py wait/communicate (the walk
    starts there), or None, when the caller walked the chain already (_task_row)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    if isinstance(fw, aio.Task):
        return {"task_id": id(t), "loop_id": loop_id, "kind": "task", "task_ids": [id(fw)],
                "where": where}
    worker = _exec_aio.get(id(fw))
    if worker is not None:
        return {"task_id": id(t), "loop_id": loop_id, "kind": "executor", "native_id": worker,
                "where": where}
    coro = t._coro
    if type(coro) is _CORO and coro.cr_code.co_name == "shutdown_default_executor":
        # asyncio.run's close: the task awaits a future that the thread it started
        # (target loop._do_shutdown, the future as its argument) sets once every worker of
        # the default executor has been joined.
        for th in threading.enumerate():
            target = getattr(th, "_target", None)
            args = getattr(th, "_args", None) or ()
            if getattr(target, "__name__", None) == "_do_shutdown" and any(
                    a is fw for a in args):
                return {"task_id": id(t), "loop_id": loop_id, "kind": "executor_shutdown",
                        "native_id": th.native_id, "where": where}
    children = getattr(fw, "_children", None)
    if children is not None:
        return {"task_id": id(t), "loop_id": loop_id, "kind": "gather",
                "task_ids": [id(c) for c in children if not c.done()][:50], "where": where}
    if sub is None:
        return None
    x = t._coro if sub is _MISSING else sub
    while type(x) is _CORO:
        fr = x.cr_frame
        if fr is None:
            break
        if fr.f_code.co_filename.endswith(_SUBPROC_FILE) and fr.f_code.co_name in \
                _SUBPROC_WAITS:
            pid = getattr(fr.f_locals.get("self"), "pid", None)
            if pid is not None:
                return {"task_id": id(t), "loop_id": loop_id, "kind": "subprocess",
                        "pid": pid, "where": where}
        x = x.cr_await
    return None


# ----------------------------------------------------------------------------- task book
#
# Reports follow activity, not size (issue 14): a _TaskBook keeps, per task, a weak
# reference to the future it waited on at the last report (`_fut_waiter`). A task runs a step
# only once that future is done, so while it is still pending the task's row (await point,
# coroutine, state) is unchanged; only tasks whose future is done or gone, tasks without one,
# new tasks, the loops' current tasks and a small rolling window (names, tracked flags) are
# looked at in Python. The check over all tasks reads only the remembered futures' `_state`
# (not the tasks), in C-level map() passes over slices of STEP tasks,
# and the agent thread sleeps briefly every SLICE_S of work, so neither the walk nor the
# one-time loop discovery holds the GIL for more than a few milliseconds at a time (the
# host's threads get it between slices; bench/agent_gil.py classes the stalls a ticker
# thread sees by whether a report was being built).
# The book is the state both kinds of report are encoded from: a full report lists its rows,
# a delta (report_delta, docs/protocol.md §5.3) the rows added/changed/removed since the
# previous report.

STEP = 4096          # tasks per C-level slice
SLICE_S = 0.002      # work between two GIL yields
YIELD_S = 0.0001     # a real sleep: sleep(0) often re-takes the GIL before a waiter can
ROLL = 512           # tasks re-checked in full per report, whatever their future says
if hasattr(operator, "call"):  # 3.11+
    def _derefs(refs):
        """The referents of `refs` (None for dead ones), lazily, at C speed."""
        return map(operator.call, refs)
    _derefs_lazy = _derefs
else:
    def _derefs(refs):
        # Not map(weakref.ref.__call__, refs): the slot wrapper builds an argument tuple
        # per call, 2-9x slower than this comprehension (bench/agent_delta.py's profile).
        return [r() for r in refs]

    def _derefs_lazy(refs):
        return (r() for r in refs)


class _Slicer:
    """Yields the GIL (a short sleep) once SLICE_S of work has been done since the last one;
    `longest` is the longest stretch of work between two yields (wall time: an upper bound
    of how long the GIL was held, reported as cost.max_slice_ms)."""

    __slots__ = ("t", "c", "yields", "longest", "longest_cpu")

    def __init__(self):
        self.t = time.perf_counter()
        self.c = time.thread_time()
        self.yields = 0
        self.longest = self.longest_cpu = 0.0

    def tick(self):
        now = time.perf_counter()
        d = now - self.t
        if d >= SLICE_S:
            c = time.thread_time()
            self.longest = max(self.longest, d)
            self.longest_cpu = max(self.longest_cpu, c - self.c)
            time.sleep(YIELD_S)
            self.yields += 1
            self.t = time.perf_counter()
            self.c = time.thread_time()


# The slicer of the report being built and sent (agent thread only).
_slicer = [None]


def _tick():
    s = _slicer[0]
    if s is not None:
        s.tick()


def _task_refs():
    """Weak references to every task asyncio knows, copied with C-level calls (each one
    atomic under the GIL, ~1 ms per 100,000 tasks), instead of iterating the WeakSets in
    Python (asyncio.all_tasks: ~40 ms for 100,000 tasks, on the loop's thread)."""
    at = sys.modules.get("asyncio.tasks")
    out = []
    if at is None:
        return out
    for name in ("_all_tasks", "_scheduled_tasks"):
        data = getattr(getattr(at, name, None), "data", None)
        if data is not None:
            for _ in range(10):
                try:
                    # One copy (list(set) is C-level, atomic under the GIL); the usual case
                    # is one set only (3.8-3.11: _all_tasks, 3.12+: _scheduled_tasks).
                    if out:
                        out.extend(list(data))
                    else:
                        out = list(data)
                    break
                except RuntimeError:  # changed size during iteration (another thread)
                    continue
    eager = getattr(at, "_eager_tasks", None)
    if eager:
        # Not twice (the book's gone-pass gate counts references): a task that moved from
        # the eager set to the scheduled one between the two copies is listed once.
        listed = getattr(getattr(at, "_scheduled_tasks", None), "data", None) or ()
        for _ in range(10):
            try:
                out.extend(r for r in map(weakref.ref, tuple(eager)) if r not in listed)
                break
            except (RuntimeError, TypeError):
                continue
    return out


def _task_row(t, fw, tid, lid, state, tracked, where_cache, prev=None):
    """(row, task_awaits entry or None) of one task waiting on `fw` (its _fut_waiter); row
    strings are plain (not indexed). `prev`: the task's previous row (its creation site is
    kept from it). One walk of the await chain gives both "where" and, for _task_await, the
    first coroutine in asyncio's subprocess wait/communicate."""
    coro = t._coro
    f = user = sub = None
    x = coro
    lib = _lib_files
    while type(x) is _CORO:
        fr = x.cr_frame
        if fr is None:
            break
        f = fr
        code = fr.f_code
        fn = code.co_filename
        r = lib.get(fn)
        if r is None:
            r = _is_lib(fn)
        if not r:
            user = fr
        elif sub is None and code.co_name in _SUBPROC_WAITS and fn.endswith(_SUBPROC_FILE):
            sub = x
        x = x.cr_await
    if user is not None:
        f = user
    elif f is None:
        f = _innermost(coro)
    where = None
    if f is not None:
        key = (f.f_code.co_filename, f.f_lineno)
        where = where_cache.get(key)
        if where is None:
            where = where_cache[key] = _short("%s:%d" % key, 300)
    q = getattr(coro, "__qualname__", None) or type(coro).__name__
    aw = None
    if fw is not None:
        try:
            aw = _task_await(t, fw, lid, where, sub)
        except Exception:
            aw = None
    name = t.get_name()
    if len(name) > MAX_STR:
        name = name[:MAX_STR]
    return (tid, lid, name, state, q, where,
            (tid in tracked) if tracked is not None else None,
            _created_at(t) if prev is None else prev[7]), aw


class _Nothing:
    pass


# What the book remembers of a task's future: a weak reference to it, _NO_FUTURE (a dead
# weak reference: a task with no future, looked at again in every report), _UNWATCHABLE (a
# live one to an object with no `_state`: a future without weak references is always looked
# at) or _DONE.
_NO_FUTURE = weakref.ref(_Nothing())
_UNWATCHED = _Nothing()
_UNWATCHABLE = weakref.ref(_UNWATCHED)
# _DONE: what a done task is remembered by (done is final), a live weak reference to an
# object that looks like a future that stays pending.


class _Final:
    _state = "PENDING"


_FINAL = _Final()
_DONE = weakref.ref(_FINAL)


def _pending_state():
    """asyncio's pending `_state`: one string object in C and Python futures (3.8-3.13), so
    the book compares it by identity."""
    bf = sys.modules.get("asyncio.base_futures")
    p = getattr(bf, "_PENDING", None)
    if isinstance(p, str):
        _Final._state = p
    return _Final._state


def _ref_of(fw):
    if fw is None:
        return _NO_FUTURE
    try:
        return weakref.ref(fw)  # the future's existing plain weak reference, if it has one
    except TypeError:
        return _UNWATCHABLE


# Awaits entries that stay the same while a task waits on the same future (none, another
# task, a subprocess); a gather's pending children and an executor item's worker change.
_STATIC_KINDS = (None, "task", "subprocess")
_STATIC_AW = {}


class _TaskBook:
    def __init__(self, budget=None):
        self.budget = budget
        # ref -> weak reference to the future waited on at the last look (None: no future).
        # Weak: a strong one would keep a pending task the app dropped alive (the future's
        # callbacks hold the task) and silence "Task was destroyed but it is pending!".
        self.fw = {}
        self.info = {}     # ref -> (tid, loop id, state) of every live task (all counted)
        self.rows = {}     # tid -> row, the listed tasks (at most budget)
        self.aw = {}       # tid -> task_awaits entry
        self.counts = {}   # loop id -> {state: n}
        self.changed = {}  # tid -> row added or changed since the last report
        self.removed = set()  # tids of rows removed since the last report
        self.born = {}     # tid -> ref of a task first seen in this update (see _drop)
        self.currents = ()  # refs of the loops' current tasks at the last report
        self.pos = 0
        self.prev_refs, self.prev_fws = [], []  # last pass: refs, weak refs of their futures
        self.epoch = next(_book_epochs)  # a client's delta base is only valid in its epoch
        self.visited = 0
        self.yields = 0

    def _count(self, lid, state, n):
        c = self.counts.setdefault(lid, {})
        v = c.get(state, 0) + n
        if v:
            c[state] = v
        else:
            c.pop(state, None)

    def _drop(self, ref, keep_fw):
        """Forgets task `ref` (done, dead or gone). `keep_fw`: remember it as done while asyncio
        still lists its reference (a dead one stays listed while some thread iterates the
        WeakSet), so that the book's references are a superset of the listed ones and the
        gone-pass gate in `update` (a count) is exact."""
        info = self.info.pop(ref, None)
        if keep_fw:
            self.fw[ref] = _DONE  # done is final: never looked at again
        else:
            self.fw.pop(ref, None)
        if info is None:
            return
        tid = info[0]
        self._count(info[1], info[2], -1)
        b = self.born.get(tid)
        if b is not None and b != ref:
            # The row at this id is another task's now: one first seen in this update at the
            # address this task had (CPython reuses a freed task's memory). The born task's
            # own drop (it was done before the update ended) does remove it.
            return
        self.aw.pop(tid, None)
        if self.rows.pop(tid, None) is not None:
            self.changed.pop(tid, None)
            self.removed.add(tid)

    def _visit(self, ref, t, fw, ctx, quick=False, fref=None, listed=False):
        """Refreshes the book's facts and row of task `t` (weak reference `ref`, future `fw`,
        `fref` the book's reference to it when the caller made it already); `quick`: only
        name, state and tracked flag when `t` has not run since it was last looked at (it
        still waits on the same future). `listed`: `ref` is one of asyncio's (this update's
        list), which the book keeps an entry for even when its task is dead."""
        current, has_cancelling, tracked, where_cache, lids = ctx
        if t is None:
            self._drop(ref, listed or ref in self.fw)
            return
        self.visited += 1
        try:
            if t.done():
                self._drop(ref, True)
                return
            lp = t._loop
            lpid = id(lp)
            lid = lids.get(lpid)
            if lid is None:
                lid = lids[lpid] = _loop_id(lp)
                if lp not in _loops:
                    try:
                        _loops.add(lp)  # a loop made before install (or not a BaseEventLoop)
                    except TypeError:
                        pass
            if t is current.get(lpid):
                state = "running"
            elif (t.cancelling() if has_cancelling else t._must_cancel):
                state = "cancelling"
            else:
                state = "pending"
            tid = id(t)
            old = self.info.get(ref)
            if old is None:
                self.born[tid] = ref
            # Unchanged facts keep their old objects: every object the book replaces is one
            # more that lives on into the old generations and brings a full collection of
            # the host's heap closer.
            if old is None or old[1] != lid or old[2] != state:
                if old is not None:
                    self._count(old[1], old[2], -1)
                self.info[ref] = (tid, lid, state)
                self._count(lid, state, 1)
            if fref is None:
                fref = _ref_of(fw)
            fws = self.fw
            before = fws.get(ref)
            fws[ref] = fref
            rows = self.rows
            cur = rows.get(tid)
            if cur is not None or len(rows) < self.budget:
                # The row at `tid` is this task's only if the book knew the task (`old`):
                # else it may be that of a dead task that had the same address.
                prow = cur if old is not None else None
                if (quick and prow is not None and fw is not None and fref is before
                        and fref is not _UNWATCHABLE and prow[3] == state
                        and self.aw.get(tid, _STATIC_AW).get("kind") in _STATIC_KINDS
                        and prow[6] == ((tid in tracked) if tracked is not None else None)
                        and prow[2] == t.get_name()[:MAX_STR]):
                    return
                row, aw = _task_row(t, fw, tid, lid, state, tracked, where_cache, prow)
                if cur != row:
                    rows[tid] = row
                    self.changed[tid] = row
                    self.removed.discard(tid)
                if aw is not None:
                    if self.aw.get(tid) != aw:
                        self.aw[tid] = aw
                else:
                    self.aw.pop(tid, None)
        except Exception:
            # Looked at again next time (an entry the gone-pass gate counts).
            self.fw.setdefault(ref, _UNWATCHABLE)
            return

    def update(self, loops, tracked, slicer):
        """One pass: refreshes what changed since the last report."""
        self.visited = 0
        self.born = {}
        current = {}
        for lp in loops:
            ct = _current_task(lp)
            if ct is not None:
                current[id(lp)] = ct
        refs = _task_refs()
        has_cancelling = None
        for r in refs[:1]:
            t = r()
            has_cancelling = t is not None and hasattr(t, "cancelling")
        ctx = (current, bool(has_cancelling), tracked, {}, {})
        fw_get = self.fw.get
        rep = itertools.repeat
        n = len(refs)
        prev_refs, prev_fws = self.prev_refs, self.prev_fws
        pending = _pending_state()
        if len(refs) == len(prev_refs) and refs == prev_refs:
            # Same tasks in the same order as last time (the usual case): one lazy C-level
            # pass over the futures remembered at the same positions, taken STEP at a time
            # (no copies); a looked-at position gets its new future in place, behind the
            # pass. A task steps only once the future it waits on is done (its wake-up is
            # that future's done callback; cancel() cancels that future first), so a task
            # whose remembered future is still pending has not run since and its row is
            # unchanged. Looked at: the rest (future done or gone, no future, not a future).
            fws_all = prev_fws
            same = map(operator.is_, map(getattr, _derefs_lazy(fws_all), rep("_state"),
                                         rep(None)), rep(pending))
            for i in range(0, n, STEP):
                flags = list(itertools.islice(same, STEP))
                k = 0
                while True:
                    # The next one whose future is not pending: list.index scans in C
                    # (cheaper than compress over a range, which makes an int per task).
                    try:
                        k = flags.index(False, k)
                    except ValueError:
                        break
                    j = i + k
                    k += 1
                    r = refs[j]
                    t = r()
                    fw = getattr(t, "_fut_waiter", None)
                    fref = fws_all[j] = _ref_of(fw)
                    self._visit(r, t, fw, ctx, False, fref, True)
                    slicer.tick()
                slicer.tick()
        else:
            fws_all = []
            for i in range(0, n, STEP):
                chunk = refs[i:i + STEP]
                old = list(map(fw_get, chunk, rep(_UNWATCHABLE)))  # new tasks: unwatchable
                idx = list(itertools.compress(range(len(chunk)), map(
                    operator.is_not, map(getattr, _derefs(old), rep("_state"), rep(None)),
                    rep(pending))))
                for j in idx:
                    r = chunk[j]
                    t = r()
                    fw = getattr(t, "_fut_waiter", None)
                    fref = old[j] = _ref_of(fw)
                    self._visit(r, t, fw, ctx, False, fref, True)
                    slicer.tick()
                fws_all.extend(old)
                slicer.tick()
        self.prev_refs, self.prev_fws = refs, fws_all
        # Always looked at: the current tasks (now and at the last report: a task that was
        # running and then finished keeps its future None), and a rolling window.
        extra = [weakref.ref(t) for t in current.values()] + list(self.currents)
        self.currents = extra[:len(current)]
        ncur = len(extra)
        if n:  # wraps around: every task is in one window of every ceil(n / ROLL)
            start = self.pos % n
            extra.extend(refs[start:start + ROLL])
            extra.extend(refs[:max(0, min(start, start + ROLL - n))])
            self.pos = start + ROLL
        for r in extra[:ncur]:
            t = r()
            self._visit(r, t, getattr(t, "_fut_waiter", None), ctx)
        # The window: the pass saw every other change (a task steps only once its future is
        # done), so what is left to look at is what changes while a task waits: its name, its
        # tracked flag and what a gather or an executor item it waits on waits for. A row
        # with the same name and flag and a static await is skipped without a visit.
        rows, info, awd = self.rows, self.info, self.aw
        for r in extra[ncur:]:
            t = r()
            if t is not None and r in info:
                tid = id(t)
                row = rows.get(tid)
                if (row is not None and row[3] != "running"
                        and row[2] == t.get_name()[:MAX_STR]
                        and row[6] == ((tid in tracked) if tracked is not None else None)
                        and awd.get(tid, _STATIC_AW).get("kind") in _STATIC_KINDS):
                    continue
            self._visit(r, t, getattr(t, "_fut_waiter", None), ctx, True)
            slicer.tick()
        slicer.tick()
        # Tasks gone since (collected): in the book but no longer in asyncio's sets. Every
        # listed reference has an entry in `fw` (a dead one too: see _drop) and `refs` holds
        # no reference twice, so the counts are equal only if the two sets are: the walk is
        # needed only when they differ. (Before, a dead reference still listed was dropped
        # from `fw`; with one task collected since the last update that balanced the counts
        # and its row stayed listed.)
        if len(self.fw) != n:
            live = set(refs)
            slicer.tick()
            for r in self.fw.keys() - live:  # C-level difference, not a Python loop
                self._drop(r, False)
            slicer.tick()
        # Rows freed by removals are given to tasks not listed yet (over the budget, they
        # were only counted), as a full report would list them.
        room = self.budget - len(self.rows)
        if room > 0 and len(self.info) > len(self.rows):
            rows = self.rows
            for k, (r, info) in enumerate(list(self.info.items())):
                if info[0] not in rows:
                    t = r()
                    self._visit(r, t, getattr(t, "_fut_waiter", None), ctx)
                    room -= 1
                    if room <= 0:
                        break
                if k % 256 == 0:
                    slicer.tick()
        self.yields += slicer.yields
        return current

    def take_changes(self):
        changed, removed = self.changed, self.removed
        self.changed, self.removed = {}, set()
        return changed, removed


_book = [None]
_book_epochs = itertools.count(1)


class _Probe:
    """A call_soon_threadsafe round trip measuring loop lag and snapshotting its tasks."""

    __slots__ = ("loop", "t0", "ev", "lag", "tasks", "late")

    def __init__(self, loop):
        self.loop = loop
        self.t0 = time.perf_counter()
        self.ev = threading.Event()
        self.lag = None
        self.tasks = None
        self.late = False  # the report stopped waiting: keep no reference to the tasks

    def run(self):
        # Lag only: the tasks are read by the task book from the agent thread, in slices
        # (all_tasks() here held the loop's thread ~40 ms per 100,000 tasks).
        try:
            self.lag = time.perf_counter() - self.t0
        finally:
            self.ev.set()


# What a thread blocks on (``waits_on``, docs/protocol.md §5.2), from its innermost frames:
# the contiguous run of frames in threading.py / queue.py, whose outermost recognised one
# names the primitive (Thread.join has the joined Thread as ``self``, Event.wait the Event,
# threading._shutdown is the interpreter joining non-daemon threads). A thread blocked in C
# (``lock.acquire()``, ``with lock:``, ``time.sleep``) has a user frame innermost: its source
# line is classified once per (file, line) and the names on it resolved to a lock; an RLock's
# owner comes from its repr (``owner=IDENT``), a Lock records none.
_SYNC_FILES = ("threading.py", "queue.py")
_sync_memo = {}
_line_memo = {}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OWNER_RE = re.compile(r"owner=(\d+)")


def _is_sync(fn):
    r = _sync_memo.get(fn)
    if r is None:
        r = _sync_memo[fn] = os.path.basename(fn) in _SYNC_FILES
    return r


def _classify_sync(f):
    """(kind, self) for a recognised threading/queue frame, else None."""
    name = f.f_code.co_name
    if name == "_shutdown":
        return "shutdown", None
    if name not in ("join", "wait", "wait_for", "acquire", "get", "put", "_wait_for_tstate_lock"):
        return None
    obj = f.f_locals.get("self")
    if obj is None:
        return None
    if isinstance(obj, threading.Thread):
        return "join", obj
    if isinstance(obj, threading.Event):
        return "event", obj
    if isinstance(obj, threading.Condition):
        return "condition", obj
    if isinstance(obj, threading.Semaphore):
        return "semaphore", obj
    if os.path.basename(f.f_code.co_filename) == "queue.py":
        return "queue", obj
    return None


def _line_kind(f):
    key = (f.f_code.co_filename, f.f_lineno)
    r = _line_memo.get(key)
    if r is None:
        import linecache
        line = linecache.getline(key[0], key[1]).strip()
        if "sleep(" in line:
            r = ("sleep", ())
        elif "select(" in line or ".poll(" in line:
            r = ("select", ())
        elif "acquire(" in line or line.startswith("with ") or " with " in line:
            r = ("lock", tuple(n for n in _NAME_RE.findall(line)
                               if n not in ("with", "as", "async", "await")))
        else:
            r = ("", ())
        if len(_line_memo) < 10000:
            _line_memo[key] = r
    return r


def _resolve(f, dotted):
    parts = dotted.split(".")
    if parts[-1] == "acquire":
        parts = parts[:-1]
    if not parts:
        return None
    loc = f.f_locals
    obj = loc[parts[0]] if parts[0] in loc else f.f_globals.get(parts[0])
    for p in parts[1:]:
        if obj is None:
            return None
        obj = getattr(obj, p, None)
    return obj


_SOCKETSERVER = os.sep + "socketserver.py"
_SERVE_FILES = (_SOCKETSERVER, os.sep + "selectors.py")


def _serve_forever(f):
    """A `socketserver` server's `serve_forever` loop a few frames out from a poll: it polls
    every 0.5 s and returns only when the server's `shutdown()` is called."""
    n = 0
    while f is not None and n < 4:
        c = f.f_code
        if c.co_name == "serve_forever" and c.co_filename.endswith(_SOCKETSERVER):
            caller = f.f_back  # the app's call, unless it is Thread.run (target=serve_forever)
            at = caller if caller is not None and not _is_sync(caller.f_code.co_filename) else f
            return {"kind": "serve_forever", "where": _where(at),
                    "object": type(f.f_locals.get("self")).__name__}
        f = f.f_back
        n += 1
    return None


def _lock_wait(f, ident):
    if f.f_code.co_filename.endswith(_SERVE_FILES):  # in its poll, or between two polls
        s = _serve_forever(f)
        if s is not None:
            return s
    kind, names = _line_kind(f)
    if kind != "lock":
        return {"kind": kind, "where": _where(f)} if kind else None
    for n in names:
        try:
            obj = _resolve(f, n)
        except Exception:
            continue
        tname = type(obj).__name__
        if tname == "RLock":
            m = _OWNER_RE.search(repr(obj))
            owner = int(m.group(1)) if m else None
            if owner == ident:
                continue  # it holds this one (re-entrant): look further on the line
            return {"kind": "rlock", "where": _where(f), "object": n,
                    "owner_native_id": _native_of(owner) if owner else None}
        if tname == "lock" and obj.locked():
            return {"kind": "lock", "where": _where(f), "object": n}
    return None


_FUTURES_BASE = os.sep + "concurrent" + os.sep + "futures" + os.sep + "_base.py"
_FUTURES_THREAD = os.sep + "concurrent" + os.sep + "futures" + os.sep + "thread.py"
# id(concurrent future) -> native id of the executor worker running it; id(asyncio future
# chained to it by run_in_executor / wrap_future) -> the same. Rebuilt per report.
_exec_workers = {}
_exec_aio = {}


def _scan_executor_workers(frames):
    """Finds the work item each ThreadPoolExecutor worker runs (its `_WorkItem.run` frame)."""
    _exec_workers.clear()
    _exec_aio.clear()
    natives = {th.ident: getattr(th, "native_id", None) for th in threading.enumerate()}
    for ident, f in frames.items():
        n = 0
        while f is not None and n < 64:
            c = f.f_code
            if c.co_name == "run" and c.co_filename.endswith(_FUTURES_THREAD):
                fut = getattr(f.f_locals.get("self"), "future", None)
                if fut is not None and natives.get(ident) is not None:
                    _exec_workers[id(fut)] = natives[ident]
                    for cb in list(getattr(fut, "_done_callbacks", None) or ())[:8]:
                        for cell in getattr(cb, "__closure__", None) or ():
                            try:
                                dest = cell.cell_contents
                            except ValueError:
                                continue
                            if dest is not fut and hasattr(dest, "get_loop"):
                                _exec_aio[id(dest)] = natives[ident]
                break
            f = f.f_back
            n += 1


def _waits_on(frame, ident):
    f = frame
    found = None
    while f is not None and _is_sync(f.f_code.co_filename):
        c = _classify_sync(f)
        if c is not None:
            found = (c, f)
        f = f.f_back
    if found is None:
        return _lock_wait(frame, ident) if frame is not None and frame is f else None
    (kind, obj), sf = found
    if kind == "condition" and f is not None and f.f_code.co_filename.endswith(_FUTURES_BASE) \
            and f.f_code.co_name in ("result", "exception"):
        # Future.result(): the worker running it, or none yet (queued behind others).
        fut = f.f_locals.get("self")
        return {"kind": "future", "where": _where(f.f_back), "object": "Future",
                "target_native_id": _exec_workers.get(id(fut))}
    out = {"kind": kind, "where": _where(sf.f_back)}
    if kind == "join":
        out["target_native_id"] = getattr(obj, "native_id", None)
        out["object"] = _short(obj.name)
    elif obj is not None:
        out["object"] = type(obj).__name__
    return out


def _other_frames():
    """sys._current_frames() without the calling thread's own entry. Its own innermost frame
    in a local dict is a reference cycle (frame -> locals -> dict -> frame) that keeps every
    caller's frame and locals (a whole report: 20,000 task rows) alive until a full garbage
    collection: the host's memory grew by megabytes per second with a subscribed client."""
    frames = sys._current_frames()
    frames.pop(threading.get_ident(), None)
    return frames


def _thread_entries(agent_idents):
    main = threading.main_thread()
    out = []
    try:
        frames = _other_frames()
    except Exception:
        frames = {}
    for th in threading.enumerate():
        d = {"name": _short(th.name), "ident": th.ident,
             "native_id": getattr(th, "native_id", None), "daemon": th.daemon,
             "alive": th.is_alive(), "main": th is main,
             "agent": th.ident in agent_idents}
        site = _site_text(getattr(th, "_lifecycle_top_site", None))
        if site is not None:
            d["started_at"] = site
        if not d["agent"]:
            try:
                w = _waits_on(frames.get(th.ident), th.ident)
                if w is not None:
                    d["waits_on"] = w
            except Exception:
                pass
        out.append(d)
    return out


def _executor_entries():
    out = []
    for ex in list(_executors):
        try:
            workers = []
            for th in list(getattr(ex, "_threads", None) or ()):
                if len(workers) >= MAX_WORKERS_LISTED:
                    break
                workers.append({"name": _short(th.name),
                                "native_id": getattr(th, "native_id", None),
                                "alive": th.is_alive()})
            procs = list((getattr(ex, "_processes", None) or {}).keys())
            n_workers = len(getattr(ex, "_threads", None) or ()) + len(procs)
            for pid in procs[:max(0, MAX_WORKERS_LISTED - len(workers))]:
                workers.append({"name": "pid %d" % pid, "pid": pid,
                                "alive": os.path.exists("/proc/%d" % pid)})
            q = getattr(ex, "_work_queue", None)
            pending = q.qsize() if hasattr(q, "qsize") else len(
                getattr(ex, "_pending_work_items", None) or {})
            out.append({"id": id(ex), "kind": type(ex).__name__,
                        "max_workers": getattr(ex, "_max_workers", None),
                        "shutdown": bool(getattr(ex, "_shutdown", False)
                                         or getattr(ex, "_shutdown_thread", False)),
                        "pending": pending, "workers": workers, "workers_total": n_workers})
        except Exception:
            continue
    return out


def _subprocess_entries():
    out = []
    for rec in list(_subprocs):
        d = {k: v for k, v in rec.items() if k != "_ref"}
        p = rec["_ref"]() if rec.get("_ref") else None
        d["returncode"] = getattr(p, "returncode", None) if p is not None else None
        d["alive"] = d["returncode"] is None and os.path.exists("/proc/%d" % rec["pid"])
        out.append(d)
    return out


def _phase_entries():
    with _reg_lock:
        return [{"name": _short(k), "description": _short(v[1])} for k, v in _phases.items()]


_loop_numbers = weakref.WeakKeyDictionary()
_loop_counter = itertools.count(1)


def _loop_id(loop):
    """Small stable number per loop (1, 2, ...): short on the wire, repeated in every row."""
    try:
        n = _loop_numbers.get(loop)
        if n is None:
            n = _loop_numbers[loop] = next(_loop_counter)
        return n
    except TypeError:  # not weak-referenceable
        return id(loop)


def _build_report(agent, seq, max_tasks):
    """Builds report `seq` from the task book: a _Built that encodes the full report and,
    when the book already served the previous report, the delta against it."""
    t_start = time.perf_counter()
    slicer = _slicer[0] = _Slicer()
    _install_event_hooks()  # chain hooks the app installed since the last report
    book = _book[0]
    if book is None or book.budget != max_tasks:
        book = _book[0] = _TaskBook(max_tasks)
    loops = list(_loops)  # the book adds the loops it meets through tasks (uvloop too)
    probes = agent.probes
    live = {id(lp) for lp in loops}
    for k in [k for k in probes if k not in live]:
        del probes[k]
    waiting = []
    for lp in loops:
        try:
            if lp.is_closed() or not lp.is_running():
                continue
            pr = probes.get(id(lp))
            if pr is not None and not pr.ev.is_set():
                continue  # previous probe still queued: the loop is blocked
            pr = probes[id(lp)] = _Probe(lp)
            lp.call_soon_threadsafe(pr.run)
            waiting.append(pr)
        except Exception:
            continue
    deadline = time.perf_counter() + PROBE_TIMEOUT
    for pr in waiting:
        while not agent.stopping and not pr.ev.wait(
                min(0.01, max(0.0, deadline - time.perf_counter()))):
            if time.perf_counter() >= deadline:
                break
    for pr in waiting:
        pr.late = True
    slicer.t, slicer.c = time.perf_counter(), time.thread_time()  # waiting is not work
    try:
        _scan_executor_workers(_other_frames())
    except Exception:
        _exec_workers.clear()
        _exec_aio.clear()
    tracked = _tracked_ids()
    slicer.tick()
    book.update(loops, tracked, slicer)
    loops = list(_loops)  # with the loops the book found through their tasks
    loop_entries = []
    frames = None
    total = 0
    for lp in loops:
        try:
            running, closed = lp.is_running(), lp.is_closed()
            main_fut = None
            if running:
                if frames is None:
                    frames = _other_frames()
                main_fut = _main_future(lp, frames)[0]
            ident = getattr(lp, "_thread_id", None)
            pr = probes.get(id(lp))
            blocked = bool(running and pr is not None and not pr.ev.is_set())
            lag = None
            if pr is not None and running:
                lag = (time.perf_counter() - pr.t0) if blocked else pr.lag
            lid = _loop_id(lp)
            counts = dict(book.counts.get(lid) or {})
            n = sum(counts.values())
            total += n
            entry = {"id": lid, "class": type(lp).__name__, "thread_ident": ident,
                     "native_id": _native_of(ident), "running": running, "closed": closed,
                     "blocked": blocked, "lag_ms": None if lag is None else lag * 1000.0,
                     "counts": counts, "tasks_total": n,
                     "main": ident is not None and ident == threading.main_thread().ident,
                     "main_task": _main_entry(main_fut)}
            if blocked:
                if frames is None:
                    frames = _other_frames()
                entry["blocked_at"] = _where(frames.get(ident))
            loop_entries.append(entry)
        except Exception:
            continue
    build_ms = (time.perf_counter() - t_start) * 1000.0
    header = {"type": "report", "seq": seq, "at_unix_ms": _now_ms(), "pid": os.getpid(),
              "threads": _thread_entries(agent.idents()), "loops": loop_entries,
              "executors": _executor_entries(), "subprocesses": _subprocess_entries(),
              "phases": _phase_entries(), "tasks_total": total, "tasks_listed": len(book.rows),
              "tracking": tracked is not None,
              "task_awaits": list(itertools.islice(book.aw.values(), MAX_TASK_AWAITS)),
              "warnings": list(_events), "warnings_total": _event_count[0],
              "cost": agent.cost(build_ms)}
    changed, removed = book.take_changes()
    return _Built(seq, header, book, changed, removed)


class _Built:
    """One built report: `full()` encodes it whole (once, shared by the clients that need
    it); `delta()` encodes for one client the changes it has not received (a client that
    skipped builds while reading gets the sum of their changes, see _Server._reports)."""

    def __init__(self, seq, header, book, changed, removed):
        self.seq, self.header, self.epoch = seq, header, book.epoch
        self.book = book  # rows read by full(), before the next build changes them
        self.changed, self.removed = changed, removed
        self.threads = {th["ident"]: th for th in header["threads"] if th["ident"] is not None}
        self._full = None

    def full(self):
        if self._full is None:
            h = dict(self.header)
            chunks = _row_chunks(list(self.book.rows.values()))
            h["task_chunks"] = len(chunks)
            line = _fit(h, HEADER_LISTS)
            lines = [line] if line is not None else []
            lines.extend(_encode_chunks(self.seq, chunks))
            self._full = lines
        return self._full

    def delta(self, base, changed, removed, prev_threads):
        """Lines of a report_delta against `base`, or None when it would not fit the line
        cap (the client then gets the full report: a delta is never cut)."""
        h = dict(self.header)
        h["type"] = "report_delta"
        h["base"] = base
        h["threads"] = [th for th in self.header["threads"]
                        if th["ident"] is None or prev_threads.get(th["ident"]) != th]
        h["threads_removed"] = [i for i in prev_threads if i not in self.threads]
        rows = list(changed.values())
        removed = sorted(removed)
        chunks = _row_chunks(rows)
        # Removed ids go in the chunks too (at most DELTA_REMOVED per chunk).
        while len(chunks) * DELTA_REMOVED < len(removed):
            chunks.append(([], []))
        h["task_chunks"] = len(chunks)
        line = _encode(h)
        if len(line) > MAX_LINE:
            return None
        out = [line]
        count = len(chunks)
        for i, (rws, strings) in enumerate(chunks):
            part = removed[i * DELTA_REMOVED:(i + 1) * DELTA_REMOVED]
            line = _encode({"type": "report_chunk", "seq": self.seq, "index": i,
                            "count": count, "strings": strings, "tasks": rws,
                            "removed": part})
            if len(line) > MAX_LINE:
                return None  # rows would be dropped to fit: only a full report is exact
            out.append(line)
        return out


DELTA_REMOVED = 20000


def _row_chunks(rows):
    """Rows with plain strings -> [(rows with string indexes, strings)] of CHUNK_TASKS each."""
    out = []
    for i in range(0, len(rows), CHUNK_TASKS):
        _tick()
        index = {}
        strings = []
        part = []
        for (tid, lid, name, state, q, where, tr, created) in rows[i:i + CHUNK_TASKS]:
            wi = -1
            if where is not None:
                wi = index.get(where)
                if wi is None:
                    wi = index[where] = len(strings)
                    strings.append(where)
            qi = index.get(q)
            if qi is None:
                qi = index[q] = len(strings)
                strings.append(q)
            ci = -1
            if created is not None:
                ci = index.get(created)
                if ci is None:
                    ci = index[created] = len(strings)
                    strings.append(created)
            part.append((tid, lid, name, state, qi, wi, tr, ci))
        out.append((part, strings))
    return out


# Our messages are trees built here, never cyclic: skipping the cycle check saves ~15 % of
# the encoding time of a 10,000-task report.
_encoder = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False)


# A lone surrogate (os.fsdecode of undecodable bytes in a thread, task or file name) would be
# encoded as a "\udcff" escape, which strict JSON parsers (serde_json) refuse. The encoder
# escapes everything to ASCII, so a post-pass on the rare lines holding "\ud" rewrites each
# lone surrogate escape as the visible text \udcff (an escaped backslash); escaped
# backslashes are matched as a unit so "\\ud..." text is left alone, and valid pairs
# (astral characters) are kept.
_SURR = re.compile(rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
                   rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _fix_surrogate(m):
    t = m.group(0)
    return b"\\" + t if len(t) == 6 else t


def _utf8(text):
    b = text.encode("ascii")
    if b"\\ud" in b or b"\\uD" in b:
        b = _SURR.sub(_fix_surrogate, b)
    return b


def _encode(obj):
    return _utf8(_encoder.encode(obj) + "\n")


HEADER_LISTS = ("threads", "executors", "subprocesses", "loops", "phases", "warnings",
                "task_awaits")


def _fit(obj, keys, budget=MAX_LINE):
    """Encodes obj, halving whichever of its lists `keys` weighs the most until the line fits
    `budget`; a cut list gets `<key>_total` (its full length). None if it cannot fit."""
    line = _encode(obj)
    while len(line) > budget:
        sizes = [(len(_encoder.encode(obj.get(k) or [])), k) for k in keys]
        _size, k = max(sizes)
        lst = obj.get(k) or []
        if not lst:
            return None
        obj.setdefault(k + "_total", len(lst))
        obj[k] = lst[:len(lst) // 2]
        line = _encode(obj)
    return line


def _fit_stacks(result, key, flimit):
    """Trims a stacks result to fit one response line: first fewer frames per entry (the
    innermost are kept; `frames_limit` says how many), then fewer entries (`<key>_total`)."""
    budget = MAX_LINE - 4096  # room for the response envelope
    while len(_encode(result)) > budget:
        items = result[key]
        if flimit > 1:
            flimit //= 2
            for it in items:
                it["frames"] = it["frames"][:flimit]
            result["frames_limit"] = flimit
        elif items:
            result.setdefault(key + "_total", len(items))
            result[key] = items[:len(items) // 2]
        else:
            break
    return result


# Per chunk index: (strings, rows, encoded body) of the last report. Idle tasks give the same
# chunks report after report; comparing them (C-level list/tuple equality) is far cheaper
# than encoding them again. Only the agent thread builds reports.
_chunk_memo = []


def _encode_chunks(seq, chunks):
    """Encoded report_chunk lines, byte-identical to _encode_chunk's: the `seq`/`index`/
    `count` prefix is formatted, the `strings`/`tasks` body reused when unchanged."""
    out = []
    memo = []
    old = _chunk_memo
    count = len(chunks)
    enc = _encoder.encode
    for i, (rows, strings) in enumerate(chunks):
        _tick()
        m = old[i] if i < len(old) else None
        if m is not None and m[1] == rows and m[0] == strings:
            body = m[2]
        else:
            body = _utf8(',"strings":%s,"tasks":%s}\n' % (enc(strings), enc(rows)))
        line = b'{"type":"report_chunk","seq":%d,"index":%d,"count":%d' % (seq, i, count) + body
        if len(line) > MAX_LINE:
            out.extend(_encode_chunk(seq, i, count, rows, strings))
            memo.append(None)  # keeps memo[i] aligned with chunk i
            continue
        memo.append((strings, rows, body))
        out.append(line)
    _chunk_memo[:] = memo
    return out


def _encode_chunk(seq, index, count, rows, strings):
    line = _encode({"type": "report_chunk", "seq": seq, "index": index, "count": count,
                    "strings": strings, "tasks": rows})
    if len(line) <= MAX_LINE or len(rows) <= 1:
        return [line] if len(line) <= MAX_LINE else []
    # Rare (huge names): drop rows beyond the cap rather than send an oversize line.
    half = len(rows) // 2
    return _encode_chunk(seq, index, count, rows[:half], strings)


# ----------------------------------------------------------------------------- server

CAPABILITIES = ["threads", "loops", "tasks", "executors", "subprocesses", "chunked_tasks",
                "stacks", "task_stacks", "cancel_tasks", "shutdown_executors", "stop_loop",
                "close_loop", "run_phase", "exit", "ping", "waits_on", "task_awaits",
                "report_delta"]


class _ReqError(Exception):
    def __init__(self, code, message, data=None):
        Exception.__init__(self, message)
        self.code, self.message, self.data = code, message, data


class _OutBuf:
    """What is queued for one client: the lines themselves (bytes objects shared by every
    client a report goes to, so N subscribers of one report cost one copy), sent with
    sendmsg from an offset into the first."""

    __slots__ = ("chunks", "off", "size")

    def __init__(self):
        self.chunks = collections.deque()
        self.off = 0
        self.size = 0

    def __len__(self):
        return self.size

    def __bool__(self):
        return self.size > 0

    def append(self, b):
        if b:
            self.chunks.append(b)
            self.size += len(b)

    def send(self, sock):
        """One sendmsg of up to 64 chunks; returns the bytes sent (raises like send)."""
        bufs = [memoryview(self.chunks[0])[self.off:]]
        for i in range(1, min(len(self.chunks), 64)):
            bufs.append(self.chunks[i])
        n = sock.sendmsg(bufs)
        self.size -= n
        left = n
        while left and self.chunks:
            head = len(self.chunks[0]) - self.off
            if left >= head:
                left -= head
                self.chunks.popleft()
                self.off = 0
            else:
                self.off += left
                left = 0
        return n


class _Conn:
    def __init__(self, sock, peer_pid, peer_uid):
        self.sock = sock
        self.peer_pid, self.peer_uid = peer_pid, peer_uid
        self.rbuf = b""
        self.wbuf = _OutBuf()
        self.interval = None
        self.subscribed = False  # sent `subscribe` (even interval 0): gets pushed events
        self.max_tasks = 20000
        self.delta = False  # the client's hello accepts report_delta
        self.last_seq = None  # seq of the last report queued to it
        self.want_full = True  # next report in full (first one, or the client asked)
        self.epoch = None  # task book the last report came from (a new book: full again)
        self.acc = ({}, set())  # rows changed / ids removed since its last report
        self.threads = {}  # ident -> thread entry as last sent
        self.next_at = 0.0
        self.close_after_flush = False
        self.bulk = 0  # bytes of the queued report still in wbuf (exempt from MAX_WBUF)
        self.inflight = 0  # request threads running for this connection (under _Server.lock)
        # Guards wbuf and the socket against hooks pushing from the app's threads (see
        # _Server.push); never held across a blocking call. `closed` is set under it.
        self.wlock = threading.Lock()
        self.closed = False
        self.pushq = collections.deque()  # pushed lines a hook could not write at once
        self.pushes_dropped = 0
        self.progress_at = time.monotonic()  # last time it took bytes (or had none queued)


class _Server:
    def __init__(self, path=None):
        self.sel = selectors.DefaultSelector()
        self.lsock, self.path, self._from_env = self._bind(path)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.outq = collections.deque()
        self.conns = {}
        self.probes = {}
        self.seq = itertools.count(1)
        self.bytes_sent = 0
        self.reports_sent = 0
        self.refused = 0
        self.worker_cpu = 0.0
        self.last_report_ms = None
        self.thread = None
        self.start_time = _self_start_time()
        self.instance = "%d-%d-%x" % (os.getpid(), self.start_time, id(self))
        self.loops_scanned = False
        self.stopping = False  # set before fork: the agent thread returns (see _before_fork)
        self.accept_paused_until = 0.0  # accept() failed (EMFILE): listening paused until
        self.throttled_s = 0.0  # time slept by the CPU cap
        self._worker_idents = set()
        # Guards _worker_idents and _Conn.inflight, touched by request threads.
        self.lock = threading.Lock()

    # -- setup
    def _bind(self, explicit):
        cands = [explicit] if explicit else []
        env = os.environ.get("LIFECYCLE_TOP_SOCKET")
        if env:
            cands.append(env)
        cands += _default_paths(os.getpid())
        last = None
        for p in cands:
            try:
                return self._bind_one(p), p, p == env
            except OSError as exc:
                last = exc
                _debug("lifecycle-top agent: cannot listen on %s: %s" % (p, exc))
        raise last or OSError("no socket path")

    @staticmethod
    def _bind_one(p):
        import stat
        d = os.path.dirname(p) or "."
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise OSError("directory %s must be ours and mode 0700" % d)
        if os.path.lexists(p):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(p)
                raise OSError("%s is served by a live agent" % p)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(p)  # stale socket of a dead process
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(p)
            os.chmod(p, 0o600)
            s.listen(8)
            s.setblocking(False)
        except Exception:
            s.close()
            raise
        return s

    def start(self):
        if self._from_env:
            # Children must not fight over the launcher's path; they use their own pid path.
            os.environ.pop("LIFECYCLE_TOP_SOCKET", None)
        self.path_ino = os.stat(self.path).st_ino
        self.pid = os.getpid()
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self._start_thread()
        import atexit
        atexit.register(self._unlink)
        atexit.register(self._at_exit)  # runs first (atexit is LIFO)

    def _start_thread(self):
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="lifecycle-top-agent", daemon=True)
        self.thread.start()

    def pause(self, timeout=1.0):
        """Before fork: stop the agent thread (3.12+ warns about forking a multi-threaded
        process; no child inherits a lock it held). Returns True if it stopped."""
        th = self.thread
        if th is None or not th.is_alive() or th is threading.current_thread():
            return False
        self.stopping = True
        self.wake()
        th.join(timeout)
        if th.is_alive():
            self.stopping = False
            return False
        # join() returns before the OS thread is gone; the fork warning counts OS threads.
        native = getattr(th, "native_id", None)
        deadline = time.monotonic() + 0.1
        while native is not None and time.monotonic() < deadline and os.path.exists(
                "/proc/self/task/%d" % native):
            time.sleep(0.0005)
        return True

    def resume(self):
        try:
            self._start_thread()
        except Exception as exc:
            _debug("lifecycle-top agent: not restarted after fork: %r" % (exc,))

    def wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def push(self, line, wait=0.0, sent=False):
        """Send a line to every subscribed client now, from whatever thread calls (a hook in
        the app, maybe during interpreter shutdown when the agent thread never runs again).
        Never blocks (beyond `wait`), never raises; best effort: a line that cannot be
        written at once stays queued for the agent thread. `sent`: wait (up to `wait`) until
        the line is written, not only taken by the agent thread (before a hard exit).

        From the main thread, while the agent thread runs, the line is handed to it: the main
        thread runs the app's signal handlers, and an exception one raises (KeyboardInterrupt
        from a SIGINT, ours included) between a send and its accounting would leave sent bytes
        queued, to be sent again (a duplicated or garbled line)."""
        th = self.thread
        try:
            handoff = (th is not None and not self.stopping and th.is_alive()
                       and threading.get_ident() == threading.main_thread().ident)
        except Exception:
            handoff = False
        if not handoff:
            self._push_direct(line, wait)
            return
        try:
            queued = []
            for c in list(self.conns.values()):
                if c.subscribed and not c.closed:
                    if len(c.pushq) < 1000:
                        c.pushq.append(line)  # atomic: sent once, or not at all
                        queued.append(c)
                    else:
                        c.pushes_dropped += 1
            if queued:
                self.wake()
                deadline = time.monotonic() + wait
                # sent: until the agent thread has written it (the process is about to end).
                while wait and time.monotonic() < deadline and any(
                        c.pushq or (sent and c.wbuf and not c.closed) for c in queued):
                    time.sleep(0.0005)
        except Exception:
            pass

    def _push_direct(self, line, wait):
        try:
            conns = list(self.conns.values())
        except Exception:
            return
        queued = False
        for c in conns:
            try:
                if not c.subscribed:
                    continue
                if not (c.wlock.acquire(True, wait) if wait else c.wlock.acquire(False)):
                    if line is None:
                        continue
                    if len(c.pushq) < 1000:
                        c.pushq.append(line)
                        queued = True
                    else:
                        c.pushes_dropped += 1
                    continue
                try:
                    if c.closed:
                        continue
                    while c.pushq:  # lines queued earlier go first
                        q = c.pushq.popleft()
                        if len(c.wbuf) + len(q) > MAX_WBUF + c.bulk:
                            c.pushes_dropped += 1
                        else:
                            c.wbuf.append(q)
                    if line is not None:
                        if len(c.wbuf) + len(line) > MAX_WBUF + c.bulk:
                            c.pushes_dropped += 1
                            continue
                        c.wbuf.append(line)
                    self._write_some(c)
                    if c.wbuf:
                        queued = True
                finally:
                    c.wlock.release()
            except Exception:
                continue
        if queued:
            self.wake()

    def _write_some(self, conn):
        """Under conn.wlock: non-blocking sends until done or EAGAIN; False on a socket error."""
        try:
            while conn.wbuf:
                n = conn.wbuf.send(conn.sock)
                if n:
                    conn.progress_at = time.monotonic()
                self.bytes_sent += n
                conn.bulk = max(0, conn.bulk - n)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        return True

    def _at_exit(self):
        """Last Python-level moment the agent thread can run: it sends what is queued and
        stops, so it is not frozen by finalization holding a connection's lock; the hooks
        firing during finalization (GC of pending tasks, ResourceWarnings) then write to the
        clients themselves."""
        if os.getpid() != self.pid:
            return
        line = _encode({"type": "exiting", "at_unix_ms": _now_ms(), "reason": "atexit",
                        "abandoned": _abandoned_threads()})
        self.push(line, wait=0.05)  # by the agent thread, while it runs
        try:
            self.pause(0.5)
        except Exception:
            pass
        self._push_direct(None, 0.05)  # what it did not write

    def _unlink(self):
        """At exit, remove our socket file unless another process has replaced it."""
        try:
            if os.stat(self.path).st_ino == self.path_ino and os.getpid() == self.pid:
                os.unlink(self.path)
        except Exception:
            pass

    def close_fds(self):
        """In a forked child: close the parent's listening socket, wake pipe, selector and
        client sockets, so the child neither holds the parent's clients open nor accepts on
        its socket. The socket file stays (it belongs to the parent)."""
        for c in list(self.conns.values()):
            c.closed = True
            try:
                c.sock.close()
            except Exception:
                pass
        self.conns = {}
        for close in (self.lsock.close, self.sel.close, lambda: os.close(self.wake_r),
                      lambda: os.close(self.wake_w)):
            try:
                close()
            except Exception:
                pass
        self.lock = threading.Lock()

    def idents(self):
        with self.lock:
            out = set(self._worker_idents)
        if self.thread is not None:
            out.add(self.thread.ident)
        return out

    def cost(self, build_ms):
        return {"cpu_ms": (self.agent_cpu + self.worker_cpu) * 1000.0,
                "bytes_sent": self.bytes_sent, "reports_sent": self.reports_sent,
                "build_ms": build_ms, "last_report_ms": self.last_report_ms,
                "clients": len(self.conns), "refused": self.refused,
                "throttled_ms": round(self.throttled_s * 1000.0, 1),
                "max_slice_ms": self.max_slice_ms, "max_slice_cpu_ms": self.max_slice_cpu_ms}

    # Longest work between two GIL yields in the previous report: wall time (what the
    # host's threads may have waited) and the agent thread's CPU time.
    max_slice_ms = max_slice_cpu_ms = None

    agent_cpu = 0.0

    # -- main loop
    def _run(self):
        win_wall, win_cpu = time.monotonic(), time.thread_time()
        while not self.stopping:
            try:
                self._step()
            except Exception as exc:  # keep serving whatever happens
                _debug("lifecycle-top agent: %r" % (exc,))
                time.sleep(0.05)
            # CPU cap: over a 1 s window, sleep off what was used beyond MAX_CPU_SHARE.
            wall, cpu = time.monotonic(), time.thread_time()
            over = (cpu - win_cpu) / MAX_CPU_SHARE - (wall - win_wall)
            if over > 0.001:
                self.throttled_s += min(over, 0.25)
                time.sleep(min(over, 0.25))
            if wall - win_wall >= 1.0:
                win_wall, win_cpu = time.monotonic(), time.thread_time()

    def _max_conns(self):
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except Exception:
            soft = -1
        if soft is None or soft < 0 or soft == getattr(resource, "RLIM_INFINITY", -1):
            return MAX_CONNS
        return max(2, min(MAX_CONNS, soft // 64))

    def _step(self):
        now = time.monotonic()
        due = [c.next_at for c in self.conns.values() if c.interval]
        if self.accept_paused_until:
            if now >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                try:
                    self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
                except Exception:
                    pass
            else:
                due.append(self.accept_paused_until)
        timeout = None if not due else max(0.0, min(due) - now)
        for key, mask in self.sel.select(timeout):
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                try:
                    os.read(self.wake_r, 4096)
                except OSError:
                    pass
            else:
                if mask & selectors.EVENT_READ:
                    self._read(key.data)
                if mask & selectors.EVENT_WRITE and key.data.sock.fileno() in self.conns:
                    self._flush(key.data)
        while self.outq:
            conn, line = self.outq.popleft()
            self._send(conn, line)
        for conn in list(self.conns.values()):
            while conn.pushq:
                self._send(conn, conn.pushq.popleft(), push=True)
            if conn.wbuf and not conn.closed:
                self._flush(conn)  # what a hook left unsent
        if self.stopping:
            return
        self._reports()
        self.agent_cpu = time.thread_time()

    def _accept(self):
        try:
            s, _ = self.lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EMFILE/ENFILE/ENOMEM: the pending connection stays queued and the listening
            # socket readable; stop watching it for a while instead of spinning.
            self.accept_paused_until = time.monotonic() + ACCEPT_BACKOFF
            try:
                self.sel.unregister(self.lsock)
            except Exception:
                pass
            return
        try:
            cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", cred)
        except OSError:
            s.close()
            return
        if uid != os.getuid() and uid != 0:
            self.refused += 1
            try:
                s.send(_encode({"type": "error", "code": "forbidden",
                                "message": "this agent serves uid %d and root only" % os.getuid()}))
            except OSError:
                pass
            s.close()
            return
        if len(self.conns) >= self._max_conns():
            # A client that just left may not have been read yet: look before refusing.
            for c in list(self.conns.values()):
                try:
                    if c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        self._close(c)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._close(c)
        if len(self.conns) >= self._max_conns():
            self.refused += 1
            try:
                s.send(_encode({"type": "error", "code": "too_many_clients",
                                "message": "this agent serves at most %d clients at once; "
                                           "close another one" % self._max_conns()}))
            except OSError:
                pass
            s.close()
            return
        s.setblocking(False)
        conn = _Conn(s, pid, uid)
        self.conns[s.fileno()] = conn
        self.sel.register(s, selectors.EVENT_READ, conn)
        if not self.loops_scanned:
            self.loops_scanned = True
            _scan_loops()
        self._send(conn, _encode(self.hello()))

    def hello(self):
        return {"type": "hello", "protocol": PROTOCOL_VERSION,
                "agent": {"kind": "python", "version": AGENT_VERSION, "instance": self.instance},
                "runtime": {"name": sys.implementation.name,
                            "version": "%d.%d.%d" % sys.version_info[:3],
                            "executable": sys.executable},
                "target": {"pid": os.getpid(), "start_time": self.start_time},
                "capabilities": CAPABILITIES, "phases": _phase_entries(), "max_line": MAX_LINE}

    def _close(self, conn):
        """Agent thread only, never with conn.wlock held (taken here: a hook may be sending)."""
        with conn.wlock:
            conn.closed = True
            self.conns.pop(conn.sock.fileno(), None)
            try:
                self.sel.unregister(conn.sock)
            except Exception:
                pass
            conn.sock.close()

    def _read(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.rbuf += data
        if b"\n" in data:
            # One split per read (slicing per line was quadratic under a flood of lines).
            lines = conn.rbuf.split(b"\n")
            conn.rbuf = lines.pop()
            for line in lines:
                if conn.closed or conn.close_after_flush:
                    break
                if line.strip():
                    self._handle(conn, line)
        if len(conn.rbuf) > MAX_LINE:
            conn.rbuf = b""
            self._fatal(conn, "line_too_long", "line over %d bytes; closing" % MAX_LINE)
        elif len(conn.rbuf) > 65536 and \
                sum(len(c.rbuf) for c in self.conns.values()) > MAX_RBUF_TOTAL:
            conn.rbuf = b""
            self._fatal(conn, "buffer_full", "unfinished lines of all clients passed %d bytes; "
                        "closing" % MAX_RBUF_TOTAL)

    def _error(self, conn, code, message):
        self._send(conn, _encode({"type": "error", "code": code, "message": message}))

    def _fatal(self, conn, code, message):
        """Last words: the error line is flushed, then the connection is closed."""
        conn.close_after_flush = True
        self._error(conn, code, message)

    def _handle(self, conn, line):
        try:
            msg = json.loads(line)
        except RecursionError:
            self._error(conn, "bad_json", "malformed JSON: nested too deeply")
            return
        except ValueError as exc:
            self._error(conn, "bad_json", "malformed JSON: %s" % exc)
            return
        if not isinstance(msg, dict):
            self._error(conn, "bad_message", "a message must be a JSON object")
            return
        kind = msg.get("type")
        if kind == "hello":
            if msg.get("protocol") != PROTOCOL_VERSION:
                self._fatal(conn, "version_mismatch",
                            "client speaks protocol %r, this agent speaks %d"
                            % (msg.get("protocol"), PROTOCOL_VERSION))
                return
            accept = msg.get("accept")
            conn.delta = isinstance(accept, list) and "report_delta" in accept
        elif kind == "full_report":
            # The client lost track (a gap in seq): the next report is full, and comes now.
            conn.want_full = True
            if conn.interval:
                conn.next_at = time.monotonic()
        elif kind == "subscribe":
            try:
                ms = int(msg.get("interval_ms") or 0)
                conn.max_tasks = max(0, int(msg.get("max_tasks", 20000)))
            except (TypeError, ValueError):
                self._error(conn, "bad_message", "interval_ms and max_tasks must be integers")
                return
            conn.interval = None if ms <= 0 else min(max(ms, 20), 60000) / 1000.0
            conn.subscribed = True
            conn.next_at = time.monotonic()
        elif kind == "request":
            self._start_request(conn, msg)
        # unknown message types are ignored (forward compatibility)

    def _start_request(self, conn, msg):
        """One thread per request (a slow one never delays the others), at most MAX_INFLIGHT
        per connection; every request gets exactly one response, even when refused here."""
        rid = msg.get("id")
        with self.lock:
            busy = conn.inflight >= MAX_INFLIGHT
            if not busy:
                conn.inflight += 1
        if busy:
            self._send(conn, _encode(_err_response(
                rid, "busy", "%d requests already running on this connection; retry when one "
                             "answers" % MAX_INFLIGHT)))
            return
        try:
            threading.Thread(target=self._serve, args=(conn, msg), daemon=True,
                             name="lifecycle-top-agent-req").start()
        except Exception as exc:  # RuntimeError: interpreter shutting down, thread limit
            with self.lock:
                conn.inflight -= 1
            self._send(conn, _encode(_err_response(
                rid, "unavailable", "cannot start a request thread: %s" % _short(str(exc), 200))))

    # -- output
    def post(self, conn, line):
        """Queue a line from any thread; the agent thread sends it."""
        self.outq.append((conn, line))
        self.wake()

    def _send(self, conn, line, bulk=False, push=False):
        """Queue and flush. `bulk` lines (reports, only queued into an empty buffer) are
        exempt from MAX_WBUF; any other line past it disconnects a client that does not read
        (a pushed warning past it is dropped instead)."""
        if conn.closed or conn.sock.fileno() not in self.conns:
            return
        with conn.wlock:
            over = not bulk and len(conn.wbuf) + len(line) > MAX_WBUF + conn.bulk
            if over and push:
                conn.pushes_dropped += 1
                return
            if not over:
                if not conn.wbuf:
                    conn.progress_at = time.monotonic()
                conn.wbuf.append(line)
                if bulk:
                    conn.bulk += len(line)
        if over:
            _debug("lifecycle-top agent: client pid %s does not read; closing" % conn.peer_pid)
            self._close(conn)
            return
        self._flush(conn)

    def _flush(self, conn):
        with conn.wlock:
            if conn.closed:
                return
            ok = self._write_some(conn)
            pending = bool(conn.wbuf)
        if not ok:
            self._close(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        try:
            self.sel.modify(conn.sock, want, conn)
        except Exception:
            pass
        if not pending and conn.close_after_flush:
            self._close(conn)

    def _reports(self):
        now = time.monotonic()
        due = [c for c in self.conns.values() if c.interval and c.next_at <= now]
        if not due:
            return
        ready = []
        for c in due:
            c.next_at = max(c.next_at + c.interval, now + c.interval / 2)
            if c.wbuf and now - c.progress_at > STALL_S:
                # Took nothing of its last report for STALL_S: it does not read. Its buffer
                # is memory the host pays for (a report of 20,000 tasks is megabytes).
                _debug("lifecycle-top agent: client pid %s stalled; closing" % c.peer_pid)
                self._close(c)
                continue
            if not c.wbuf:  # a client still reading the last report gets no new one
                ready.append(c)
        if not ready:
            return
        t0 = time.perf_counter()
        # One budget for every subscriber (a changing one would reset the task book).
        budget = max(c.max_tasks for c in self.conns.values() if c.interval)
        built = _build_report(self, next(self.seq), budget)
        # Every delta client accumulates this build's changes until it is sent a report.
        for c in self.conns.values():
            if c.delta and c.epoch == built.epoch:
                acc_c, acc_r = c.acc
                for tid in built.removed:
                    acc_c.pop(tid, None)
                    acc_r.add(tid)
                # An id removed by an earlier build and given to a new task by this one
                # (CPython reuses a freed task's address) is a changed row, not a removal.
                acc_r.difference_update(built.changed)
                acc_c.update(built.changed)
        for c in ready:
            lines = None
            if c.delta and not c.want_full and c.epoch == built.epoch:
                lines = built.delta(c.last_seq, c.acc[0], c.acc[1], c.threads)
            if lines is None:
                lines = built.full()
                c.want_full = False
            c.last_seq, c.epoch, c.threads = built.seq, built.epoch, built.threads
            c.acc = ({}, set())
            for line in lines:
                self._send(c, line, bulk=True)
        sl = _slicer[0]
        if sl is not None:
            sl.tick()
            self.max_slice_ms = round(max(sl.longest, time.perf_counter() - sl.t) * 1000.0, 2)
            self.max_slice_cpu_ms = round(
                max(sl.longest_cpu, time.thread_time() - sl.c) * 1000.0, 2)
        _slicer[0] = None
        self.reports_sent += 1
        self.last_report_ms = (time.perf_counter() - t0) * 1000.0

    # -- requests
    def _serve(self, conn, msg):
        try:
            self._serve1(conn, msg)
        finally:
            with self.lock:
                conn.inflight -= 1
                self._worker_idents.discard(threading.get_ident())

    def _serve1(self, conn, msg):
        with self.lock:
            self._worker_idents.add(threading.get_ident())
        t0 = time.thread_time()
        rid = msg.get("id")
        try:
            method = msg.get("method")
            params = msg.get("params")
            fn = METHODS.get(method)
            if fn is None:
                raise _ReqError("unknown_method", "unknown method %r (known: %s)"
                                % (method, ", ".join(sorted(METHODS))))
            resp = {"type": "response", "id": rid, "ok": True,
                    "result": fn(self, params if isinstance(params, dict) else {})}
        except _ReqError as exc:
            resp = _err_response(rid, exc.code, exc.message, exc.data)
        except Exception as exc:
            resp = _err_response(rid, "internal", _short(repr(exc), 500))
        line = _encode(resp)
        if len(line) > MAX_LINE:
            line = _encode({"type": "response", "id": rid, "ok": False,
                            "error": {"code": "too_large",
                                      "message": "response over %d bytes; ask with a smaller "
                                                 "limit" % MAX_LINE}})
        self.post(conn, line)
        with self.lock:
            self.worker_cpu += time.thread_time() - t0


def _err_response(rid, code, message, data=None):
    return {"type": "response", "id": rid, "ok": False,
            "error": {"code": code, "message": message, "data": data}}


_paused_for_fork = []


def _before_fork():
    """The agent thread stops before fork and restarts after it in the parent: the child
    inherits no lock the agent thread held, and CPython 3.12+ does not warn "This process is
    multi-threaded, use of fork() may lead to deadlocks" because of the agent."""
    try:
        ag = _agent
        if ag is not None and ag.pause():
            _paused_for_fork.append(ag)
    except Exception:
        pass


def _after_fork_parent():
    while _paused_for_fork:
        try:
            _paused_for_fork.pop().resume()
        except Exception:
            pass


def _after_fork_child():
    """A forked child has no agent thread: forget the parent's server, locks and events."""
    global _agent, _reg_lock, _hook_tl
    agent, _agent = _agent, None
    del _paused_for_fork[:]
    _reg_lock = threading.Lock()
    _hook_tl = threading.local()
    _events.clear()
    _event_count[0] = 0
    if agent is not None:
        agent.close_fds()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)


# ----------------------------------------------------------------------------- requests

def _timeout(p, default):
    """How long a request may wait inside the agent: 90 % of `timeout_ms` (the time the
    client allows for the answer), so the answer with its partial results arrives in time."""
    try:
        t = float(p.get("timeout_ms", default * 1000.0)) / 1000.0
    except (TypeError, ValueError):
        raise _ReqError("bad_params", "timeout_ms must be a number")
    return max(0.0, t * 0.9)


def _select_loops(p):
    loops = [lp for lp in _all_loops()]
    want = p.get("loop")
    if want is not None:
        loops = [lp for lp in loops if _loop_id(lp) == want]
        if not loops:
            raise _ReqError("not_found", "no event loop with id %r" % (want,))
    return loops


def _stack_of_ident(ident, limit=50):
    return _frames_of(_other_frames().get(ident), limit)


class _Blocked(Exception):
    def __init__(self, loop, waited):
        ident = getattr(loop, "_thread_id", None)
        stack = _stack_of_ident(ident)
        at = "%s:%s" % (stack[0]["file"], stack[0]["line"]) if stack else "?"
        Exception.__init__(self, "event loop %d (thread %s) did not run a callback within "
                                 "%.0f ms: blocked at %s" % (_loop_id(loop), _native_of(ident),
                                                              waited * 1000.0, at))
        self.info = {"loop": _loop_id(loop), "native_id": _native_of(ident), "stack": stack}


def _run_on_loop(loop, fn, timeout):
    """Run fn on the loop's thread (directly if the loop is not running); _Blocked on timeout."""
    if not loop.is_running():
        return fn()
    box = {}
    ev = threading.Event()

    def cb():
        if box.get("abandoned"):
            return
        try:
            box["r"] = fn()
        except BaseException as exc:
            box["e"] = exc
        finally:
            ev.set()

    loop.call_soon_threadsafe(cb)
    if not ev.wait(timeout):
        box["abandoned"] = True
        raise _Blocked(loop, timeout)
    if "e" in box:
        raise box["e"]
    return box["r"]


def _m_ping(agent, p):
    return {"pong": True, "pid": os.getpid()}


def _id_set(p, key):
    v = p.get(key)
    if v is None:
        return None
    if not isinstance(v, list):
        raise _ReqError("bad_params", "%s must be a list of integers" % key)
    return set(v)


def _m_stacks(agent, p):
    try:
        limit = max(1, int(p.get("limit", 100)))
    except (TypeError, ValueError):
        raise _ReqError("bad_params", "limit must be an integer")
    natives, idents = _id_set(p, "native_ids"), _id_set(p, "idents")
    mine = agent.idents()
    frames = _other_frames()
    out = []
    for th in threading.enumerate():
        f = frames.pop(th.ident, None)
        if natives is not None or idents is not None:
            if not ((natives is not None and getattr(th, "native_id", None) in natives)
                    or (idents is not None and th.ident in idents)):
                continue
        out.append({"ident": th.ident, "native_id": getattr(th, "native_id", None),
                    "name": th.name, "daemon": th.daemon, "agent": th.ident in mine,
                    "frames": _frames_of(f, limit)})
    for ident, f in frames.items():
        if natives is not None or idents is not None:
            if idents is None or ident not in idents:
                continue
        out.append({"ident": ident, "native_id": None, "name": None, "daemon": None,
                    "agent": False, "frames": _frames_of(f, limit)})
    return _fit_stacks({"order": "innermost_first", "threads": out}, "threads", limit)


def _m_task_stacks(agent, p):
    ids = set(p.get("ids") or [])
    limit = int(p.get("limit", 200))
    flimit = int(p.get("frames", 30))
    deadline = time.monotonic() + _timeout(p, 2.0)
    out = []
    for lp in _select_loops(p):
        try:
            left = max(0.0, deadline - time.monotonic())
            tasks = _run_on_loop(lp, lambda lp=lp: _loop_tasks(lp), left)
        except _Blocked:
            tasks = _loop_tasks(lp)  # a stuck loop mutates nothing: read from here
        for t in tasks:
            if (ids and id(t) not in ids) or len(out) >= limit:
                continue
            chain = _coro_chain(t._coro)[-flimit:]
            out.append({"id": id(t), "loop": _loop_id(lp), "name": t.get_name(),
                        "frames": [{"file": f.f_code.co_filename, "line": f.f_lineno,
                                    "function": f.f_code.co_name} for f in reversed(chain)]})
    return _fit_stacks({"order": "innermost_first", "tasks": out}, "tasks", flimit)


def _classify(t, waiter, where_before):
    if t.done():
        if t.cancelled():
            return "cancelled", None
        exc = getattr(t, "_exception", None)
        if exc is not None:
            return "raised", _short(repr(exc), 300)
        return "swallowed", "returned normally after cancel()"
    now_waiter = getattr(t, "_fut_waiter", None)
    where_now = _where(_innermost(t._coro))
    if not getattr(t, "_must_cancel", False) and (
            (waiter is not None and now_waiter is not waiter) or where_now != where_before):
        return "swallowed", "caught CancelledError and kept running (now at %s)" % where_now
    return "still_pending", "cancellation not finished (at %s)" % where_now


def _awaited_ids(t, depth=16):
    """Ids of the tasks t awaits, directly or through gathers, transitively (bounded): when
    one of them is cancelled, t resumes."""
    aio = sys.modules.get("asyncio")
    out, todo = set(), [(t, 0)]
    while todo and aio is not None:
        x, d = todo.pop()
        fw = getattr(x, "_fut_waiter", None)
        if fw is None or d >= depth:
            continue
        kids = [fw] if isinstance(fw, aio.Task) else list(getattr(fw, "_children", None) or ())
        for k in kids:
            if id(k) not in out:
                out.add(id(k))
                todo.append((k, d + 1))
    return out


def _m_cancel_tasks(agent, p):
    timeout = _timeout(p, 2.0)
    ids = set(p.get("ids") or []) or None
    which = p.get("which", "all")
    if which not in ("all", "tracked", "untracked"):
        raise _ReqError("bad_params", "which must be all, tracked or untracked")
    msg = p.get("message") or "cancelled by lifecycle-top"
    include_main = bool(p.get("include_main", False))
    tracked = _tracked_ids()
    deadline = time.monotonic() + timeout
    targets, blocked, spared = [], [], []
    loops = [lp for lp in _select_loops(p) if not lp.is_closed()]
    for lp in loops:
        def do(lp=lp):
            out = []
            # On the loop's thread: the main future cannot change while we look.
            main = None if include_main else _main_future(lp, scan=True)[0]
            main_awaits = _awaited_ids(main) if main is not None else set()
            main_entry = None
            for t in _loop_tasks(lp):
                tr = (id(t) in tracked) if tracked is not None else None
                if (ids is not None and id(t) not in ids) or (which == "tracked" and not tr) \
                        or (which == "untracked" and tr):
                    continue
                reason = "agent" if _is_agent_task(t) else "main_task" if t is main else None
                if reason is not None:
                    spared.append({"id": id(t), "loop": _loop_id(lp), "name": t.get_name(),
                                   "reason": reason})
                    if t is main:
                        main_entry = spared[-1]
                    continue
                before = (getattr(t, "_fut_waiter", None), _where(_innermost(t._coro)))
                try:
                    t.cancel(msg)
                except TypeError:  # 3.8: no msg argument
                    t.cancel()
                out.append((t, lp, tr) + before)
            # The main task awaited a task cancelled now: it resumes and may well finish on
            # its own (its `finally`), so a signal now would cut that short.
            woken = [x[0].get_name() for x in out if id(x[0]) in main_awaits]
            if main_entry is not None and woken:
                main_entry["resumes"] = True
                main_entry["awaited"] = woken[:20]
            return out
        try:
            targets += _run_on_loop(lp, do, max(0.05, min(1.0, deadline - time.monotonic())))
        except _Blocked as exc:
            blocked.append(dict(exc.info, message=str(exc)))
    if loops and len(blocked) == len(loops):
        raise _ReqError("blocked", blocked[0]["message"], {"blocked": blocked})
    # Wait for every task to finish, but not for the whole timeout when the only ones left
    # have visibly swallowed the cancellation (resumed and waiting on something else) for
    # SWALLOW_GRACE: they will not finish, and a teardown phase should not wait for them.
    started = time.monotonic()
    while time.monotonic() < deadline:
        left = [x for x in targets if not x[0].done()]
        if not left:
            break
        if time.monotonic() - started >= SWALLOW_GRACE and all(
                _classify(t, waiter, where)[0] == "swallowed"
                for t, _lp, _tr, waiter, where in left):
            break
        time.sleep(0.01)
    results, counts = [], {}
    for t, lp, tr, waiter, where in targets:
        res, detail = _classify(t, waiter, where)
        counts[res] = counts.get(res, 0) + 1
        results.append({"id": id(t), "loop": _loop_id(lp), "name": t.get_name(), "tracked": tr,
                        "result": res, "detail": detail})
    return {"results": results, "counts": counts, "blocked": blocked, "spared": spared}


def _m_shutdown_executors(agent, p):
    timeout = _timeout(p, 2.0)
    cancel = bool(p.get("cancel_futures", True))
    want = p.get("ids")
    exes = [ex for ex in list(_executors) if not want or id(ex) in want]
    deadline = time.monotonic() + timeout
    for ex in exes:
        try:
            ex.shutdown(wait=False, cancel_futures=cancel)
        except TypeError:  # 3.8
            ex.shutdown(wait=False)
    out = []
    for ex in exes:
        threads = list(getattr(ex, "_threads", None) or ())
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        alive = [th for th in threads if th.is_alive()]
        out.append({"id": id(ex), "kind": type(ex).__name__, "workers_before": len(threads),
                    "workers_alive": len(alive),
                    "result": "stopped" if not alive else "workers_still_running",
                    "busy": [{"native_id": getattr(th, "native_id", None), "name": th.name,
                              "stack": _stack_of_ident(th.ident, 20)} for th in alive]})
    return {"executors": out}


def _m_stop_loop(agent, p):
    timeout = _timeout(p, 1.0)
    force = bool(p.get("force", False))
    deadline = time.monotonic() + timeout
    out = []
    loops = _select_loops(p)
    spared = {}
    for lp in loops:
        if lp.is_running():
            fut, via = (None, None) if force else _main_future(lp, scan=True)
            if fut is not None:
                spared[id(lp)] = _spare_detail(fut, via)
                continue

            def stop(lp=lp):
                # Checked again on the loop's thread: never stop a run_until_complete.
                if force or _main_future(lp)[0] is None:
                    lp.stop()
            try:
                lp.call_soon_threadsafe(stop)
            except RuntimeError:
                pass
    for lp in loops:
        if id(lp) in spared:
            out.append({"loop": _loop_id(lp), "running": lp.is_running(),
                        "closed": lp.is_closed(), "result": "spared", "detail": spared[id(lp)]})
            continue
        while lp.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        entry = {"loop": _loop_id(lp), "running": lp.is_running(), "closed": lp.is_closed()}
        entry["result"] = "still_running" if entry["running"] else "stopped"
        if entry["running"]:
            entry["stack"] = _stack_of_ident(getattr(lp, "_thread_id", None), 30)
        out.append(entry)
    return {"loops": out}


def _call_with_timeout(fn, timeout):
    """Runs fn on a helper thread: ("done", value), ("error", exc) or ("timeout", None)."""
    box = {}
    ev = threading.Event()

    def run():
        try:
            box["r"] = ("done", fn())
        except BaseException as exc:
            box["r"] = ("error", exc)
        finally:
            ev.set()

    threading.Thread(target=run, daemon=True, name="lifecycle-top-agent-call").start()
    if not ev.wait(timeout):
        return "timeout", None
    return box["r"]


def _m_close_loop(agent, p):
    deadline = time.monotonic() + _timeout(p, 2.0)
    out = []
    for lp in _select_loops(p):
        entry = {"loop": _loop_id(lp)}
        if lp.is_closed():
            entry["result"] = "already_closed"
        elif lp.is_running():
            fut, via = (None, None) if p.get("force") else _main_future(lp, scan=True)
            if fut is not None:
                entry["result"] = "spared"
                entry["detail"] = _spare_detail(fut, via)
            else:
                entry["result"] = "running"
                entry["detail"] = "stop the loop first (stop_loop)"
        else:
            entry["pending_tasks"] = len(_loop_tasks(lp))
            # close() runs the loop's own code (custom loops, executor shutdown): bounded.
            kind, val = _call_with_timeout(lp.close, max(0.0, deadline - time.monotonic()))
            if kind == "done":
                entry["result"] = "closed"
            elif kind == "timeout":
                entry["result"] = "timeout"
                entry["detail"] = "close() did not return within timeout_ms; still running"
            else:
                entry["result"] = "error"
                entry["detail"] = _short(repr(val), 300)
        out.append(entry)
    return {"loops": out}


def _pick_loop(p):
    loops = [lp for lp in _select_loops(p) if lp.is_running()]
    main = threading.main_thread().ident
    loops.sort(key=lambda lp: getattr(lp, "_thread_id", None) != main)
    return loops[0] if loops else None


def _m_run_phase(agent, p):
    name = p.get("name")
    with _reg_lock:
        entry = _phases.get(name)
    if entry is None:
        raise _ReqError("not_found", "no phase %r (registered: %s)"
                        % (name, ", ".join(sorted(_phases)) or "none"))
    fn = entry[0]
    timeout = _timeout(p, 5.0)
    t0 = time.perf_counter()
    import inspect
    if inspect.iscoroutinefunction(fn):
        import asyncio
        lp = _pick_loop(p)
        if lp is None:
            raise _ReqError("bad_state", "phase %r is async but no event loop is running" % name)
        coro = fn()
        try:
            _agent_coros.add(coro)
        except TypeError:
            pass
        fut = asyncio.run_coroutine_threadsafe(coro, lp)
        try:
            value = fut.result(timeout)
        except Exception as exc:
            fut.cancel()
            if type(exc).__name__ == "TimeoutError" and not fut.done() or fut.cancelled():
                raise _ReqError("timeout", "phase %r did not finish within %.1f s"
                                % (name, timeout), {"stack": _stack_of_ident(
                                    getattr(lp, "_thread_id", None), 30)})
            raise _ReqError("phase_failed", "phase %r raised %s" % (name, _short(repr(exc))))
    else:
        box = {}

        def target():
            try:
                box["r"] = fn()
            except BaseException as exc:
                box["e"] = exc

        th = threading.Thread(target=target, name="lifecycle-top-phase-%s" % name, daemon=True)
        th.start()
        th.join(timeout)
        if th.is_alive():
            raise _ReqError("timeout", "phase %r did not finish within %.1f s" % (name, timeout),
                            {"stack": _stack_of_ident(th.ident, 30)})
        if "e" in box:
            raise _ReqError("phase_failed", "phase %r raised %s" % (name, _short(repr(box["e"]))))
        value = box.get("r")
    return {"name": name, "result": _short(repr(value), 500),
            "duration_ms": (time.perf_counter() - t0) * 1000.0}


def _m_exit(agent, p):
    mode = p.get("mode", "interrupt")
    code = int(p.get("code", 0))
    if mode not in ("interrupt", "exit"):
        raise _ReqError("bad_params", "mode must be interrupt (SIGINT to self) or exit (_exit)")

    def later():
        time.sleep(0.2)  # let the response reach the client first
        if mode == "exit":
            os._exit(code)
        import signal
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=later, name="lifecycle-top-agent-exit", daemon=True).start()
    return {"mode": mode, "code": code}


METHODS = {"ping": _m_ping, "stacks": _m_stacks, "task_stacks": _m_task_stacks,
           "cancel_tasks": _m_cancel_tasks, "shutdown_executors": _m_shutdown_executors,
           "stop_loop": _m_stop_loop, "close_loop": _m_close_loop, "run_phase": _m_run_phase,
           "exit": _m_exit}
