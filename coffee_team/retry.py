"""Exponential backoff, the one way: the pauses between retries of something that failed.

Callers own the loop, the sleep (``time.sleep``, ``Event.wait``, a listener's event wait) and
what counts as failure; this module owns only the schedule.
"""
from __future__ import annotations

from typing import Iterator

DB_RETRY_MAX = 5.0  # seconds; the longest pause between retries while the database is unusable


def delays(first: float, cap: float) -> Iterator[float]:
    """first, 2×first, 4×first, … never above ``cap``; endless."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * 2, cap)
