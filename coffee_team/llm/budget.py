"""Budgets: when a UTC day's spend reaches a limit, intake stops until the next UTC day, and
a run that crosses it is stopped at its next event.

Pure rules of (spend, budget, now); ``gate.BudgetGate`` applies them before each claim and
``meter.RunMeter`` while a run goes on. What a run has spent so far is what its CLI stated,
else its tokens priced at the team file's ``prices`` (estimated); without prices and without
a figure from the CLI a run's dollars are unknown until it ends, so only a token budget can
stop it mid-way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from ..clock import next_day, utc_day, utc_minute
from .reading import Usage

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


@dataclass(frozen=True)
class Prices:
    """USD per million tokens (``llm.prices`` in the team file)."""
    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0


@dataclass(frozen=True)
class Allowance:
    """What a person allowed on top of a budget for one day (``resume --raise``)."""
    usd: float = 0.0
    tokens: int = 0
    unlimited: bool = False


def estimate(usage: Usage, prices: Prices) -> float:
    return (usage.tokens_in * prices.input + usage.tokens_out * prices.output
            + usage.cache_read * prices.cache_read + usage.cache_write * prices.cache_write) / 1e6


def settle(usage: Usage, cost_stated: bool, complete: bool,
           prices: Optional[Prices]) -> tuple[Usage, bool]:
    """What a run has spent, to record and to hold against budgets, and whether it is an
    estimate: the CLI's own cost when it stated one, else the tokens priced (estimated), else
    no cost; tokens counted from the events of a run that did not finish are estimated too."""
    if cost_stated:
        return usage, not complete
    if prices is not None:
        return replace(usage, cost_usd=estimate(usage, prices)), True
    return replace(usage, cost_usd=0.0), not complete


def effective(budget: Optional[Budget], allowance: Allowance) -> Optional[Budget]:
    """A day's budget with what a person allowed on top; None when there is none that day."""
    if budget is None or allowance.unlimited:
        return None
    return Budget(None if budget.usd_per_day is None else budget.usd_per_day + allowance.usd,
                  None if budget.tokens_per_day is None
                  else budget.tokens_per_day + allowance.tokens)


def with_run(spend: Spend, run: Usage) -> Spend:
    """The day's spend so far (without the run) and the run's spend so far."""
    return Spend(spend.usd + run.cost_usd, spend.tokens + run.tokens)


def usd_left(limits: Sequence[tuple[Optional[Budget], Spend]]) -> Optional[float]:
    """The least USD left under any of the day's dollar budgets (0 at the least); None when
    no dollar budget applies. What a CLI's own spend cap is given."""
    left = [b.usd_per_day - s.usd for b, s in limits if b is not None and b.usd_per_day is not None]
    return max(0.0, min(left)) if left else None


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
    return None if why is None else stop(scope, why, now)


def stop(scope: str, why: str, now: float) -> Stop:
    who = "the team" if scope == TEAM_SCOPE else scope
    return Stop(scope=scope, day=utc_day(now), until=next_day(now),
                reason=f"budget: {who}'s {why} today (UTC); intake resumes at "
                       f"{utc_minute(next_day(now))} UTC or on `coffee-team resume --raise "
                       f"USD` (or --raise-tokens N, --no-budget-today)")
