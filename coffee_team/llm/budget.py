"""Budgets: when a UTC day's spend reaches a limit, intake stops until the next UTC day.

Pure rules of (spend, budget, now); ``gate.BudgetGate`` applies them before each claim.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..clock import next_day, utc_day, utc_minute

# Costs are added up as floats; a sum one rounding step short of the limit has reached it.
EPSILON_USD = 1e-9
# The scope of ``team: budget:``: not a valid agent name, so it never collides with one.
TEAM_SCOPE = "team:"


@dataclass(frozen=True)
class Budget:
    usd_per_day: Optional[float] = None
    tokens_per_day: Optional[int] = None


@dataclass(frozen=True)
class Spend:
    usd: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class Stop:
    scope: str      # the agent's name, or "team:" for the team's budget
    day: str        # the UTC day it applies to, YYYY-MM-DD
    until: float    # the start of the next UTC day: intake resumes by itself then
    reason: str     # one line for the pause and the notification


def reached(spend: Spend, budget: Budget) -> Optional[str]:
    """What limit the spend has reached (``usd_per_day 1.00 reached: 1.0000 USD``), or None."""
    if budget.usd_per_day is not None and spend.usd >= budget.usd_per_day - EPSILON_USD:
        return f"usd_per_day {budget.usd_per_day:g} reached: {spend.usd:.4f} USD spent"
    if budget.tokens_per_day is not None and spend.tokens >= budget.tokens_per_day:
        return f"tokens_per_day {budget.tokens_per_day} reached: {spend.tokens} tokens used"
    return None


def decide(scope: str, spend: Spend, budget: Optional[Budget], now: float) -> Optional[Stop]:
    """A Stop when ``spend`` (today's, UTC) has reached ``budget``; None while under it."""
    why = reached(spend, budget) if budget is not None else None
    if why is None:
        return None
    who = "the team" if scope == TEAM_SCOPE else scope
    return Stop(scope=scope, day=utc_day(now), until=next_day(now),
                reason=f"budget: {who}'s {why} today (UTC); intake resumes at "
                       f"{utc_minute(next_day(now))} UTC "
                       f"or on `coffee-team resume`")

