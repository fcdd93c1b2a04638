"""MessageQueue: a durable task queue shared by the agents of a team.

Tasks live in one SQL table (see models.Task).  Every write is one short
transaction; claims are a single ``UPDATE ... RETURNING`` so two agents can
never get the same task.  Priorities are ints 0..9, lower is more urgent;
equal priorities are served first-in first-out.

Idle agents block in ``wait()`` on a unix datagram socket that ``send()``
pokes after commit, so hand-over takes milliseconds without polling.
"""
from __future__ import annotations

import errno
import json
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import peewee

from coffee_team.db import backend_for, migrate, open_database
from coffee_team.journal import ContentError, JournalMixin, QueueError, ReportingMixin
from coffee_team.routing import RoutingError, resolve_recipients

__all__ = [
    "MessageQueue", "ClaimedTask", "QueueError", "QueueFullError",
    "ContentError", "UnroutableError",
]

MAX_CONTENT_BYTES = 1024 * 1024
MAX_NAME_CHARS = 100
PRIORITY_RANGE = range(0, 10)
_UNIX_PATH_MAX = 107
_INSERT_CHUNK_ROWS = 500  # 8 params/row stays far below SQLite's 32766 limit


class QueueFullError(QueueError):
    """A recipient already has max_queue_size pending tasks (backpressure)."""


class UnroutableError(QueueError, RoutingError):
    """No (known) agent can receive the task."""


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


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # reused: dumps() would rebuild it
_MESSAGE_FIELDS = frozenset(("sender", "recipient", "type", "content", "priority", "dedupe_key"))


