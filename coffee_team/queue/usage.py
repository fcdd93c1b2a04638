"""What LLM agents spend, and the writes that budgets, rate limits and sessions need.

UsageMixin is mixed into MessageQueue (``UsageNeeds``: what it uses of the queue's state). The
rules (when a budget is reached, when a limit resets) are coffee_team.llm's pure functions;
this module stores their outcome, each change in one write transaction.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence

from coffee_team.clock import utc_day
from coffee_team.queue import sql_control
from coffee_team.queue.db import SqlBackend

COST_GROUPS = ("agent", "type", "day")
_USAGE_KEYS = ("cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write")


class UsageNeeds(Protocol):
    """What UsageMixin uses from the rest of MessageQueue: its state (core.py) and lifting a
    pause (control.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once

    def resume_agent(self, agent: str) -> bool: ...


class UsageMixin:
    """Needs UsageNeeds from the rest of MessageQueue."""

    def record_usage(self, task_id: Optional[int], agent: str, task_type: str,
                     usage: dict[str, Any], outcome: str = "ok", estimated: bool = False) -> int:
        """One run of an agent's CLI: cost_usd, tokens_in, tokens_out, cache_read, cache_write.
        Returns the row's id."""
        now = self.clock()
        with self.backend.write_transaction():
            return self.backend.run(self._sql.INSERT_USAGE, (
                task_id, agent, task_type, now, utc_day(now), *_figures(usage), outcome,
                bool(estimated))).fetchone()[0]

    def begin_usage(self, task_id: Optional[int], agent: str, task_type: str) -> int:
        """A run starts: its row (nothing spent yet, 'running'), kept current by update_usage,
        so a run cut off by anything, a kill -9 of its agent included, leaves its spend."""
        return self.record_usage(task_id, agent, task_type, {}, "running", True)

    def update_usage(self, row_id: int, usage: dict[str, Any], outcome: str = "running",
                     estimated: bool = True) -> None:
        with self.backend.write_transaction():
            self.backend.run(self._sql.UPDATE_USAGE, (*_figures(usage), outcome,
                                                      bool(estimated), row_id))

    def settle_running_usage(self, agent: str) -> int:
        """At an agent's start: its runs still 'running' were cut off by its death; they
        become 'killed', their spend so far kept (estimated). Returns how many."""
        with self.backend.write_transaction():
            return self.backend.run(self._sql.SETTLE_RUNNING_USAGE, (True, agent)).rowcount

    def spend_on(self, day: str, agent: Optional[str] = None) -> tuple[float, int]:
        """(USD, input + output tokens) of a UTC day: ``agent``'s, or the whole team's."""
        if agent is None:
            row = self.backend.run(self._sql.TEAM_SPEND_ON, (day,)).fetchone()
        else:
            row = self.backend.run(self._sql.AGENT_SPEND_ON, (agent, day)).fetchone()
        return float(row[0] or 0.0), int(row[1] or 0)

    def spend_by_agent(self, day: str) -> dict[str, tuple[float, int]]:
        """{agent: (USD, tokens)} of a UTC day, for the agents that spent anything."""
        rows = self.backend.run(self._sql.SPEND_BY_AGENT_ON, (day,)).fetchall()
        return {agent: (float(usd or 0.0), int(tokens or 0)) for agent, usd, tokens in rows}

    def costs(self, since: float, by: str = "agent") -> dict[str, Any]:
        """Usage since ``since`` grouped by agent, (task) type or (UTC) day, and the total:
        {by, since, groups: [{key, runs, cost_usd, tokens_in, ...}], total: {...}}."""
        if by not in COST_GROUPS:
            raise ValueError(f"by must be one of {', '.join(COST_GROUPS)}, got {by!r}")
        position = COST_GROUPS.index(by)
        groups: dict[str, dict[str, Any]] = {}
        total = _empty("total")
        for row in self.backend.run(self._sql.USAGE_SINCE, (since,)).fetchall():
            key = row[position]
            entry = groups.setdefault(key, _empty(key))
            for target in (entry, total):
                _add(target, row[3:])
        return {"by": by, "since": since, "groups": [groups[k] for k in sorted(groups)],
                "total": total}

    def stop_for_budget(self, scope: str, day: str, until: float, reason: str,
                        agents: Sequence[str], title: str, agent: Optional[str],
                        already: Sequence[str] = ()) -> bool:
        """Pause ``agents`` until ``until`` and leave one silent CRITICAL notification, once
        per (scope, day) stop: False when that stop is already there (another agent raced to
        it): then only ``already`` are paused, without a second notification."""
        now, backend = self.clock(), self.backend
        with backend.write_transaction():
            first = backend.run(self._sql.INSERT_BUDGET_STOP,
                                (scope, day, now, reason)).fetchone() is not None
            for name in agents if first else already:
                backend.execute(sql_control.EXTEND_PAUSE, (name, now, until, reason[:1000]))
            if first:
                backend.run(self._sql.INSERT_NOTIFICATION, (now, "CRITICAL", agent, title,
                                                            reason, False, False)).fetchone()
        return first

    def budget_stops(self, agent: str, day: str, team_scope: str) -> dict[str, str]:
        """{scope: reason} of the budget stops of ``day`` that hold ``agent``: its own, the
        team's."""
        rows = self.backend.run(self._sql.BUDGET_STOPS_ON, (day, agent, team_scope)).fetchall()
        return {scope: reason for scope, reason in rows}

    def budget_allowance(self, scope: str, day: str) -> tuple[float, int, bool]:
        """(USD, tokens) allowed on top of ``scope``'s budget on ``day``, and whether it has
        none at all that day."""
        row = self.backend.run(self._sql.BUDGET_ALLOWANCE, (scope, day)).fetchone()
        return (float(row[0] or 0.0), int(row[1] or 0), bool(row[2])) if row else (0.0, 0, False)

    def lift_budget_stop(self, agent: str, scopes: Sequence[str], day: str, usd: float = 0.0,
                         tokens: int = 0, unlimited: bool = False) -> bool:
        """A person resumes ``agent`` past its budget stops of ``day``: each scope gets the
        raise (or no budget that day) and its stop is lifted, so reaching the raised budget
        stops it again. True if the agent was paused."""
        now = self.clock()
        with self.backend.write_transaction():
            for scope in scopes:
                self.backend.run(self._sql.ADD_BUDGET_ALLOWANCE, (scope, day, float(usd),
                                                                  int(tokens), bool(unlimited),
                                                                  now))
                self.backend.run(self._sql.DELETE_BUDGET_STOP, (scope, day))
        return self.resume_agent(agent)

    def defer_task(self, task_id: int, agent: str, run_after: float, reason: str,
                   pause: bool = True, also: Sequence[str] = ()) -> bool:
        """A rate-limited run: the task back to pending, claimable at ``run_after``, with
        neither a delivery nor a failure counted; ``agent`` pauses intake until then (unless
        ``pause`` is False: a run stopped by the budget, whose stop paused it), and so do the
        agents ``also`` (its rate-limit group: the pause is in the database, so each of them
        sees it at its next claim). False when the task is no longer in progress for
        ``agent`` (e.g. cancelled meanwhile)."""
        now, backend = self.clock(), self.backend
        with backend.write_transaction():
            row = backend.run(self._sql.DEFER_TASK, (run_after, reason, task_id, agent)).fetchone()
            if row is None:
                return False
            backend.run(self._sql.ADD_PENDING, (row[0], 1)).fetchone()
            if pause:
                backend.execute(sql_control.EXTEND_PAUSE, (agent, now, run_after, reason[:1000]))
            for name in also:
                backend.execute(sql_control.EXTEND_PAUSE, (name, now, run_after,
                                                     f"{agent} {reason}"[:1000]))
        return True

    def agent_session(self, agent: str, key: str = "") -> Optional[str]:
        """The session ``agent`` resumes for ``key`` (llm.session_key rendered; '' without)."""
        row = self.backend.run(self._sql.AGENT_SESSION, (agent, key)).fetchone()
        return row[0] if row else None

    def save_agent_session(self, agent: str, session_id: str, key: str = "") -> None:
        with self.backend.write_transaction():
            self.backend.run(self._sql.SAVE_AGENT_SESSION, (agent, key, session_id,
                                                            self.clock()))


def _figures(usage: dict[str, Any]) -> list[Any]:
    return [float(usage.get("cost_usd") or 0.0)] + [int(usage.get(k) or 0)
                                                    for k in _USAGE_KEYS[1:]]


def _empty(key: str) -> dict[str, Any]:
    return {"key": key, "runs": 0, **dict.fromkeys(_USAGE_KEYS, 0), "cost_usd": 0.0,
            "estimated_runs": 0}


def _add(target: dict[str, Any], sums: Sequence[Any]) -> None:
    runs, cost, *tokens, estimated = sums
    target["runs"] += int(runs)
    target["cost_usd"] += float(cost or 0.0)
    for key, value in zip(_USAGE_KEYS[1:], tokens):
        target[key] += int(value or 0)
    target["estimated_runs"] += int(estimated or 0)
