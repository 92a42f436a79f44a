#!/usr/bin/env python3
"""Where the dashboard's resident memory is, for the peak-RSS goals (issue 14).

Starts a target (tree_target: 1,000 or 10,000 threads), runs `lifecycle-top --pid` on it in a
160x48 tmux pane at a 1 s refresh, waits, then prints from /proc/PID/smaps the Rss of each
kind of mapping (the binary's code, its read-only data, its relocated data, the heap and the
other anonymous mappings, thread stacks, shared libraries), VmHWM and VmRSS; the binary's
resident code by crate (pagemap present bits mapped to `nm` symbols: the kernel maps 64 KB
around each fault, so a crate whose code sits next to code that runs is resident too); and
with --heap, the heap's peak in use and the source lines whose allocations made it
(bench/heap_peak.c preloaded: each 256 KiB step of the peak is put down to the first
lifecycle-top source line of the allocation that crossed it, so read the lines, not the
exact split).

    bench/rss_breakdown.py [--threads 1000|10000] [--wait S] [--heap] [--lt BINARY]

Whole process, release build (built unless --lt is given).
"""
import argparse
import collections
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def need(tool, hint):
    if shutil.which(tool) is None:
        sys.exit(f"error: '{tool}' not found: install it to run this benchmark ({hint})")


def classify(exe, path, perms, size):
    if path == exe:
        return "binary " + {"r-xp": "code", "r--p": "read-only data + relocated"}.get(perms, perms)
    if path == "[heap]":
        return "heap (main arena)"
    if path == "[stack]":
        return "main thread stack"
    if path.startswith("/"):
        return "shared libraries " + ("code" if "x" in perms else "data")
    if path:
        return path
    # Thread stacks are 2 MiB (Rust) or 8 MiB (glibc default) mappings; other arenas are
    # 64 MiB-aligned heaps.
    if size in (2 << 20, 8 << 20, (2 << 20) + 4096, (8 << 20) + 4096):
        return "thread stacks"
    return "anonymous (other arenas, big blocks)"


def smaps(pid):
    exe = os.readlink(f"/proc/{pid}/exe")
    agg = collections.defaultdict(lambda: [0, 0])
    key = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                key = classify(exe, parts[5] if len(parts) > 5 else "", parts[1], hi - lo)
            elif parts[0] == "Rss:":
                agg[key][0] += int(parts[1])
            elif parts[0] == "Size:":
                agg[key][1] += int(parts[1])
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            status[k] = v.strip()
    return agg, status


STD = ("core", "alloc", "std")


def crate_of(name):
    """The crate a symbol's code belongs to: its path's first segment, or for std's generic
    code instantiated for a type (`core::ptr::drop_in_place<tokio::...>`), the type's crate."""
    paths = re.findall(r"([a-z_][a-z0-9_]*)::", name)
    if not paths:
        return "(no path)"
    if paths[0] not in STD:
        return paths[0]
    inner = [c for c in paths[1:] if c not in STD and
             not re.match(r"^(ptr|vec|collections|slice|sync|iter|fmt|option|result|string|str|"
                          r"boxed|io|hash|cell|rc|mem|ops|num|panicking|rt|sys|thread|"
                          r"raw_vec|btree|map|set|adapters|traits|intrinsics|array|char|time|"
                          r"ffi|os|fs|net|process|env|error|any|borrow|clone|cmp|convert|"
                          r"default|future|task|pin|marker|hint|alloc|unicode|path|sort|mpmc|mpsc|spec_.*|in_place.*)$", c)]
    return inner[0] if inner else "(std, core, alloc)"


