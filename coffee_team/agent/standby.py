"""Standby: an agent's instance on one host while the agent runs on another host.

Hosts sharing a PostgreSQL database may list the same agent; the advisory lock
(singleton.PgAgentLock) lets one instance run it. Another host's instance is not a crash: it
stays RUNNING for its supervisord, claims nothing, writes a heartbeat that says where the agent
runs ("standby: running on host a (PID 123)"), and asks for the lock every second. When the
holder's session ends (its process killed, its host gone) PostgreSQL drops the lock, the first
standby to ask gets it and becomes the active instance: a fail-over without anyone's help.

A standby holds no task, so its death requeues nothing: whoever reaps a dead instance
requeues only while nobody holds the agent's lock (MessageQueue.requeue_agent(unless_running)).
The pure rules come first (the heartbeat a standby writes, what status says of it), then the
wait itself.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Optional

from .. import retry
from ..retry import DB_RETRY_MAX
from ..errors import describe_error
from ..heartbeat import write_heartbeat
from ..liveness import STANDBY, STOPPED, due
from ..output import log
from ..parentwatch import ParentWatch
from .locks import Holder

STANDBY_POLL = 1.0   # seconds between asks for the lock: the fail-over time, about


class StandbyEnded(Exception):
    """Stopped (SIGTERM, supervisord gone) while waiting: nothing was held, nothing to undo."""


# --- pure rules ------------------------------------------------------------------------------

def standby_beat(name: str, pid: int, holder: Holder, started_at: float, now: float,
                 trouble: tuple[str, ...] = (), state: str = STANDBY) -> dict[str, Any]:
    """The heartbeat file of a standby instance (``state`` STOPPED once it gave up waiting)."""
    standby_for = {"host": holder.host, "pid": holder.pid, "holder": holder.text}
    return {"agent": name, "pid": pid, "state": state, "current_task": None,
            "standby_for": {k: v for k, v in standby_for.items() if v is not None},
            "started_at": started_at, "last_heartbeat": now, "trouble": list(trouble)}


# --- the wait --------------------------------------------------------------------------------

class Standby:
    """Waits until ``lock`` (a PgAgentLock held by ``holder`` on another host) is ours."""

    def __init__(self, team: Any, lock: Any, holder: Holder,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 mono: Callable[[], float] = time.monotonic):
        self.team = team
        self.lock = lock
        self.name = lock.name
        self.holder = holder
        self.clock = clock  # stamps the heartbeat
        self.mono = mono    # times its cadence: a wall-clock step must not stop it
        self.sleep = sleep
        self.started_at = clock()
        self.parent = ParentWatch()
        self.trouble: Optional[str] = None  # the database error being waited out, logged once
        self.beat_at: Optional[float] = None

    def wait(self) -> Holder:
        """Block until the lock is ours; returns the holder it was taken over from.
        Raises StandbyEnded on SIGTERM/SIGINT or when supervisord is gone."""
        log(self.name, f"standby: {self.name} already runs on host {self.holder.host} "
                       f"({self.holder.text}); taking over when it stops")
        previous = {sig: signal.signal(sig, _end_standby) for sig in (signal.SIGTERM,
                                                                      signal.SIGINT)}
        try:
            return self._poll()
        except StandbyEnded:
            self._beat(self.clock(), STOPPED)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _poll(self) -> Holder:
        delays = retry.delays(STANDBY_POLL, DB_RETRY_MAX)  # longer only while the database fails
        delay = next(delays)
        while True:
            if due(self.beat_at, self.mono(), self.team.settings.heartbeat_interval):
                self._beat(self.clock())
            self.sleep(delay)
            if not self.parent.parent_alive():
                raise StandbyEnded("supervisord is gone")
            try:
                holder = self.lock.take()
            except self._db_errors() as exc:
                self._problem(exc)
                delay = next(delays)
                continue
            delays = retry.delays(STANDBY_POLL, DB_RETRY_MAX)
            delay = next(delays)
            self._recovered()
            if holder is None:
                log(self.name, f"took over from host {self.holder.host} ({self.holder.text})")
                return self.holder
            if holder.host is not None and holder[:2] != self.holder[:2]:
                self.holder, self.beat_at = holder, None  # shown at once: a new holder
                log(self.name, f"standby: {self.name} now runs on host {holder.host} "
                               f"({holder.text})")

    def _beat(self, now: float, state: str = STANDBY) -> None:
        beat = standby_beat(self.name, os.getpid(), self.holder, self.started_at, now,
                            ("database",) if self.trouble else (), state)
        try:
            write_heartbeat(self.team.status_dir, self.name, beat)
        except OSError as exc:  # the next beat tries again; a standby holds nothing to lose
            log(self.name, f"cannot write the heartbeat file: {exc.strerror or exc}")
        self.beat_at = self.mono()

    def _problem(self, exc: BaseException) -> None:
        text = describe_error(exc)
        if self.trouble is None:
            log(self.name, f"standby: database unavailable ({text}); retrying")
        self.trouble = text

    def _recovered(self) -> None:
        if self.trouble is not None:
            log(self.name, "standby: database recovered")
            self.trouble = None

    @staticmethod
    def _db_errors() -> tuple[type[BaseException], ...]:
        from ..queue.db import database_errors
        return database_errors()


def _end_standby(signum, frame) -> None:
    raise StandbyEnded(f"stopped by signal {signal.Signals(signum).name}")
