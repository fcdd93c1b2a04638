"""What the watchdog needs before it can work (the team file, the database), opened patiently.

A damaged or newer database, a PostgreSQL server that is down or a team file with a mistake
must not make the listener crash-loop: supervisord would respawn it at once, forever, and its
event buffer would overflow. Instead the listener answers supervisord's events while it
retries with backoff, logs one line per distinct problem, remembers whether supervisord
already reported RUNNING (so the team is launched as soon as the problem is fixed), and goes
on as usual when opening works.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from coffee_team import retry
from coffee_team.errors import describe_error
from coffee_team.watchdog.protocol import ListenerProtocol, MalformedEvent

FIRST_RETRY = 1.0   # seconds
MAX_RETRY = 30.0
T = TypeVar("T")


class Opened:
    """What ``open_patiently`` hands on: the opened value and what was heard meanwhile."""

    def __init__(self, value, supervisor_running: bool, waited: bool):
        self.value = value
        self.supervisor_running = supervisor_running
        self.waited = waited


def open_patiently(open_all: Callable[[], T], protocol: ListenerProtocol, *,
                   clock: Callable[[], float] = time.monotonic,
                   first: float = FIRST_RETRY, cap: float = MAX_RETRY) -> Opened | None:
    """Call ``open_all`` until it returns; None if supervisord closed our stdin meanwhile.

    If it had to wait, the listener has sent READY (``Opened.waited``) and is READY still.
    """
    saw_running, last_problem = False, None
    for delay in retry.delays(first, cap):
        try:
            return Opened(open_all(), saw_running, waited=last_problem is not None)
        except Exception as exc:  # anything that stops us opening is waited out, not raised
            problem = describe_error(exc)
            if last_problem is None:
                protocol.ready()
            if problem != last_problem:
                protocol.log(f"cannot start yet: {problem}; retrying (at most every "
                             f"{cap:g}s); the team is launched once this works")
                last_problem = problem
        deadline = clock() + delay
        while (remaining := deadline - clock()) > 0:
            try:
                event = protocol.read_event(timeout=remaining)
            except EOFError:
                return None
            except MalformedEvent:
                protocol.fail()
                protocol.ready()
                continue
            if event is None:
                continue
            saw_running = saw_running or event.eventname == "SUPERVISOR_STATE_CHANGE_RUNNING"
            protocol.ok()
            protocol.ready()
    raise AssertionError("unreachable: retry.delays is endless")
