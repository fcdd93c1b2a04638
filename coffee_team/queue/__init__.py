"""The queue database: the only package that writes SQL or names a database driver.

``content`` checks every value stored (JSON, size, depth), ``core`` moves tasks (send, claim, complete, requeue, wait), ``journal`` keeps events,
notifications and restart state, ``reporting`` reads listings and stats, ``routing`` resolves
recipients, ``wake`` wakes idle agents, ``locks`` holds PostgreSQL advisory locks (one
instance per agent), ``sql`` names every statement, ``db`` opens a database and holds every
dialect difference, ``models`` declares the schema.
"""
from coffee_team.errors import (ContentError, QueueError, QueueFullError, RoutingError,
                                UnroutableError)
from coffee_team.queue.content import MAX_CONTENT_BYTES, MAX_CONTENT_DEPTH
from coffee_team.queue.core import ClaimedTask, MessageQueue

__all__ = [
    "MessageQueue", "ClaimedTask", "QueueError", "QueueFullError", "ContentError",
    "RoutingError", "UnroutableError", "MAX_CONTENT_BYTES", "MAX_CONTENT_DEPTH",
]
