"""What the queue's own SQL needs to know of the schema, without peewee: models.py declares the
tables (and imports these), but only migrations load it (an agent does not).
"""
from __future__ import annotations

from coffee_team.taskstate import (APPROVAL_STATES, LIVE_STATES, MERGE_STATES, QUEUED_STATES,
                                   STATES)

# 2: run_after, failures, errors, escalated_at and the 'cancelled' state on tasks;
# agent_pause (migrate.py upgrades a version-1 database in place).
# 3: task_counts, kept by triggers (queue stats without scanning the tasks table).
# 4: restart_state keyed by (agent, host): on a shared PostgreSQL each host keeps its own.
# 5: notify_targets and deliveries (new tables only: create_tables adds them).
# 6: llm_usage, budget_stop, agent_session (new tables only: create_tables adds them).
# 7: tasks.traceparent, the W3C trace context of the code that sent the task (otel.py).
# 8: metrics without its timestamp index on SQLite (kept on PostgreSQL).
# 9: llm_usage.estimated (runs recorded as they go) and budget_allowance (resume --raise).
# 10: the 'waiting' state, tasks.waiting_on/dependents, task_deps and its trigger (send after
#    other tasks); schedule_runs (a cron slot sent once); wait_cycles (reported once).
# 11: approvals (a person's decisions: tool calls, tasks of approve_before types), the
#     'awaiting_approval' task state (SQLite rebuilds tasks for the CHECK) and tasks.sent_from.
# 12: agent_failure and failure_count (tasks that failed for good, for status); llm_session
#     (keyed by agent and session key) replaces agent_session, whose rows get the key ''.
# 13: merge_items, the review and merge queue (a new table only: create_tables adds it).
# 14: unused (reserved for ident, which came after 16: see 17).
# 15: agent_instances, which process (host or pod, PID) holds each agent, its heartbeat and
#     readiness (a new table only: create_tables adds it).
# 16: SQLite's count and dependency triggers fire on completed_at (not on a claim), the count
#     is one upsert and a completion's metrics row is written by the completion's statement.
# 17: database_identity, the database's id (written at creation, or by the upgrade of an older
#     one): a process tells the database it opened from another at the same path.
# 18: SQLite's completions (in_progress -> completed) count and write their metrics row by a
#     trigger of their own, the other ends by tasks_count_update (no change on PostgreSQL).
SCHEMA_VERSION = 18

STATUS_CHECK = "CHECK (status IN ({}))".format(", ".join(f"'{s}'" for s in STATES))
# The states in which a task holds its dedupe_key (taskstate.LIVE_STATES), as SQL.
LIVE_STATUSES = "({})".format(", ".join(f"'{s}'" for s in LIVE_STATES))
QUEUED_STATUSES = "({})".format(", ".join(f"'{s}'" for s in QUEUED_STATES))
APPROVAL_STATUS_CHECK = "CHECK (status IN ({}))".format(
    ", ".join(f"'{s}'" for s in APPROVAL_STATES))
MERGE_STATE_CHECK = "CHECK (state IN ({}))".format(", ".join(f"'{s}'" for s in MERGE_STATES))

# The restart_state columns besides its key (agent, host) and their defaults, as
# models.RestartState declares them (tests/unit/test_policy.py keeps the two in step).
RESTART_FIELDS = {"attempts": 0, "next_restart_at": None, "given_up": False,
                  "running_since": None, "last_crash_at": None, "hang_restart": False}
RESTART_BOOL_FIELDS = ("given_up", "hang_restart")
