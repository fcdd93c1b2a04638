"""Notification deliveries: which notification went to which ``team.notify`` target.

DeliveryMixin is mixed into MessageQueue (``DeliveryNeeds``: what it uses of the queue's
state). The rules of sending (senders, backoff) live in coffee_team.notify; this module only
keeps the books:

- ``plan_deliveries`` adds one row per (notification, target) whose level the target wants;
  a target gets only notifications created after it first appeared;
- ``begin_delivery`` claims one attempt by pushing ``next_try_at`` ahead (the retry time if
  the attempt fails or its process dies), so no two deliverers send the same row;
- ``delivered`` sets ``delivered_at``; a delivered row is never selected again, which is what
  keeps a restart of the watchdog or supervisord from sending anything twice.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

from coffee_team.events import levels_from
from coffee_team.queue.db import SqlBackend

PLAN_OVERLAP = 1000  # ids below since_id planned again (out-of-order commits on PostgreSQL)
MAX_ERROR_CHARS = 500


class DeliveryNeeds(Protocol):
    """What DeliveryMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once


class DeliveryMixin:
    """Needs DeliveryNeeds from the rest of MessageQueue."""

    def last_notification_id(self) -> int:
        return int(self.backend.run(self._sql.LAST_NOTIFICATION_ID).fetchone()[0])

    def plan_deliveries(self, targets: Iterable[tuple[str, str, str]]) -> int:
        """Rows for new notifications, per (key, label, minimum level); returns how many."""
        planned = 0
        with self.backend.write_transaction():
            top = self.last_notification_id()
            for key, label, level in targets:
                added_at, since = self.backend.run(
                    self._sql.ADD_NOTIFY_TARGET, (key, label, self.clock())).fetchone()
                levels = levels_from(level)
                levels += (levels[-1],) * (3 - len(levels))  # the statement takes three
                cursor = self.backend.run(self._sql.PLAN_DELIVERIES, (
                    key, max(0, since - PLAN_OVERLAP), top, added_at, *levels))
                planned += max(cursor.rowcount, 0)
                self.backend.run(self._sql.SET_NOTIFY_TARGET_SINCE, (top, key))
        return planned

    def due_deliveries(self, now: float, limit: int = 100) -> list[dict]:
        return self.backend.fetchdicts(self._sql.DUE_DELIVERIES, (now, limit))

    def begin_delivery(self, delivery_id: int, now: float, retry_at: float) -> bool:
        """Claim one attempt; False if someone else did (or it is delivered)."""
        with self.backend.write_transaction():
            cursor = self.backend.run(self._sql.BEGIN_DELIVERY, (retry_at, delivery_id, now))
            return cursor.rowcount == 1

    def delivered(self, delivery_id: int) -> None:
        with self.backend.write_transaction():
            self.backend.run(self._sql.DELIVERED, (self.clock(), delivery_id))

    def delivery_failed(self, delivery_id: int, error: str) -> None:
        with self.backend.write_transaction():
            self.backend.run(self._sql.DELIVERY_FAILED, (error[:MAX_ERROR_CHARS], delivery_id))

    def delivery_summary(self) -> list[dict]:
        """Per target: label, delivered, pending (not tried yet), failing (tried, retrying),
        last_error and next_try_at of what is still open."""
        rows = self.backend.fetchdicts(self._sql.DELIVERY_SUMMARY)
        for row in rows:
            for name in ("delivered", "pending", "failing"):
                row[name] = int(row[name] or 0)
        return rows

    def deliveries_since(self, notification_id: int) -> list[dict]:
        return self.backend.fetchdicts(self._sql.DELIVERIES_SINCE, (notification_id,))
