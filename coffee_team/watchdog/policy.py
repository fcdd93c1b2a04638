"""Restart, heartbeat and resource rules for the watchdog, as pure functions.

Nothing here reads the clock, the database or supervisord: the caller passes ``now`` (epoch
seconds) and the stored state in, and gets the new state and a decision back. That keeps every
rule testable to the exact boundary without sleeping.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import AbstractSet, Any, Mapping

from coffee_team import events as kinds

RESTART = "restart"
GIVE_UP = "give_up"
IGNORE = "ignore"
DECISION_KINDS = frozenset({RESTART, GIVE_UP, IGNORE})

FRESH = "fresh"
# The unhealthy statuses double as the event kinds the watchdog records for them.
STALE, HUNG, MISSING = kinds.STALE, kinds.HUNG, kinds.MISSING
HEARTBEAT_STATUSES = frozenset({FRESH, STALE, HUNG, MISSING})
# A hung agent is worse than a stale one, so stale -> hung warns again; missing ranks with stale
# because an agent that never reported is as suspicious as one that stopped reporting.
_HEARTBEAT_SEVERITY = {FRESH: 0, STALE: 1, MISSING: 1, HUNG: 2}

MEMORY_LIMIT_CHECKS_IN_A_ROW = 2


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
    """Delay before restart number ``attempt + 1``: base, 2*base, 4*base, ..."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
    _require_finite_non_negative("base", base)
    return float(base) * 2.0**attempt


def on_running(state: RestartState, now: float) -> RestartState:
    """The agent reached RUNNING: start its uptime clock; any pending restart is moot.

    A given-up agent stays given up until the user clears it (``on_cleared``), even if someone
    started it behind the watchdog's back.
    """
    return replace(state, running_since=now, next_restart_at=None)


def on_exit(state: RestartState, now: float, policy: RestartPolicy) -> Transition:
    """An unexpected exit: schedule the next backoff restart, or give up after max_attempts."""
    if state.given_up:
        return state, Decision(IGNORE, attempt=state.attempts)
    attempts = 0 if _ran_long_enough(state, now, policy) else state.attempts
    crashed = replace(state, running_since=None, last_crash_at=now, hang_restart=False)
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


def on_stopped(state: RestartState, now: float, policy: RestartPolicy) -> Transition | None:
    """The agent reached STOPPED: a crash if the watchdog stopped it for hanging, else None
    (a requested stop changes nothing)."""
    if not state.hang_restart:
        return None
    return on_exit(state, now, policy)


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


def restart_states_due(read_at: float | None, known: Mapping[str, RestartState], now: float,
                       refresh_every: float) -> bool:
    """Must the timers read every restart state from the database again?

    ``known`` is what the watchdog last read, updated with what it saved since. The other
    writers (``coffee-team restart``/``stop``, apply) only clear pending restarts, so a
    restart ``known`` says is pending can only be due later or not at all: read when one is
    due, never read yet (``read_at`` None), or ``refresh_every`` seconds after the last read
    (or the clock went back), as a net under that reasoning.
    """
    if read_at is None or not 0 <= now - read_at < refresh_every:
        return True
    return bool(due_restarts(known, now))


def heartbeat_status(last_heartbeat: float | None, now: float, stale_after: float) -> str:
    """fresh up to stale_after old, stale up to twice that, hung beyond; missing if never seen."""
    if not stale_after > 0 or math.isinf(stale_after):
        raise ValueError(f"stale_after must be a positive finite number, got {stale_after!r}")
    if last_heartbeat is None:
        return MISSING
    age = now - last_heartbeat
    if age <= stale_after:
        return FRESH
    if age <= 2 * stale_after:
        return STALE
    return HUNG


def heartbeat_next_look(last_heartbeat: float | None, status: str,
                        stale_after: float) -> float | None:
    """When the health check must read an agent's heartbeat again (None: at every check).

    The agent only ever writes a newer heartbeat, so nothing but time turns a fresh one
    stale, and not before ``last_heartbeat + stale_after``; a full disk only postpones that
    (``heartbeat_counted_from``), so looking then is never late. Any other status is read
    at every check, so a recovery, a new episode or an escalation to hung is seen at once.
    """
    if status == FRESH and last_heartbeat is not None:
        return last_heartbeat + stale_after
    return None


def heartbeat_counted_from(last_heartbeat: float | None, disk_full_at: float | None,
                           frozen: bool, started_at: float | None = None) -> float | None:
    """When a heartbeat's age starts counting, for ``heartbeat_status``.

    A heartbeat older than the running process (``started_at``, supervisord's start time) was
    written by the instance before it: the new one is not late for it, and gets the full
    allowance from its own start (an agent killed again and again while still importing would
    otherwise be taken for hung at once, restarted, and so on).

    A full disk refuses heartbeat files: while it was full (last seen full at
    ``disk_full_at``), the heartbeat of a process that still runs does not age, so waiting for
    disk is never taken for a hang, and the age restarts from when space was last missing. A
    stopped (frozen) process has no such excuse.
    """
    if last_heartbeat is None:
        return None
    if started_at is not None:
        last_heartbeat = max(last_heartbeat, started_at)
    if frozen or disk_full_at is None:
        return last_heartbeat
    return max(last_heartbeat, disk_full_at)


def should_warn(previous_status: str | None, new_status: str) -> bool:
    """Warn once per unhealthy episode: on entering it, and again only if it escalates to hung.

    ``previous_status`` is None on the first check, which counts as healthy.
    """
    previous = _severity(previous_status) if previous_status is not None else 0
    return _severity(new_status) > previous


@dataclass(frozen=True)
class Finding:
    """One resource warning: ``kind`` is its event kind, ``text`` the words for a person."""

    kind: str
    text: str


