"""The queue database: the only package that writes SQL or names a database driver.

``content`` checks every value stored (JSON, size, depth), ``core`` moves tasks (claim, requeue,
wait), ``enqueue`` sends, ``completion`` completes (and claims the next), ``control`` fails,
cancels, retries and pauses, ``journal`` keeps events, notifications and restart state,
``delivery`` the notifications' deliveries, ``usage`` what LLM agents spend, ``dependencies``
tasks sent after others (and the wait-for graph), ``schedules`` schedule slots, ``reporting``
reads listings and stats (MessageQueue mixes these parts; each states what it needs from the
others in a ``Needs`` protocol, checked by tests/unit/test_queue_structure.py), ``routing``
resolves recipients, ``wake`` wakes idle agents, ``locks`` holds PostgreSQL advisory locks (one
instance per agent). ``sql`` names every statement (``sql_schema`` the migrations',
``sql_session`` a connection's own, ``sql_work`` those of dependencies and schedules,
``sql_sqlite`` SQLite's one-statement send), ``factory`` opens a database and picks its backend,
``db`` is the backend interface (and the database errors), each backend holds its dialect's
differences (``sqlite_db``: SQLite's per-thread connections and transactions, no ORM;
``pg_backend``: PostgreSQL's reconnects and prepared statements; ``pg_session``: PostgreSQL
connections of their own), ``models`` declares the schema for migrations (peewee), ``tables``
the facts of it the queue's own SQL needs.
"""
from coffee_team.errors import (ContentError, QueueError, QueueFullError, RoutingError,
                                UnroutableError)
from coffee_team.queue.content import MAX_CONTENT_BYTES, MAX_CONTENT_DEPTH
from coffee_team.queue.core import ClaimedTask, MessageQueue

__all__ = [
    "MessageQueue", "ClaimedTask", "QueueError", "QueueFullError", "ContentError",
    "RoutingError", "UnroutableError", "MAX_CONTENT_BYTES", "MAX_CONTENT_DEPTH",
]
