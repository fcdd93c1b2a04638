"""Schedule slots: each (agent, entry, slot) is taken once, by whichever watchdog inserts its
key first, and the slot's task is sent in that same transaction; so two hosts on one
PostgreSQL database (or a watchdog restarted mid-slot) never both send it, on either database.
Which slot is due is rules/cron.py's (the watchdog asks it; the queue never imports cronsim).

ScheduleMixin is mixed into MessageQueue; ``ScheduleNeeds`` lists what it uses of the others.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from coffee_team.queue import sql_work
from coffee_team.queue.db import SqlBackend


class ScheduleNeeds(Protocol):
    """What ScheduleMixin uses from the rest of MessageQueue: its state (core.py) and the
    sending side (enqueue.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]

    def _prepare_messages(self, messages: Iterable[Mapping[str, Any]],
                          trace: Optional[str] = None) -> list[tuple]: ...
    def _enqueue_locked(self, rows: list[tuple],
                        sent_from: Optional[int] = None) -> tuple[list[int], list[tuple]]: ...
    def _wake_recipients(self, rows: list[tuple]) -> None: ...


class ScheduleMixin:
    """Needs ScheduleNeeds from the rest of MessageQueue."""

    def schedule_slots(self) -> dict[tuple[str, str], float]:
        """{(agent, entry): the latest slot recorded} (sent or only seen)."""
        return {(agent, entry): slot
                for agent, entry, slot in self.backend.fetchall(sql_work.LAST_SLOTS)}

    def take_slot(self, agent: str, entry: str, slot: float,
                  message: Optional[Mapping[str, Any]] = None) -> Optional[int]:
        """Take (agent, entry, slot) and send ``message`` (send()'s arguments) with it, in one
        transaction: the task's id; 0 when taken without a message; None when the slot was
        taken already (by another watchdog, or before). Nothing is written if the send fails
        (QueueFullError...): the caller may take the slot without a message instead."""
        rows = self._prepare_messages([message]) if message is not None else []
        sent: list[tuple] = []
        with self.backend.write_transaction():
            taken = self.backend.execute(sql_work.CLAIM_SLOT,
                                         (agent, entry, slot, self.clock())).fetchone()
            if taken is None:
                return None
            if not rows:
                return 0
            ids, sent = self._enqueue_locked(rows)
            self.backend.execute(sql_work.SET_SLOT_TASK, (ids[0], agent, entry, slot))
        self._wake_recipients(sent)
        return ids[0]
