"""Heartbeat, resource, crash and boot rules of the watchdog, as pure functions (restarts: ``coffee_team.restarts``).

Nothing here reads the clock, the database or supervisord: the caller passes ``now`` (epoch
seconds; ``mono``, its monotonic clock, where a time span is judged) and the stored state in,
and gets the new state and a decision back. That keeps every rule testable to the exact
boundary without sleeping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import AbstractSet, Any, Iterable, Mapping

from coffee_team import events as kinds
from coffee_team.clock import WALL_STEP
# The heartbeat rule (fresh, stale, hung, missing) is liveness.py's: the agents' liveness
# probe on Kubernetes judges by the same one.
from coffee_team.liveness import (FRESH, HEARTBEAT_STATUSES, HUNG, MISSING,  # noqa: F401
                                  STALE, heartbeat_status)

# A hung agent is worse than a stale one, so stale -> hung warns again; missing ranks with stale
# because an agent that never reported is as suspicious as one that stopped reporting.
_HEARTBEAT_SEVERITY = {FRESH: 0, STALE: 1, MISSING: 1, HUNG: 2}

MEMORY_LIMIT_CHECKS_IN_A_ROW = 2


@dataclass(frozen=True)
class BeatSeen:
    """What the watchdog knows of one agent's heartbeat, on its own monotonic clock.

    ``pid`` and ``stamp`` (the file's ``last_heartbeat``, None without one) identify what was
    read; ``since`` is when, on the watchdog's monotonic clock, this instance's heartbeat last
    changed: the silence counts from there. ``read_at`` is the last read (after the watchdog
    was away: the look that found it, ``unpaused``).
    """

    pid: int
    stamp: float | None
    since: float
    read_at: float


def observe_beat(seen: BeatSeen | None, pid: int, stamp: float | None,
                 started_at: float | None, now: float, mono: float,
                 last_step: tuple[float, float, float] | None) -> BeatSeen:
    """The heartbeat read at ``now`` (wall) / ``mono`` (monotonic): unchanged, its silence
    keeps counting from ``seen.since``; new, it counts from when it was written
    (``written_at``; from ``started_at``, supervisord's start of the process, if the file is
    older: it was written by the instance before). So a wall clock that jumps forward ages
    no heartbeat, and one that jumps back cannot make a frozen agent's heartbeat young again:
    its stamp no longer changes, and the monotonic clock goes on counting."""
    if seen is not None and seen.pid == pid and seen.stamp == stamp:
        return replace(seen, read_at=mono)
    if stamp is None:
        return BeatSeen(pid, stamp, mono, mono)
    stamped = stamp if started_at is None else max(stamp, started_at)
    not_before = seen.read_at if seen is not None and seen.pid == pid else -math.inf
    return BeatSeen(pid, stamp, written_at(stamped, now, mono, not_before, last_step), mono)


def written_at(stamp: float, now: float, mono: float, not_before: float,
               last_step: tuple[float, float, float] | None) -> float:
    """The monotonic moment something stamped ``stamp`` on the wall clock was written, read
    at ``now``/``mono``: the two clocks differ by ``now - mono``, except before the last
    wall-clock step. ``last_step`` is (the look before it, the look that saw it, the
    difference before it): a stamp could be from after the step only if the clock of now puts
    it after the look before, and from before it only if the clock before puts it before the
    look that saw it. A moment is possible from ``not_before`` (the last read, which saw
    another stamp) to now (up to a step too small to be seen, WALL_STEP, later); of the
    possible ones the latest is taken, and if none is (the writer's clock is not the one the
    watchdog knows: it stepped unseen, or it is another process's), now: an agent is never
    made older than the monotonic clock proves."""
    on_now = stamp - (now - mono)
    candidates = [on_now]
    if last_step is not None:
        after, seen, offset_before = last_step
        before = stamp - offset_before
        # (within a millisecond: epoch seconds in a float carry about a microsecond)
        candidates = [w for w, possible in ((on_now, on_now >= after - 1e-3),
                                             (before, before <= seen + 1e-3)) if possible]
    possible = [w for w in candidates if not_before - 1e-3 <= w <= mono + WALL_STEP]
    return min(mono, max(possible, default=mono))


# A look at the heartbeats this much later than the health checks' cadence means the watchdog
# was not looking: its process stopped (SIGSTOP, a starved machine), or it waited on a
# supervisord that did not answer (stopped itself: no events, no TICKs, no process info).
PAUSE_SLACK = WALL_STEP


def unwatched(looked_at: float | None, now: float, every: float,
              slack: float = PAUSE_SLACK) -> float:
    """How long the watchdog was away, found at a look at ``now`` (monotonic): the whole
    span since its last look (``looked_at``) when that is longer than the cadence it keeps
    (``every``, health_check_interval) plus ``slack``; 0.0 otherwise, and at the first look.

    Nobody watched the heartbeats meanwhile, so that silence counts for no agent
    (``unpaused``): an agent that stopped beating is hung after twice stale_after of silence
    the watchdog did watch, however long it was away."""
    if looked_at is None:
        return 0.0
    gap = now - looked_at
    return gap if gap > every + slack else 0.0


def unpaused(seen: BeatSeen, gap: float, resumed: float) -> BeatSeen:
    """The heartbeat as if the ``gap`` seconds the watchdog was away, up to the look at
    ``resumed`` that found them, had not passed: a silence goes on from where the watchdog
    left it (``since`` moves by the gap), and a heartbeat that changed meanwhile counts from
    ``resumed`` at the earliest (``read_at``, observe_beat's ``not_before``), as nobody saw
    when it was written. So nothing is older than the time the watchdog watched it."""
    if not gap > 0:
        return seen
    return replace(seen, since=seen.since + gap, read_at=max(seen.read_at, resumed))


def heartbeat_next_look(last_heartbeat: float | None, status: str,
                        stale_after: float) -> float | None:
    """When the health check must read an agent's heartbeat again (None: at every check).

    ``last_heartbeat`` is when the watchdog's clock last saw it change (BeatSeen.since). Only
    the agent writes a newer heartbeat, so nothing but time turns a fresh one stale, and not
    before ``last_heartbeat + stale_after``; a full disk only postpones that
    (``heartbeat_counted_from``), so looking then is never late. Any other status is read at
    every check, so a recovery, a new episode or an escalation to hung is seen at once.
    """
    if status == FRESH and last_heartbeat is not None:
        return last_heartbeat + stale_after
    return None


def heartbeat_counted_from(last_heartbeat: float | None, disk_full_at: float | None,
                           frozen: bool) -> float | None:
    """When a heartbeat's age starts counting, for ``heartbeat_status`` (all on one clock).

    A full disk refuses heartbeat files: while it was full (last seen full at
    ``disk_full_at``), the heartbeat of a process that still runs does not age, so waiting for
    disk is never taken for a hang, and the age restarts from when space was last missing. A
    stopped (frozen) process has no such excuse.
    """
    if last_heartbeat is None:
        return None
    if frozen or disk_full_at is None:
        return last_heartbeat
    return max(last_heartbeat, disk_full_at)


def escalation_held_until(held_until: float | None, step: float, mono: float,
                          escalate_after: float | None) -> float | None:
    """After the wall clock jumped forward by ``step``, every pending task looks ``step``
    seconds older than it is: escalating them would be the jump's doing. So escalation waits
    ``escalate_after`` on the monotonic clock (then a task still pending did wait that long);
    a jump back makes tasks look younger: they escalate up to the step late, never early."""
    if step <= 0 or not escalate_after:
        return held_until
    return max(held_until or -math.inf, mono + escalate_after)


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


# --- the boot: a priority group starts once the previous one is ready ---------------------------
# supervisord states in which a launched agent may still become ready; in any other (FATAL,
# EXITED, STOPPED, UNKNOWN: not a program) there is nothing left to wait for.
MAY_BECOME_READY = frozenset({"STARTING", "RUNNING", "BACKOFF"})


def is_boot(supervisor_state: str, infos: Iterable[Mapping[str, Any]],
            agents: AbstractSet[str]) -> bool:
    """Is this supervisord's boot, with the team still to launch? RUNNING, and none of the
    team's agents started since it (re)loaded (``start`` is 0 until a program's first spawn).

    supervisord sends events only to a listener that is RUNNING (``startsecs`` after its
    spawn), so its own SUPERVISOR_STATE_CHANGE_RUNNING reaches the watchdog a second late; a
    watchdog that sees the boot this way launches at once. One restarted later (an agent has
    been started) waits for that event as before, which does not come again."""
    if supervisor_state != "RUNNING":
        return False
    ours = [i for i in infos if i.get("name") in agents and i.get("group") == i.get("name")]
    return bool(ours) and all(not i.get("start") for i in ours)


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


def _severity(status: str) -> int:
    if status not in _HEARTBEAT_SEVERITY:
        known = sorted(HEARTBEAT_STATUSES)
        raise ValueError(f"unknown heartbeat status {status!r}; expected one of {known}")
    return _HEARTBEAT_SEVERITY[status]


def _bare_state(state: str) -> str:
    return state.upper().removeprefix("PROCESS_STATE_")
