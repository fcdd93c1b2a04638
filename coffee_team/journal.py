"""The read side and the bookkeeping tables of the queue database.

ReportingMixin lists tasks and computes stats/analytics; JournalMixin keeps
events, notifications and restart state for the watchdog and the CLI.  Both
are mixed into MessageQueue, which provides ``self.backend`` (db.SqlBackend)
and ``self.clock``; kept apart so queue.py stays about moving tasks.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from coffee_team.models import NOTIFICATION_LEVELS

RESTART_FIELDS = {
    "attempts": 0,
    "next_restart_at": None,
    "given_up": False,
    "running_since": None,
    "last_crash_at": None,
    "hang_restart": False,
}
_BOOL_FIELDS = ("given_up", "hang_restart")


class QueueError(Exception):
    """Base of every user-facing queue error; messages are one line."""


class ContentError(QueueError):
    """A task, result or notification is malformed; nothing was written."""


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


class JournalMixin:
    backend: Any
    clock: Any

    # -- events ---------------------------------------------------------
    def record_event(self, agent: Optional[str], kind: str, **detail: Any) -> int:
        if not kind:
            raise ContentError("event kind must be a non-empty string")
        with self.backend.write_transaction():
            return self.backend.insert(
                "INSERT INTO events (ts, agent, kind, detail) VALUES (?, ?, ?, ?)",
                (self.clock(), agent, kind, json.dumps(detail, default=str)),
            )

    def events(self, since_id: int = 0, agent: Optional[str] = None,
               limit: int = 100) -> list[dict]:
        sql = "SELECT id, ts, agent, kind, detail FROM events WHERE id > ?"
        params: list[Any] = [since_id]
        if agent is not None:
            sql += " AND agent = ?"
            params.append(agent)
        rows = self.backend.fetchdicts(sql + " ORDER BY id LIMIT ?", params + [limit])
        for row in rows:
            row["detail"] = json.loads(row["detail"] or "{}")
        return rows

    # -- notifications --------------------------------------------------
    def notify(self, level: str, agent: Optional[str], title: str, message: str) -> int:
        if level not in NOTIFICATION_LEVELS:
            raise ContentError(
                f"notification level {level!r} is not one of {', '.join(NOTIFICATION_LEVELS)}"
            )
        # sound is always False: background agents are silent (CFR-009).
        with self.backend.write_transaction():
            return self.backend.insert(
                "INSERT INTO notifications (created_at, level, agent, title, message,"
                " sound, acknowledged) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.clock(), level, agent, title, message, False, False),
            )

    def notifications(self, since_id: int = 0, unacked_only: bool = False) -> list[dict]:
        sql = ("SELECT id, created_at, level, agent, title, message, sound, acknowledged"
               " FROM notifications WHERE id > ?")
        if unacked_only:
            sql += " AND acknowledged = ?"
        params = (since_id, False) if unacked_only else (since_id,)
        rows = self.backend.fetchdicts(sql + " ORDER BY id", params)
        for row in rows:
            row["sound"] = bool(row["sound"])
            row["acknowledged"] = bool(row["acknowledged"])
        return rows

    def ack_notification(self, notification_id: int) -> bool:
        with self.backend.write_transaction():
            cursor = self.backend.execute(
                "UPDATE notifications SET acknowledged = ? WHERE id = ? AND acknowledged = ?",
                (True, notification_id, False),
            )
            return cursor.rowcount > 0

    # -- restart state --------------------------------------------------
    def restart_states(self, agents: Sequence[str]) -> dict[str, dict]:
        """Every agent's restart state in one query (agents without a row get the defaults)."""
        columns = ", ".join(RESTART_FIELDS)
        rows = {row["agent"]: row for row in self.backend.fetchdicts(
            f"SELECT agent, {columns} FROM restart_state", ())}
        states = {}
        for agent in agents:
            state = rows.get(agent) or {"agent": agent, **RESTART_FIELDS}
            for name in _BOOL_FIELDS:
                state[name] = bool(state[name])
            states[agent] = state
        return states

    def restart_state(self, agent: str) -> dict:
        columns = ", ".join(RESTART_FIELDS)
        rows = self.backend.fetchdicts(
            f"SELECT agent, {columns} FROM restart_state WHERE agent = ?", (agent,)
        )
        state = rows[0] if rows else {"agent": agent, **RESTART_FIELDS}
        for name in _BOOL_FIELDS:
            state[name] = bool(state[name])
        return state

    def save_restart_state(self, agent: str, **fields: Any) -> dict:
        unknown = sorted(set(fields) - set(RESTART_FIELDS))
        if unknown:
            raise ContentError(
                f"unknown restart_state field(s) {', '.join(unknown)}; "
                f"known: {', '.join(RESTART_FIELDS)}"
            )
        # Insert every column (peewee defaults are Python-side only), but on
        # conflict overwrite just the fields given.
        names = list(RESTART_FIELDS)
        values = [fields.get(n, RESTART_FIELDS[n]) for n in names]
        values = [bool(v) if n in _BOOL_FIELDS else v for n, v in zip(names, values)]
        updates = ", ".join(f"{n} = excluded.{n}" for n in fields) or "agent = excluded.agent"
        with self.backend.write_transaction():
            self.backend.execute(
                f"INSERT INTO restart_state (agent, {', '.join(names)})"
                f" VALUES (?{', ?' * len(names)})"
                f" ON CONFLICT (agent) DO UPDATE SET {updates}",
                [agent, *values],
            )
        return self.restart_state(agent)
