"""An agent's ``schedule:`` (wall-clock tasks) and ``memory_trend:`` (predictive restart) in
the team file: their dataclasses and checkers.

Pure and light: cron expressions and time zones get their shape checked here; their meaning
(``coffee_team.rules.cron``, which imports cronsim, and zoneinfo) only where schedules are
evaluated: the watchdog, the CLI, the rpc plugin. An agent reads its team file with
``check_schedules=False`` (team/parse.py) and never imports either.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..clock import parse_duration
from .fields import TASK_TYPE, Invalid, choice, describe, integer, zone_name

CATCH_UP = ("one", "none")
# Five fields of digits, names (MON, JAN), '*', ',', '-', '/', 'L', '#' (cronsim's syntax).
_CRON_SHAPE = re.compile(r"^\s*\S+(\s+\S+){4}\s*$")
_CRON_CHARS = re.compile(r"^[0-9A-Za-z*,/#\-\s]+$")


@dataclass(frozen=True)
class ScheduleEntry:
    """One ``schedule:`` entry: a task of ``type`` sent to the agent at each ``cron`` slot.

    ``name`` (default: the type) keys the entry's history in the database: a slot is sent
    once per (agent, name, slot), so two entries of one agent need different names."""
    name: str
    cron: str
    type: str
    content: Any = None
    timezone: str | None = None   # None: the team's timezone, else UTC
    catch_up: str = "one"         # a slot missed while the team was down: sent once, or not
    priority: int = 5


@dataclass(frozen=True)
class MemoryTrend:
    """``memory_trend:``: restart the agent between tasks when its RSS, growing as it did over
    ``window`` seconds, would reach memory_limit_mb within ``restart_before`` seconds."""
    window: float
    restart_before: float


def cron_text(v: Any) -> str:
    if not isinstance(v, str) or not _CRON_SHAPE.match(v) or not _CRON_CHARS.match(v):
        raise Invalid(f"a five-field cron expression like '0 9 * * 1-5', got {describe(v)}")
    return " ".join(v.split())


def duration(v: Any) -> float:
    """A positive duration: seconds, or text like 30s, 10m, 2h, 1d (clock.parse_duration)."""
    try:
        seconds = parse_duration(str(v)) if not isinstance(v, bool) else float("nan")
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 366 * 86400:
        raise Invalid(f"a duration like 600, 30m or 2h (at most a year), got {describe(v)}")
    return seconds


def json_content(v: Any) -> Any:
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError):
        raise Invalid(f"JSON-like content (mappings, lists, text, numbers), got {describe(v)}"
                      ) from None
    return v


def task_type(v: Any) -> str:
    if not isinstance(v, str) or not TASK_TYPE.fullmatch(v):
        raise Invalid(f"a task type of letters, digits, '_', '.', '-', got {describe(v)}")
    return v


SCHEDULE_FIELDS = {
    "cron": cron_text,
    "type": task_type,
    "content": json_content,
    "timezone": zone_name,
    "catch_up": choice(*CATCH_UP),
    "name": task_type,
    "priority": integer(0, 9),
}
MEMORY_TREND_FIELDS = {"window": duration, "restart_before": duration}
