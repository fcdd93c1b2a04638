"""The bookkeeping tables of the queue database: events, notifications, restart state.

JournalMixin is mixed into MessageQueue (``JournalNeeds``: what it uses of the queue's state);
kept apart so core.py stays about moving tasks.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional, Protocol, Sequence

from coffee_team.errors import ContentError
from coffee_team.events import NOTIFICATION_LEVELS
from coffee_team.queue import sql
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.tables import RESTART_BOOL_FIELDS, RESTART_FIELDS

_ALL_RESTART_STATES = sql.restart_states(RESTART_FIELDS, one_agent=False)
_ONE_RESTART_STATE = sql.restart_states(RESTART_FIELDS, one_agent=True)


def _restart_state(agent: str, row: Optional[dict]) -> dict:
    """A restart_state row (or the defaults without one) with real bools: SQLite has none."""
    state = row or {"agent": agent, **RESTART_FIELDS}
    for name in RESTART_BOOL_FIELDS:
        state[name] = bool(state[name])
    return state


def _notification(row: dict) -> dict:
    row["sound"] = bool(row["sound"])
    row["acknowledged"] = bool(row["acknowledged"])
    return row


def _event(row: dict) -> dict:
    row["detail"] = json.loads(row["detail"] or "{}")
    return row


class JournalNeeds(Protocol):
    """What JournalMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    host: str  # whose restart state this queue reads and writes ('' on SQLite)


class JournalMixin:
    """Needs JournalNeeds from the rest of MessageQueue."""

    # -- events ---------------------------------------------------------
    def record_event(self, agent: Optional[str], kind: str, **detail: Any) -> int:
        if not kind:
            raise ContentError("event kind must be a non-empty string")
        with self.backend.write_transaction():
            return self.backend.insert(
                sql.INSERT_EVENT,
                (self.clock(), agent, kind, json.dumps(detail, default=str)),
            )

    def events(self, since_id: int = 0, agent: Optional[str] = None,
               limit: int = 100) -> list[dict]:
        if agent is None:
            rows = self.backend.fetchdicts(sql.EVENTS_SINCE, (since_id, limit))
        else:
            rows = self.backend.fetchdicts(sql.AGENT_EVENTS_SINCE, (since_id, agent, limit))
        return [_event(row) for row in rows]

    def newest_events(self, limit: int) -> list[dict]:
        """The latest ``limit`` events of every agent, newest first."""
        return [_event(row) for row in self.backend.fetchdicts(sql.NEWEST_EVENTS, (limit,))]

    def recent_events(self, agent: str, kinds: Sequence[str], limit: int) -> list[dict]:
        """``agent``'s latest events of the given kinds, newest first."""
        rows = self.backend.fetchdicts(sql.recent_events_of_kinds(len(kinds)),
                                       (agent, *kinds, limit))
        return [_event(row) for row in rows]

    # -- notifications --------------------------------------------------
    def notify(self, level: str, agent: Optional[str], title: str, message: str) -> int:
        if level not in NOTIFICATION_LEVELS:
            raise ContentError(
                f"notification level {level!r} is not one of {', '.join(NOTIFICATION_LEVELS)}"
            )
        # sound is always False: background agents are silent (CFR-009).
        with self.backend.write_transaction():
            return self.backend.insert(
                sql.INSERT_NOTIFICATION,
                (self.clock(), level, agent, title, message, False, False),
            )

    def notifications(self, since_id: int = 0, unacked_only: bool = False,
                      limit: Optional[int] = None) -> list[dict]:
        """Oldest first; every one after ``since_id`` unless ``limit`` is given."""
        limit = sql.NO_LIMIT if limit is None else limit
        if unacked_only:
            rows = self.backend.fetchdicts(sql.UNACKED_NOTIFICATIONS_SINCE,
                                           (since_id, False, limit))
        else:
            rows = self.backend.fetchdicts(sql.NOTIFICATIONS_SINCE, (since_id, limit))
        return [_notification(row) for row in rows]

    def newest_notifications(self, limit: int) -> list[dict]:
        return [_notification(row)
                for row in self.backend.fetchdicts(sql.NEWEST_NOTIFICATIONS, (limit,))]

    def notification_counts(self) -> dict[str, int]:
        """{level: notifications ever raised} (every level present)."""
        counts = dict.fromkeys(NOTIFICATION_LEVELS, 0)
        counts.update(self.backend.fetchall(sql.NOTIFICATION_LEVEL_COUNTS))
        return counts

    def notification_exists(self, notification_id: int) -> bool:
        return self.backend.fetchone(sql.NOTIFICATION_EXISTS, (notification_id,)) is not None

    def ack_notification(self, notification_id: int) -> bool:
        with self.backend.write_transaction():
            cursor = self.backend.execute(sql.ACK_NOTIFICATION, (True, notification_id, False))
            return cursor.rowcount > 0

    # -- restart state (this host's: self.host) -------------------------
    def restart_states(self, agents: Sequence[str]) -> dict[str, dict]:
        """Every agent's restart state in one query (agents without a row get the defaults)."""
        rows = {row["agent"]: row
                for row in self.backend.fetchdicts(_ALL_RESTART_STATES, (self.host,))}
        return {agent: _restart_state(agent, rows.get(agent)) for agent in agents}

    def restart_state(self, agent: str) -> dict:
        rows = self.backend.fetchdicts(_ONE_RESTART_STATE, (self.host, agent))
        return _restart_state(agent, rows[0] if rows else None)

    def save_restart_state(self, agent: str, **fields: Any) -> dict:
        unknown = sorted(set(fields) - set(RESTART_FIELDS))
        if unknown:
            raise ContentError(
                f"unknown restart_state field(s) {', '.join(unknown)}; "
                f"known: {', '.join(RESTART_FIELDS)}"
            )
        names = list(RESTART_FIELDS)
        values = [fields.get(n, RESTART_FIELDS[n]) for n in names]
        values = [bool(v) if n in RESTART_BOOL_FIELDS else v for n, v in zip(names, values)]
        with self.backend.write_transaction():
            self.backend.execute(sql.save_restart_state(names, fields),
                                 [agent, self.host, *values])
        return self.restart_state(agent)
