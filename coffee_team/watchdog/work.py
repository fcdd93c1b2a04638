"""Work over time in the watchdog: the team's duties (coffee_team.duties: schedule slots,
escalation, wait cycles; the control plane does them too on Kubernetes) and the predictive
restart of a leaking agent between tasks (rules.trend's pure functions).

WorkOverTime is mixed into Watchdog (listener.py), which provides ``team``, ``rpc``,
``queue``, ``clock``, ``memory_restart``, ``event``, ``log`` (and clocksteps.py's
``escalation_held``).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from coffee_team import events as kinds
from coffee_team.duties.work import TeamDuties
from coffee_team.rules import trend

# The pause that holds a predicted restart until the agent is between tasks (kept in the
# database: a restarted watchdog finishes what it started).
TREND_PAUSE = "memory_trend: restart between tasks"


class WorkOverTime(TeamDuties):
    team: Any
    rpc: Any
    queue: Any
    clock: Callable[[], float]
    memory_restart: set

    def use_work(self, team) -> None:
        """At start and on reload: look at every schedule entry at the next timer (a slot
        missed while the team was down is caught up then); forget agents that left."""
        self.schedule_due_at = None  # TeamDuties: every entry looked at the next timer
        samples = getattr(self, "rss_samples", {})
        # agent -> (pid, its (time, rss_mb) samples inside its memory_trend window)
        self.rss_samples: dict[str, tuple] = {n: s for n, s in samples.items()
                                              if n in team.names}

    # --- predictive restart (the health check) -------------------------------------------
    def check_memory_trend(self, spec, pid: int, rss_mb: float, now: float,
                           pid_started: float | None, pauses: dict) -> None:
        """Keep the agent's RSS samples of its memory_trend window; when they project a
        crossing of memory_limit_mb within restart_before, pause its intake (its current
        task finishes), restart it once it holds no task, and resume it once it runs again."""
        if spec.memory_trend is None:
            return
        pause = pauses.get(spec.name)
        ours = pause is not None and pause["reason"] == TREND_PAUSE
        # supervisord's start time is whole seconds; the paused instance had run for at least
        # half the window (its own samples), so any later start is a new instance
        if ours and pid_started is not None and pid_started >= math.floor(pause["paused_at"]):
            self.queue.resume_agent(spec.name)  # the new instance runs: intake again
            self.rss_samples.pop(spec.name, None)
            return
        if spec.name in self.memory_restart:
            return  # already on its way out (over memory_limit_mb, or ours)
        window = spec.memory_trend.window
        seen_pid, samples = self.rss_samples.get(spec.name, (pid, []))
        # one instance's growth only: a new process starts a new trend
        samples = trend.keep(samples, now, window) if seen_pid == pid else []
        samples.append((now, rss_mb))
        self.rss_samples[spec.name] = (pid, samples)
        if ours:
            self._restart_if_idle(spec.name)
            return
        eta = trend.restart_due(samples, spec.memory_limit_mb, now, window,
                                spec.memory_trend.restart_before)
        if eta is None or pause is not None:  # a person's pause: leave the agent alone
            return
        text = (f"{spec.name} memory grows toward memory_limit_mb ({rss_mb:.0f} of "
                f"{spec.memory_limit_mb} MB, reached in ~{eta / 60:.0f} min); restarting it "
                f"between tasks")
        self.log(text)
        self.event(spec.name, kinds.MEMORY_TREND, rss_mb=rss_mb, limit_mb=spec.memory_limit_mb,
                   reaches_in=round(eta, 1))
        self.queue.notify("WARNING", spec.name, f"⚠️ {spec.name} restart before its memory "
                                                f"limit", f"⚠️ {text}")
        self.queue.pause_agent(spec.name, reason=TREND_PAUSE)
        self._restart_if_idle(spec.name)

    def _restart_if_idle(self, name: str) -> None:
        """Stop the agent (restarted by after_stop) once no task is in progress for it; a
        task claimed before the pause took effect finishes first."""
        if self.queue.list_tasks(status="in_progress", agent=name, limit=1):
            return
        if name in self.memory_restart:
            return  # already stopping
        self.memory_restart.add(name)
        self.rpc.supervisor.stopProcess(name, False)
