"""MessageQueue: a durable task queue shared by the agents of a team.

Tasks live in one SQL table (see models.Task).  Every write is one short
transaction; claims are a single ``UPDATE ... RETURNING`` so two agents can
never get the same task.  Priorities are ints 0..9, lower is more urgent;
equal priorities are served first-in first-out.  Backpressure reads the
per-recipient counter in models.QueueDepth, kept in the same transactions.

Idle agents block in ``wait()`` on a unix datagram socket (coffee_team.queue.wake)
that ``send()`` pokes after commit, so hand-over takes milliseconds without
polling.  On PostgreSQL they LISTEN instead and every write transaction that
adds pending work NOTIFYs the recipients' channels (delivered at commit), so
agents on other hosts wake just as fast.
"""
from __future__ import annotations

import json
import os
import select
import time
from dataclasses import dataclass
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import peewee

from coffee_team.queue.db import backend_for, is_postgres, migrate, open_database, pg_connect
from coffee_team.errors import ContentError, QueueError, QueueFullError, RoutingError, UnroutableError
from coffee_team.queue.journal import JournalMixin
from coffee_team.queue.reporting import ReportingMixin
from coffee_team.queue.routing import resolve_recipients
from coffee_team.queue.wake import PgWake, WakeSockets, drain

MAX_CONTENT_BYTES = 1024 * 1024
MAX_NAME_CHARS = 100
MAX_DEDUPE_KEY_CHARS = 200
PRIORITY_RANGE = range(0, 10)
_INSERT_CHUNK_ROWS = 500  # 7 params/row stays far below SQLite's 32766 limit


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    sender: str
    recipient: str
    type: str
    content: Any
    priority: int
    attempts: int
    created_at: float
    lease_expires_at: float


# Leases of running tasks, kept fresh by the working agent's heartbeat thread: the task is
# still this agent's work while it is in progress and claimed by it (a cancel, requeue or
# expiry release ends that).
HOLDS_TASK_SQL = ("SELECT 1 FROM tasks WHERE id = ? AND status = 'in_progress'"
                  " AND claimed_by = ?")
RENEW_LEASE_SQL = ("UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND status = 'in_progress'"
                   " AND claimed_by = ? RETURNING id")

_MESSAGE_FIELDS = frozenset(("sender", "recipient", "type", "content", "priority", "dedupe_key"))


def _json_encoder() -> Callable[[Any], str]:
    """Compact, strict (no NaN) JSON.  JSONEncoder.encode() builds a new C
    encoder on every call, most of the cost for small values; build one once
    (no circular-reference markers: a cycle ends in RecursionError instead)."""
    plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        fast = make(None, plain.default, json.encoder.encode_basestring_ascii,  # type: ignore
                    None, ":", ",", False, False, False)
        sample = {"k": [1, 2.5, "\u00e9\n", None, True, {"0": "x"}]}
        if "".join(fast(sample, 0)) == plain.encode(sample):
            return lambda value: "".join(fast(value, 0))
    except Exception:  # pragma: no cover - no C accelerator or another signature
        pass
    return plain.encode


_to_json = _json_encoder()


def _encode_json(value: Any, what: str) -> str:
    if value is None:
        return "null"
    try:
        text = _to_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ContentError(f"{what} is not JSON-serialisable: {exc}") from None
    # ensure_ascii (the default) makes len(text) the encoded size in bytes.
    if len(text) > MAX_CONTENT_BYTES:
        raise ContentError(f"{what} is {len(text)} bytes encoded; the limit is {MAX_CONTENT_BYTES}")
    return text


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ContentError(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS} characters")


def _check_priority(priority: Any) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITY_RANGE:
        raise ContentError(f"priority must be an int from 0 (most urgent) to 9, got {priority!r}")


