"""On SIGTERM, double-forks a `sleep 300` daemon (setsid) and exits 0.

Expected under `check`: NOT clean (`no left-over processes` fails: the sleep outlives the
target). argv[1], when given, is a file where the daemon's pid is written (test cleanup).
"""
import os
import signal
import sys
import time


def daemonize_and_exit(signum, frame):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        if len(sys.argv) > 1:
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execvp("sleep", ["sleep", "300"])
    os.waitpid(pid, 0)
    # Give the grandchild its moment to write the pid file before we go.
    deadline = time.monotonic() + 2.0
    while len(sys.argv) > 1 and not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("DAEMON STARTED, EXITING", flush=True)
    os._exit(0)


signal.signal(signal.SIGTERM, daemonize_and_exit)
print("READY", flush=True)
while True:
    time.sleep(60)
