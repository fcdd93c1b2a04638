"""Test doubles for the watchdog, superlance style: a fake supervisord RPC proxy, the fake
clock (tests/clock.py), and event envelopes framed with supervisord's own code.

The queue is never faked: tests use a real MessageQueue on a throwaway SQLite file.
"""
from __future__ import annotations

import io
import xmlrpc.client
from types import SimpleNamespace
from typing import Any, Iterable

from supervisor import events as sv_events
from supervisor.process import EventListenerPool
from supervisor.xmlrpc import Faults, getFaultDescription

from coffee_team.watchdog.health import Usage
from coffee_team.watchdog.protocol import Event, ListenerProtocol
from tests.clock import T0, FakeClock  # noqa: F401  (T0 for the watchdog tests)

# supervisor.states.ProcessStates, by name (getProcessInfo reports both)
STATE_CODES = {"STOPPED": 0, "STARTING": 10, "RUNNING": 20, "BACKOFF": 30, "STOPPING": 40,
               "EXITED": 100, "FATAL": 200, "UNKNOWN": 1000}
RUNNING_STATES = ("RUNNING", "BACKOFF", "STARTING")  # supervisor.states.RUNNING_STATES


def fault(code: int, name: str) -> xmlrpc.client.Fault:
    """The Fault a ServerProxy raises for supervisor's ``RPCError(code, name)``."""
    return xmlrpc.client.Fault(code, f"{getFaultDescription(code)}: {name}")


class FakeSupervisor:
    """Stands in for ``childutils.getRPCInterface(os.environ)``: ``rpc.supervisor.X(...)``.

    ``states`` maps program name -> statename. ``startProcess`` puts a stopped program into
    STARTING (wait=False returns at once, as in supervisord); ``settle()`` - called by
    ``sleep`` - moves STARTING to RUNNING and STOPPING to STOPPED. Every call is recorded in
    ``calls`` as ``(method, *args)``; ``fail(method, exc, times)`` makes the next call(s) raise.
    """

    def __init__(self, names: Iterable[str], state: str = "STOPPED", clock: FakeClock | None = None,
                 auto_settle: bool = True):
        self.supervisor = self  # the proxy's ``supervisor.`` namespace
        self.system = self      # and ``system.`` (multicall)
        self.clock = clock or FakeClock()
        self.states: dict[str, str] = {name: state for name in names}
        self.pids: dict[str, int] = {name: 0 for name in self.states}
        self.starts: dict[str, int] = {}  # getProcessInfo's "start"; 0: before the test began
        self.calls: list[tuple] = []
        self.auto_settle = auto_settle
        self.started_while: dict[str, dict[str, str]] = {}  # name -> states at its last start
        self._failures: dict[str, list[BaseException]] = {}
        self._next_pid = 40000

    # --- test controls ---------------------------------------------------------------------
    def set_state(self, name: str, statename: str, started_at: int = 0) -> None:
        self.states[name] = statename
        if statename in ("STARTING", "RUNNING") and not self.pids.get(name):
            self._next_pid += 1
            self.pids[name] = self._next_pid
            self.starts[name] = started_at
        elif statename not in ("STARTING", "RUNNING", "STOPPING", "BACKOFF"):
            self.pids[name] = 0

    def fail(self, method: str, exc: BaseException, times: int = 1) -> None:
        self._failures.setdefault(method, []).extend([exc] * times)

    def settle(self) -> None:
        for name, state in list(self.states.items()):
            if state == "STARTING":
                self.set_state(name, "RUNNING")
            elif state == "STOPPING":
                self.set_state(name, "STOPPED")

    def sleep(self, seconds: float) -> None:
        """The watchdog's injected ``sleep``: time passes and started programs come up."""
        self.calls.append(("sleep", seconds))
        self.clock.advance(seconds)
        if self.auto_settle:
            self.settle()

    def started(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "startProcess"]

    def stopped(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "stopProcess"]

    def method_calls(self, method: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == method]

    # --- the RPC surface -------------------------------------------------------------------
    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _known(self, name: str) -> None:
        if name not in self.states:
            raise fault(Faults.BAD_NAME, name)

    def startProcess(self, name: str, wait: bool = True) -> bool:
        self._enter("startProcess", name, wait)
        self._known(name)
        if self.states[name] in RUNNING_STATES:
            raise fault(Faults.ALREADY_STARTED, name)
        self.started_while[name] = dict(self.states)
        self.set_state(name, "RUNNING" if wait else "STARTING", int(self.clock()))
        return True

    def multicall(self, calls: list[dict]) -> list:
        """``system.multicall``: supervisor.* calls in order; a Fault comes back as a struct,
        anything else (the connection) fails the whole call, as over a real socket."""
        self._enter("multicall", [c["methodName"] for c in calls])
        answers = []
        for call in calls:
            method = getattr(self, call["methodName"].removeprefix("supervisor."))
            try:
                answers.append(method(*call["params"]))
            except xmlrpc.client.Fault as exc:
                answers.append({"faultCode": exc.faultCode, "faultString": exc.faultString})
        return answers

    def stopProcess(self, name: str, wait: bool = True) -> bool:
        self._enter("stopProcess", name, wait)
        self._known(name)
        if self.states[name] not in RUNNING_STATES:
            raise fault(Faults.NOT_RUNNING, name)
        self.set_state(name, "STOPPED" if wait else "STOPPING")
        return True

    def getProcessInfo(self, name: str) -> dict:
        self._enter("getProcessInfo", name)
        self._known(name)
        return self._info(name)

    def getAllProcessInfo(self) -> list[dict]:
        self._enter("getAllProcessInfo")
        return [self._info(name) for name in sorted(self.states)]

    def _info(self, name: str) -> dict:
        state = self.states[name]
        return {"name": name, "group": name, "statename": state, "state": STATE_CODES[state],
                "pid": self.pids.get(name, 0), "start": self.starts.get(name, 0), "stop": 0, "now": int(self.clock()),
                "spawnerr": "", "exitstatus": 0, "description": "", "logfile": "",
                "stdout_logfile": "", "stderr_logfile": ""}


