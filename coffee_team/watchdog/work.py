"""Work over time in the watchdog: schedule slots sent on time (or caught up once), wait
cycles among agents reported once, and the predictive restart of a leaking agent between
tasks. The rules are coffee_team.rules' pure functions (cron, waits, trend); the queue takes
each slot and reports each cycle once, whichever watchdog (host) gets there first.

WorkOverTime is mixed into Watchdog (listener.py), which provides ``team``, ``rpc``,
``queue``, ``clock``, ``memory_restart``, ``event``, ``log`` (and clocksteps.py's
``escalation_held``). Escalating pending work (team.escalate_after) lives here too.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from coffee_team import events as kinds
from coffee_team import restarts
from coffee_team.rules import trend

# The pause that holds a predicted restart until the agent is between tasks (kept in the
# database: a restarted watchdog finishes what it started).
TREND_PAUSE = "memory_trend: restart between tasks"


class WorkOverTime:
    team: Any
    rpc: Any
    queue: Any
    clock: Callable[[], float]
    memory_restart: set

    def use_work(self, team) -> None:
        """At start and on reload: look at every schedule entry at the next timer (a slot
        missed while the team was down is caught up then); forget agents that left."""
        self.schedule_due_at: float | None = None
        samples = getattr(self, "rss_samples", {})
        # agent -> (pid, its (time, rss_mb) samples inside its memory_trend window)
        self.rss_samples: dict[str, tuple] = {n: s for n, s in samples.items()
                                              if n in team.names}

    # --- schedules -----------------------------------------------------------------------
    def send_due_slots(self) -> None:
        """Send each schedule entry's due slot (rules.cron.due), at most once per slot."""
        entries = [(agent, entry) for agent in self.team.agents for entry in agent.schedule]
        now = self.clock()
        if not entries or not restarts.is_due(self.schedule_due_at, now, 366 * 86400):
            return
        from coffee_team.rules import cron
        last = self.queue.schedule_slots()
        wakes = []
        for agent, entry in entries:
            zone = cron.zone(cron.zone_of(entry, self.team.settings.timezone))
            due = cron.due(entry.cron, zone, last.get((agent.name, entry.name)), now,
                           entry.catch_up)
            if due.action == cron.SEND:
                self._send_slot(agent.name, entry, due.slot, now)
            elif due.action == cron.RECORD:  # a new entry's start, or a late slot
                recorded = self.queue.take_slot(agent.name, entry.name, due.slot) is not None
                if recorded and (agent.name, entry.name) in last:
                    self.event(agent.name, kinds.SCHEDULE_SKIPPED, entry=entry.name,
                               slot=due.slot, reason="late (catch_up none)")
            wakes.append(cron.next_slot(entry.cron, zone, now))
        # an entry that never comes due (cronsim found no slot in 50 years) is looked at hourly
        self.schedule_due_at = min((w for w in wakes if w is not None), default=now + 3600)

    def _send_slot(self, agent: str, entry, slot: float, now: float) -> None:
        from coffee_team.errors import QueueError
        message = {"sender": "schedule", "recipient": agent, "type": entry.type,
                   "content": entry.content, "priority": entry.priority}
        try:
            task_id = self.queue.take_slot(agent, entry.name, slot, message)
        except QueueError as exc:  # e.g. its queue is full: the slot passes, said once
            if self.queue.take_slot(agent, entry.name, slot) is not None:
                self.log(f"{agent}: schedule {entry.name} not sent: {exc}")
                self.event(agent, kinds.SCHEDULE_SKIPPED, entry=entry.name, slot=slot,
                           reason=str(exc))
            return
        if task_id:  # None: another watchdog (host) sent it
            self.log(f"{agent}: schedule {entry.name} sent task {task_id}")
            self.event(agent, kinds.SCHEDULED, entry=entry.name, slot=slot, task_id=task_id,
                       late=round(now - slot, 3))

    def schedule_wakeup(self, now: float) -> float | None:
        """Seconds until the next schedule slot (None: no schedules)."""
        return None if self.schedule_due_at is None else max(0.0, self.schedule_due_at - now)

    # --- pending work (the health check) -------------------------------------------------
    def escalate(self) -> None:
        """Pending work waiting past the team's escalate_after moves up a priority step."""
        if self.escalation_held():
            return
        raised = self.queue.escalate_pending()
        if raised:
            self.log(f"escalated {len(raised)} waiting task(s): {raised[:10]}")

    # --- wait cycles (the health check) --------------------------------------------------
    def report_wait_cycles(self) -> None:
        """One silent WARNING per cycle of agents waiting on each other's tasks, ever (the
        database remembers it across restarts and hosts); nothing is killed."""
        graph = self.queue.wait_graph()
        if not graph["waits"]:
            return
        from coffee_team.rules.waits import find_cycles
        for cycle in find_cycles(graph["waits"], graph["running"]):
            text = cycle.describe()
            title = f"wait cycle: {text.split(' (')[0]}"
            if self.queue.report_cycle_once(cycle.key, title, f"deadlock: {text}; none of "
                                            f"these tasks can go on until one is cancelled "
                                            f"(coffee-team task cancel ID)", cycle.agents[0]):
                self.log(f"wait cycle: {text}")
                self.event(cycle.agents[0], kinds.WAIT_CYCLE, cycle=text)

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
