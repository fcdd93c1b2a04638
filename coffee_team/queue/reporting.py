"""The read side of the queue database: task listings, stats and analytics.

ReportingMixin is mixed into MessageQueue, which provides ``self.backend`` (db.SqlBackend)
and ``self.clock``.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from coffee_team.taskstate import STATES

_TASK_COLUMNS = ("id, sender, recipient, type, content, priority, created_at,"
                 " completed_at, status, claimed_by, claimed_at, lease_expires_at,"
                 " attempts, dedupe_key, error, result,"
                 " failures, run_after, escalated_at, errors")  # i13b: the last line
# i13b: tasks per state, for ``metrics`` (tasks created in the window).
STATE_COUNTS = "SELECT status, COUNT(*) FROM tasks WHERE created_at >= ? GROUP BY status"
# i13b: cancelled tasks are finished too.
CLEANUP_FINISHED = ("DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')"
                    " AND completed_at < ?")


class ReportingMixin:
    backend: Any
    clock: Any

    def get_messages(self, recipient: str, status: str = "pending") -> list[dict]:
        return self._task_dicts(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE recipient = ? AND status = ?"
            " ORDER BY priority, id", (recipient, status))

    def list_tasks(self, status: Optional[str] = None, agent: Optional[str] = None,
                   limit: int = 100, task_id: Optional[int] = None) -> list[dict]:
        """Newest first; ``agent`` matches the recipient."""
        clauses, params = [], []
        if task_id is not None:
            clauses.append("id = ?")
            params.append(task_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if agent is not None:
            clauses.append("recipient = ?")
            params.append(agent)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._task_dicts(f"SELECT {_TASK_COLUMNS} FROM tasks{where} ORDER BY id DESC LIMIT ?",
                                params + [limit])

    def _task_dicts(self, sql: str, params: Sequence[Any]) -> list[dict]:
        rows = self.backend.fetchdicts(sql, params)
        for row in rows:
            row["content"] = json.loads(row["content"]) if row["content"] is not None else None
            row["result"] = json.loads(row["result"]) if row["result"] is not None else None
            row["errors"] = json.loads(row["errors"]) if row["errors"] else []
        return rows

    def stats(self) -> dict[str, dict[str, Any]]:
        """{recipient: {pending, in_progress, completed, failed, cancelled,
        oldest_pending_age_s}}."""
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}
        for recipient, status, count, oldest in self.backend.fetchall(
                "SELECT recipient, status, COUNT(*), MIN(created_at) FROM tasks"
                " GROUP BY recipient, status"):
            entry = out.setdefault(recipient, {**dict.fromkeys(STATES, 0),
                                               "oldest_pending_age_s": None})
            entry[status] = count
            if status == "pending":
                entry["oldest_pending_age_s"] = max(0.0, now - oldest)
        return out

    def cleanup(self, older_than_seconds: float) -> int:
        """Delete completed/failed/cancelled tasks finished more than that long ago."""
        with self.backend.write_transaction():
            return self.backend.execute(CLEANUP_FINISHED,
                                        (self.clock() - older_than_seconds,)).rowcount

    def state_counts(self, days: float = 7) -> dict[str, int]:
        """{state: tasks created in the last ``days``}, every state present."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.backend.fetchall(STATE_COUNTS, (self.clock() - days * 86400,)))
        return counts

    def bottlenecks(self, days: float = 7) -> list[dict]:
        """The 10 slowest task types by average duration."""
        return self.backend.fetchdicts(
            "SELECT task_type, COUNT(*) AS count, AVG(duration_ms) AS avg_ms,"
            " MAX(duration_ms) AS max_ms FROM metrics WHERE timestamp >= ?"
            " GROUP BY task_type ORDER BY avg_ms DESC LIMIT 10",
            (self.clock() - days * 86400,))

    def agent_performance(self, days: float = 7) -> list[dict]:
        return self.backend.fetchdicts(
            "SELECT agent, COUNT(*) AS count, AVG(duration_ms) AS avg_ms FROM metrics"
            " WHERE timestamp >= ? GROUP BY agent ORDER BY agent",
            (self.clock() - days * 86400,))
