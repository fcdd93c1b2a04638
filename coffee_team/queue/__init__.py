"""The queue database: the only package that writes SQL or names a database driver.

``content`` checks every value stored (JSON, size, depth), ``core`` moves tasks (claim, requeue, wait), ``enqueue`` sends, ``completion`` completes (and claims the next), ``journal`` keeps events,
notifications and restart state, ``reporting`` reads listings and stats, ``routing`` resolves
recipients, ``wake`` wakes idle agents, ``locks`` holds PostgreSQL advisory locks (one
instance per agent), ``sql`` names every statement (``sql_schema`` the migrations'), ``db`` opens a database and
holds every dialect difference (``sqlite_db``: SQLite's per-thread connections and
transactions, no ORM; ``pg_backend``: PostgreSQL's connections and prepared statements),
``models`` declares the schema for migrations (peewee), ``tables`` the facts of it the queue's
own SQL needs.
"""
from coffee_team.errors import (ContentError, QueueError, QueueFullError, RoutingError,
                                UnroutableError)
from coffee_team.queue.content import MAX_CONTENT_BYTES, MAX_CONTENT_DEPTH
from coffee_team.queue.core import ClaimedTask, MessageQueue

__all__ = [
    "MessageQueue", "ClaimedTask", "QueueError", "QueueFullError", "ContentError",
    "RoutingError", "UnroutableError", "MAX_CONTENT_BYTES", "MAX_CONTENT_DEPTH",
]
