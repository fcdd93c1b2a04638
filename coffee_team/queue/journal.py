"""The bookkeeping tables of the queue database: events, notifications, restart state.

JournalMixin is mixed into MessageQueue, which provides ``self.backend`` (db.SqlBackend) and
``self.clock``; kept apart so core.py stays about moving tasks.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from peewee import BooleanField

from coffee_team.errors import ContentError
from coffee_team.queue.models import NOTIFICATION_LEVELS, RestartState

# The restart_state columns and their defaults, as the schema declares them.
RESTART_FIELDS = {name: field.default for name, field in RestartState._meta.fields.items()
                  if name != "agent"}
_BOOL_FIELDS = tuple(name for name, field in RestartState._meta.fields.items()
                     if isinstance(field, BooleanField))


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
