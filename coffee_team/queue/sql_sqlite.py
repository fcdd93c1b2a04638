"""SQLite's own forms of the hot path's statements (sql.py has the general ones), written for
SQLite only (no placeholder translation needed):

* one-statement sends (enqueue.py): an INSERT raises its recipient's pending bound by itself
  (sql_schema's tasks_count_insert trigger, schema 16), so one statement is a send's whole
  transaction;
* claims of one task (limit 1, what an agent claims): the task's id by a scalar subquery,
  which SQLite reads once, instead of ``id IN (...)``, which it materialises into a temporary
  table first;
* an agent's completion and next claim in one statement, its own transaction.
"""
from __future__ import annotations

from coffee_team.queue import sql

# One plain send: the row, unless the recipient's bound (raised by the trigger as the row goes
# in) is already at max_queue_size, which leaves it to the counting path (0 rows inserted).
# Parameters: sql.insert_tasks' 9, the recipient, max_queue_size.
SEND_ONE = (
    "INSERT INTO tasks (sender, recipient, type, content, priority, created_at, dedupe_key,"
    " run_after, traceparent, status, attempts) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0"
    " WHERE COALESCE((SELECT pending_bound FROM queue_depth WHERE recipient = ?), 0) < ?")
# A batch checks the bound first (its rows raise it as they go in).
PENDING_BOUND = "SELECT pending_bound FROM queue_depth WHERE recipient = ?"


def _one(statement: str) -> str:
    """``statement`` (sql.CLAIM or sql.CLAIM_READY) for exactly one task; same parameters."""
    many, one = " WHERE id IN (SELECT id FROM tasks", " WHERE id = (SELECT id FROM tasks"
    if many not in statement:  # pragma: no cover - sql.py changed its claim
        raise AssertionError("sql.CLAIM no longer selects its ids with IN (SELECT id ...)")
    return statement.replace(many, one).replace("{lock}", "")


CLAIM_ONE = _one(sql.CLAIM)
CLAIM_READY_ONE = _one(sql.CLAIM_READY)

# An agent's completion (sql.FINISH_BY: the task it holds) and its next claim
# (CLAIM_READY_ONE) in one UPDATE of both rows, its own transaction: no BEGIN, no COMMIT
# statement, one statement's setup. The two rows are told apart by their status before the
# update: the held task is in progress, the claimed one pending (so a held task requeued
# meanwhile and next in line is claimed, as the two statements in a row would do). Each
# subquery runs once, before any row changes; the guards (pause, an expired lease, the held
# task's own included) make it claim nothing, and the caller then claims as claim() does.
# The completion's triggers (its count, metrics row, released dependents) fire as for
# FINISH_BY. Parameters: (task id, agent, now, result, lease expiry). Rows: (status after,
# dependents, then ClaimedTask's fields); 'completed' is the completion, 'in_progress' the
# claim.
_HELD = "status = 'in_progress'"
COMPLETE_AND_CLAIM = (
    f"UPDATE tasks SET status = CASE WHEN {_HELD} THEN 'completed' ELSE 'in_progress' END,"
    f" completed_at = CASE WHEN {_HELD} THEN ?3 ELSE completed_at END,"
    f" result = CASE WHEN {_HELD} THEN ?4 ELSE result END,"
    f" error = CASE WHEN {_HELD} THEN NULL ELSE error END,"
    f" claimed_by = CASE WHEN {_HELD} THEN claimed_by ELSE ?2 END,"
    f" claimed_at = CASE WHEN {_HELD} THEN claimed_at ELSE ?3 END,"
    f" lease_expires_at = CASE WHEN {_HELD} THEN NULL ELSE ?5 END,"
    f" attempts = CASE WHEN {_HELD} THEN attempts ELSE attempts + 1 END"
    f" WHERE id = ?1 AND {_HELD} AND claimed_by = ?2"
    " OR id = (SELECT id FROM tasks WHERE recipient = ?2 AND status = 'pending'"
    " AND run_after <= ?3"
    " AND NOT EXISTS (SELECT 1 FROM agent_pause WHERE agent = ?2"
    " AND (paused_until IS NULL OR paused_until > ?3))"
    " AND NOT EXISTS (SELECT 1 FROM tasks AS held WHERE held.recipient = ?2"
    " AND held.status = 'in_progress' AND held.lease_expires_at < ?3)"
    " ORDER BY priority, id LIMIT 1)"
    " RETURNING status, dependents, id, sender, recipient, type, content, priority, attempts,"
    " created_at, lease_expires_at, traceparent")
