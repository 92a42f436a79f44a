"""Keeps the lifecycle-top demo from outliving the dashboard that launched it.

Every long-lived child of the demo runs `child_code(...)`: it names itself, optionally
ignores SIGTERM (the point of the demo), and leaves once lifecycle-top
(LIFECYCLE_TOP_DEMO_PARENT) is gone, so even a SIGKILLed lifecycle-top leaves nothing.
"""

_GUARD = """
import ctypes, os, signal, subprocess, sys, time
def lifecycle_top_gone():
    pid = int(os.environ.get('LIFECYCLE_TOP_DEMO_PARENT', '0') or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
ctypes.CDLL(None).prctl(15, NAME, 0, 0, 0)
if IGNORE_TERM:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
EXTRA
while not lifecycle_top_gone():
    time.sleep(0.5)
"""


def child_code(name, ignore_term=False, extra=""):
    """Python source for a child process called `name` that idles until lifecycle-top is gone."""
    return (
        _GUARD.replace("NAME", repr(name.encode()[:15]))
        .replace("IGNORE_TERM", repr(bool(ignore_term)))
        .replace("EXTRA", extra)
    )
