"""An agent's history and log, a resume past a budget, and the costs window, for the command
line and the MCP server alike. Reads of the queue's journal and of supervisord's log; the
resume writes its pause and the day's allowance."""
from __future__ import annotations

import xmlrpc.client
from typing import Any, Callable, Optional

from ..clock import DAY, parse_duration, utc_day
from ..errors import ActionRefused
from ..events import lifecycle_summary
from ..team import Team

MAX_SINCE_DAYS = 3650


def history(queue: Any, agent: Optional[str], limit: int) -> dict:
    """``{summary, events}``: per agent its crashes, restarts, last crash and give-up over
    the whole journal, and the latest ``limit`` lifecycle events (oldest first)."""
    events = queue.events(agent=agent, limit=10**7)
    return {"summary": lifecycle_summary(events), "events": events[-limit:]}


def log_tail(rpc: Callable[..., Any], agent: str, length: int,
             offset: int = 0) -> tuple[str, int, bool]:
    """(text, next offset, overflow) of an agent's log (stdout and stderr) through
    supervisor's tailProcessStdoutLog: the last ``length`` bytes, or what came after
    ``offset``."""
    try:
        return rpc("supervisor.tailProcessStdoutLog", agent, offset, length)
    except xmlrpc.client.Fault as exc:
        raise ActionRefused(f"{agent}: cannot read the log: {exc.faultString}") from None


def since_seconds(text: str, what: str = "--since") -> float:
    """``7d``, ``24h``, ``30m``, ``90s`` → seconds (a bare number is seconds, as everywhere)."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_SINCE_DAYS * DAY:
        raise ActionRefused(f"{what}: expected a duration like 7d, 24h or 30m (at most "
                            f"{MAX_SINCE_DAYS} days), got {text!r}", 2)
    return seconds


# --- resume, past a budget --------------------------------------------------------------------

def budget_raise(usd: Optional[float], tokens: Optional[int],
                 unlimited: bool) -> Optional[tuple[float, int, bool]]:
    """(USD, tokens, no budget) a person allows for today, or None; bad values refused."""
    if usd is None and tokens is None and not unlimited:
        return None
    if unlimited and (usd is not None or tokens is not None):
        raise ActionRefused("--no-budget-today and --raise/--raise-tokens: choose one", 2)
    if usd is not None and not (0 < usd <= 10**6):
        raise ActionRefused(f"--raise: expected USD above 0, up to 1e6, got {usd:g}", 2)
    if tokens is not None and not (0 < tokens <= 10**12):
        raise ActionRefused(f"--raise-tokens: expected a count above 0, got {tokens}", 2)
    return float(usd or 0.0), int(tokens or 0), unlimited


def resume(team: Team, queue: Any, name: str, raising: Optional[tuple[float, int, bool]],
           now: float) -> dict:
    """Let ``name`` claim again. Past its daily budget (or the team's) a person says how far
    for today (``raising``), so nothing runs unbounded by accident; a plain resume of a
    budget-stopped agent is refused naming the stop."""
    from ..llm.budget import TEAM_SCOPE
    day = utc_day(now)
    stops = queue.budget_stops(name, day, TEAM_SCOPE)
    if stops and raising is None:
        why = next(iter(stops.values())).split(";")[0]
        raise ActionRefused(f"{name} is stopped by the daily budget ({why}); resume it with "
                            f"--raise USD or --raise-tokens N for today, or --no-budget-today", 2)
    if raising is not None and not stops:
        raise ActionRefused(f"{name} is not stopped by a budget today: nothing to raise "
                            f"(resume it without --raise, --raise-tokens, --no-budget-today)", 2)
    if raising is not None:
        _check_enough(team, queue, name, sorted(stops), day, raising)
        was_paused = queue.lift_budget_stop(name, sorted(stops), day, *raising)
    else:
        was_paused = queue.resume_agent(name)
    return {"agent": name, "paused": False, "was_paused": was_paused,
            "budget_raised": None if raising is None else dict(zip(
                ("usd", "tokens", "unlimited"), raising))}


def _check_enough(team: Team, queue: Any, name: str, scopes: list[str], day: str,
                  raising: tuple[float, int, bool]) -> None:
    """A raise that leaves a budget reached would stop the agent again at once: refused."""
    from ..llm.budget import TEAM_SCOPE, Allowance, Budget, Spend, effective, reached
    for scope in scopes:
        base = team.settings.budget if scope == TEAM_SCOPE else team.agent(name).budget
        usd, tokens, unlimited = queue.budget_allowance(scope, day)
        allowed = Allowance(usd + raising[0], tokens + raising[1], unlimited or raising[2])
        why = reached(Spend(*queue.spend_on(day, None if scope == TEAM_SCOPE else scope)),
                      effective(base, allowed) or Budget())
        if why is not None:
            who = "the team" if scope == TEAM_SCOPE else scope
            raise ActionRefused(f"{who}'s {why} today even after this raise: raise more, or "
                                f"--no-budget-today", 2)
