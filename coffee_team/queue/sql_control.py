"""Task control off sql.py's hot path, translated per call (``backend.execute``) instead of
prepared: tasks failed for good (failures.py: once per such task, and per status call), and
the pauses budgets and rate limits set (usage.py) and a paused agent's wait for their end
(core.py): once per stop, deferral or paused wait."""
from __future__ import annotations

from coffee_team.queue.sql import PAUSE_AGENT

# A budget's or rate limit's pause lengthens one in force: it never shortens one, nor ends a
# pause until resumed (NULL); a past one is replaced (it ends before any new one).
EXTEND_PAUSE = (PAUSE_AGENT + " WHERE agent_pause.paused_until IS NOT NULL"
                " AND agent_pause.paused_until < excluded.paused_until")
PAUSE_END = "SELECT paused_until FROM agent_pause WHERE agent = ?"  # NULL: until resumed

# The newest failure wins, whichever writer commits last.
SAVE_LAST_FAILURE = (
    "INSERT INTO agent_failure (agent, task_id, task_type, error, failed_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent) DO UPDATE SET task_id = excluded.task_id,"
    " task_type = excluded.task_type, error = excluded.error, failed_at = excluded.failed_at"
    " WHERE agent_failure.failed_at <= excluded.failed_at")
COUNT_FAILURE = (
    "INSERT INTO failure_count (agent, hour, n) VALUES (?, ?, 1)"
    " ON CONFLICT (agent, hour) DO UPDATE SET n = failure_count.n + 1")
PRUNE_FAILURE_COUNTS = "DELETE FROM failure_count WHERE agent = ? AND hour < ?"
# Per agent with a failure: the last one, and the failures counted since the given hour
# (at most 24 primary-key rows each).
RECENT_FAILURES = (
    "SELECT f.agent, f.task_id, f.task_type, f.error, f.failed_at,"
    " (SELECT COALESCE(SUM(c.n), 0) FROM failure_count c WHERE c.agent = f.agent"
    " AND c.hour >= ?) FROM agent_failure f")
