"""Rate limits: is a failed run's output a rate-limit message, and when does it reset?

Only a failed run is looked at (non-zero exit, ``is_error``, unreadable output): a successful
answer that talks about rate limits is an answer. The reset time is read from what CLIs
print, e.g. claude's ``Claude AI usage limit reached|1760000400`` (epoch seconds), ``Your
limit will reset at 9am (America/Chicago)``, ``You've hit your limit · resets Apr 23 at 4pm
(America/Recife)``, or generic ``try again in 30 seconds`` / ``Retry-After: 120``. When none is
stated the caller backs off. Pure: ``now`` is passed in.

Agents that share an account share its limit: a group (``rate_limit_group``, by default
every llm agent running the same CLI) pauses together until the reset one of them was told.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import PurePath
from typing import Any, Optional, Sequence

from .. import retry
from ..clock import UNIT_SECONDS

DEFAULT_PATTERN = (r"(?i)rate[ _-]?limit|usage limit|hit your (?:\w+ )?limit"
                   r"|too many requests|\b429\b")
MAX_WAIT = 8 * 86400.0      # a stated reset further away than this is not believed
BACKOFF_FIRST = 60.0        # seconds, when the CLI states no reset time
BACKOFF_MAX = 3600.0

_EPOCH = re.compile(r"\|\s*(\d{10})(?!\d)")
_RELATIVE = re.compile(r"(?i)(?:try again|retry)(?: after| in)?\s+(\d+(?:\.\d+)?)\s*"
                       r"(s|sec|secs|seconds?|m|mins?|minutes?|h|hours?)\b")
_RETRY_AFTER = re.compile(r"(?i)retry-after:\s*(\d+)")
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_CLOCK = re.compile(
    r"(?i)resets?(?:\s+at)?\s+(?:(?P<month>[a-z]{3})[a-z]*\s+(?P<day>\d{1,2})\s+at\s+)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm)?"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?")


def is_rate_limited(text: str, pattern: str = DEFAULT_PATTERN) -> bool:
    return re.search(pattern, text) is not None


def reset_time(text: str, now: float, local: Optional[tzinfo] = None) -> Optional[float]:
    """When the limit stated in ``text`` resets (epoch seconds, after ``now``), or None."""
    for found in (_from_epoch(text), _from_relative(text, now), _from_clock(text, now, local)):
        if found is not None and now < found <= now + MAX_WAIT:
            return found
    return None


def backoff(consecutive: int) -> float:
    """Seconds to wait after the n-th rate limit in a row that stated no reset time."""
    return retry.delay(max(consecutive, 1), BACKOFF_FIRST, BACKOFF_MAX)


def paused_until(text: str, now: float, consecutive: int) -> tuple[float, bool]:
    """(until when a rate-limited agent and its group pause, whether the CLI stated it):
    the reset time in ``text``, else the backoff of the ``consecutive``-th limit in a row."""
    stated = reset_time(text, now)
    return (stated, True) if stated is not None else (now + backoff(consecutive), False)


def group_of(agent: Any) -> str:
    """An llm agent's rate-limit group: its ``rate_limit_group``, else the program its
    command runs (``claude``, ``codex``...): agents on one CLI are taken to share an account."""
    return agent.rate_limit_group or PurePath(agent.llm.command[0]).name


def peers(agents: Sequence[Any], name: str) -> tuple[str, ...]:
    """The other llm agents of ``name``'s group: they pause when ``name`` hits a limit."""
    me = next(a for a in agents if a.name == name)
    group = group_of(me)
    return tuple(a.name for a in agents
                 if a.llm is not None and a.name != name and group_of(a) == group)


def _from_epoch(text: str) -> Optional[float]:
    match = _EPOCH.search(text)
    return float(match.group(1)) if match else None


def _from_relative(text: str, now: float) -> Optional[float]:
    match = _RELATIVE.search(text)
    if match:
        return now + float(match.group(1)) * UNIT_SECONDS[match.group(2)[0].lower()]
    match = _RETRY_AFTER.search(text)
    return now + float(match.group(1)) if match else None


def _zone(name: Optional[str], local: Optional[tzinfo]) -> Optional[tzinfo]:
    if name is None:
        return local or datetime.now().astimezone().tzinfo
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:  # unknown zone name (ZoneInfoNotFoundError, ValueError): not believed
        return None


def _from_clock(text: str, now: float, local: Optional[tzinfo]) -> Optional[float]:
    """``resets 4pm``, ``reset at 9:30 AM``, ``resets Apr 23 at 4pm (Zone/Name)``: the next
    such moment after ``now`` in that zone (the local one if none is named)."""
    match = _CLOCK.search(text)
    if not match or (match.group("ampm") is None and match.group("minute") is None):
        return None  # a bare number after "reset" is not a time of day
    zone = _zone(match.group("zone"), local)
    hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
    ampm = (match.group("ampm") or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if zone is None or hour > 23 or minute > 59:
        return None
    today = datetime.fromtimestamp(now, timezone.utc).astimezone(zone)
    if match.group("month"):
        month = match.group("month").lower()
        if month not in _MONTHS:
            return None
        try:
            moment = today.replace(month=_MONTHS.index(month) + 1, day=int(match.group("day")),
                                   hour=hour, minute=minute, second=0, microsecond=0)
        except ValueError:
            return None
        if moment.timestamp() <= now:
            moment = moment.replace(year=moment.year + 1)
        return moment.timestamp()
    moment = today.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment.timestamp() <= now:
        moment += timedelta(days=1)
    return moment.timestamp()
