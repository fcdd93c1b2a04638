"""Crash restarts and launch order, as pure functions: the rules the watchdog applies and
that ``coffee-team start/restart/stop``, ``apply`` and ``coffee.clearGiveUp`` also move by.

Nothing here reads the clock, the database or supervisord: the caller passes ``now`` (epoch
seconds) and the stored state in, and gets the new state and a decision back. A leaf of the
library (standard library only), so no process package imports another's internals for it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from . import retry

RESTART = "restart"
GIVE_UP = "give_up"
IGNORE = "ignore"
DECISION_KINDS = frozenset({RESTART, GIVE_UP, IGNORE})


@dataclass(frozen=True)
class RestartPolicy:
    base_delay: float = 60.0
    max_attempts: int = 3
    reset_after: float = 600.0
    max_delay: float = math.inf  # cap for teams that allow many restarts

    def __post_init__(self) -> None:
        _require_finite_non_negative("base_delay", self.base_delay)
        _require_finite_non_negative("reset_after", self.reset_after)
        if not isinstance(self.max_attempts, int) or self.max_attempts < 0:
            raise ValueError(f"max_attempts must be an int >= 0, got {self.max_attempts!r}")


@dataclass(frozen=True)
class RestartState:
    """Per-agent restart bookkeeping; field names double as the DB column names
    (``restart_state`` in coffee_team.queue.models; a test keeps the two in step)."""

    attempts: int = 0
    next_restart_at: float | None = None
    given_up: bool = False
    running_since: float | None = None
    last_crash_at: float | None = None
    # The watchdog stopped a hung agent itself: its STOPPED counts as a crash.
    hang_restart: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> RestartState:
        """Build from a DB row; unknown columns are ignored, missing ones take the defaults.

        SQLite hands booleans back as 0/1 and may hand numbers back as ints, so coerce.
        """
        return cls(
            attempts=int(row.get("attempts") or 0),
            next_restart_at=_optional_float(row.get("next_restart_at")),
            given_up=bool(row.get("given_up") or False),
            running_since=_optional_float(row.get("running_since")),
            last_crash_at=_optional_float(row.get("last_crash_at")),
            hang_restart=bool(row.get("hang_restart") or False),
        )


@dataclass(frozen=True)
class Decision:
    kind: str
    delay: float | None = None
    due_at: float | None = None
    # For "restart": the 1-based number of this restart; otherwise the restarts made so far.
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DECISION_KINDS:
            kinds = sorted(DECISION_KINDS)
            raise ValueError(f"Decision kind must be one of {kinds}, got {self.kind!r}")


# What every crash-side rule returns: the state to store and what the listener should do.
Transition = tuple[RestartState, Decision]


def backoff_delay(attempt: int, base: float) -> float:
    """Delay before restart number ``attempt + 1``: base, 2*base, 4*base, ... (retry.delay)."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
    _require_finite_non_negative("base", base)
    return retry.delay(attempt + 1, float(base))


def on_running(state: RestartState, now: float) -> RestartState:
    """The agent reached RUNNING: start its uptime clock; any pending restart is moot.

    A given-up agent stays given up until the user clears it (``on_cleared``), even if someone
    started it behind the watchdog's back.
    """
    return replace(state, running_since=now, next_restart_at=None)


def on_exit(state: RestartState, now: float, policy: RestartPolicy,
            counted: bool = True) -> Transition:
    """An unexpected exit: schedule the next backoff restart, or give up after max_attempts.

    Not ``counted``: an agent stopped while it said it waits for the database (a partition
    is not the agent's fault): restarted after the backoff its count gives, the count as it
    was, never a give-up."""
    if state.given_up:
        return state, Decision(IGNORE, attempt=state.attempts)
    attempts = 0 if _ran_long_enough(state, now, policy) else state.attempts
    crashed = replace(state, running_since=None, last_crash_at=now, hang_restart=False)
    if not counted:
        delay = min(backoff_delay(attempts, policy.base_delay), policy.max_delay)
        waiting = replace(crashed, attempts=attempts, next_restart_at=now + delay)
        return waiting, Decision(RESTART, delay=delay, due_at=now + delay, attempt=attempts)
    if attempts >= policy.max_attempts:
        gave_up = replace(crashed, attempts=attempts, given_up=True, next_restart_at=None)
        return gave_up, Decision(GIVE_UP, attempt=attempts)
    delay = min(backoff_delay(attempts, policy.base_delay), policy.max_delay)
    due_at = now + delay
    scheduled = replace(crashed, attempts=attempts + 1, next_restart_at=due_at)
    return scheduled, Decision(RESTART, delay=delay, due_at=due_at, attempt=attempts + 1)


def on_fatal(state: RestartState, now: float, policy: RestartPolicy) -> Transition:
    """supervisord's own FATAL (its startretries are exhausted): give up without backoff.

    ``policy`` is unused; it is accepted so every transition has the same call shape.
    """
    del policy
    if state.given_up:
        return state, Decision(IGNORE, attempt=state.attempts)
    gave_up = replace(
        state, given_up=True, next_restart_at=None, running_since=None, last_crash_at=now
    )
    return gave_up, Decision(GIVE_UP, attempt=state.attempts)


