"""Liveness is not progress: the pure rules behind the agent's heartbeat thread.

*Alive* means the agent process still runs its loops: a frozen, deadlocked or SIGSTOPped
process stops heartbeating and the watchdog restarts it. *Progress* means the handler still
produces output (or calls ``ctx.progress()``); a long, silent task is a *stall*, warned about
(or cancelled) but never taken for a hang. Nothing here reads a clock or does I/O: the caller
passes ``now`` in, on the monotonic clock, as every time compared with it (a wall-clock step
is no time passing).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import events as kinds

STARTING, IDLE, WORKING, PAUSED, STOPPING, STOPPED = (
    "starting", "idle", "working", "paused", "stopping", "stopped")
STANDBY = "standby"  # the agent runs on another host; this instance takes over when it dies
STATES = frozenset({STARTING, IDLE, WORKING, PAUSED, STOPPING, STOPPED, STANDBY})

# A heartbeat's health (heartbeat_status); the unhealthy ones double as the event kinds the
# watchdog records for them.
FRESH = "fresh"
STALE, HUNG, MISSING = kinds.STALE, kinds.HUNG, kinds.MISSING
HEARTBEAT_STATUSES = frozenset({FRESH, STALE, HUNG, MISSING})

CHECK_EVERY = 1.0  # seconds between the heartbeat thread's checks: a cancel lands within ~1 s
# a database call running this long shows in the heartbeat as "waiting for database since T"
DB_WAIT_SHOWN = 1.0
MIN_LEASE_SECONDS = 3.0  # renewals run every lease/3 on a 1 s tick: below this they cannot keep up


def main_loop_alive(state: str, last_tick: float, now: float, limit: float,
                    db_since: float | None = None) -> bool:
    """May the heartbeat thread vouch for the process?

    While a handler runs, the main thread is inside it for as long as the task takes, so the
    thread's own life is the proof (the task's limits are timeout_seconds and stall_after).
    Otherwise the main loop ticks at least every second or so; silent past ``limit`` it is
    stuck, and the heartbeat stops so the watchdog finds the agent hung. A main loop inside a
    database call (since ``db_since``, None: it is not) waits for the database, which is no
    hang: every connection is bounded (keepalives, timeouts: queue/pg_session.py) and the call
    retried, so the heartbeat goes on and says what it waits for (database_wait).
    """
    if state not in STATES:
        raise ValueError(f"unknown agent state {state!r}; expected one of {sorted(STATES)}")
    return state == WORKING or db_since is not None or now - last_tick <= limit


def database_wait(db_since: float | None, trouble: bool, now: float) -> bool:
    """Does the agent wait for the database? A call under way for DB_WAIT_SHOWN or more (a
    partition, a slow disk under the server), or one that failed and is being retried."""
    return trouble or (db_since is not None and now - db_since >= DB_WAIT_SHOWN)


def heartbeat_status(last_heartbeat: float | None, now: float, stale_after: float) -> str:
    """The team's rule: fresh up to stale_after old, stale up to twice that, hung beyond;
    missing if never seen. The watchdog restarts a hung agent; on Kubernetes its liveness
    probe fails (``coffee-team agent probe``). A long task is never hung: the heartbeat
    thread beats while a handler runs (agent/pulse.py)."""
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


def ready_to_claim(state: str, waiting_for: str | None) -> bool:
    """Is the instance ready to claim work (Kubernetes' readiness, ``agent wait-ready``)? Its
    loop runs (idle, or working on a task) and it waits for neither the database nor disk."""
    return state in (IDLE, WORKING) and waiting_for is None


# What ``coffee-team agent probe NAME`` asks (Kubernetes' exec probes of an agent's container).
LIVE, STARTED, READY = "live", "started", "ready"


def probe_verdict(kind: str, row: dict[str, Any] | None, here: bool, now: float,
                  stale_after: float) -> tuple[bool, str]:
    """(passes, why) for one probe of an agent, from its heartbeat as a row (``heartbeat``,
    ``ready``, ``state``, ``waiting_for``, ``pid``, ``host``: the heartbeat file in its pod, or
    its ``agent_instances`` row; None: no instance yet) and ``here``: it is this pod's own
    process (its PID still that process). STARTED: this process wrote its first heartbeat. READY: it is ready
    to claim and its heartbeat is fresh. LIVE: not hung by the team's rule (heartbeat_status),
    and nothing else: a long task beats, a process that has not started here yet is the
    startup probe's to judge, never a reason to restart."""
    if kind not in (LIVE, STARTED, READY):
        raise ValueError(f"unknown probe {kind!r}")
    if row is None or not here:
        where = "no heartbeat of an instance yet" if row is None else \
            f"the heartbeat is PID {row['pid']}'s (on {row['host']}), not running here"
        return kind == LIVE, where
    beat = row.get("heartbeat")
    health = heartbeat_status(beat, now, stale_after) if beat is not None else MISSING
    age = "" if beat is None else f" ({max(0.0, now - beat):.0f}s ago)"
    if kind == STARTED:  # started, ready or not: waiting for the database is no failure
        return beat is not None, f"heartbeat {'written' + age if beat else 'not written yet'}"
    if kind == READY:
        ready = bool(row.get("ready")) and health == FRESH
        why = row.get("waiting_for") and f", waiting for {row['waiting_for']}" or ""
        return ready, f"{row.get('state')}{why}, heartbeat {health}{age}"
    if beat is None:
        return True, "no heartbeat yet (starting)"
    return health != HUNG, f"heartbeat {health}{age}"


def instance_gone(row: dict[str, Any] | None, now: float, stale_after: float) -> bool:
    """Has the process that held an agent gone (its ``agent_instances`` row: none, stopped, or
    hung by the team's rule), so that its tasks in progress are nobody's? Where the database
    says who holds the agent (PostgreSQL's advisory lock), that says it first."""
    if row is None or row.get("state") == STOPPED:
        return True
    last = row.get("heartbeat") or row.get("started_at")
    return heartbeat_status(last, now, stale_after) == HUNG


def due(last: float | None, now: float, every: float) -> bool:
    """Is a periodic action that last ran at ``last`` (None: never) due again?"""
    return last is None or now - last >= every


def lease_renew_every(lease_seconds: float) -> float:
    """Renew a third of the way through: two renewals can fail before the lease runs out."""
    if not lease_seconds >= MIN_LEASE_SECONDS:
        raise ValueError(f"lease_seconds must be at least {MIN_LEASE_SECONDS:g}, "
                         f"got {lease_seconds!r}")
    return lease_seconds / 3.0


# --- memory_limit_mb, enforced by the agent while a task runs (agent/memguard.py) ----------
MEMORY_OVERSHOOT = 1.5  # the process tree must never pass this × memory_limit_mb
# The fastest growth assumed between two readings when none faster was measured: a loop
# touching fresh pages (2 GB/s and more on one core of a current machine), with margin.
ALLOC_BURST_MB_S = 4000.0
MEMORY_SAMPLE_MIN, MEMORY_SAMPLE_MAX = 0.002, 1.0  # seconds between readings


def memory_next_sample(rss_mb: float, growth_mb_s: float, limit_mb: float) -> float:
    """Seconds until the tree's RSS must be read again: growing at the faster of its measured
    rate and ALLOC_BURST_MB_S, it would use at most half the headroom left below
    MEMORY_OVERSHOOT × the limit meanwhile. Far below the limit that is a few readings a
    second (each is a few small /proc reads); close to it, hundreds."""
    headroom = MEMORY_OVERSHOOT * limit_mb - rss_mb
    rate = max(growth_mb_s, ALLOC_BURST_MB_S)
    return min(MEMORY_SAMPLE_MAX, max(MEMORY_SAMPLE_MIN, headroom / rate / 2))


def memory_exceeded(rss_mb: float, limit_mb: float) -> str | None:
    """The failed task's reason when the tree is over the limit, else None (whole MB rounded
    up: 200.3 MB over a limit of 200 reads 201, not 200)."""
    if rss_mb <= limit_mb:
        return None
    return f"memory limit {limit_mb:g} MB exceeded: {math.ceil(rss_mb)} MB"


# An in-process (Python) handler is held where it allocates: while it runs, the agent's
# RLIMIT_DATA lets its writable memory (VmData) grow by this share of the limit less the
# tree's RSS at the start. VmData grows at least as fast as the RSS a handler adds by
# allocating, so the tree stays below it; the 0.1 × the limit left below MEMORY_OVERSHOOT is
# for what VmData does not count (file pages read, freed memory touched again).
MEMORY_CAP_SHARE = 1.4
MEMORY_CAP_FLOOR_MB = 16.0  # a handler that starts just under the limit still gets to run
ALLOCATION_RETRY = 0.1  # seconds: an agent thread refused memory under the cap tries again


def memory_data_cap(data_mb: float, rss_mb: float, limit_mb: float) -> float | None:
    """The soft RLIMIT_DATA (MB) while an in-process handler runs, from the agent's VmData
    and its tree's RSS before it: None (no cap) when the tree is over the limit already, which
    is not the task's doing (the watchdog's restart deals with it, as the sampler leaves it)."""
    if rss_mb > limit_mb:
        return None
    return data_mb + max(MEMORY_CAP_FLOOR_MB, MEMORY_CAP_SHARE * limit_mb - rss_mb)


def memory_refused(rss_mb: float, limit_mb: float) -> str:
    """The failed task's reason when the cap refused an in-process handler's allocation: as
    memory_exceeded when the tree is over the limit (the usual case), else what happened
    (memory mapped but not yet used counts against the cap, not against the limit)."""
    return memory_exceeded(rss_mb, limit_mb) or (
        f"memory limit {limit_mb:g} MB: an allocation was refused with the tree at "
        f"{math.ceil(rss_mb)} MB (a Python handler may map {MEMORY_CAP_SHARE:g} × the limit)")


# A NamedTuple, not a frozen dataclass: every agent imports this module, and a dataclass
# compiles its methods at import (~0.35 ms of CPU each; a NamedTuple ~0.05).
class Stall(NamedTuple):
    """stall_check's verdict on a running task's silence."""
    stalled: bool      # silent for longer than stall_after
    warn: bool         # first sight of this stall: one WARNING per stall
    silent_for: float  # seconds since the last output or progress


def stall_check(last_output_at: float, now: float, stall_after: float | None,
                warned_for: float | None) -> Stall:
    """Is the running handler stalled, and is that news?

    A stall is identified by the output time it started from (``last_output_at``); the caller
    remembers the one it warned about (``warned_for``), so new output ends the stall and a later
    silence is a new stall with its own warning.
    """
    silent_for = max(0.0, now - last_output_at)
    if stall_after is None:
        return Stall(False, False, silent_for)
    stalled = silent_for > stall_after
    return Stall(stalled, stalled and warned_for != last_output_at, silent_for)


def standby_text(standby_for: Any) -> str:
    """'standby: running on host a (PID 123)', from a heartbeat's ``standby_for``."""
    if not isinstance(standby_for, dict) or not standby_for.get("host"):
        return "standby: running elsewhere"
    pid = f" (PID {standby_for['pid']})" if standby_for.get("pid") else ""
    return f"standby: running on host {standby_for['host']}{pid}"
