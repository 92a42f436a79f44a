#!/usr/bin/env python3
"""Writes assets/symbol-order.txt: the functions of lifecycle-top's dashboard that run, in the
order they first run, for the linker to lay out side by side (build.rs gives the file to LLD
as `--symbol-ordering-file`).

Why: the kernel maps 64 KB of a binary's code around each page it faults in, and this
machine reads ahead 8 MB of a file, so code that runs is resident with whatever the linker
put next to it. Spread over 8.9 MB of text by crate and codegen unit, the code a dashboard
runs kept 5.4 MB of it resident (issue 14's peak-RSS goal; bench/rss_breakdown.py).

How: the release binary watches tree_target (1,000 threads, 190 children) in a 160x48 tmux
pane at a 1 s refresh for --wait seconds (the verdict is refreshed every 5 s: its wait read
and diagnosis run too), then quits with `q`, under bench/first_hits.c: a one-shot breakpoint
on every function of the binary, so each function that runs is seen once, in order.

    bench/symbol_order.py [--wait S] [--lt BINARY] [--out FILE]

Symbol names carry a hash of the crate and the compiler: re-run this after a toolchain or
dependency update (names that no longer exist are skipped by the linker, so a stale file
only orders less). Prints how many of the file's names the binary has.
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "assets/symbol-order.txt")


def need(tool, hint):
    if shutil.which(tool) is None:
        sys.exit(f"error: '{tool}' not found: install it to run this script ({hint})")


def functions(exe):
    """{address: [names]} of the binary's functions (folded ones share an address)."""
    nm = subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True,
                        check=True).stdout
    out = collections.defaultdict(list)
    for p in (l.split() for l in nm.splitlines()):
        if len(p) == 3 and p[1] in "tTwW":
            out[int(p[0], 16)].append(p[2])
    return out


def present(path, names):
    """How many of the names in order file `path` the binary has."""
    listed = [l.split("#")[0].strip() for l in open(path)]
    listed = [l for l in listed if l]
    return sum(1 for l in listed if l in names), len(listed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wait", type=float, default=60)
    ap.add_argument("--lt", help="release binary (default: cargo build --release)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true",
                    help="only say how many of --out's names the binary has")
    a = ap.parse_args()
    for tool, hint in [("gcc", "apt-get install gcc"), ("tmux", "apt-get install tmux"),
                       ("nm", "apt-get install binutils")]:
        need(tool, hint)
    lt = a.lt
    if not lt:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "lifecycle-top"],
                       cwd=ROOT, check=True)
        lt = os.path.join(ROOT, "target/release/lifecycle-top")
    lt = os.path.abspath(lt)
    funcs = functions(lt)
    if a.check:
        have, total = present(a.out, {n for ns in funcs.values() for n in ns})
        print(f"{a.out}: {have} of its {total} names are in {lt}")
        return
    tmp = tempfile.mkdtemp()
    session = f"ltorder-{os.getpid()}"
    target = None
    try:
        subprocess.run(["gcc", "-O2", "-o", f"{tmp}/first_hits",
                        os.path.join(ROOT, "bench/first_hits.c")], check=True)
        subprocess.run(["gcc", "-O2", "-o", f"{tmp}/tree_target",
                        os.path.join(ROOT, "bench/tree_target.c"), "-lpthread"], check=True)
        with open(f"{tmp}/addrs", "w") as f:
            for addr in sorted(funcs):
                f.write(f"{addr:x}\n")
        target = subprocess.Popen([f"{tmp}/tree_target", "1000", "190"],
                                  stdout=subprocess.PIPE, text=True)
        tpid = int(target.stdout.readline())
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48",
                        f"ulimit -n $(ulimit -Hn); {tmp}/first_hits {tmp}/addrs {tmp}/hits -- "
                        f"{lt} --pid {tpid} --interval 1000 2>{tmp}/lt.err; "
                        f"echo $? > {tmp}/rc"], check=True)
        time.sleep(a.wait)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{tmp}/rc"):
            if time.monotonic() > deadline:
                sys.exit("error: the dashboard did not quit within 60 s of `q`")
            time.sleep(0.2)
        rc = open(f"{tmp}/rc").read().strip()
        err = open(f"{tmp}/lt.err", errors="replace").read().strip()
        if rc != "0":
            sys.exit(f"error: the dashboard exited with {rc}: {err[-2000:] or 'no stderr'}")
        names, seen = [], set()
        for line in open(f"{tmp}/hits"):
            for n in funcs.get(int(line, 16), []):
                if n not in seen:
                    seen.add(n)
                    names.append(n)
        with open(a.out, "w") as f:
            f.write("# The functions of lifecycle-top's dashboard that run, in the order they "
                    "first run, for LLD\n# (build.rs). Written by bench/symbol_order.py "
                    f"(tree_target, 1,000 threads, {a.wait:.0f} s): {len(names)} names.\n")
            for n in names:
                f.write(n + "\n")
        print(f"{a.out}: {len(names)} functions ({err.splitlines()[0] if err else ''})")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)
        if target is not None:
            target.kill()


if __name__ == "__main__":
    main()
