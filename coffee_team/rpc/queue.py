"""The queue of the ``coffee`` rpcinterface, which lives inside supervisord's only thread.

The rule for everything that runs inside supervisord: it never waits on the database for more
than a fraction of a second. So the database is opened ``bounded`` (SQLite: a 200 ms busy
timeout; PostgreSQL: the same as statement and lock timeout, a 2 s connect timeout, TCP
keepalives), a database that could not be opened is not tried again for ``OPEN_RETRY``
seconds (calls fail at once meanwhile), and a database file deleted under the team is
reported instead of used. What cannot be done at once is left to the watchdog (the requeue of
a dead agent's work) or comes back as a quick FAILED fault (callers retry).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from coffee_team.errors import DatabaseUnavailable, describe_error, error_line

BUSY_TIMEOUT_MS = 200
OPEN_RETRY = 1.0        # seconds without a new attempt after the database failed to open
FILE_CHECK_EVERY = 1.0  # seconds between checks that the SQLite file is still the one open


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DatabaseUnavailable):  # its message already names the cause
        return error_line(exc)
    return describe_error(exc)


class RpcQueue:
    """Opens the team's MessageQueue on first use and keeps it fit for supervisord."""

    def __init__(self, team: Any, clock: Callable[[], float], log: Callable[[str], None]):
        self.team = team
        self.clock = clock
        self.log = log
        self.queue = None
        self.open_error: Optional[str] = None
        self.retry_at = 0.0
        self.checked_at = 0.0
        self.stale: Optional[str] = None  # the file problem being reported (once per episode)

    def get(self):
        """The open MessageQueue, or DatabaseUnavailable at once."""
        if self.queue is None:
            self._open()
        self._check_file()
        return self.queue

    def _open(self) -> None:
        now = self.clock()
        if now < self.retry_at:
            raise DatabaseUnavailable(self.open_error or "database not open yet")
        from coffee_team.queue import MessageQueue
        from coffee_team.queue.factory import open_database
        team = self.team
        try:
            database = open_database(team.database_url, busy_timeout_ms=BUSY_TIMEOUT_MS,
                                     bounded=True, create=False)  # the watchdog makes it
            self.queue = MessageQueue(database, **team.queue_options(clock=self.clock))
        except Exception as exc:  # whatever it is, it is the reason given until it works
            self.open_error, self.retry_at = one_line(exc), now + OPEN_RETRY
            raise DatabaseUnavailable(self.open_error) from None
        self.open_error, self.checked_at = None, now

    def _check_file(self) -> None:
        now = self.clock()
        if now - self.checked_at < FILE_CHECK_EVERY:
            if self.stale:
                raise DatabaseUnavailable(self.stale)
            return
        self.checked_at = now
        problem = self.queue.check_file()
        if problem is None:
            if self.stale:
                self.log(f"database file back: {self.team.database_url}")
            self.stale = None
            return
        if self.stale != str(problem):
            self.log(f"{problem}; calls fail until then")
        self.stale = str(problem)
        raise DatabaseUnavailable(self.stale)

    def close(self) -> None:
        queue, self.queue = self.queue, None
        if queue is not None:
            queue.close()
