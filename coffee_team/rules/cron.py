"""Cron slots of a schedule entry, and which one is due: pure functions of (entry, last slot
sent, now). The one module that imports cronsim (and zoneinfo): the watchdog, the CLI and the
rpc plugin evaluate schedules; an agent never does (tests/integration/test_lean_imports.py).

A slot is an instant (epoch seconds), the same on every host. cronsim walks local wall time
the way Debian's cron does: a job at a fixed time that falls in a spring-forward gap runs at
the first minute after it, and one in an autumn repeat runs once (the first time), so a
daylight-saving change neither skips nor doubles a daily slot; jobs every hour or minute
follow real time.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# A slot found at most this late is on time: sent with catch_up none too (the watchdog looks
# every second, but a slow supervisord event or a database wait may hold it up a while).
ON_TIME = 120.0
SEND, RECORD, NOTHING = "send", "record", "nothing"


@dataclass(frozen=True)
class Due:
    action: str               # SEND the slot's task, RECORD the slot as seen (not sent), NOTHING
    slot: Optional[float] = None


def zone(name: Optional[str]) -> tzinfo:
    """The time zone called ``name`` (None: UTC); ValueError (one line) if there is none."""
    if name is None or name == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"an IANA time zone name like Europe/Paris or UTC, got {name!r}"
                         ) from None


def check(expr: str) -> str:
    """``expr`` if cronsim takes it as a five-field expression, else ValueError (one line)."""
    if len(expr.split()) != 5:
        raise ValueError(f"a five-field cron expression like '0 9 * * 1-5', got {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as exc:
        raise ValueError(f"a valid cron expression like '0 9 * * 1-5', got {expr!r} ({exc})"
                         ) from None
    return expr


def next_slot(expr: str, tz: tzinfo, after: float) -> Optional[float]:
    """The first slot strictly after ``after`` (None: none in the next 50 years)."""
    start = datetime.fromtimestamp(int(after), tz)
    try:
        return next(iter(CronSim(expr, start))).timestamp()
    except StopIteration:
        return None


def latest_slot(expr: str, tz: tzinfo, now: float) -> Optional[float]:
    """The last slot at or before ``now`` (None: none in the last 50 years)."""
    # cronsim steps back from one second past now, so a slot at now itself counts.
    start = datetime.fromtimestamp(int(now) + 1, tz)
    try:
        return next(iter(CronSim(expr, start, reverse=True))).timestamp()
    except StopIteration:
        return None


def due(expr: str, tz: tzinfo, last_sent: Optional[float], now: float,
        catch_up: str = "one", on_time: float = ON_TIME) -> Due:
    """What to do for an entry whose latest recorded slot is ``last_sent`` (None: never seen).

    The latest slot at or before now is sent if it is newer than ``last_sent`` and on time;
    a late one (the team was down, or the watchdog) is sent once with ``catch_up`` "one" and
    only recorded with "none": however many slots were missed, at most the latest is sent.
    An entry never seen before starts now: a slot before it was not missed, only recorded."""
    latest = latest_slot(expr, tz, now)
    if latest is None or (last_sent is not None and latest <= last_sent):
        return Due(NOTHING)
    if now - latest <= on_time:
        return Due(SEND, latest)
    if last_sent is not None and catch_up == "one":
        return Due(SEND, latest)
    return Due(RECORD, latest)


def zone_of(entry, team_zone: Optional[str]) -> str:
    """The zone an entry's cron is read in: its own, else the team's, else UTC."""
    return entry.timezone or team_zone or "UTC"


def next_runs(agents, team_zone: Optional[str], now: float) -> dict[str, list[dict]]:
    """{agent: [{name, cron, type, timezone, catch_up, next_run}]} for each agent (AgentSpec)
    with a schedule: what ``coffee-team schedule``, ``status --json`` and
    coffee.getTeamStatus show. next_run is epoch seconds, None when it never comes."""
    runs: dict[str, list[dict]] = {}
    for agent in agents:
        for entry in agent.schedule:
            name = zone_of(entry, team_zone)
            runs.setdefault(agent.name, []).append({
                "name": entry.name, "cron": entry.cron, "type": entry.type, "timezone": name,
                "catch_up": entry.catch_up, "next_run": next_slot(entry.cron, zone(name), now)})
    return runs
