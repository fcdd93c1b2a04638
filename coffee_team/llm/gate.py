"""The budget check an llm agent makes before each claim.

Today's spend (UTC) of the agent, and of the team, against their budgets: at a limit the
queue pauses the agent (for the team's budget: every llm agent) until the next UTC day and
leaves one silent CRITICAL notification, once per scope and day however many agents race
to it. A person's ``coffee-team resume`` lifts the pause; the day's stop row stays, so that
scope is not stopped again that day. Once a scope is settled for the day (stopped, or found
stopped), it is not read again until the next day.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..clock import utc_day
from ..output import log
from .budget import TEAM_SCOPE, Budget, Spend, decide


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
        self.settled: dict[str, str] = {}  # scope -> the UTC day it needs no more reads

    def check(self) -> None:
        now = self.clock()
        day = utc_day(now)
        for scope, budget, whose, pauses in self.scopes:
            if self.settled.get(scope) == day:
                continue
            stop = decide(scope, Spend(*self.queue.spend_on(day, whose)), budget, now)
            if stop is None:
                continue
            self.settled[scope] = day
            who = "the team" if whose is None else whose
            title = f"{who} paused: daily budget reached"
            if self.queue.stop_for_budget(stop.scope, stop.day, stop.until, stop.reason, pauses,
                                          title, whose):
                log(self.agent, f"{title}: {stop.reason}")
