"""One run's spend, recorded as it goes and held against the day's budgets at every event.

A run's ``llm_usage`` row is inserted before the CLI starts ('running') and rewritten with the
spend seen so far at most every WRITE_EVERY seconds while events come, then once more when the
run ends, however it ends (its outcome: ok, error, rate_limited, over_budget, timeout, stalled,
cancelled, stopped). A run whose agent is killed outright (kill -9) leaves its row as last
written; the agent's next start marks it 'killed'. At every event the run's spend so far, on
top of the day's, is held against each budget: crossing one stops the run (OverBudget).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..clock import utc_day
from ..errors import HandlerError
from ..handlers import Interrupted
from ..output import log
from .budget import Prices, Stop, reached, settle, stop, usd_left, with_run
from .gate import BudgetGate, Limit
from .reading import Usage

WRITE_EVERY = 2.0  # seconds: at most what a kill -9 of the agent leaves unrecorded

# How a run that did not end by itself ended, from what stopped it (handlers.Interrupted).
OUTCOMES = {"timeout": "timeout", "stalled": "stalled", "cancelled": "cancelled",
            "stop": "stopped"}


def outcome_of(exc: BaseException) -> str:
    return OUTCOMES.get(exc.reason, "stopped") if isinstance(exc, Interrupted) else "error"


class OverBudget(HandlerError):
    """The run's spend so far took the day's spend to a budget: it stops at this event."""

    def __init__(self, limit: Limit, stopped: Stop):
        super().__init__(stopped.reason)
        self.limit, self.stop = limit, stopped


class RunMeter:
    def __init__(self, agent: str, queue: Any, durable: Callable[..., Any],
                 clock: Callable[[], float], gate: Optional[BudgetGate],
                 prices: Optional[Prices]):
        self.agent, self.queue, self.durable, self.clock = agent, queue, durable, clock
        self.gate, self.prices = gate, prices
        self.row: Optional[int] = None
        self.day = utc_day(clock())
        self.limits: list[Limit] = []
        self.usage, self.estimated = Usage(), True
        self.written, self.written_at = Usage(), clock()
        self.failing = False  # a write of the running figure failed: said once

    def begin(self, task: dict) -> None:
        """The run's row, and the day's budgets as they stand before it."""
        now = self.clock()
        self.day, self.written_at = utc_day(now), now
        if self.queue is None:
            return
        self.row = self.durable(self.queue.begin_usage, task.get("id"), self.agent,
                                task.get("type") or "periodic")
        if self.gate is not None:
            self.limits = self.durable(self.gate.limits, self.day)

    def usd_left(self) -> Optional[float]:
        """What a CLI's own spend cap is given: the least left under a dollar budget."""
        return usd_left([(limit.budget, limit.spend) for limit in self.limits])

    def observe(self, stream: Any) -> None:
        """At each event: the spend so far (written now and then); OverBudget at a limit."""
        self.usage, self.estimated = settle(stream.usage, stream.cost_reported, stream.complete,
                                            self.prices)
        now = self.clock()
        if self.row is not None and self.usage != self.written \
                and now - self.written_at >= WRITE_EVERY:
            self._write(now)
        if stream.complete:
            return  # its final figures: the run is over, the next claim's check stops intake
        for limit in self.limits:
            why = reached(with_run(limit.spend, self.usage), limit.budget) \
                if limit.budget is not None else None
            if why is not None:
                raise OverBudget(limit, stop(limit.scope, why, now))

    def _write(self, now: float) -> None:
        """The running figure, and the day's budgets refreshed (other agents spend too). A
        database that fails here is tried again at the next event: the run goes on."""
        from ..queue.db import database_errors
        try:
            self.queue.update_usage(self.row, self.usage.as_dict(), "running", True)
            if self.gate is not None:
                self.limits = self.gate.limits(self.day, besides=self.usage)
        except database_errors() as exc:
            if not self.failing:
                log(self.agent, f"running spend not recorded yet: {exc}; trying again")
            self.failing = True
            return
        self.failing = False
        self.written, self.written_at = self.usage, now

    def finish(self, outcome: str, usage: Optional[Usage] = None,
               estimated: Optional[bool] = None) -> None:
        """The run's last figure and how it ended (the stream's so far unless given)."""
        if usage is not None:
            self.usage, self.estimated = usage, bool(estimated)
        if self.row is not None:
            self.durable(self.queue.update_usage, self.row, self.usage.as_dict(), outcome,
                         self.estimated)
