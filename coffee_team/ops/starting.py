"""Waiting for programs to start, and saying in one line why one did not (start, restart),
for the command line and the MCP server alike."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator

from .. import client
from ..errors import ActionRefused
from ..team import Team
from . import probe

WATCHDOG = "watchdog"
# ``waiting(what)`` around a wait says what it waits for while it lasts (the command line
# prints "waiting for WHAT... 3 s"); ``what`` is a string or a function giving one
Waiting = Callable[[Any], ContextManager[None]]


def no_waiting(what: Any) -> ContextManager[None]:
    return nullcontext()


class HelperFailed(ActionRefused):
    """The watchdog or the web program cannot start: nothing launches the agents (or the
    dashboard is down), and only a new supervisord reads a mended config or environment."""


def wait_running(team: Team, rpc: Callable[..., Any], names: tuple[str, ...], timeout: float,
                 helpers: tuple[str, ...] = (), waiting: Waiting = no_waiting,
                 booted: bool = False) -> None:
    """Wait for ``names`` (agents) and ``helpers`` (the watchdog, the web program) to run;
    the first that fails, or cannot be spawned at all, is one line naming it and why.
    ``booted``: supervisord was started for this wait (``client.start_failures``)."""
    seen: dict[str, str] = {}
    # launch order: the helpers, then the agents group by group (sorted is stable)
    priority = {a.name: a.priority for a in team.agents}
    states = StatePoll(rpc, (*helpers, *sorted(names, key=lambda n: priority.get(n, 0))),
                       always=helpers if booted else ())

    def poll() -> list[dict]:
        infos = states()
        seen.update((i["name"], i["statename"]) for i in infos)
        return infos

    def pending() -> str:
        left = [f"{n} ({seen.get(n, '?')})" for n in (*helpers, *names)
                if seen.get(n) != "RUNNING"]
        return ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "") \
            + " to run"
    with waiting(pending):
        infos = client.wait_start(poll, names, timeout, helpers=helpers, booted=booted)
    failed = client.start_failures(infos, names, helpers, booted)
    if not failed and any(i["statename"] != "RUNNING" for i in infos.values()):
        # timed out: each one's state now, not the one a poll of its window last read
        infos = client.wait_start(StatePoll(rpc, ()), names, 0, helpers=helpers, booted=booted)
        failed = client.start_failures(infos, names, helpers, booted)
    if failed:
        info = infos[failed[0]]
        error = HelperFailed if failed[0] in helpers else ActionRefused
        state = info["statename"]
        if failed[0] in helpers and state in ("RUNNING", "STARTING", "EXITED"):
            state = "exited"  # past startsecs (booted): respawned at once, running again maybe
        raise error(f"{failed[0]} failed to start ({state}): "
                    f"{why_not_started(rpc, info)}; see {log_of(team, failed[0])}")
    waiting = [f"{n} ({i['statename']})" for n, i in infos.items() if i["statename"] != "RUNNING"]
    if waiting:
        raise ActionRefused(f"none came up in {timeout:g}s: waiting for {', '.join(waiting)}; "
                            f"see {log_of(team, WATCHDOG)} (it launches the agents)")


POLL_WINDOW = 20  # programs a start asks supervisord about per poll while it waits


class StatePoll:
    """What a start polls (``client.wait_start``): supervisord's infos of the programs it
    waits for, asked about a few at a time.

    getAllProcessInfo answers with every program, in supervisord's one thread: at 500
    programs one call costs it 0.14-0.2 s of CPU (8 ms at 100; its loop does O(programs)
    work per pass and the answer takes many passes), and a start waiting for a boot asked
    every 0.1 s, as fast as the answers came, while supervisord forked the agents in that
    same thread. Programs come up in launch
    order, so after one whole read each poll asks (one system.multicall) about the first
    POLL_WINDOW of ``order`` not yet seen RUNNING; the others keep the state last read. Once
    every one was seen RUNNING, a whole read again says whether they all still run (one that
    crashed meanwhile is reported as before). ``always``: asked about on every poll, RUNNING
    or not (the helpers of a boot, whose exit past startsecs is a failure at once)."""

    def __init__(self, rpc: Callable[..., Any], order: tuple[str, ...],
                 window: int | None = None, always: tuple[str, ...] = ()):
        self.rpc = rpc
        self.order = order
        self.window = window or POLL_WINDOW
        self.always = always
        self.infos: dict[str, dict] = {}  # by name: the last info read of each program

    def __call__(self) -> list[dict]:
        if self.infos:
            pending = self._pending()[:self.window]
            self._ask([n for n in self.always if n in self.infos and n not in pending]
                      + pending)
            if self._pending():
                return list(self.infos.values())
        # the first look, or every one seen RUNNING: a whole read (a program not in it stays
        # out, as wait_start expects of one supervisord does not have)
        self.infos = {i["name"]: i for i in self.rpc("supervisor.getAllProcessInfo")}
        return list(self.infos.values())

    def _pending(self) -> list[str]:
        return [n for n in self.order
                if n in self.infos and self.infos[n].get("statename") != "RUNNING"]

    def _ask(self, names: list[str]) -> None:
        if names:
            answers = self.rpc("system.multicall", [
                {"methodName": "supervisor.getProcessInfo", "params": [n]} for n in names])
            for name, answer in zip(names, answers):
                if isinstance(answer, dict) and "statename" in answer:
                    self.infos[name] = answer
                else:  # a fault: supervisord no longer has it (a reread meanwhile)
                    self.infos.pop(name, None)


def log_of(team: Team, name: str) -> str:
    return os.path.relpath(team.log_dir / f"{name}.log")


def why_not_started(rpc: Callable[..., Any], info: dict) -> str:
    """supervisord's reason (a spawn error, e.g. "can't find command"), else the last line the
    program wrote (its traceback's last line, or its own one-line error)."""
    import xmlrpc.client
    error = client.spawn_error(info)
    if error and not error.startswith(client.BAD_EXIT_CODE):  # that one ran: its log says why
        return error
    for tail in ("supervisor.tailProcessStdoutLog", "supervisor.tailProcessStderrLog"):
        try:
            text = rpc(tail, info["name"], 0, 4096)[0]
        except xmlrpc.client.Fault:  # no such log (the watchdog's stdout is the protocol)
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return info.get("description") or "no output"


# --- one start at a time -------------------------------------------------------------------

@contextmanager
def only_one_start(team: Team, waiting: Waiting = no_waiting, bound: float = 30.0,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[str | None]:
    """Hold the team's start lock (run/start.lock, flock: gone with its holder) for a start.
    Yields None to the start that holds it; to one that finds another start holding it, a
    line saying so, once that start's supervisord is alive (within ``bound`` seconds; if the
    other start ends first without a supervisord, this one goes on as the start)."""
    import fcntl
    path = team.run_dir / "start.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = probe.read_pid(path) or "?"
            line = _other_start(team, fd, other, waiting, bound, clock)
            if line is not None:
                yield line
                return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)  # releases the lock


def _other_start(team: Team, fd: int, other: Any, waiting: Waiting, bound: float,
                 clock: Callable[[], float]) -> str | None:
    """Wait for the other start's supervisord: a line naming it, or None once we hold the
    lock (the other start ended without one)."""
    import fcntl
    deadline = clock() + bound
    with waiting(f"another `coffee-team start` (PID {other}) to boot supervisord"):
        while True:
            pid = probe.read_pid(probe.pidfile(team))
            if probe.process_kind(pid) in (probe.SUPERVISORD, probe.STOPPED):
                return (f"already starting: another `coffee-team start` (PID {other}) runs "
                        f"the team, supervisord PID {pid}; `coffee-team status` shows it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pass
            if clock() > deadline:
                raise ActionRefused(f"another `coffee-team start` (PID {other}) has held "
                                    f"{team.run_dir / 'start.lock'} for {bound:g}s without a "
                                    f"supervisord; wait for it, or end it and start again")
            time.sleep(0.1)
