"""The statements of work over time: dependencies between tasks (dependencies.py), schedule
slots (schedules.py) and the wait-for graph's edges. Written with ``?`` placeholders like
``sql``'s, run through ``backend.execute`` (off the hot path: not prepared); the dependency
trigger itself is schema (``sql_schema``).
"""
from __future__ import annotations

from coffee_team.taskstate import FINISHED

_FINISHED = "({})".format(", ".join(f"'{s}'" for s in FINISHED))

# --- dependencies (dependencies.py) ---------------------------------------------------------

# A parent locked for the send (its row lock on PostgreSQL): it cannot finish between this
# read and the child's edge, so its trigger either sees the edge or the send sees it finished.
LOCK_PARENT = "UPDATE tasks SET dependents = dependents + 1 WHERE id = ? RETURNING status"
INSERT_DEPENDENCY = ("INSERT INTO task_deps (parent, child, resolved, run_on_failure, channel,"
                     " kind) VALUES (?, ?, ?, ?, ?, ?)")
# A running handler's wait (ctx.wait_for): the task must be this agent's, in progress.
HELD_BY = "SELECT 1 FROM tasks WHERE id = ? AND status = 'in_progress' AND claimed_by = ?"
FINISHED_OF = "SELECT status, result, error FROM tasks WHERE id = ?"
SET_WAITING = ("UPDATE tasks SET status = 'waiting', waiting_on = ? WHERE id = ?"
               " AND status = 'pending'")
SET_DEPENDENCY_FAILED = ("UPDATE tasks SET status = 'failed', completed_at = ?, error = ?"
                         " WHERE id = ? AND status = 'pending'")
# (the other end's id, its status, recipient and type; NULL when cleanup removed it, resolved,
# run_on_failure) for ``task show``.
PARENTS_OF = ("SELECT d.parent, t.status, t.recipient, t.type, d.resolved, d.run_on_failure"
              " FROM task_deps d LEFT JOIN tasks t ON t.id = d.parent WHERE d.child = ?"
              " ORDER BY d.parent")
CHILDREN_OF = ("SELECT d.child, t.status, t.recipient, t.type, d.resolved, d.run_on_failure"
               " FROM task_deps d LEFT JOIN tasks t ON t.id = d.child WHERE d.parent = ?"
               " ORDER BY d.child")
# Recipients of children a finished parent released (SQLite wakes them after commit;
# PostgreSQL's trigger NOTIFYs them).
RELEASED_BY = ("SELECT DISTINCT c.recipient FROM task_deps d JOIN tasks c ON c.id = d.child"
               " WHERE d.parent = ? AND c.status = 'pending'")
DEPENDENTS = "SELECT dependents FROM tasks WHERE id = ?"
# Edges of tasks cleanup removes (a finished child needs them no more).
DELETE_DEPENDENCIES_BEFORE = (
    f"DELETE FROM task_deps WHERE child IN (SELECT id FROM tasks WHERE status IN {_FINISHED}"
    " AND completed_at < ?)")

# --- the wait-for graph (dependencies.py; the watchdog's health check) ----------------------

# Tasks that wait on unfinished ones: (task, its recipient, its status, the task it waits on,
# that one's recipient and status); a waiting task on its parents, a running one on what its
# handler waits for. A scan of the unresolved edges only.
WAIT_EDGES = (
    "SELECT c.id, c.recipient, c.status, p.id, p.recipient, p.status FROM task_deps d"
    " JOIN tasks c ON c.id = d.child JOIN tasks p ON p.id = d.parent"
    " WHERE d.resolved = 0 AND ((d.kind = 'after' AND c.status = 'waiting')"
    " OR (d.kind = 'reply' AND c.status = 'in_progress'))"
    f" AND p.status NOT IN {_FINISHED}")
RUNNING_OF = "SELECT id FROM tasks WHERE recipient = ? AND status = 'in_progress'"
REPORT_CYCLE = ("INSERT INTO wait_cycles (cycle, reported_at) VALUES (?, ?)"
                " ON CONFLICT (cycle) DO NOTHING RETURNING cycle")

# --- schedules (schedules.py) ---------------------------------------------------------------

LAST_SLOTS = "SELECT agent, entry, MAX(slot) FROM schedule_runs GROUP BY agent, entry"
# The slot's key: whoever inserts it sends the slot's task, in the same transaction.
CLAIM_SLOT = ("INSERT INTO schedule_runs (agent, entry, slot, recorded_at, task_id)"
              " VALUES (?, ?, ?, ?, NULL) ON CONFLICT (agent, entry, slot) DO NOTHING"
              " RETURNING slot")
SET_SLOT_TASK = "UPDATE schedule_runs SET task_id = ? WHERE agent = ? AND entry = ? AND slot = ?"
# Old slots go, but each entry keeps its latest (what catch-up compares with).
DELETE_SLOTS_BEFORE = (
    "DELETE FROM schedule_runs WHERE slot < ? AND EXISTS (SELECT 1 FROM schedule_runs AS newer"
    " WHERE newer.agent = schedule_runs.agent AND newer.entry = schedule_runs.entry"
    " AND newer.slot > schedule_runs.slot)")


def parents_of_many(count: int) -> str:
    """(child, parent) of ``count`` tasks (the ancestor walk of a send's cycle check)."""
    return f"SELECT child, parent FROM task_deps WHERE child IN ({', '.join('?' * count)})"


def waits_of_many(count: int) -> str:
    """(child, parent) unresolved edges of ``count`` tasks (what listed waiting tasks wait on)."""
    return ("SELECT child, parent FROM task_deps WHERE resolved = 0"
            f" AND child IN ({', '.join('?' * count)}) ORDER BY child, parent")
