"""The read side of the queue database: task listings, stats and analytics.

ReportingMixin is mixed into MessageQueue, which provides ``self.backend`` (db.SqlBackend)
and ``self.clock``.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

_TASK_COLUMNS = ("id, sender, recipient, type, content, priority, created_at,"
                 " completed_at, status, claimed_by, claimed_at, lease_expires_at,"
                 " attempts, dedupe_key, error, result")


class ReportingMixin:
    backend: Any
    clock: Any

    def get_messages(self, recipient: str, status: str = "pending") -> list[dict]:
        return self._task_dicts(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE recipient = ? AND status = ?"
            " ORDER BY priority, id", (recipient, status))

    def list_tasks(self, status: Optional[str] = None, agent: Optional[str] = None,
                   limit: int = 100) -> list[dict]:
        """Newest first; ``agent`` matches the recipient."""
        clauses, params = [], []
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
        return rows

    def stats(self) -> dict[str, dict[str, Any]]:
        """{recipient: {pending, in_progress, completed, failed, oldest_pending_age_s}}."""
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}
        for recipient, status, count, oldest in self.backend.fetchall(
                "SELECT recipient, status, COUNT(*), MIN(created_at) FROM tasks"
                " GROUP BY recipient, status"):
            entry = out.setdefault(recipient, {"pending": 0, "in_progress": 0, "completed": 0,
                                               "failed": 0, "oldest_pending_age_s": None})
            entry[status] = count
            if status == "pending":
                entry["oldest_pending_age_s"] = max(0.0, now - oldest)
        return out

    def cleanup(self, older_than_seconds: float) -> int:
        """Delete completed/failed tasks finished more than that long ago."""
        with self.backend.write_transaction():
            return self.backend.execute(
                "DELETE FROM tasks WHERE status IN ('completed', 'failed') AND completed_at < ?",
                (self.clock() - older_than_seconds,)).rowcount

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