def resource_findings(
    cpu_percent: float,
    rss_mb: float,
    *,
    cpu_threshold: float = 80,
    rss_threshold: float = 256,
    memory_limit_mb: float | None = None,
    over_limit_streak: int = 0,
) -> tuple[list[Finding], int, bool]:
    """Return (warnings, streak to pass next time, graceful memory-limit restart due).

    A single RSS spike over the limit is tolerated; two checks in a row trigger the restart.
    The restart consumes the streak (it comes back as 0), so the caller that stores and passes
    the streak back never restarts twice for one episode.
    """
    warnings = []
    if cpu_percent > cpu_threshold:
        warnings.append(Finding(kinds.HIGH_CPU, f"high CPU usage ({cpu_percent:.1f}%)"))
    if rss_mb > rss_threshold:
        warnings.append(Finding(kinds.HIGH_MEMORY, f"high memory usage ({rss_mb:.0f}MB)"))
    if memory_limit_mb is None:
        return warnings, 0, False
    if not memory_limit_mb > 0:
        raise ValueError(f"memory_limit_mb must be > 0, got {memory_limit_mb!r}")
    streak = over_limit_streak + 1 if rss_mb > memory_limit_mb else 0
    if streak >= MEMORY_LIMIT_CHECKS_IN_A_ROW:
        return warnings, 0, True
    return warnings, streak, False


def is_crash(
    from_state: str, expected: bool, stopping_requested: bool, *, to_state: str = "EXITED"
) -> bool:
    """Is this supervisor state transition a crash the watchdog should handle?

    ``to_state`` is the state entered (``EXITED`` or ``PROCESS_STATE_EXITED`` alike); it
    defaults to EXITED because that is the only event carrying the ``expected`` flag.
    A crash is an exit nobody asked for: RUNNING -> EXITED with expected=0 (including death by
    a signal, which supervisord never counts as expected), or a BACKOFF (died while starting).
    """
    if stopping_requested:
        return False
    entered = _bare_state(to_state)
    if entered == "BACKOFF":
        return True
    if entered == "EXITED":
        return _bare_state(from_state) == "RUNNING" and not expected
    # STOPPING/STOPPED are requested stops; STARTING/RUNNING/FATAL have their own handlers.
    return False


def launch_groups(priorities: Mapping[str, int]) -> list[list[str]]:
    """Agents grouped by priority, lowest first (supervisord's order); names sorted in a group."""
    by_priority: dict[int, list[str]] = {}
    for name, priority in priorities.items():
        by_priority.setdefault(priority, []).append(name)
    return [sorted(by_priority[p]) for p in sorted(by_priority)]


# --- the boot: a priority group starts once the previous one is ready ---------------------------
# supervisord states in which a launched agent may still become ready; in any other (FATAL,
# EXITED, STOPPED, UNKNOWN: not a program) there is nothing left to wait for.
MAY_BECOME_READY = frozenset({"STARTING", "RUNNING", "BACKOFF"})


def started_since(beat: Mapping[str, Any], launched_at: float) -> bool:
    """Is ``beat`` (a heartbeat file) from an instance that started at or after ``launched_at``?

    An agent writes its first heartbeat only once it holds its lock, has its queue open and
    has requeued its predecessor's orphans (a standby, once it waits for the other host): that
    is ready. A heartbeat left by an earlier instance started before the launch."""
    started = beat.get("started_at")
    if isinstance(started, bool) or not isinstance(started, (int, float)):
        return False
    return started >= launched_at and beat.get("last_heartbeat") is not None


@dataclass(frozen=True)
class GroupWait:
    """Where the wait for one launched priority group stands."""

    done: bool                 # the next group may start
    not_ready: tuple[str, ...]  # still awaited; when done, the ones the wait gave up on
    timed_out: bool
    remaining: float           # seconds to the deadline (0 once done)


def group_wait(group: tuple[str, ...] | list[str], ready: AbstractSet[str],
               states: Mapping[str, str], not_started: AbstractSet[str],
               launched_at: float, now: float, timeout: float) -> GroupWait:
    """The readiness rule of the boot, for a group launched at ``launched_at``.

    The group is done when each member is ready, failed to start (``not_started``: the
    startProcess call failed) or sits in a supervisord state it cannot become ready from
    (``states``: the last states seen; an agent not seen yet counts as STARTING), or when
    ``timeout`` has passed: an agent that never gets ready (a lock it waits on, a handler
    that hangs at import) must not hold the rest of the team back for ever. A clock that went
    back past the launch ends the wait too, rather than stretch it by however far it went."""
    if not timeout >= 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    waiting = tuple(name for name in group
                    if name not in ready and name not in not_started
                    and states.get(name, "STARTING") in MAY_BECOME_READY)
    if not waiting:
        return GroupWait(True, (), False, 0.0)
    remaining = launched_at + timeout - now
    if remaining <= 0 or now < launched_at:
        return GroupWait(True, waiting, True, 0.0)
    return GroupWait(False, waiting, False, remaining)


def _ran_long_enough(state: RestartState, now: float, policy: RestartPolicy) -> bool:
    return state.running_since is not None and now - state.running_since >= policy.reset_after


def _pending(states: Mapping[str, RestartState]):
    return [(n, s) for n, s in states.items() if s.next_restart_at is not None and not s.given_up]


def _severity(status: str) -> int:
    if status not in _HEARTBEAT_SEVERITY:
        known = sorted(HEARTBEAT_STATUSES)
        raise ValueError(f"unknown heartbeat status {status!r}; expected one of {known}")
    return _HEARTBEAT_SEVERITY[status]


def _bare_state(state: str) -> str:
    return state.upper().removeprefix("PROCESS_STATE_")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _require_finite_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
