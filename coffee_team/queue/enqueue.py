"""The sending side of the queue: validation, routing, dedupe, exact backpressure and the
batched insert, in one write transaction per batch; recipients are woken after commit.

EnqueueMixin is mixed into MessageQueue (core.py); ``EnqueueNeeds`` lists what it uses of the
queue's state.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence

from coffee_team import otel
from coffee_team.errors import (ContentError, DependencyError, QueueError, QueueFullError,
                                RoutingError, UnroutableError)
from coffee_team.queue.content import MAX_DEDUPE_KEY_CHARS, check_name, check_priority, encode_json
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.dependencies import DependentRow, dependent_row
from coffee_team.queue import sql_sqlite
from coffee_team.queue.routing import resolve_recipients
from coffee_team.queue.sql_approvals import SET_SENT_FROM
from coffee_team.queue.wake import pg_channel
from coffee_team.taskstate import check_delay, initial_state

_INSERT_CHUNK_ROWS = 500  # 9 params/row stays far below SQLite's 32766 limit
_MESSAGE_FIELDS = frozenset(("sender", "recipient", "type", "content", "priority", "dedupe_key",
                             "delay", "after", "on_dependency_failure"))
# Positions in a message row: _add_rows builds sql.insert_tasks' 9 parameters.
_RECIPIENT, _TYPE, _DEDUPE_KEY = 1, 2, 6


class EnqueueNeeds(Protocol):
    """What EnqueueMixin uses from the rest of MessageQueue: its state and wake-ups
    (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once
    _folded: bool  # backend.folded: PostgreSQL's one-statement variants (sql.PG_*)
    _wake: Any  # wakes waiters after commit (wake.WakeSockets / PgWake), or None
    _tx_wake: Optional[Callable[[SqlBackend, Iterable[str]], None]]  # NOTIFY, or None
    agents: tuple[str, ...]
    handles: dict[str, tuple[str, ...]]
    max_queue_size: int
    approve_before: dict[str, tuple[str, ...]]

    def _hold_for_approval(self, task_ids: list[int], rows: list[tuple]) -> list[int]: ...

    def _depend_locked(self, child: int, row: DependentRow, now: float) -> None: ...
    def _refuse_cycle(self, existing: int, after: Sequence[int],
                      why: str = "this send's, by its dedupe_key") -> None: ...


class EnqueueMixin:
    """Needs EnqueueNeeds from the rest of MessageQueue."""

    def send(self, sender: str, recipient: Optional[str], type: str, content: Any = None,
             priority: int = 5, dedupe_key: Optional[str] = None, delay: float = 0.0,
             after: Sequence[int] = (), on_dependency_failure: str = "fail",
             sent_from: Optional[int] = None, trace_parent: Optional[str] = None) -> int:
        """Enqueue one task, claimable ``delay`` seconds from now; for recipient "all"
        returns the first of the ids. With ``after`` (task ids) it is ``waiting`` until each
        of them completed; one that fails or is cancelled fails it too ("dependency #41
        failed"), unless ``on_dependency_failure`` is "run" (a failed parent counts as done).
        A missing task in ``after``, or a cycle, is a DependencyError (nothing sent).
        ``sent_from`` names the task whose run sends it (an agent's send through the MCP
        server), ``trace_parent`` that run's trace context."""
        rows: list[tuple] = []
        with otel.sending(type, trace_parent) as trace:  # a no-op unless tracing is on
            self._add_rows(rows, {}, self.clock(), sender, recipient, type, content, priority,
                           dedupe_key, delay, trace, after, on_dependency_failure)
            return self._enqueue(rows, sent_from)[0]

    def send_all(self, sender: str, type: str, content: Any = None, priority: int = 5) -> list[int]:
        """Broadcast: one task per team agent; returns their ids."""
        return self.send_many([dict(sender=sender, recipient="all", type=type,
                                    content=content, priority=priority)])

    def send_many(self, messages: Iterable[Mapping[str, Any]]) -> list[int]:
        """Enqueue many tasks in ONE transaction: all or none are written.

        Each message is a dict of send()'s arguments.  Returns one id per
        resulting task (a broadcast contributes one per agent).
        """
        with otel.sending("batch") as trace:
            return self._enqueue(self._prepare_messages(messages, trace))

    def undeliverable(self, message: Mapping[str, Any]) -> Optional[str]:
        """Why ``message`` (a dict of send()'s arguments) could not be sent, or None: send()'s
        checks and routing, nothing written (a full queue shows only when it is written)."""
        try:
            self._prepare_messages([message])
        except QueueError as exc:
            return str(exc)
        return None

    def _prepare_messages(self, messages: Iterable[Mapping[str, Any]],
                          trace: Optional[str] = None) -> list[tuple]:
        """Validate and route messages into rows, before any transaction starts; ``trace``
        is the sending span's context, stored with every row."""
        rows: list[tuple] = []
        routes: dict[tuple, tuple] = {}  # validated once per distinct (sender, recipient, type)
        now, add = self.clock(), self._add_rows
        for message in messages:
            if not message.keys() <= _MESSAGE_FIELDS:
                unknown = ", ".join(sorted(message.keys() - _MESSAGE_FIELDS))
                raise ContentError(f"unknown message field(s): {unknown}")
            get = message.get
            add(rows, routes, now, get("sender"), get("recipient"), get("type"),
                get("content"), get("priority", 5), get("dedupe_key"), get("delay", 0.0), trace,
                get("after"), get("on_dependency_failure", "fail"))
        return rows

    def _add_rows(self, rows: list, routes: dict, now: float, sender: Any, recipient: Any,
                  task_type: Any, content: Any, priority: Any, dedupe_key: Any,
                  delay: Any = 0.0, trace: Optional[str] = None, after: Any = None,
                  on_failure: Any = "fail") -> None:
        """Validate one message and append its (one per recipient) rows."""
        key = (sender, recipient, task_type)
        try:
            recipients = routes.get(key)
        except TypeError:  # unhashable, so invalid: reported below
            recipients = None
        if recipients is None:
            check_name(sender, "sender")
            check_name(task_type, "type")
        if priority.__class__ is not int or not 0 <= priority <= 9:
            check_priority(priority)  # raises unless an int subclass in range
        if dedupe_key is not None and (not isinstance(dedupe_key, str)
                                       or len(dedupe_key) > MAX_DEDUPE_KEY_CHARS):
            raise ContentError(f"dedupe_key must be a string of at most {MAX_DEDUPE_KEY_CHARS}"
                               " characters")
        content = encode_json(content, "content")
        if delay:
            try:
                delay = check_delay(delay)
            except ValueError as exc:
                raise ContentError(str(exc)) from None
        if recipients is None:
            try:
                recipients = tuple(resolve_recipients(recipient, task_type, self.agents,
                                                      self.handles))
            except RoutingError as exc:
                raise UnroutableError(str(exc)) from None
            routes[key] = recipients
        for name in recipients:
            row = (sender, name, task_type, content, priority, now, dedupe_key, now + delay,
                   trace)
            if after and self.approve_before and initial_state(
                    name, task_type, self.approve_before) != "pending":
                # released by its last parent, it would run without the person's decision
                raise DependencyError(f"{task_type} tasks of {name} wait for a person's "
                                      f"approval (approve_before): not sent after other tasks; "
                                      f"send it once they are done")
            rows.append(dependent_row(row, after, on_failure) if after else row)

    def _plain(self, rows: list[tuple]) -> bool:
        """No row of these waits for a person (approve_before): each is sent pending."""
        gates = self.approve_before
        return not gates or all(initial_state(row[_RECIPIENT], row[_TYPE], gates) == "pending"
                                for row in rows)

    def _enqueue(self, rows: list[tuple], sent_from: Optional[int] = None) -> list[int]:
        if not rows:
            return []
        if len(rows) == 1 and rows[0][_DEDUPE_KEY] is None and rows[0].__class__ is tuple \
                and sent_from is None and self._plain(rows):
            # one statement, its own transaction (PostgreSQL: with its NOTIFY)
            recipient, new_id = rows[0][_RECIPIENT], None
            if self._folded:
                inserted = self.backend.run(self._sql.PG_SEND_ONE, (
                    recipient, *rows[0], self.max_queue_size, pg_channel(recipient))).fetchone()
                new_id = None if inserted is None else inserted[0]
            elif self.backend.depth_by_trigger:
                cursor = self.backend.run(sql_sqlite.SEND_ONE,
                                          (*rows[0], recipient, self.max_queue_size))
                new_id = cursor.lastrowid if cursor.rowcount == 1 else None
            if new_id is not None:
                self._wake_recipients(rows)
                return [new_id]
            # past the bound: count in a transaction below, exactly as any send does
        with self.backend.write_transaction():
            ids, new_rows = self._enqueue_locked(rows, sent_from)
        self._wake_recipients(new_rows)
        return ids

    def _enqueue_locked(self, rows: list[tuple],
                        sent_from: Optional[int] = None) -> tuple[list[int], list[tuple]]:
        """Insert prepared rows inside the caller's write transaction: (ids, rows inserted).
        Rows of an approve_before type wait for a person (approvals.py)."""
        if any(row[_DEDUPE_KEY] is not None for row in rows):
            ids, fresh, duplicate_of = self._resolve_dedupe(rows)
            new_rows = [rows[i] for i in fresh]
        else:
            new_rows, fresh = rows, None
        if new_rows:
            self._reserve(new_rows, inserting=True)
            new_ids = self._insert_rows(new_rows)
            if not self._plain(new_rows):
                self._hold_for_approval(new_ids, new_rows)
            if sent_from is not None:
                for new_id in new_ids:
                    self.backend.execute(SET_SENT_FROM, (sent_from, new_id))
            if self._tx_wake:
                self._tx_wake(self.backend, {row[_RECIPIENT] for row in new_rows})
            self._apply_dependencies(new_rows, new_ids)
        if fresh is None:
            return new_ids, new_rows
        inserted = set(fresh)
        for i, row in enumerate(rows):  # deduplicated to a live task: a cycle is refused
            if row.__class__ is DependentRow and ids[i] is not None and i not in inserted:
                self._refuse_cycle(ids[i], row.after)
        for i, new_id in zip(fresh, new_ids if new_rows else ()):
            ids[i] = new_id
        for i, first in duplicate_of.items():  # same key twice in this batch
            ids[i] = ids[first]
        return ids, new_rows

    def _apply_dependencies(self, rows: list[tuple], ids: list[int]) -> None:
        now = None
        for row, new_id in zip(rows, ids):
            if row.__class__ is DependentRow:
                now = self.clock() if now is None else now
                self._depend_locked(new_id, row, now)

    def _wake_recipients(self, rows: list[tuple]) -> None:
        if self._wake and rows:
            self._wake.notify({row[_RECIPIENT] for row in rows})

    def _resolve_dedupe(self, rows: list[tuple]) -> tuple[list, list[int], dict[int, int]]:
        """Ids of rows whose dedupe_key is live (None elsewhere), the indexes to
        insert, and {index: earlier index} for keys repeated within the batch."""
        ids: list[Optional[int]] = [None] * len(rows)
        fresh: list[int] = []
        first_seen: dict[tuple, int] = {}
        duplicate_of: dict[int, int] = {}
        find = self._sql.LIVE_DEDUPE
        for i, row in enumerate(rows):
            recipient, dedupe_key = row[_RECIPIENT], row[_DEDUPE_KEY]
            if dedupe_key is not None:
                if (recipient, dedupe_key) in first_seen:
                    duplicate_of[i] = first_seen[(recipient, dedupe_key)]
                    continue
                first_seen[(recipient, dedupe_key)] = i
                existing = self.backend.run(find, (recipient, dedupe_key)).fetchone()
                if existing:
                    (ids[i],) = existing  # the live task's id
                    continue
            fresh.append(i)
        return ids, fresh, duplicate_of

    def _reserve(self, rows: list[tuple], inserting: bool = False) -> None:
        """Raise the recipients' pending bounds by the rows, or raise QueueFullError; rows
        about to be inserted raise them by trigger where the backend has one (SQLite)."""
        if len(rows) == 1:
            incoming = {rows[0][_RECIPIENT]: 1}
        else:
            incoming = {}
            for row in rows:
                recipient = row[_RECIPIENT]
                incoming[recipient] = incoming.get(recipient, 0) + 1
        add_pending, backend = self._sql.ADD_PENDING, self.backend
        by_trigger = inserting and backend.depth_by_trigger
        # Sorted: concurrent batches lock counter rows in one order (no PostgreSQL deadlock).
        for recipient in sorted(incoming):
            count = incoming[recipient]
            if by_trigger:
                row = backend.run(sql_sqlite.PENDING_BOUND, (recipient,)).fetchone()
                bound = (row[0] if row else 0) + count
            else:
                (bound,) = backend.run(add_pending, (recipient, count)).fetchone()
            if bound > self.max_queue_size:
                self._recount(recipient, count, raised=not by_trigger)

    def _recount(self, recipient: str, count: int, raised: bool = True) -> None:
        """The bound says full: count the pending rows (capped at max_queue_size
        + 1 index steps) and either refuse or reset the bound to the truth.
        Sends to this recipient wait on our counter row, so none slips in."""
        (pending,) = self.backend.run(self._sql.COUNT_PENDING,
                                      (recipient, self.max_queue_size + 1)).fetchone()
        if pending + count > self.max_queue_size:
            raise QueueFullError(
                f"{recipient} has {pending} pending tasks (max_queue_size "
                f"{self.max_queue_size}); refusing {count} more")
        # the truth, with the rows (``raised``: counted already; else their insert adds them)
        self.backend.run(self._sql.SET_PENDING, (pending + count if raised else pending,
                                                 recipient))

    def _insert_rows(self, rows: list[tuple]) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(rows), _INSERT_CHUNK_ROWS):
            chunk = rows[start:start + _INSERT_CHUNK_ROWS]
            ids += self.backend.insert_tasks(list(chain.from_iterable(chunk)), len(chunk))
        return ids
