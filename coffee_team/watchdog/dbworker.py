"""The watchdog loop's database, on a thread of its own (issue 26: partitions).

The listener's loop must never wait on the database: a crashed agent is restarted within
seconds also while PostgreSQL does not answer (a partition, a server stuck on its disk), and
supervisord's events are answered meanwhile. So main.py hands the loop a PatientQueue: every
queue call runs on one worker thread, with a connection of its own, in the order made (a read
sees every write made before it):

- writes whose result the loop does not need (restart state, events, notifications: POSTED)
  return at once and are written when the database answers, retried with backoff while it
  does not (the loop keeps its restart state in memory meanwhile: Watchdog.known_states);
- any other call waits for its answer at most ``patience`` seconds; while the worker has been
  inside one call (or retrying a write) longer than that, calls fail at once with
  DatabaseUnavailable instead of queueing up behind it, and the loop goes on with what it
  knows (listener.py says so once per episode).

Logging goes through ``log`` (stderr): stdout is the listener protocol.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from coffee_team import retry
from coffee_team.errors import DatabaseUnavailable
from coffee_team.queue.db import is_transient as transient

POSTED = frozenset({"save_restart_state", "record_event", "notify"})
DIRECT = frozenset({"adopt_team", "close"})  # no statement (close: the caller's own connection)
PATIENCE = 2.0          # seconds the loop waits for an answer
MAX_POSTED = 10000      # events and notifications kept while the database is away
RETRY_MAX = 5.0         # seconds between tries of a posted write, at most


class _Job:
    __slots__ = ("name", "args", "kwargs", "posted", "done", "result", "error")

    def __init__(self, name: str, args: tuple, kwargs: dict, posted: bool):
        self.name, self.args, self.kwargs, self.posted = name, args, kwargs, posted
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class PatientQueue:
    """A MessageQueue as the watchdog loop uses it: attributes are the queue's, methods run on
    the worker thread (see the module's text)."""

    def __init__(self, queue: Any, log: Callable[[str], None], patience: float = PATIENCE,
                 mono: Callable[[], float] = time.monotonic):
        self.queue = queue
        self.log = log
        self.patience = patience
        self.mono = mono
        self.dropped = 0  # events and notifications not kept (MAX_POSTED)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._work, name="watchdog-db", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.queue, name)
        if name in DIRECT or name.startswith("_") or not callable(attr):
            return attr
        if name in POSTED:
            return lambda *args, **kwargs: self.post(name, *args, **kwargs)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def stuck_for(self) -> float | None:
        """Seconds the worker has been inside one call, if longer than ``patience``."""
        since = self._busy_since
        if since is None:
            return None
        busy = self.mono() - since
        return busy if busy >= self.patience else None

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._cond:
            stuck = self.stuck_for()
            if stuck is not None:
                raise DatabaseUnavailable(f"the database has not answered for {stuck:.0f}s")
            job = _Job(name, args, kwargs, posted=False)
            self._jobs.append(job)
            self._cond.notify()
        if not job.done.wait(self.patience):
            raise DatabaseUnavailable(f"the database did not answer {name} within "
                                      f"{self.patience:g}s")
        if job.error is not None:
            raise job.error
        return job.result

    def post(self, name: str, *args: Any, **kwargs: Any) -> None:
        with self._cond:
            if name != "save_restart_state" and \
                    sum(job.posted for job in self._jobs) >= MAX_POSTED:
                self.dropped += 1  # a restart state is never dropped: the backlog is events
                return
            self._jobs.append(_Job(name, args, kwargs, posted=True))
            self._cond.notify()

    def pending(self) -> int:
        """Calls and writes not done yet."""
        with self._cond:
            return len(self._jobs)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                job = self._jobs[0]
                self._busy_since = self.mono()
            self._run(job)
            with self._cond:
                self._jobs.popleft()
                self._busy_since = None
            job.done.set()

    def _run(self, job: _Job) -> None:
        said = False
        for delay in retry.delays(0.1, RETRY_MAX):
            try:
                job.result = getattr(self.queue, job.name)(*job.args, **job.kwargs)
                if said:
                    self.log(f"database answers again: {job.name} written")
                return
            except Exception as exc:  # noqa: BLE001: the worker outlives any failure
                if not (job.posted and transient(exc)):
                    if job.posted:
                        self.log(f"{job.name} not written: {type(exc).__name__}: {exc}")
                    job.error = exc
                    return
                if not said:
                    said = True
                    self.log(f"{job.name} waits for the database ({type(exc).__name__}: "
                             f"{str(exc).strip()[:200]}); written when it answers")
            time.sleep(delay)
