"""The journal's words: the kinds of rows in the events journal (one name each, and the sets
views are built from) and the levels of notifications.

Written by the watchdog, the agent runtime and the ``coffee`` rpcinterface; read by
``coffee-team history``/``trace``, ``coffee.getRestartHistory`` and the tests. Plain strings
(stored as they are in the ``events.kind`` and ``notifications.level`` columns), grouped here
so a new one is added once. A leaf: the queue and the team file both use it.
"""
from __future__ import annotations

# Notification levels, least urgent first (``team.notify`` targets take a minimum level;
# tests/test_notify.py keeps the notifications table's CHECK and notify's Apprise types in step).
NOTIFICATION_LEVELS = ("INFO", "WARNING", "CRITICAL")


def levels_from(level: str) -> tuple[str, ...]:
    """The levels a target whose minimum is ``level`` receives: it and the more urgent ones
    (ValueError for a level that is none)."""
    return NOTIFICATION_LEVELS[NOTIFICATION_LEVELS.index(level):]


# The process lifecycle, as supervisord reports it to the watchdog.
LAUNCHED = "launched"              # started in priority order at boot
RUNNING = "running"
EXITED = "exited"
BACKOFF = "backoff"                # died while starting; supervisord retries
STOPPED = "stopped"
START_FAILED = "start_failed"
GROUP_READY = "group_ready"        # a priority group of the boot is ready; the next one starts
GROUP_NOT_READY = "group_not_ready"  # ... or its wait timed out; detail: not_ready

# The watchdog's restart decisions.
CRASH = "crash"
RESTART_SCHEDULED = "restart_scheduled"
RESTARTED = "restarted"
GIVEN_UP = "given_up"
MANUAL_RESTART = "manual_restart"  # coffee.restartAgent / coffee-team restart
TOOK_OVER = "took_over"            # a standby took the agent over from another host's instance

# Health findings.
STALE = "stale"
MISSING = "missing"
HUNG = "hung"
HIGH_CPU = "high_cpu"
HIGH_MEMORY = "high_memory"
MEMORY_LIMIT = "memory_limit"
STALLED = "stalled"                # a running handler printed nothing for stall_after
CLOCK_STEP = "clock_step"          # the wall clock jumped; detail: step (s, + forward), brought_back
WATCHDOG_PAUSED = "watchdog_paused"  # the watchdog did not look for a while (SIGSTOP, a
#                                      supervisord that did not answer); detail: seconds
MEMORY_TREND = "memory_trend"      # RSS growth projected past memory_limit_mb: restart between
#                                    tasks; detail: rss_mb, limit_mb, reaches_in
WAIT_CYCLE = "wait_cycle"          # agents waiting on each other's tasks; detail: cycle
SET_ASIDE = "set_aside"            # a stopped run's uncommitted edits stashed; detail: stash

# Schedules (the watchdog sends each slot's task once).
SCHEDULED = "scheduled"            # detail: entry, slot, task_id, late (seconds)
SCHEDULE_SKIPPED = "schedule_skipped"  # a slot seen late with catch_up none, or not sendable

# The queue.
REQUEUED = "requeued"              # a dead agent's in-progress tasks went back to pending

# The review and merge queue (queue/merges.py; the merger runs in the watchdog).
REVIEW_REQUESTED = "review_requested"  # a task left commits; detail: item, base, head
REVIEW_DECIDED = "review_decided"      # detail: item, approved, by
MERGED = "merged"                      # detail: item, target, head (None: it was there already)
MERGE_FAILED = "merge_failed"          # detail: item, reason
WORKTREE_UPDATED = "worktree_updated"  # an agent's worktree brought onto the target's head
WORKTREE_NOT_UPDATED = "worktree_not_updated"  # ... and when it was left as it was: why

# Team changes (coffee-team apply).
TEAM_APPLIED = "team_applied"      # detail: added, removed, changed
TEAM_RELOADED = "team_reloaded"    # the watchdog uses the new team file
TEAM_RELOAD_FAILED = "team_reload_failed"
REMOVED = "removed"                # an agent left the team; detail: failed_tasks

# What an agent's restart history shows (coffee.getRestartHistory, coffee-team history).
RESTART_HISTORY = (LAUNCHED, RUNNING, EXITED, BACKOFF, STOPPED, CRASH, RESTART_SCHEDULED,
                   RESTARTED, GIVEN_UP, HUNG, MEMORY_LIMIT, MEMORY_TREND, START_FAILED,
                   MANUAL_RESTART, TOOK_OVER)


def lifecycle_summary(events: list[dict]) -> dict[str, dict]:
    """{agent: {crashes, restarts, manual_restarts, given_up, last_crash}} over ``events``
    (journal rows, oldest first): what the watchdog recorded, as ``coffee-team history`` and
    the dashboard count it. A person's restart clears the count toward give-up, not these."""
    summary: dict[str, dict] = {}
    for e in events:
        row = summary.setdefault(e["agent"] or "-", {"crashes": 0, "restarts": 0,
                                                     "manual_restarts": 0, "given_up": False,
                                                     "last_crash": None})
        if e["kind"] == CRASH:
            row["crashes"] += 1
            row["last_crash"] = (e.get("detail") or {}).get("reason")
        elif e["kind"] == RESTARTED:
            row["restarts"] += 1
        elif e["kind"] == MANUAL_RESTART:
            row["manual_restarts"] += 1
        elif e["kind"] == GIVEN_UP:
            row["given_up"] = True
    return summary


# Ends of a RUNNING span on a timeline.
LIFETIME_ENDS = frozenset({EXITED, STOPPED, BACKOFF})
# Points on a timeline.
INSTANTS = frozenset({CRASH, RESTARTED, RESTART_SCHEDULED, GIVEN_UP, STALE, MISSING, HUNG,
                      HIGH_CPU, HIGH_MEMORY, MEMORY_LIMIT, MEMORY_TREND, REQUEUED, STALLED,
                      TOOK_OVER, SCHEDULED, SCHEDULE_SKIPPED, WAIT_CYCLE})