def _encode_json(value: Any, what: str) -> str:
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError) as exc:
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
        self._wake = _WakeSockets(wake_dir) if wake_dir else None
        self._release_expired_sql = self.backend.sql(self._RELEASE_EXPIRED)
        self._finish_sql = self.backend.sql(self._FINISH.format(holder=""))
        self._finish_by_sql = self.backend.sql(self._FINISH.format(holder=" AND claimed_by = ?"))

    @classmethod
    def from_team(cls, team, **overrides) -> "MessageQueue":
        """Queue for a team.Team: its database_url/wake_dir (absolute) and agents."""
        settings = team.settings
        options = dict(
            agents=tuple(a.name for a in team.agents),
            handles={a.name: tuple(a.handles) for a in team.agents},
            max_queue_size=settings.max_queue_size,
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
        return self.send_many([dict(sender=sender, recipient=recipient, type=type,
                                    content=content, priority=priority,
                                    dedupe_key=dedupe_key)])[0]

    def send_all(self, sender: str, type: str, content: Any = None, priority: int = 5) -> list[int]:
        """Broadcast: one task per team agent; returns their ids."""
        return self.send_many([dict(sender=sender, recipient="all", type=type,
                                    content=content, priority=priority)])

    def send_many(self, messages: Iterable[Mapping[str, Any]]) -> list[int]:
        """Enqueue many tasks in ONE transaction: all or none are written.

        Each message is a dict of send()'s arguments.  Returns one id per
        resulting task (a broadcast contributes one per agent).
        """
        rows = [row for message in messages for row in self._prepare(message)]
        if not rows:
            return []
        now = self.clock()
        ids: list[Optional[int]] = [None] * len(rows)
        with self.backend.write_transaction():
            fresh, duplicate_of = self._resolve_dedupe(rows, ids)
            self._check_backpressure(rows[i][1] for i in fresh)
            for start in range(0, len(fresh), _INSERT_CHUNK_ROWS):
                chunk = fresh[start:start + _INSERT_CHUNK_ROWS]
                new_ids = self._insert_rows([rows[i] for i in chunk], now)
                for i, new_id in zip(chunk, new_ids):
                    ids[i] = new_id
            for i, first in duplicate_of.items():  # same key twice in this batch
                ids[i] = ids[first]
        if self._wake:
            self._wake.notify({rows[i][1] for i in fresh})
        return ids  # type: ignore[return-value]

    def _prepare(self, message: Mapping[str, Any]) -> list[tuple]:
        unknown = message.keys() - _MESSAGE_FIELDS
        if unknown:
            raise ContentError(f"unknown message field(s): {', '.join(sorted(unknown))}")
        sender, task_type = message.get("sender"), message.get("type")
        _check_name(sender, "sender")
        _check_name(task_type, "type")
        priority = message.get("priority", 5)
        _check_priority(priority)
        dedupe_key = message.get("dedupe_key")
        if dedupe_key is not None and (not isinstance(dedupe_key, str) or len(dedupe_key) > 200):
            raise ContentError("dedupe_key must be a string of at most 200 characters")
        content = _encode_json(message.get("content"), "content")
        try:
            recipients = resolve_recipients(message.get("recipient"), task_type,
                                            self.agents, self.handles)
        except RoutingError as exc:
            raise UnroutableError(str(exc)) from None
        return [(sender, r, task_type, content, priority, dedupe_key) for r in recipients]

    def _resolve_dedupe(self, rows: list[tuple], ids: list) -> tuple[list[int], dict[int, int]]:
        """Fill ids of rows whose dedupe_key is live; return indexes to insert
        and {index: earlier index} for keys repeated within the batch."""
        fresh: list[int] = []
        first_seen: dict[tuple, int] = {}
        duplicate_of: dict[int, int] = {}
        for i, row in enumerate(rows):
            recipient, dedupe_key = row[1], row[5]
            if dedupe_key is not None:
                if (recipient, dedupe_key) in first_seen:
                    duplicate_of[i] = first_seen[(recipient, dedupe_key)]
                    continue
                first_seen[(recipient, dedupe_key)] = i
                existing = self.backend.fetchone(
                    "SELECT id FROM tasks WHERE recipient = ? AND dedupe_key = ?"
                    " AND status IN ('pending', 'in_progress') LIMIT 1",
                    (recipient, dedupe_key))
                if existing:
                    ids[i] = existing[0]
                    continue
            fresh.append(i)
        return fresh, duplicate_of

    def _check_backpressure(self, recipients: Iterable[str]) -> None:
        incoming: dict[str, int] = {}
        for recipient in recipients:
            incoming[recipient] = incoming.get(recipient, 0) + 1
        for recipient, count in incoming.items():
            # Bounded count: cost is at most max_queue_size index steps.
            pending = self.backend.fetchone(
                "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE recipient = ?"
                " AND status = 'pending' LIMIT ?) AS p",
                (recipient, self.max_queue_size + 1))[0]
            if pending + count > self.max_queue_size:
                raise QueueFullError(
                    f"{recipient} has {pending} pending tasks (max_queue_size "
                    f"{self.max_queue_size}); refusing {count} more")

    def _insert_rows(self, rows: list[tuple], now: float) -> list[int]:
        placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, 'pending', 0, ?)"] * len(rows))
        params: list[Any] = []
        for sender, recipient, task_type, content, priority, dedupe_key in rows:
            params += (sender, recipient, task_type, content, priority, now, dedupe_key)
        cursor = self.backend.execute(
            "INSERT INTO tasks (sender, recipient, type, content, priority, created_at,"
            f" status, attempts, dedupe_key) VALUES {placeholders} RETURNING id", params)
        # RETURNING order is unspecified; ids ascend in insertion order.
        return sorted(r[0] for r in cursor.fetchall())

    # -- consume ---------------------------------------------------------
    # Expired leases go back to pending, or fail once out of attempts.
    _RELEASE_EXPIRED = (
        "UPDATE tasks SET lease_expires_at = NULL,"
        " status = CASE WHEN attempts >= ? THEN 'failed' ELSE 'pending' END,"
        " error = CASE WHEN attempts >= ?"
        " THEN 'lease expired after ' || CAST(attempts AS TEXT) || ' attempts' ELSE error END,"
        " completed_at = CASE WHEN attempts >= ? THEN ? ELSE completed_at END,"
        " claimed_by = CASE WHEN attempts >= ? THEN claimed_by ELSE NULL END"
        " WHERE recipient = ? AND status = 'in_progress' AND lease_expires_at < ?")

    _FINISH = ("UPDATE tasks SET status = ?, completed_at = ?, result = ?, error = ?,"
               " lease_expires_at = NULL WHERE id = ? AND status = 'in_progress'{holder}"
               " RETURNING claimed_by, type, claimed_at")

    def claim(self, agent: str, limit: int = 1) -> list[ClaimedTask]:
        """Atomically take up to ``limit`` tasks for ``agent``, most urgent first.

        Tasks whose lease expired are re-claimable; once they used up
        max_attempts they are marked failed instead (never silently dropped).
        """
        now = self.clock()
        with self.backend.write_transaction():
            self.backend.run(self._release_expired_sql, (
                self.max_attempts, self.max_attempts, self.max_attempts, now, self.max_attempts,
                agent, now))
            rows = self.backend.run(self.backend.claim_sql, (
                agent, now, now + self.lease_seconds, agent, limit)).fetchall()
        tasks = [ClaimedTask(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8])
                 for r in rows]
        tasks.sort(key=lambda t: (t.priority, t.id))
        return tasks

    def mark_completed(self, task_id: int, result: Any = None, *, agent: Optional[str] = None) -> bool:
        """Complete an in-progress task (optionally only if ``agent`` holds it)."""
        return self._finish(task_id, "completed", result=_encode_json(result, "result"), agent=agent)

    def mark_failed(self, task_id: int, error: str, *, agent: Optional[str] = None) -> bool:
        return self._finish(task_id, "failed", error=str(error), agent=agent)

    def _finish(self, task_id: int, status: str, *, result: Optional[str] = None,
                error: Optional[str] = None, agent: Optional[str] = None) -> bool:
        now = self.clock()
        if agent is None:
            sql, params = self._finish_sql, (status, now, result, error, task_id)
        else:
            sql, params = self._finish_by_sql, (status, now, result, error, task_id, agent)
        with self.backend.write_transaction():
            row = self.backend.run(sql, params).fetchone()
            if row is None:
                return False
            self.backend.execute(
                "INSERT INTO metrics (agent, task_type, duration_ms, timestamp) VALUES (?, ?, ?, ?)",
                (row[0], row[1], max(0.0, (now - row[2]) * 1000.0), now))
        return True

    def requeue_agent(self, agent: str) -> int:
        """Put ``agent``'s in-progress tasks back to pending (after a crash).

        Tasks that already used max_attempts fail instead, so a task that
        kills its agent every time cannot cause an endless restart loop.
        """
        now = self.clock()
        with self.backend.write_transaction():
            self.backend.execute(
                "UPDATE tasks SET status = 'failed', completed_at = ?, lease_expires_at = NULL,"
                " error = 'agent restarted after ' || CAST(attempts AS TEXT) || ' attempts'"
                " WHERE claimed_by = ? AND status = 'in_progress' AND attempts >= ?",
                (now, agent, self.max_attempts))
            cursor = self.backend.execute(
                "UPDATE tasks SET status = 'pending', claimed_by = NULL, claimed_at = NULL,"
                " lease_expires_at = NULL WHERE claimed_by = ? AND status = 'in_progress'",
                (agent,))
            count = cursor.rowcount
        if count and self._wake:
            self._wake.notify({agent})
        return count

    def has_work(self, agent: str) -> bool:
        now = self.clock()
        # Two EXISTS, not an OR on status, so each is one index probe.
        return self.backend.fetchone(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM tasks WHERE recipient = ? AND status = 'pending')"
            " OR EXISTS (SELECT 1 FROM tasks WHERE recipient = ? AND status = 'in_progress'"
            " AND lease_expires_at < ?)", (agent, agent, now)) is not None

    def wait(self, agent: str, timeout: float) -> bool:
        """Block until ``agent`` may have work (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + max(0.0, timeout)
        listener = self._wake.listener(agent) if self._wake else None
        if listener is not None:
            _drain(listener)  # bound before the check: no wake-up can be lost
            if self.has_work(agent):
                return True
            remaining = deadline - time.monotonic()
            if remaining > 0 and select.select([listener], [], [], remaining)[0]:
                _drain(listener)
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


def _drain(sock: socket.socket) -> None:
    try:
        while True:
            sock.recv(64)
    except OSError:  # EAGAIN: empty
        pass


class _WakeSockets:
    """One unix datagram socket per waiting agent at {wake_dir}/{agent}.sock."""

    def __init__(self, wake_dir: str):
        self.wake_dir = os.path.abspath(wake_dir)
        os.makedirs(self.wake_dir, mode=0o700, exist_ok=True)
        self._sender: Optional[socket.socket] = None
        self._listeners: dict[str, Optional[socket.socket]] = {}
        self._owned: dict[str, int] = {}  # path -> inode we bound
        self._lock = threading.Lock()

    def _path(self, agent: str) -> Optional[str]:
        path = os.path.join(self.wake_dir, f"{agent}.sock")
        return path if len(os.fsencode(path)) <= _UNIX_PATH_MAX else None

    def notify(self, agents: Iterable[str]) -> None:
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for agent in agents:
            path = self._path(agent)
            if path:
                try:
                    self._sender.sendto(b"\x01", path)
                except OSError:  # nobody listening, or already poked (buffer full)
                    pass

    def listener(self, agent: str) -> Optional[socket.socket]:
        """Our bound socket for ``agent``, or None (caller polls instead)."""
        with self._lock:
            if agent not in self._listeners:
                self._listeners[agent] = self._bind(agent)
            return self._listeners[agent]

    def _bind(self, agent: str) -> Optional[socket.socket]:
        path = self._path(agent)
        if path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or _socket_is_live(path):
                    raise
                os.unlink(path)  # left behind by a dead process
                sock.bind(path)
            os.chmod(path, 0o600)
            self._owned[path] = os.stat(path).st_ino
            return sock
        except OSError:
            sock.close()
            return None  # another live waiter owns it: degrade to polling

    def close(self) -> None:
        for sock in self._listeners.values():
            if sock is not None:
                sock.close()
        for path, inode in self._owned.items():
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        if self._sender is not None:
            self._sender.close()
        self._listeners.clear()
        self._owned.clear()


def _socket_is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
