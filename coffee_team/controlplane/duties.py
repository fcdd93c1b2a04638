"""The control plane's loop: each second a dead agent's tasks go back to pending; schedule
slots as they come due; escalation and wait cycles every health_check_interval; cleanup
hourly. The team's duties are coffee_team.duties' (the watchdog's too), the rules liveness's.

An agent is dead when nobody holds it: on PostgreSQL its advisory lock is free (its pod's
process is gone, whatever its last heartbeat said: the session ended with it), which
``requeue_agent(unless_running=True)`` checks in the requeue's own transaction. On SQLite
(one host) its heartbeat file says so, as its instance row would (heartbeat.instances_of;
liveness.instance_gone: stopped, or hung by the team's rule). A frozen
process still holds its lock: its liveness probe fails, the kubelet kills it, and then its
work comes back. A long task is never taken away: its agent beats and holds the lock.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from coffee_team import events as kinds
from coffee_team import liveness
from coffee_team.duties.work import TeamDuties
from coffee_team.heartbeat import instances_of

TICK = 1.0               # seconds between rounds: how late a dead agent's work comes back
CLEANUP_EVERY = 3600.0   # seconds between removals of finished tasks past the retention
REAPER = "control-plane"


class ControlPlane(TeamDuties):
    def __init__(self, team: Any, queue: Any, log: Callable[[str], None],
                 clock: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self.team = team
        self.queue = queue
        self.log = log
        self.clock = clock
        self.mono = mono
        self.schedule_due_at = None
        self.next_health = mono() + team.settings.health_check_interval
        self.next_cleanup = mono()
        self.alive_at = mono()   # the loop's last round (/healthz)
        self.trouble = ""        # the last round's error, "" when it went through

    # TeamDuties' host
    def event(self, name: str | None, kind: str, **detail: Any) -> None:
        self.queue.record_event(name, kind, **detail)

    def escalation_held(self) -> bool:
        return False  # pending ages are wall-clock ages; no jump detection here

    def reap(self) -> int:
        """Requeue the tasks of every agent that holds work but is dead; how many tasks."""
        rows, total, now = None, 0, self.clock()
        stale_after = self.team.settings.heartbeat_stale_after
        for name in self.team.names:
            if not self.queue.holds_work(name):
                continue
            if self.team.is_postgres:
                count = self.queue.requeue_agent(name, unless_running=True)
            else:
                rows = instances_of(self.team, self.queue) if rows is None else rows
                if not liveness.instance_gone(rows.get(name), now, stale_after):
                    continue
                count = self.queue.requeue_agent(name)
            if count:
                total += count
                self.log(f"requeued {count} task(s) of {name}: its instance is gone")
                self.event(name, kinds.REQUEUED, count=count, by=REAPER)
        return total

    def round(self) -> None:
        """One round of the duties that are due."""
        self.reap()
        self.send_due_slots()
        mono = self.mono()
        if mono >= self.next_health:
            self.next_health = mono + self.team.settings.health_check_interval
            self.escalate()
            self.report_wait_cycles()
        if mono >= self.next_cleanup:
            self.next_cleanup = mono + CLEANUP_EVERY
            removed = self.queue.cleanup(self.team.settings.cleanup_interval_hours * 3600)
            if removed:
                self.log(f"cleanup: removed {removed} finished task(s)")

    def run(self, stopping: Callable[[float], bool]) -> None:
        """Rounds until ``stopping(timeout)`` (an Event's wait) says stop."""
        while True:
            try:
                self.round()
                if self.trouble:
                    self.log("database recovered")
                self.trouble = ""
            except Exception as exc:  # a database down must not end the process: retry
                text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                if text != self.trouble:
                    self.log(f"round failed: {text}; retrying")
                self.trouble = text
            self.alive_at = self.mono()
            if stopping(TICK):
                return

    def health(self, within: float) -> tuple[bool, str]:
        """(alive, text) for /healthz: the loop went round within ``within`` seconds."""
        age = self.mono() - self.alive_at
        if age > within:
            return False, f"control plane loop silent for {age:.0f}s"
        return True, "ok" + (f" (database: {self.trouble})" if self.trouble else "")