def code_by_crate(pid, top=15):
    exe = os.readlink(f"/proc/{pid}/exe")
    maps = [l.split() for l in open(f"/proc/{pid}/maps")]
    text = [m for m in maps if len(m) > 5 and m[5] == exe and m[1] == "r-xp"]
    base = [m for m in maps if len(m) > 5 and m[5] == exe and int(m[2], 16) == 0]
    if not text or not base:
        return []
    lo, hi = (int(x, 16) for x in text[0][0].split("-"))
    bias = int(base[0][0].split("-")[0], 16)
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        pm.seek(lo // 4096 * 8)
        data = pm.read((hi - lo) // 4096 * 8)
    present = [struct.unpack_from("<Q", data, i * 8)[0] >> 63 for i in range(len(data) // 8)]
    nm = subprocess.run(["nm", "-S", "--defined-only", "-C", exe], capture_output=True, text=True).stdout
    res = collections.Counter()
    for line in nm.splitlines():
        p = line.split(None, 3)
        if len(p) != 4 or p[2] not in "tTwW":
            continue
        a, s, name = int(p[0], 16) + bias, int(p[1], 16), p[3]
        if s == 0 or a < lo or a >= hi:
            continue
        crate = crate_of(name)
        p0, p1 = (a - lo) // 4096, (a + s - 1 - lo) // 4096
        hit = sum(present[p0:p1 + 1])
        res[crate] += s * hit / (p1 - p0 + 1)
    return res.most_common(top)


def heap_attribution(out, exe, top=12):
    blocks, cur = [], None
    tag = re.escape(os.path.basename(exe)) + r"\(\+(0x[0-9a-f]+)\)"
    for line in open(out):
        if line.startswith("=== peak"):
            cur = [int(line.split()[2]), []]
            blocks.append(cur)
        elif cur is not None:
            m = re.search(tag, line)
            if m:
                cur[1].append(m.group(1))
    addrs = sorted({a for b in blocks for a in b[1]})
    lines = subprocess.run(["addr2line", "-f", "-C", "-i", "-a", "-e", exe] + addrs,
                           capture_output=True, text=True).stdout.splitlines()
    frames, at, i = {}, None, 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            at = int(lines[i], 16)
            frames[at] = []
            i += 1
            continue
        frames[at].append((lines[i], lines[i + 1] if i + 1 < len(lines) else ""))
        i += 2

    def site(b):
        for a in b[1]:
            for func, loc in frames.get(int(a, 16), []):
                # std's own hashbrown sits under /rust/deps/: not ours either.
                if ("/src/" in loc and ".cargo" not in loc and "/rustc/" not in loc
                        and "/rust/deps/" not in loc):
                    return loc.split("/src/", 1)[1].split(" ")[0]
        return "(outside lifecycle-top's sources)"

    acc, prev = collections.Counter(), 0
    for b in blocks:
        acc[site(b)] += b[0] - prev
        prev = b[0]
    return (blocks[-1][0] if blocks else 0), acc.most_common(top)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--wait", type=float, default=15)
    ap.add_argument("--heap", action="store_true")
    ap.add_argument("--lt")
    a = ap.parse_args()
    for tool, hint in [("gcc", "apt-get install gcc"), ("tmux", "apt-get install tmux"),
                       ("nm", "apt-get install binutils"), ("addr2line", "apt-get install binutils")]:
        need(tool, hint)
    if os.geteuid() != 0:
        sys.exit("error: reading another process's pagemap needs root: run it as root")
    lt = a.lt
    if lt is None:
        need("cargo", "https://rustup.rs")
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "lifecycle-top"],
                       cwd=ROOT, check=True)
        lt = os.path.join(ROOT, "target/release/lifecycle-top")
    lt = os.path.abspath(lt)
    tmp = tempfile.mkdtemp()
    session = f"ltrss-{os.getpid()}"
    target = None
    try:
        subprocess.run(["gcc", "-O2", "-o", f"{tmp}/tree_target",
                        os.path.join(ROOT, "bench/tree_target.c"), "-lpthread"], check=True)
        env = ""
        if a.heap:
            subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", f"{tmp}/heap_peak.so",
                            os.path.join(ROOT, "bench/heap_peak.c"), "-ldl"], check=True)
            env = f"env LD_PRELOAD={tmp}/heap_peak.so PEAK_OUT={tmp}/peak.out "
        children = 190 if a.threads <= 1000 else a.threads // 10
        target = subprocess.Popen([f"{tmp}/tree_target", str(a.threads), str(children)],
                                  stdout=subprocess.PIPE, text=True)
        tpid = int(target.stdout.readline())
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48",
                        f"ulimit -n $(ulimit -Hn); echo $$ > {tmp}/lt.pid; "
                        f"exec {env}{lt} --pid {tpid} --interval 1000 2>{tmp}/lt.err"], check=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{tmp}/lt.pid") or not open(f"{tmp}/lt.pid").read().strip():
            if time.monotonic() > deadline:
                sys.exit("error: the dashboard did not start in its tmux pane")
            time.sleep(0.05)
        pid = int(open(f"{tmp}/lt.pid").read())
        time.sleep(a.wait)
        if not os.path.exists(f"/proc/{pid}"):
            err = open(f"{tmp}/lt.err", errors="replace").read().strip()
            sys.exit(f"error: the dashboard exited early: {err or 'nothing on its stderr'}")
        agg, status = smaps(pid)
        print(f"lifecycle-top --pid (tree_target {a.threads} threads, {children} children), "
              f"after {a.wait:.0f} s:")
        for k, (rss, size) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
            if rss:
                print(f"  {k:40s} {rss / 1024:7.2f} MB resident of {size / 1024:8.1f} MB")
        for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
            print(f"  {k:40s} {status.get(k, '?')}")
        print("resident code by crate (KB):")
        for crate, b in code_by_crate(pid):
            print(f"  {crate:40s} {b / 1024:7.0f}")
        if a.heap:
            print("(with --heap the preloaded tracker's backtraces read the binary's unwind "
                  "tables: its read-only data is resident more than without)")
            peak, sites = heap_attribution(f"{tmp}/peak.out", lt)
            print(f"heap peak in use: {peak / 1048576:.2f} MB; the allocations that made it:")
            for s, b in sites:
                print(f"  {b / 1048576:6.2f} MB  {s}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)
        if target is not None:
            target.kill()
            target.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
