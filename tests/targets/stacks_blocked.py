"""Test/bench target for lifecycle-top stacks: Python threads blocked in named functions.

argv[1] = extra threads parked in py_parked_on_event (the benchmark uses 100);
argv[2] = a path: once every thread sits in its blocking function, write there the same
`stacks` result the lifecycle-top agent returns (sys._current_frames joined to
Thread.native_id, innermost first), so tests join real CPython frames to kernel tids.
Prints "ready" once every thread is started; exits when its parent dies (polls getppid).
"""
import json
import os
import sys
import threading
import time

held = threading.Lock()
held.acquire()
never = threading.Event()


def py_blocked_on_lock():
    held.acquire()


def py_blocked_in_sleep():
    while True:
        time.sleep(100000)


def py_parked_on_event():
    never.wait()


def frames_of(f):
    out = []
    while f is not None:
        out.append({"file": f.f_code.co_filename, "line": f.f_lineno, "function": f.f_code.co_name})
        f = f.f_back
    return out


def dump_when_blocked(path, expected):
    while True:
        frames = sys._current_frames()
        threads = [
            {"native_id": t.native_id, "name": t.name, "frames": frames_of(frames.get(t.ident))}
            for t in threading.enumerate()
        ]
        inner = {t["name"]: (t["frames"] or [{}])[0].get("function") for t in threads}
        # Inner frames of a blocked thread are in threading.py (acquire/wait): look deeper.
        seen = {t["name"] for t in threads if any(f["function"] in expected for f in t["frames"])}
        if {"py_lock", "py_sleep"} <= seen and inner:
            break
        time.sleep(0.01)
    with open(path + ".tmp", "w") as out:
        json.dump({"order": "innermost_first", "threads": threads}, out)
    os.rename(path + ".tmp", path)


def main():
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    parent = os.getppid()
    threading.Thread(target=py_blocked_on_lock, name="py_lock", daemon=True).start()
    threading.Thread(target=py_blocked_in_sleep, name="py_sleep", daemon=True).start()
    for i in range(extra):
        threading.Thread(target=py_parked_on_event, name=f"py_parked_{i}", daemon=True).start()
    if len(sys.argv) > 2:
        dump_when_blocked(sys.argv[2], {"py_blocked_on_lock", "py_blocked_in_sleep"})
    print("ready", flush=True)
    while os.getppid() == parent:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
