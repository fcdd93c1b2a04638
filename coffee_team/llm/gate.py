"""The budget check an llm agent makes before each claim, and the stop a crossing makes.

Today's spend (UTC) of the agent, and of the team, against their budgets (with what a person
allowed on top for the day: ``resume --raise``): at a limit the queue pauses the agent (for the
team's budget: every llm agent) until the next UTC day and leaves one silent CRITICAL
notification, once per stop however many agents race to it. A stop holds until the next day
or until a person resumes past it (``--raise USD``, ``--raise-tokens N`` or
``--no-budget-today``), which lifts it: reaching the raised budget stops the agent again.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

from ..clock import utc_day
from ..output import log
from .budget import TEAM_SCOPE, Allowance, Budget, Spend, Stop, decide, effective
from .reading import Usage


class Limit(NamedTuple):
    """One budget that holds for the agent today."""
    scope: str                # the agent's name, or "team:"
    budget: Optional[Budget]  # today's, with a person's raise; None: no budget today
    whose: Optional[str]      # whose spend counts: the agent, or None for the team's
    pauses: tuple[str, ...]   # who its stop pauses
    spend: Spend              # spent today so far


class BudgetGate:
    def __init__(self, agent: str, budget: Optional[Budget], team_budget: Optional[Budget],
                 llm_agents: Sequence[str], queue: Any, clock: Callable[[], float]):
        self.agent = agent
        self.queue = queue
        self.clock = clock
        # (scope, budget, whose spend: the agent's name or None for the team, who pauses)
        self.scopes = [(scope, b, who, pauses) for scope, b, who, pauses in (
            (agent, budget, agent, (agent,)),
            (TEAM_SCOPE, team_budget, None, tuple(llm_agents)))
            if b is not None]

    def limits(self, day: str, besides: Usage = Usage()) -> list[Limit]:
        """Today's budgets and spend; ``besides`` is a running run's spend already written
        into today's figures, left out so that the run's own figure can be added."""
        found = []
        for scope, budget, whose, pauses in self.scopes:
            usd, tokens = self.queue.spend_on(day, whose)
            found.append(Limit(scope, effective(budget, Allowance(
                *self.queue.budget_allowance(scope, day))), whose, pauses,
                Spend(usd - besides.cost_usd, tokens - besides.tokens)))
        return found

    def check(self) -> None:
        now = self.clock()
        for limit in self.limits(utc_day(now)):
            stop = decide(limit.scope, limit.spend, limit.budget, now)
            if stop is not None:
                self.stop(limit, stop)

    def stop(self, limit: Limit, stop: Stop) -> None:
        """Pause whom ``limit`` pauses, with one CRITICAL notification per stop; a stop that
        is already there pauses this agent alone (it may have been resumed by hand)."""
        who = "the team" if limit.whose is None else limit.whose
        title = f"{who} paused: daily budget reached"
        if self.queue.stop_for_budget(stop.scope, stop.day, stop.until, stop.reason,
                                      limit.pauses, title, limit.whose, already=(self.agent,)):
            log(self.agent, f"{title}: {stop.reason}")
