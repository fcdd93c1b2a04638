"""Which database a URL names: the one table of schemes, read by the team file and the queue.

A leaf: it imports nothing, so ``queue/`` can use it without reaching into ``team/``.
"""
from __future__ import annotations

__all__ = ["PG_SCHEMES", "is_postgres_url"]

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """True for a PostgreSQL URL; anything else is a SQLite path (or ``sqlite:///path``)."""
    return url.startswith(PG_SCHEMES)
