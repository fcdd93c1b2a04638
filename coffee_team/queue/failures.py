"""Tasks that failed for good: nobody finds out from a silent ``failed`` row.

Whatever fails a task with no retry left (the handler's last failure, a lease that expired
past ``max_attempts``, a restart past it, content no handler can read) calls
``_failed_for_good`` inside the same write transaction: one silent WARNING notification
naming the task, its agent, its type and the error, and per agent the last failure and a
count per clock hour, which ``status`` reads without touching the tasks table. Written with
the failure, so it happens exactly once per task failed.

FailureMixin is mixed into MessageQueue (``FailureNeeds``: what it uses of the queue's state).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from coffee_team.clock import UNIT_SECONDS
from coffee_team.queue import sql_control
from coffee_team.queue.db import SqlBackend

HOUR = UNIT_SECONDS["h"]
WINDOW_HOURS = 24          # "failed in the last 24 h": the current clock hour and 23 before
ERROR_CHARS = 2000         # of the error, in the notification and the last-failure row


def hour_of(ts: float) -> int:
    return int(ts // HOUR)


def first_counted_hour(now: float) -> int:
    """The oldest clock hour the 24-hour failure count includes."""
    return hour_of(now) - (WINDOW_HOURS - 1)


def notice(agent: str, task_id: int, task_type: str, error: str) -> tuple[str, str]:
    """(title, message) of the WARNING a task failed for good raises."""
    title = f"{agent}: task #{task_id} ({task_type}) failed"
    return title, f"{title}, no retry left: {error[:ERROR_CHARS]}"


class FailureNeeds(Protocol):
    """What FailureMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once


class FailureMixin:
    """Needs FailureNeeds from the rest of MessageQueue."""

    def _failed_for_good(self, agent: str, task_id: int, task_type: str,
                         error: Optional[str], now: float) -> None:
        """Inside the caller's write transaction, for each task it just failed for good."""
        error = error or "failed"
        title, message = notice(agent, task_id, task_type, error)
        # sound False: background agents are silent (CFR-009)
        self.backend.run(self._sql.INSERT_NOTIFICATION, (now, "WARNING", agent, title, message,
                                                         False, False)).fetchone()
        execute = self.backend.execute
        execute(sql_control.SAVE_LAST_FAILURE, (agent, task_id, task_type,
                                                 error[:ERROR_CHARS], now))
        execute(sql_control.COUNT_FAILURE, (agent, hour_of(now)))
        execute(sql_control.PRUNE_FAILURE_COUNTS, (agent, first_counted_hour(now)))

    def recent_failures(self) -> dict[str, dict[str, Any]]:
        """{agent: {"last_failure": {task_id, type, error, at}, "failed_24h": n}} for every
        agent that ever had a task fail for good (``failed_24h``: in the last 24 clock hours)."""
        rows = self.backend.fetchall(sql_control.RECENT_FAILURES,
                                     (first_counted_hour(self.clock()),))
        return {agent: {"last_failure": {"task_id": task_id, "type": task_type, "error": error,
                                         "at": at},
                        "failed_24h": int(count or 0)}
                for agent, task_id, task_type, error, at, count in rows}
