"""Which process holds each agent (``agent_instances``, schema 15): the agent writes its own
row (at start, and with its heartbeats: the last one, at a clean stop, says "stopped");
``coffee-team agent probe``, ``agent wait-ready``, ``status --k8s`` and the control plane
read it. On Kubernetes this is the only
heartbeat there is across pods: the heartbeat file stays in the pod. Agents write rows on
PostgreSQL only: a SQLite team runs on one host, where the readers take the heartbeat files
(heartbeat.instances_of).

A row is keyed by agent: one instance holds an agent at a time (its lock). Writes name the
instance (host, PID) they come from, so a process that lost the agent never overwrites its
successor's row. ``restarts`` counts the instances on one host that followed one which did
not stop cleanly (killed, crashed, hung); an instance on another host starts it at 0.

InstancesMixin is mixed into MessageQueue; ``InstancesNeeds`` lists what it uses.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from coffee_team.queue.db import SqlBackend

COLUMNS = ("agent", "host", "pid", "proc_start", "started_at", "heartbeat", "ready", "state",
           "task_id", "task_type", "task_started_at", "waiting_for", "restarts")
START = (
    "INSERT INTO agent_instances (agent, host, pid, proc_start, started_at, heartbeat, ready,"
    " state, task_id, task_type, task_started_at, waiting_for, restarts)"
    " VALUES (?, ?, ?, ?, ?, NULL, ?, 'starting', NULL, NULL, NULL, NULL, 0)"
    " ON CONFLICT (agent) DO UPDATE SET restarts = CASE"
    " WHEN agent_instances.host <> excluded.host THEN 0"
    " WHEN agent_instances.state = 'stopped' THEN agent_instances.restarts"
    " ELSE agent_instances.restarts + 1 END,"
    " host = excluded.host, pid = excluded.pid, proc_start = excluded.proc_start,"
    " started_at = excluded.started_at, heartbeat = NULL, ready = excluded.ready,"
    " state = 'starting', task_id = NULL, task_type = NULL, task_started_at = NULL,"
    " waiting_for = NULL"
    " RETURNING restarts")
BEAT = ("UPDATE agent_instances SET heartbeat = ?, ready = ?, state = ?, task_id = ?,"
        " task_type = ?, task_started_at = ?, waiting_for = ?"
        " WHERE agent = ? AND host = ? AND pid = ?")
READ = f"SELECT {', '.join(COLUMNS)} FROM agent_instances"
HOLDS_WORK = "SELECT 1 FROM tasks WHERE recipient = ? AND status = 'in_progress' LIMIT 1"


class InstancesNeeds(Protocol):
    """What InstancesMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend
    clock: Callable[[], float]


def _row(values: tuple) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values))
    row["ready"] = bool(row["ready"])  # SQLite: 0/1
    return row


class InstancesMixin:
    """Needs InstancesNeeds from the rest of MessageQueue."""

    def instance_started(self, agent: str, host: str, pid: int,
                         proc_start: Optional[float]) -> int:
        """This process now holds ``agent`` (not ready, no heartbeat yet); its restarts."""
        with self.backend.write_transaction():
            (restarts,) = self.backend.fetchone(
                START, (agent, host, pid, proc_start, self.clock(), False))
        return int(restarts)

    def instance_beat(self, agent: str, host: str, pid: int, *, heartbeat: float, ready: bool,
                      state: str, task_id: Optional[int] = None,
                      task_type: Optional[str] = None, task_started_at: Optional[float] = None,
                      waiting_for: Optional[str] = None) -> bool:
        """One heartbeat of the instance; False if the row is another instance's now."""
        with self.backend.write_transaction():
            cursor = self.backend.execute(BEAT, (heartbeat, ready, state, task_id, task_type,
                                                 task_started_at, waiting_for, agent, host,
                                                 pid))
            return bool(cursor.rowcount)

    def instances(self) -> dict[str, dict[str, Any]]:
        """Every agent's row, by agent (an agent that never started has none)."""
        return {row["agent"]: row for row in map(_row, self.backend.fetchall(READ))}

    def instance(self, agent: str) -> Optional[dict[str, Any]]:
        found = self.backend.fetchone(READ + " WHERE agent = ?", (agent,))
        return None if found is None else _row(found)

    def holds_work(self, agent: str) -> bool:
        """Has ``agent`` a task in progress? (one probe of the claim index)"""
        return self.backend.fetchone(HOLDS_WORK, (agent,)) is not None
