"""Wall-clock steps, as the watchdog meets them: found, logged once, and what was stamped by
the clock before the step put right; nothing restarted, nothing escalated for it.

The monotonic clock never steps, so every time span the watchdog judges (heartbeat ages, its
timers) is measured on it; what a step still reaches is what other processes and the database
hold in wall-clock time: pending restarts (restart_state), and tasks stamped while the clock
was ahead, which would wait for the clock to catch up (queue.bring_back).

ClockSteps is mixed into Watchdog (listener.py), which provides ``names``, ``queue`` and
``states``/``save``/``event``/``log``; it keeps the two clocks and what it saw of them
(``use_clocks``). The rules are clock.wall_step, restarts.rebased and
policy.escalation_held_until.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from coffee_team import clock as clocks
from coffee_team import events as kinds
from coffee_team import restarts
from coffee_team.watchdog import policy


class ClockSteps:
    clock: Callable[[], float]
    mono: Callable[[], float]
    clock_seen: tuple[float, float]
    last_step: tuple[float, float, float] | None
    escalation_held_until: float | None
    steps: list[float]
    unshifted: dict[str, float]
    names: set
    queue: Any

    def use_clocks(self, clock: Callable[[], float], mono: Callable[[], float]) -> None:
        self.clock = clock  # wall: timestamps (the database, heartbeat files, supervisord)
        self.mono = mono    # monotonic: how long something took, what is due when
        self.clock_seen = (clock(), mono())  # the last reading of both
        self.last_step = None  # (looks before and after it, wall - monotonic before it)
        self.escalation_held_until = None  # monotonic (policy.escalation_held_until)
        self.steps = []  # steps seen whose database side is not done yet
        self.unshifted = {}  # restart states still to move, by how much

    def escalation_held(self) -> bool:
        """After a jump forward tasks look older than they are: no escalation for a while."""
        return self.escalation_held_until is not None and self.mono() < self.escalation_held_until

    def watch_clock(self) -> None:
        """Before anything reads the wall clock: did it step since the last look? A step is
        logged once and re-bases what was stored by the clock before it; nothing else. The
        loop looks at least every MAX_IDLE_WAIT, so a step is seen within about a second."""
        wall, mono = self.clock(), self.mono()
        step = clocks.wall_step(self.clock_seen, wall, mono)
        if step:  # what a stamp from before the step means (policy.written_at)
            self.last_step = (self.clock_seen[1], mono, self.clock_seen[0] - self.clock_seen[1])
        self.clock_seen = (wall, mono)
        if step:
            self.escalation_held_until = policy.escalation_held_until(
                self.escalation_held_until, step, mono, self.queue.escalate_after)
            self.log(f"wall clock stepped {'forward' if step > 0 else 'back'} by "
                     f"{abs(step):.1f}s; timers re-based, nothing restarted or escalated for it")
            for name in self.names:
                self.unshifted[name] = self.unshifted.get(name, 0.0) + step
            self.steps.append(step)
        if self.steps:
            self._rebase()

    def _rebase(self) -> None:
        """The database's side of the steps seen: pending backoffs keep their length
        (restarts.rebased) and tasks stamped while the clock was ahead come back
        (queue.bring_back). Tried again at the next look if the database refuses; a state
        saved meanwhile was stamped by the new clock (save() drops its shift)."""
        for name, state in self.states().items():
            step = self.unshifted.get(name)
            moved = state if step is None else restarts.rebased(state, step)
            if moved != state:
                self.save(name, moved)
            self.unshifted.pop(name, None)
        brought = self.queue.bring_back() if any(step < 0 for step in self.steps) else 0
        if brought:
            self.log(f"{brought} task(s) stamped while the clock was ahead brought back")
        step, self.steps = sum(self.steps), []
        self.event(None, kinds.CLOCK_STEP, step=round(step, 3), brought_back=brought)

    def bring_back_future_tasks(self) -> None:
        """At start: tasks stamped ahead of the clock were sent while it was ahead (a step the
        watchdog was not running to see); they come back to now."""
        brought = self.queue.bring_back()
        if brought:
            self.log(f"{brought} task(s) stamped in the future (the clock was ahead) brought back")
            self.event(None, kinds.CLOCK_STEP, step=None, brought_back=brought)


def wall_clock(offset_file: str | None) -> Callable[[], float]:
    """time.time; with ``offset_file`` (a test hook: COFFEE_TEST_CLOCK_OFFSET_FILE) time.time
    plus the seconds the file holds, read at every call, so a test steps this process's wall
    clock alone, and at any moment, by rewriting the file
    (tests/integration/test_clock_steps_live.py)."""
    if not offset_file:
        return time.time

    def offset_clock() -> float:
        try:
            with open(offset_file) as f:
                return time.time() + float(f.read() or 0)
        except (OSError, ValueError):
            return time.time()
    return offset_clock
