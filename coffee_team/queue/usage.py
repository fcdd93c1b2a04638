"""What LLM agents spend, and the writes that budgets, rate limits and sessions need.

UsageMixin is mixed into MessageQueue (``UsageNeeds``: what it uses of the queue's state). The
rules (when a budget is reached, when a limit resets) are coffee_team.llm's pure functions;
this module stores their outcome, each change in one write transaction.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence

from coffee_team.clock import utc_day
from coffee_team.queue.db import SqlBackend

COST_GROUPS = ("agent", "type", "day")
_USAGE_KEYS = ("cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write")


class UsageNeeds(Protocol):
    """What UsageMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once


class UsageMixin:
    """Needs UsageNeeds from the rest of MessageQueue."""

    def record_usage(self, task_id: Optional[int], agent: str, task_type: str,
                     usage: dict[str, Any], outcome: str = "ok") -> None:
        """One run of an agent's CLI: cost_usd, tokens_in, tokens_out, cache_read, cache_write."""
        now = self.clock()
        values = [float(usage.get("cost_usd") or 0.0)]
        values += [int(usage.get(k) or 0) for k in _USAGE_KEYS[1:]]
        with self.backend.write_transaction():
            self.backend.run(self._sql.INSERT_USAGE, (task_id, agent, task_type, now,
                                                      utc_day(now), *values, outcome))

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
                        agents: Sequence[str], title: str, agent: Optional[str]) -> bool:
        """Pause ``agents`` until ``until`` and leave one silent CRITICAL notification, once
        per (scope, day): False when that stop already happened (or a person resumed it)."""
        now, backend = self.clock(), self.backend
        with backend.write_transaction():
            if backend.run(self._sql.INSERT_BUDGET_STOP, (scope, day, now, reason)).fetchone() \
                    is None:
                return False
            for name in agents:
                backend.run(self._sql.PAUSE_AGENT, (name, now, until, reason[:1000]))
            backend.run(self._sql.INSERT_NOTIFICATION, (now, "CRITICAL", agent, title, reason,
                                                        False, False)).fetchone()
        return True

    def defer_task(self, task_id: int, agent: str, run_after: float, reason: str) -> bool:
        """A rate-limited run: the task back to pending, claimable at ``run_after``, with
        neither a delivery nor a failure counted; ``agent`` pauses intake until then. False
        when the task is no longer in progress for ``agent`` (e.g. cancelled meanwhile)."""
        now, backend = self.clock(), self.backend
        with backend.write_transaction():
            row = backend.run(self._sql.DEFER_TASK, (run_after, reason, task_id, agent)).fetchone()
            if row is None:
                return False
            backend.run(self._sql.ADD_PENDING, (row[0], 1)).fetchone()
            backend.run(self._sql.PAUSE_AGENT, (agent, now, run_after, reason[:1000]))
        return True

    def agent_session(self, agent: str) -> Optional[str]:
        row = self.backend.run(self._sql.AGENT_SESSION, (agent,)).fetchone()
        return row[0] if row else None

    def save_agent_session(self, agent: str, session_id: str) -> None:
        with self.backend.write_transaction():
            self.backend.run(self._sql.SAVE_AGENT_SESSION, (agent, session_id, self.clock()))


def _empty(key: str) -> dict[str, Any]:
    return {"key": key, "runs": 0, **dict.fromkeys(_USAGE_KEYS, 0), "cost_usd": 0.0}


def _add(target: dict[str, Any], sums: Sequence[Any]) -> None:
    runs, cost, *tokens = sums
    target["runs"] += int(runs)
    target["cost_usd"] += float(cost or 0.0)
    for key, value in zip(_USAGE_KEYS[1:], tokens):
        target[key] += int(value or 0)
