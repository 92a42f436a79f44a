"""lifecycle-top's sitecustomize: starts the agent when lifecycle-top launched this process.

It is on PYTHONPATH only when lifecycle-top launches a command. It first runs the
sitecustomize that would have run without it (the next one on sys.path), then starts the
agent if LIFECYCLE_TOP_SOCKET (set by the launcher) or LIFECYCLE_TOP_AGENT=1 is in the
environment and LIFECYCLE_TOP_NO_AGENT is not. Nothing here may break the host program:
every failure is swallowed (printed only with LIFECYCLE_TOP_AGENT_DEBUG=1).
"""


def _lifecycle_top_bootstrap():
    import os
    import sys

    def debug(msg):
        if os.environ.get("LIFECYCLE_TOP_AGENT_DEBUG"):
            sys.stderr.write("lifecycle-top sitecustomize: %s\n" % msg)

    here = os.path.dirname(os.path.abspath(__file__))
    try:  # chain to the sitecustomize we shadow
        import importlib.machinery
        import importlib.util
        for entry in sys.path:
            if os.path.abspath(entry or os.curdir) == here:
                continue
            spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
            if spec is None or spec.origin is None or spec.loader is None:
                continue
            if os.path.dirname(os.path.abspath(spec.origin)) == here:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            break
    except Exception as exc:
        debug("chained sitecustomize failed: %r" % (exc,))
    env = os.environ
    if env.get("LIFECYCLE_TOP_NO_AGENT") or not (
            env.get("LIFECYCLE_TOP_SOCKET") or env.get("LIFECYCLE_TOP_AGENT") == "1"):
        return
    try:
        import lifecycle_top_agent
        path = lifecycle_top_agent.install()
        debug("agent listening on %s" % path)
    except Exception as exc:
        debug("agent not started: %r" % (exc,))


_lifecycle_top_bootstrap()
del _lifecycle_top_bootstrap
