"""The team's duties over time, done once per team whichever process does them: schedule
slots sent on time (or caught up once), pending work escalated (team.escalate_after), wait
cycles among agents reported once. Under supervisord the watchdog does them (its
WorkOverTime), on Kubernetes the control plane: this is a library, so neither imports the
other. The rules are coffee_team.rules' pure functions (cron, waits); the queue takes each slot
and reports each cycle once, whichever process (host) gets there first.

TeamDuties is a mixin: its host provides ``team``, ``queue``, ``clock`` (wall), ``event``,
``log`` and ``escalation_held`` (True while a wall-clock jump would make escalation wrong),
and sets ``schedule_due_at`` to None at start and on reload.
"""
from __future__ import annotations

from typing import Any, Callable

from coffee_team import events as kinds
from coffee_team import restarts


class TeamDuties:
    team: Any
    queue: Any
    clock: Callable[[], float]
    schedule_due_at: float | None = None

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