class FakeSampler:
    """Replaces health.TreeSampler: ``usage[pid]`` for each pid (left out: process gone)."""

    def __init__(self, usage: dict[int, Usage] | None = None, default: Usage | None = None):
        self.usage = usage or {}
        self.default = default
        self.sampled: list[list[int]] = []  # the pids of each pass

    def sample(self, pids: Iterable[int]) -> dict[int, Usage]:
        pids = list(pids)
        self.sampled.append(pids)
        found = {pid: self.usage.get(pid, self.default) for pid in pids}
        return {pid: usage for pid, usage in found.items() if usage is not None}


# --- event envelopes -----------------------------------------------------------------------
_POOL = SimpleNamespace(config=SimpleNamespace(
    name="watchdog", options=SimpleNamespace(identifier="supervisor")))


def payload_text(**payload: Any) -> str:
    """``key:value`` tokens in the given order, as supervisor's ProcessStateEvent.payload()."""
    return " ".join(f"{key}:{value}" for key, value in payload.items())


def event_text(eventname: str, serial: int = 1, pool_serial: int | None = None,
               **payload: Any) -> str:
    """One envelope framed by supervisord's own ``EventListenerPool._eventEnvelope``:
    ``ver:3.0 server:supervisor serial:N pool:watchdog poolserial:N eventname:E len:L\\n``
    followed by the payload (``processname:x groupname:x from_state:RUNNING expected:0 pid:1``).
    """
    event_type = getattr(sv_events.EventTypes, eventname)
    return EventListenerPool._eventEnvelope(
        _POOL, event_type, serial, serial if pool_serial is None else pool_serial,
        payload_text(**payload))


def process_event_text(eventname: str, name: str, from_state: str, serial: int = 1,
                       pid: int = 123, **extra: Any) -> str:
    """A PROCESS_STATE_* envelope for program ``name`` (its own group), supervisor's field order."""
    payload: dict[str, Any] = {"processname": name, "groupname": name, "from_state": from_state}
    if eventname == "PROCESS_STATE_EXITED":
        payload["expected"] = int(extra.pop("expected", 0))
        payload["pid"] = pid
    elif eventname in ("PROCESS_STATE_STARTING", "PROCESS_STATE_BACKOFF"):
        payload["tries"] = extra.pop("tries", 0)
    elif eventname in ("PROCESS_STATE_RUNNING", "PROCESS_STATE_STOPPING",
                       "PROCESS_STATE_STOPPED"):
        payload["pid"] = pid
    payload.update(extra)
    return event_text(eventname, serial=serial, **payload)


def parse(text: str) -> Event:
    """Read one envelope back through the real ListenerProtocol."""
    protocol = ListenerProtocol(io.StringIO(text), io.StringIO(), io.StringIO())
    return protocol.read_event()


def event(eventname: str, **payload: Any) -> Event:
    return parse(event_text(eventname, **payload))


def supervisor_running() -> Event:
    return event("SUPERVISOR_STATE_CHANGE_RUNNING")


def exited(name: str, expected: bool = False, from_state: str = "RUNNING", pid: int = 123) -> Event:
    return parse(process_event_text("PROCESS_STATE_EXITED", name, from_state,
                                    expected=int(expected), pid=pid))


def running(name: str, pid: int = 123) -> Event:
    return parse(process_event_text("PROCESS_STATE_RUNNING", name, "STARTING", pid=pid))


def stopped(name: str, pid: int = 123) -> Event:
    return parse(process_event_text("PROCESS_STATE_STOPPED", name, "STOPPING", pid=pid))


def fatal(name: str) -> Event:
    return parse(process_event_text("PROCESS_STATE_FATAL", name, "BACKOFF"))


def backoff(name: str, tries: int = 1) -> Event:
    return parse(process_event_text("PROCESS_STATE_BACKOFF", name, "STARTING", tries=tries))