def on_cleared(state: RestartState) -> RestartState:
    """The user ran ``coffee-team restart``/``start``: a human decision outranks the backoff."""
    return replace(state, attempts=0, given_up=False, next_restart_at=None)


def on_stop_requested(state: RestartState) -> RestartState:
    """The user stopped the agent: a pending backoff restart must not bring it back."""
    return replace(state, next_restart_at=None)


def on_hang(state: RestartState) -> RestartState:
    """The watchdog is about to stop a hung agent: remember why, so the STOPPED that follows
    goes through the crash path (``on_stopped``)."""
    return replace(state, hang_restart=True)


def on_stopped(state: RestartState, now: float, policy: RestartPolicy,
               counted: bool = True) -> Transition | None:
    """The agent reached STOPPED: a crash if the watchdog stopped it for hanging, else None
    (a requested stop changes nothing); ``counted`` as in on_exit."""
    if not state.hang_restart:
        return None
    return on_exit(state, now, policy, counted)


def on_restart_issued(state: RestartState) -> RestartState:
    """The due restart was handed to supervisord."""
    return replace(state, next_restart_at=None)


def on_restart_unanswered(state: RestartState, retry_at: float) -> RestartState:
    """supervisord did not take the restart: keep it pending and try again at ``retry_at``."""
    return replace(state, next_restart_at=retry_at)


def due_restarts(states: Mapping[str, RestartState], now: float) -> list[str]:
    """Names whose scheduled restart is due, earliest first (ties by name for determinism)."""
    due = [(s.next_restart_at, name) for name, s in _pending(states) if s.next_restart_at <= now]
    return [name for _, name in sorted(due)]


def next_wakeup(states: Mapping[str, RestartState], now: float) -> float | None:
    """Seconds until the earliest pending restart (0 if overdue), or None if nothing is pending."""
    waits = [max(0.0, s.next_restart_at - now) for _, s in _pending(states)]
    return min(waits, default=None)


def is_due(next_at: float | None, now: float, longest_wait: float) -> bool:
    """Is something planned for ``next_at`` (None: at every chance) due at ``now``? Also when
    ``next_at`` is further away than it is ever planned (``longest_wait``): the clock went
    back, and what was planned by the old clock would wait that much longer."""
    return next_at is None or not 0 < next_at - now <= longest_wait


def restart_states_due(since_read: float | None, known: Mapping[str, RestartState],
                       now: float, refresh_every: float) -> bool:
    """Must the timers read every restart state from the database again?

    ``known`` is what the watchdog last read, updated with what it saved since. The other
    writers (``coffee-team restart``/``stop``, apply) only clear pending restarts, so a
    restart ``known`` says is pending can only be due later or not at all: read when one is
    due, never read yet (``since_read`` None), or ``refresh_every`` seconds after the last
    read (``since_read``, on the monotonic clock), as a net under that reasoning.
    """
    if since_read is None or not 0 <= since_read < refresh_every:
        return True
    return bool(due_restarts(known, now))


def rebased(state: RestartState, step: float) -> RestartState:
    """The state after the wall clock stepped by ``step`` seconds: the times it holds were
    read on the clock before the step, so each moves with it. A pending restart stays as far
    away as the backoff said (neither at once after a jump forward nor late after one back),
    and the time an agent has run (``reset_after``) is what it really ran."""
    def moved(at: float | None) -> float | None:
        return None if at is None else at + step
    return replace(state, next_restart_at=moved(state.next_restart_at),
                   running_since=moved(state.running_since),
                   last_crash_at=moved(state.last_crash_at))


def launch_groups(priorities: Mapping[str, int]) -> list[list[str]]:
    """Agents grouped by priority, lowest first (supervisord's order); names sorted in a group."""
    by_priority: dict[int, list[str]] = {}
    for name, priority in priorities.items():
        by_priority.setdefault(priority, []).append(name)
    return [sorted(by_priority[p]) for p in sorted(by_priority)]


def waiting_before(priorities: Mapping[str, int], before: int,
                   ready: Iterable[str]) -> list[str]:
    """The agents a group of priority ``before`` still waits for: those of every lower
    priority number (earlier groups, as launch_groups orders them) that are not ``ready``;
    sorted. On Kubernetes the group's init container waits on this (``agent wait-ready``)."""
    ready = set(ready)
    return sorted(name for name, priority in priorities.items()
                  if priority < before and name not in ready)


def _ran_long_enough(state: RestartState, now: float, policy: RestartPolicy) -> bool:
    return state.running_since is not None and now - state.running_since >= policy.reset_after


def _pending(states: Mapping[str, RestartState]):
    return [(n, s) for n, s in states.items() if s.next_restart_at is not None and not s.given_up]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _require_finite_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
