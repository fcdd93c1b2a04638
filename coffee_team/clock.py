"""Time words every process shares, each written once: the UTC day and durations.

Pure: every function is given ``now`` (epoch seconds) or a text; nothing here reads the clock,
so tests inject any moment. A leaf: imports nothing of coffee_team, so ``queue/``, ``llm/``,
the CLI and the rpc plugin may all use it.

Two clocks: the wall clock (``time.time``) names moments every process and host agrees on
(timestamps in the database, heartbeat files); the monotonic clock (``time.monotonic``) only
measures how long something took in one process and never steps. Liveness, cadences, hang
detection and backoffs are judged on the monotonic clock; a step of the wall clock (``date
-s``, an NTP step, a resumed VM) is found by comparing how far each clock moved
(``wall_step``), so the timestamps it made wrong can be put right.

Days are UTC days (budgets, the ``llm_usage.day`` column, ``coffee-team costs --by day``): the
same day on every host of a team, whatever their time zones.
"""
from __future__ import annotations

import math
import re
import time

DAY = 86400.0
# Seconds per unit of a duration. A bare number is seconds: ``--delay 30`` waits 30 s, and
# ``--since 30`` looks back 30 s (write ``30d`` for days).
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


# A wall clock that moved this much more (or less) than the monotonic one between two readings
# stepped. Between two readings a second apart the two clocks differ by microseconds (NTP
# slews by at most 0.5 ms/s), so anything past this is a step; steps under it are harmless,
# because nothing that judges time spans reads the wall clock.
WALL_STEP = 2.0


def wall_step(before: tuple[float, float] | None, wall: float, mono: float,
              threshold: float = WALL_STEP) -> float:
    """How far the wall clock stepped since ``before`` (a (wall, monotonic) reading): its
    advance minus the monotonic clock's, positive when it jumped forward; 0.0 when that is
    within ``threshold`` or there is no earlier reading."""
    if before is None:
        return 0.0
    step = (wall - before[0]) - (mono - before[1])
    return step if abs(step) > threshold else 0.0


def utc_day(now: float) -> str:
    """The UTC day ``now`` falls in, ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def day_start(now: float) -> float:
    """The first second of ``now``'s UTC day (epoch time has no leap seconds)."""
    return now - now % DAY


def next_day(now: float) -> float:
    """The first second of the UTC day after ``now``'s."""
    return day_start(now) + DAY


def utc_minute(now: float) -> str:
    """``YYYY-MM-DD HH:MM`` in UTC, for messages that name a moment on any host."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(now))


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``5m``, ``2h`` or ``1d`` → seconds; a bare number is seconds.
    ValueError (one line, with examples) for anything else; callers check the range."""
    match = _DURATION.match(text or "")
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2) or "s"] if match else math.nan
    if not math.isfinite(seconds):
        raise ValueError(f"expected a duration like 30 (seconds), 30s, 5m, 2h or 1d, got {text!r}")
    return seconds
