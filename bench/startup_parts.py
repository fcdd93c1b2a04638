"""startup_bench.py's parts around the agent it times: the wrapper that stamps the phases of
an agent's start-up, and an inotify watch that sees its heartbeat file written."""
from __future__ import annotations

import ctypes
import os
import select
import struct
import subprocess
import time
from pathlib import Path

# runtime.main with CLOCK_MONOTONIC stamps around its steps; prints them on the first beat.
PHASES = """
import time
t_start = time.monotonic()
import sys
stamps = {"interpreter": t_start}
try:  # what __main__ does first for an agent's command line
    from coffee_team.agent.lean import defer
    defer()
except ImportError:  # a checkout from before it
    pass
import coffee_team.agent.runtime as rt
try:
    import coffee_team.team.snapshot as loader
except ImportError:  # a checkout from before the snapshot: runtime.main reads the YAML
    import coffee_team.team as loader
import coffee_team.queue as queue_pkg
stamps["imports"] = time.monotonic()
def after(label, fn):
    def wrapped(*a, **k):
        try:
            return fn(*a, **k)
        finally:
            stamps.setdefault(label, time.monotonic())
    return wrapped
def before(label, fn):
    def wrapped(*a, **k):
        stamps.setdefault(label, time.monotonic())
        return fn(*a, **k)
    return wrapped
loader.load_team = after("team", loader.load_team)
rt.agent_lock = after("lock", rt.agent_lock)
init = rt.Agent.__init__
rt.Agent.__init__ = after("agent", init)
MQ = queue_pkg.MessageQueue
MQ.from_team = classmethod(after("queue", MQ.from_team.__func__))
MQ.requeue_agent = after("requeue", MQ.requeue_agent)
import coffee_team.heartbeat as hb
write = hb.write_heartbeat
def first_beat(*a, **k):
    write(*a, **k)
    if "heartbeat" not in stamps:
        stamps["heartbeat"] = time.monotonic()
        stamps["cpu"] = time.process_time()  # this process's CPU, its interpreter's start too
        with open(out, "w") as f:
            f.write(__import__("json").dumps(stamps))
for module in list(sys.modules.values()):  # wherever the agent's code imported it from
    if getattr(module, "__name__", "").startswith("coffee_team") \
            and getattr(module, "write_heartbeat", None) is write:
        module.write_heartbeat = first_beat
out = sys.argv.pop(1)  # then: --team T agent run NAME
sys.exit(rt.main(sys.argv[2], sys.argv[5]))
"""
PHASE_ORDER = ("interpreter", "imports", "team", "lock", "agent", "queue", "requeue",
               "heartbeat")
PHASE_LABEL = {"interpreter": "exec → first line (interpreter, site)",
               "imports": "imports: the runtime and the queue",
               "team": "read the team (snapshot, else YAML)",
               "lock": "data dirs, PDEATHSIG, the agent's lock",
               "agent": "Agent(): its runner",
               "queue": "open the queue",
               "requeue": "requeue orphans",
               "heartbeat": "→ first heartbeat written"}

IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
_libc = ctypes.CDLL(None, use_errno=True)


class Watch:
    """inotify on one directory: ``wait(name)`` returns the perf_counter when ``name`` was
    written or renamed into it (no polling, so no CPU taken from the process timed)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, os.fsencode(directory),
                                                  IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def drain(self) -> None:
        """Forget earlier events (an agent writes its heartbeat once more as it stops)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def wait(self, name: str, timeout: float, proc: subprocess.Popen) -> float:
        deadline = time.monotonic() + timeout
        want = os.fsencode(name)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"no {name} within {timeout}s (exit {proc.poll()}): "
                                   f"{proc.stderr.read() if proc.stderr else ''}")
            if not select.select([self.fd], [], [], min(left, 0.5))[0]:
                continue
            seen = time.perf_counter()
            data = os.read(self.fd, 65536)
            i = 0
            while i < len(data):
                _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
                file = data[i + 16:i + 16 + size].rstrip(b"\0")
                i += 16 + size
                if file == want:
                    return seen

    def close(self) -> None:
        os.close(self.fd)
