"""The read side of the queue database: task listings, stats and analytics.

ReportingMixin is mixed into MessageQueue (``ReportingNeeds``: what it uses of the queue's
state).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional, Protocol, Sequence

from coffee_team.queue import sql, sql_work
from coffee_team.queue.content import decode_stored
from coffee_team.queue.db import SqlBackend
from coffee_team.taskstate import STATES


class ReportingNeeds(Protocol):
    """What ReportingMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]


class ReportingMixin:
    """Needs ReportingNeeds from the rest of MessageQueue."""

    def get_messages(self, recipient: str, status: str = "pending") -> list[dict]:
        return self._task_dicts(sql.TASKS_OF_RECIPIENT, (recipient, status))

    def list_tasks(self, status: Optional[str] = None, agent: Optional[str] = None,
                   limit: int = 100, task_id: Optional[int] = None,
                   before_id: Optional[int] = None) -> list[dict]:
        """Newest first; ``agent`` matches the recipient; ``before_id`` pages: only tasks with
        a smaller id (the last one of the previous page)."""
        filters = [value for value in (task_id, status, agent, before_id) if value is not None]
        return self._task_dicts(
            sql.list_tasks(task_id is not None, status is not None, agent is not None,
                           before_id is not None),
            (*filters, limit))

    def _task_dicts(self, statement: str, params: Sequence[Any]) -> list[dict]:
        rows = self.backend.fetchdicts(statement, params)
        for row in rows:
            row["content"] = decode_stored(row["content"], "content")
            row["result"] = decode_stored(row["result"], "result")
            row["errors"] = json.loads(row["errors"]) if row["errors"] else []
        return rows

    def stats(self) -> dict[str, dict[str, Any]]:
        """{recipient: {pending, in_progress, completed, failed, cancelled,
        oldest_pending_age_s}}."""
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}

        def entry(recipient: str) -> dict[str, Any]:
            return out.setdefault(recipient, {**dict.fromkeys(STATES, 0),
                                              "oldest_pending_age_s": None})
        for recipient, status, count in self.backend.fetchall(sql.FINISHED_COUNTS):
            entry(recipient)[status] = count
        for recipient, status, count, oldest in self.backend.fetchall(sql.LIVE_COUNTS):
            entry(recipient)[status] = count
            if status == "pending":
                entry(recipient)["oldest_pending_age_s"] = max(0.0, now - oldest)
        return dict(sorted(out.items()))

    def task_durations_after(self, metric_id: int, limit: int = 10_000) -> list[tuple]:
        """(id, agent, task_type, duration_ms) of finished tasks after ``metric_id``, oldest
        first: a histogram reads only what is new since its last call."""
        return self.backend.fetchall(sql.METRICS_AFTER, (metric_id, limit))

    def cleanup(self, older_than_seconds: float) -> int:
        """Delete completed/failed/cancelled tasks finished more than that long ago (with the
        edges to their parents), and schedule slots as old but each entry's latest."""
        before = self.clock() - older_than_seconds
        with self.backend.write_transaction():
            self.backend.execute(sql_work.DELETE_DEPENDENCIES_BEFORE, (before,))
            self.backend.execute(sql_work.DELETE_SLOTS_BEFORE, (before,))
            return self.backend.execute(sql.DELETE_FINISHED_BEFORE, (before,)).rowcount

    def state_counts(self, days: float = 7) -> dict[str, int]:
        """{state: tasks created in the last ``days``}, every state present."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.backend.fetchall(sql.STATE_COUNTS, (self.clock() - days * 86400,)))
        return counts

    def bottlenecks(self, days: float = 7) -> list[dict]:
        """The 10 slowest task types by average duration."""
        return self.backend.fetchdicts(sql.SLOWEST_TASK_TYPES, (self.clock() - days * 86400,))

    def agent_performance(self, days: float = 7) -> list[dict]:
        return self.backend.fetchdicts(sql.AGENT_PERFORMANCE, (self.clock() - days * 86400,))
