"""Exponential backoff, the one way: the pauses between retries of something that failed.

Callers own the loop, the sleep (``time.sleep``, ``Event.wait``, a listener's event wait) and
what counts as failure; this module owns only the schedule: ``delay`` for the n-th pause of a
count kept elsewhere (a task's failures, an agent's restarts, a delivery's attempts, rate
limits in a row), ``delays`` for a loop that keeps its own count.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator

DB_RETRY_MAX = 5.0  # seconds; the longest pause between retries while the database is unusable
# Doublings stop here: 2**64 × any first pause a person configures is past every cap, and the
# float stays finite however long the count grows.
MAX_DOUBLINGS = 64


def delay(failures: int, first: float, cap: float = math.inf) -> float:
    """The pause after the ``failures``-th failure in a row (1-based): first × 2^(failures-1),
    never above ``cap``."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    return min(cap, first * 2.0 ** min(failures - 1, MAX_DOUBLINGS))


def delays(first: float, cap: float) -> Iterator[float]:
    """first, 2×first, 4×first, … never above ``cap``; endless."""
    return (delay(n, first, cap) for n in itertools.count(1))
