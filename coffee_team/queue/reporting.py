"""The read side of the queue database: task listings, stats and analytics.

ReportingMixin is mixed into MessageQueue, which provides ``self.backend`` (db.SqlBackend)
and ``self.clock``.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from coffee_team.queue import sql
from coffee_team.taskstate import STATES


class ReportingMixin:
    backend: Any
    clock: Any

    def get_messages(self, recipient: str, status: str = "pending") -> list[dict]:
        return self._task_dicts(sql.TASKS_OF_RECIPIENT, (recipient, status))

    def list_tasks(self, status: Optional[str] = None, agent: Optional[str] = None,
                   limit: int = 100, task_id: Optional[int] = None) -> list[dict]:
        """Newest first; ``agent`` matches the recipient."""
        filters = [value for value in (task_id, status, agent) if value is not None]
        return self._task_dicts(
            sql.list_tasks(task_id is not None, status is not None, agent is not None),
            (*filters, limit))

    def _task_dicts(self, statement: str, params: Sequence[Any]) -> list[dict]:
        rows = self.backend.fetchdicts(statement, params)
        for row in rows:
            row["content"] = json.loads(row["content"]) if row["content"] is not None else None
            row["result"] = json.loads(row["result"]) if row["result"] is not None else None
            row["errors"] = json.loads(row["errors"]) if row["errors"] else []
        return rows

    def stats(self) -> dict[str, dict[str, Any]]:
        """{recipient: {pending, in_progress, completed, failed, cancelled,
        oldest_pending_age_s}}."""
        return _counts_by_recipient(self.backend.fetchall(sql.TASK_COUNTS), self.clock())

    def live_counts(self) -> dict[str, dict[str, Any]]:
        """``stats()`` for pages polled every second: the same keys, read from the claim
        index alone (no table scan), so it stays fast with 100,000 tasks. The oldest waiting
        task is the smallest pending id (ids grow with time)."""
        rows = [(recipient, status, count,
                 self._created_at(first_id) if status == "pending" else None)
                for recipient, status, count, first_id
                in self.backend.fetchall(sql.TASK_COUNTS_BY_INDEX)]
        return _counts_by_recipient(rows, self.clock())

    def _created_at(self, task_id: int) -> Optional[float]:
        # claimed in between: the age is left unknown rather than wrong
        row = self.backend.fetchone(sql.TASK_CREATED_AT, (task_id,))
        return None if row is None else row[0]

    def task_durations_after(self, metric_id: int, limit: int = 10_000) -> list[tuple]:
        """(id, agent, task_type, duration_ms) of finished tasks after ``metric_id``, oldest
        first: a histogram reads only what is new since its last call."""
        return self.backend.fetchall(sql.METRICS_AFTER, (metric_id, limit))

    def cleanup(self, older_than_seconds: float) -> int:
        """Delete completed/failed/cancelled tasks finished more than that long ago."""
        with self.backend.write_transaction():
            return self.backend.execute(sql.DELETE_FINISHED_BEFORE,
                                        (self.clock() - older_than_seconds,)).rowcount

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


def _counts_by_recipient(rows: Sequence[tuple], now: float) -> dict[str, dict[str, Any]]:
    """(recipient, status, count, oldest created_at or None) rows → stats() form."""
    out: dict[str, dict[str, Any]] = {}
    for recipient, status, count, oldest in rows:
        entry = out.setdefault(recipient, {**dict.fromkeys(STATES, 0),
                                           "oldest_pending_age_s": None})
        entry[status] = count
        if status == "pending" and oldest is not None:
            entry["oldest_pending_age_s"] = max(0.0, now - oldest)
    return out