class MessageQueue(JournalMixin, ReportingMixin):
    def __init__(
        self,
        database: Union[str, peewee.Database],
        *,
        agents: Sequence[str] = (),
        handles: Optional[Mapping[str, Sequence[str]]] = None,
        max_queue_size: int = 1000,
        max_attempts: int = 3,
        lease_seconds: float = 300.0,
        wake_dir: Optional[str] = None,
        clock: Callable[[], float] = time.time,
    ):
        self.db = open_database(database) if isinstance(database, (str, os.PathLike)) else database
        self.backend = backend_for(self.db)
        migrate(self.db)
        self.agents = tuple(agents)
        self.handles = {k: tuple(v) for k, v in (handles or {}).items()}
        self.max_queue_size = max_queue_size
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.clock = clock
        if is_postgres(self.db):  # LISTEN/NOTIFY reaches every host; wake_dir is not needed
            self._wake = PgWake(lambda: pg_connect(self.db),
                                WakeSockets(wake_dir) if wake_dir else None)
            self._tx_wake = PgWake.notify_in_transaction
        else:
            self._wake = WakeSockets(wake_dir) if wake_dir else None
            self._tx_wake = None
        self._sql = self.backend.queue_sql  # placeholders translated once, not per call
        self._insert_sql: dict[int, str] = {}  # rows per statement -> SQL

    @classmethod
    def from_team(cls, team, **overrides) -> "MessageQueue":
        """Queue for a team.Team: its database_url/wake_dir (absolute) and agents."""
        settings = team.settings
        options = dict(
            agents=tuple(a.name for a in team.agents),
            handles={a.name: tuple(a.handles) for a in team.agents},
            max_queue_size=settings.max_queue_size,
            lease_seconds=getattr(settings, "lease_seconds", 300.0),
            wake_dir=getattr(team, "wake_dir", None) or getattr(settings, "wake_dir", None),
        )
        options.update(overrides)
        return cls(getattr(team, "database_url", None) or settings.database_path, **options)

    def close(self) -> None:
        if self._wake:
            self._wake.close()
        self.backend.close()

    def __enter__(self) -> "MessageQueue":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- enqueue ---------------------------------------------------------
    def send(self, sender: str, recipient: Optional[str], type: str, content: Any = None,
             priority: int = 5, dedupe_key: Optional[str] = None) -> int:
        """Enqueue one task; for recipient "all" returns the first of the ids."""
        rows: list[tuple] = []
        self._add_rows(rows, {}, self.clock(), sender, recipient, type, content, priority,
                       dedupe_key)
        return self._enqueue(rows)[0]

    def send_all(self, sender: str, type: str, content: Any = None, priority: int = 5) -> list[int]:
        """Broadcast: one task per team agent; returns their ids."""
        return self.send_many([dict(sender=sender, recipient="all", type=type,
                                    content=content, priority=priority)])

    def send_many(self, messages: Iterable[Mapping[str, Any]]) -> list[int]:
        """Enqueue many tasks in ONE transaction: all or none are written.

        Each message is a dict of send()'s arguments.  Returns one id per
        resulting task (a broadcast contributes one per agent).
        """
        return self._enqueue(self._prepare_messages(messages))

    def _prepare_messages(self, messages: Iterable[Mapping[str, Any]]) -> list[tuple]:
        """Validate and route messages into rows, before any transaction starts."""
        rows: list[tuple] = []
        routes: dict[tuple, tuple] = {}  # validated once per distinct (sender, recipient, type)
        now, add = self.clock(), self._add_rows
        for message in messages:
            if not message.keys() <= _MESSAGE_FIELDS:
                unknown = ", ".join(sorted(message.keys() - _MESSAGE_FIELDS))
                raise ContentError(f"unknown message field(s): {unknown}")
            get = message.get
            add(rows, routes, now, get("sender"), get("recipient"), get("type"),
                get("content"), get("priority", 5), get("dedupe_key"))
        return rows

    def _add_rows(self, rows: list, routes: dict, now: float, sender: Any, recipient: Any,
                  task_type: Any, content: Any, priority: Any, dedupe_key: Any) -> None:
        """Validate one message and append its (one per recipient) rows."""
        key = (sender, recipient, task_type)
        try:
            recipients = routes.get(key)
        except TypeError:  # unhashable, so invalid: reported below
            recipients = None
        if recipients is None:
            _check_name(sender, "sender")
            _check_name(task_type, "type")
        if priority.__class__ is not int or not 0 <= priority <= 9:
            _check_priority(priority)  # raises unless an int subclass in range
        if dedupe_key is not None and (not isinstance(dedupe_key, str)
                                       or len(dedupe_key) > MAX_DEDUPE_KEY_CHARS):
            raise ContentError(f"dedupe_key must be a string of at most {MAX_DEDUPE_KEY_CHARS}"
                               " characters")
        content = _encode_json(content, "content")
        if recipients is None:
            try:
                recipients = tuple(resolve_recipients(recipient, task_type, self.agents,
                                                      self.handles))
            except RoutingError as exc:
                raise UnroutableError(str(exc)) from None
            routes[key] = recipients
        for name in recipients:
            rows.append((sender, name, task_type, content, priority, now, dedupe_key))

    def _enqueue(self, rows: list[tuple]) -> list[int]:
        if not rows:
            return []
        with self.backend.write_transaction():
            ids, new_rows = self._enqueue_locked(rows)
        self._wake_recipients(new_rows)
        return ids

    def _enqueue_locked(self, rows: list[tuple]) -> tuple[list[int], list[tuple]]:
        """Insert prepared rows inside the caller's write transaction: (ids, rows inserted)."""
        if any(row[6] is not None for row in rows):
            ids, fresh, duplicate_of = self._resolve_dedupe(rows)
            new_rows = [rows[i] for i in fresh]
        else:
            new_rows, fresh = rows, None
        if new_rows:
            self._reserve(new_rows)
            new_ids = self._insert_rows(new_rows)
            if self._tx_wake:
                self._tx_wake(self.backend, {row[1] for row in new_rows})
        if fresh is None:
            return new_ids, new_rows
        for i, new_id in zip(fresh, new_ids if new_rows else ()):
            ids[i] = new_id
        for i, first in duplicate_of.items():  # same key twice in this batch
            ids[i] = ids[first]
        return ids, new_rows

    def _wake_recipients(self, rows: list[tuple]) -> None:
        if self._wake and rows:
            self._wake.notify({row[1] for row in rows})

    def _resolve_dedupe(self, rows: list[tuple]) -> tuple[list, list[int], dict[int, int]]:
        """Ids of rows whose dedupe_key is live (None elsewhere), the indexes to
        insert, and {index: earlier index} for keys repeated within the batch."""
        ids: list[Optional[int]] = [None] * len(rows)
        fresh: list[int] = []
        first_seen: dict[tuple, int] = {}
        duplicate_of: dict[int, int] = {}
        find = self._sql["live_dedupe"]
        for i, row in enumerate(rows):
            recipient, dedupe_key = row[1], row[6]
            if dedupe_key is not None:
                if (recipient, dedupe_key) in first_seen:
                    duplicate_of[i] = first_seen[(recipient, dedupe_key)]
                    continue
                first_seen[(recipient, dedupe_key)] = i
                existing = self.backend.run(find, (recipient, dedupe_key)).fetchone()
                if existing:
                    ids[i] = existing[0]
                    continue
            fresh.append(i)
        return ids, fresh, duplicate_of

    def _reserve(self, rows: list[tuple]) -> None:
        """Raise the recipients' pending bounds by the rows, or raise QueueFullError."""
        if len(rows) == 1:
            incoming = {rows[0][1]: 1}
        else:
            incoming = {}
            for row in rows:
                incoming[row[1]] = incoming.get(row[1], 0) + 1
        add_pending = self._sql["add_pending"]
        # Sorted: concurrent batches lock counter rows in one order (no PostgreSQL deadlock).
        for recipient in sorted(incoming):
            count = incoming[recipient]
            bound = self.backend.run(add_pending, (recipient, count)).fetchone()[0]
            if bound > self.max_queue_size:
                self._recount(recipient, count)

    def _recount(self, recipient: str, count: int) -> None:
        """The bound says full: count the pending rows (capped at max_queue_size
        + 1 index steps) and either refuse or reset the bound to the truth.
        Sends to this recipient wait on our counter row, so none slips in."""
        pending = self.backend.run(self._sql["count_pending"],
                                   (recipient, self.max_queue_size + 1)).fetchone()[0]
        if pending + count > self.max_queue_size:
            raise QueueFullError(
                f"{recipient} has {pending} pending tasks (max_queue_size "
                f"{self.max_queue_size}); refusing {count} more")
        self.backend.run(self._sql["set_pending"], (pending + count, recipient))

    def _insert_rows(self, rows: list[tuple]) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(rows), _INSERT_CHUNK_ROWS):
            chunk = rows[start:start + _INSERT_CHUNK_ROWS]
            sql = self._insert_sql.get(len(chunk))
            if sql is None:
                sql = self._insert_sql[len(chunk)] = self.backend.sql(
                    "INSERT INTO tasks (sender, recipient, type, content, priority, created_at,"
                    " dedupe_key, status, attempts) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, 'pending', 0)"] * len(chunk)))
            ids += self.backend.insert_rows(sql, list(chain.from_iterable(chunk)), len(chunk))
        return ids

    # -- consume ---------------------------------------------------------
    def claim(self, agent: str, limit: int = 1) -> list[ClaimedTask]:
        """Atomically take up to ``limit`` tasks for ``agent``, most urgent first.

        Tasks whose lease expired are re-claimable; once they used up
        max_attempts they are marked failed instead (never silently dropped).
        """
        now, backend, attempts = self.clock(), self.backend, self.max_attempts
        # Read first, outside the write lock (a SQLite writer that finds it
        # taken sleeps >= 1 ms): an idle agent takes no lock, and the lease
        # release runs only if a lease had expired.  A lease that expires
        # just after this read is released by the next claim instead.
        pending, expired = backend.run(self._sql["work"], (agent, agent, now)).fetchone()
        if not (pending or expired):
            return []
        with backend.write_transaction():
            if expired:
                released = backend.run(self._sql["release_expired"], (
                    attempts, attempts, attempts, now, attempts, agent, now)).fetchall()
                # Claims leave queue_depth alone (an upper bound); releases raise it.
                back = sum(1 for (status,) in released if status == "pending")
                if back:
                    backend.run(self._sql["add_pending"], (agent, back)).fetchone()
            rows = backend.run(self._sql["claim"], (
                agent, now, now + self.lease_seconds, agent, limit)).fetchall()
        loads = json.loads
        tasks = [ClaimedTask(r[0], r[1], r[2], r[3], loads(r[4]), r[5], r[6], r[7], r[8])
                 for r in rows]
        if len(tasks) > 1:
            tasks.sort(key=lambda t: (t.priority, t.id))
        return tasks

    def mark_completed(self, task_id: int, result: Any = None, *, agent: Optional[str] = None,
                       follow_ups: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Complete an in-progress task (optionally only if ``agent`` holds it).

        ``follow_ups`` (dicts of send()'s arguments) are enqueued in the same transaction, so
        a task's messages exist if and only if it completed: a crash can never send them twice.
        """
        return self._finish(task_id, "completed", result=_encode_json(result, "result"),
                            agent=agent, follow_ups=self._prepare_messages(follow_ups))

    def mark_failed(self, task_id: int, error: str, *, agent: Optional[str] = None) -> bool:
        return self._finish(task_id, "failed", error=str(error), agent=agent)

    def _finish(self, task_id: int, status: str, *, result: Optional[str] = None,
                error: Optional[str] = None, agent: Optional[str] = None,
                follow_ups: list[tuple] = ()) -> bool:
        now, backend = self.clock(), self.backend
        if agent is None:
            sql, params = self._sql["finish"], (status, now, result, error, task_id)
        else:
            sql, params = self._sql["finish_by"], (status, now, result, error, task_id, agent)
        with backend.write_transaction():
            row = backend.run(sql, params).fetchone()
            if row is None:
                return False
            backend.run(self._sql["add_metric"],
                        (row[0], row[1], max(0.0, (now - row[2]) * 1000.0), now))
            _, sent = self._enqueue_locked(follow_ups) if follow_ups else ((), ())
        self._wake_recipients(list(sent))
        return True

    def requeue_agent(self, agent: str) -> int:
        """Put ``agent``'s in-progress tasks back to pending (after a crash).

        Tasks that already used max_attempts fail instead, so a task that
        kills its agent every time cannot cause an endless restart loop.
        """
        now = self.clock()
        with self.backend.write_transaction():
            self.backend.run(self._sql["fail_held"], (now, agent, self.max_attempts))
            requeued = self.backend.run(self._sql["requeue_held"], (agent,)).fetchall()
            counts: dict[str, int] = {}
            for (recipient,) in requeued:
                counts[recipient] = counts.get(recipient, 0) + 1
            for recipient in sorted(counts):
                self.backend.run(self._sql["add_pending"], (recipient, counts[recipient])).fetchone()
            if counts and self._tx_wake:
                self._tx_wake(self.backend, counts)
        if requeued and self._wake:
            self._wake.notify(counts)
        return len(requeued)

    def has_work(self, agent: str) -> bool:
        """Pending tasks, or held ones whose lease expired."""
        return any(self.backend.run(self._sql["work"], (agent, agent, self.clock())).fetchone())

    def wait(self, agent: str, timeout: float) -> bool:
        """Block until ``agent`` may have work (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + max(0.0, timeout)
        listener = self._wake.listener(agent) if self._wake else None
        if listener is not None:
            drain(listener)  # bound before the check: no wake-up can be lost
            if self.has_work(agent):
                return True
            remaining = deadline - time.monotonic()
            if remaining > 0 and select.select([listener], [], [], remaining)[0]:
                drain(listener)
                return True
            return self.has_work(agent)  # e.g. a lease expired meanwhile
        delay = 0.01
        while True:
            if self.has_work(agent):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    # -- leases of running tasks -----------------------------------------
    def renew_lease(self, task_id: int, agent: str, seconds: float) -> bool:
        """Extend a running task's lease to ``seconds`` from now. False when the task is no
        longer in progress for ``agent`` (cancelled, requeued, finished): stop working on it."""
        with self.backend.write_transaction():
            row = self.backend.fetchone(RENEW_LEASE_SQL, (self.clock() + seconds, task_id, agent))
        return row is not None

    def holds_task(self, task_id: int, agent: str) -> bool:
        """renew_lease's cheap read-only check: is the task still in progress for ``agent``?"""
        return self.backend.fetchone(HOLDS_TASK_SQL, (task_id, agent)) is not None
