"""Tasks sent after other tasks: the send side (parents locked, edges written, the child
waiting, failed or pending by taskstate.after_parents), what ``task show`` and ``queue list``
read, and the wait-for graph the watchdog's health check looks for cycles in.

The release itself is the database's (sql_schema's dependency trigger): it runs in the
transaction that finishes a parent, whichever statement does it. DependencyMixin is mixed
into MessageQueue; ``DependencyNeeds`` lists what it uses of the other parts.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from coffee_team.errors import DependencyError
from coffee_team.queue import sql, sql_work
from coffee_team.queue.db import SqlBackend
from coffee_team.taskstate import FINISHED, after_parents, check_on_failure

MAX_PARENTS = 100
# The ancestor walk of a cycle check stops here: a deeper chain is refused, not walked on.
MAX_CHAIN = 10_000


class DependentRow(tuple):
    """A message row (enqueue._add_rows' 9 insert parameters) sent after other tasks: the
    tuple is what is inserted; ``after`` and ``on_failure`` are applied once it has its id."""
    after: tuple[int, ...]
    on_failure: str


def dependent_row(row: tuple, after: Any, on_failure: Any) -> tuple:
    """``row`` carrying its parents, or ``row`` itself when ``after`` is empty; ContentError
    (DependencyError) for ids that are not task ids."""
    if after is None or (isinstance(after, (list, tuple)) and not after):
        return row
    if isinstance(after, (str, bytes)) or not isinstance(after, (list, tuple)) or any(
            isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in after):
        raise DependencyError(f"after must be a list of task ids, got {str(after)[:60]}")
    if len(after) > MAX_PARENTS:
        raise DependencyError(f"after names {len(after)} tasks (at most {MAX_PARENTS})")
    try:
        check_on_failure(on_failure)
    except ValueError as exc:
        raise DependencyError(str(exc)) from None
    dependent = DependentRow(row)
    dependent.after = tuple(sorted(set(after)))  # one lock order for every sender
    dependent.on_failure = on_failure
    return dependent


class DependencyNeeds(Protocol):
    """What DependencyMixin uses from the rest of MessageQueue: its state (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _tx_wake: Optional[Callable[[SqlBackend, Iterable[str]], None]]  # NOTIFY, or None


class DependencyMixin:
    """Needs DependencyNeeds from the rest of MessageQueue."""

    def _depend_locked(self, child: int, row: DependentRow, now: float) -> None:
        """Inside the send's write transaction, after the child's insert: lock each parent
        (so it cannot finish unseen), write the edges, set the child's state."""
        backend, parents = self.backend, []
        for parent in row.after:
            found = backend.execute(sql_work.LOCK_PARENT, (parent,)).fetchone()
            if found is None:
                raise DependencyError(f"after #{parent}: no such task (never sent, or "
                                      f"removed by cleanup)")
            parents.append((parent, found[0]))
        outcome = after_parents(parents, row.on_failure)
        run = 1 if row.on_failure == "run" else 0
        channel = None
        if self._tx_wake is not None:  # PostgreSQL: the trigger NOTIFYs the child's recipient
            from coffee_team.queue.wake import pg_channel
            channel = pg_channel(row[1])
        for parent, status in parents:
            backend.execute(sql_work.INSERT_DEPENDENCY,
                            (parent, child, 1 if status in FINISHED else 0, run, channel,
                             "after"))
        if outcome.status == "waiting":
            backend.execute(sql_work.SET_WAITING, (outcome.waiting_on, child))
        elif outcome.status == "failed":
            backend.execute(sql_work.SET_DEPENDENCY_FAILED, (now, outcome.error, child))

    def wait_on(self, task_id: int, agent: str, awaited: Sequence[int]) -> None:
        """Record that ``agent``'s running task waits on ``awaited`` (ctx.wait_for): the
        watchdog then sees a wait cycle it takes part in. Waiting on a task whose chain
        includes ``task_id`` (one sent after it) could never end: DependencyError."""
        ids = dependent_row((), list(awaited), "fail").after if awaited else ()
        with self.backend.write_transaction():
            if self.backend.execute(sql_work.HELD_BY, (task_id, agent)).fetchone() is None:
                raise DependencyError(f"task #{task_id} is not in progress for {agent}")
            self._refuse_cycle(task_id, ids, "the one that would wait")
            for parent in ids:
                found = self.backend.execute(sql_work.LOCK_PARENT, (parent,)).fetchone()
                if found is None:
                    raise DependencyError(f"wait for #{parent}: no such task")
                self.backend.execute(sql_work.INSERT_DEPENDENCY, (
                    parent, task_id, 1 if found[0] in FINISHED else 0, 1, None, "reply"))

    def finished(self, task_id: int) -> Optional[tuple[str, Any, Optional[str]]]:
        """(status, result, error) once ``task_id`` finished; None while it is not (or is
        gone: TaskNotFound from get_task tells)."""
        from coffee_team.queue.content import decode_stored
        row = self.backend.fetchone(sql_work.FINISHED_OF, (task_id,))
        if row is None or row[0] not in FINISHED:
            return None
        return row[0], decode_stored(row[1], "result"), row[2]

    def _refuse_cycle(self, existing: int, after: Sequence[int],
                      why: str = "this send's, by its dedupe_key") -> None:
        """A send deduplicated to the live task ``existing`` leaves it as it is; naming in
        ``after`` a task whose chain includes ``existing`` asks for a cycle: refused (and so
        is a running task's wait on a task sent after it)."""
        seen: set[int] = set()
        frontier = {task: task for task in after}  # task -> the id of ``after`` it came from
        while frontier:
            if existing in frontier:
                raise DependencyError(f"after #{frontier[existing]}: task #{existing} ({why})"
                                      f" is in its chain: a cycle")
            seen.update(frontier)
            if len(seen) > MAX_CHAIN:
                raise DependencyError(f"after: a chain of more than {MAX_CHAIN} tasks")
            ids = sorted(frontier)
            parents: dict[int, int] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for child, parent in self.backend.fetchall(sql_work.parents_of_many(
                        len(chunk)), chunk):
                    if parent not in seen:
                        parents.setdefault(parent, frontier[child])
            frontier = parents

    def _released_by(self, task_id: int) -> list[str]:
        """Recipients of the children ``task_id``'s end released (for the wake-up)."""
        return [r for (r,) in self.backend.fetchall(sql_work.RELEASED_BY, (task_id,))]

    def dependencies(self, task_id: int) -> dict[str, list[dict]]:
        """{"parents": [...], "children": [...]}, each {id, status, recipient, type, resolved,
        on_dependency_failure}; status None when cleanup removed that task."""
        def edges(statement: str) -> list[dict]:
            return [{"id": other, "status": status, "recipient": recipient, "type": kind,
                     "resolved": bool(resolved),
                     "on_dependency_failure": "run" if run else "fail"}
                    for other, status, recipient, kind, resolved, run
                    in self.backend.fetchall(statement, (task_id,))]
        return {"parents": edges(sql_work.PARENTS_OF), "children": edges(sql_work.CHILDREN_OF)}

    def waits_of(self, task_ids: Sequence[int]) -> dict[int, list[int]]:
        """{task id: the parents it still waits on} for those of ``task_ids`` that wait."""
        waits: dict[int, list[int]] = {}
        ids = list(task_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for child, parent in self.backend.fetchall(sql_work.waits_of_many(len(chunk)),
                                                       chunk):
                waits.setdefault(child, []).append(parent)
        return waits

    def wait_graph(self) -> dict[str, Any]:
        """What rules.waits.find_cycles reads: {"waits": [(task, recipient, status, awaited,
        its recipient, its status)], "running": {agent: [its tasks in progress]}} for every
        unfinished task that waits on an unfinished one."""
        waits = [tuple(row) for row in self.backend.fetchall(sql_work.WAIT_EDGES)]
        agents = sorted({row[1] for row in waits} | {row[4] for row in waits})
        running = {agent: [i for (i,) in self.backend.fetchall(sql_work.RUNNING_OF, (agent,))]
                   for agent in agents}
        return {"waits": waits, "running": running}

    def report_cycle_once(self, cycle: str, title: str, message: str,
                          agent: Optional[str] = None) -> bool:
        """One silent WARNING notification for ``cycle`` (a stable text naming it), the first
        time any watchdog reports it; False when it was reported before."""
        now = self.clock()
        with self.backend.write_transaction():
            if self.backend.execute(sql_work.REPORT_CYCLE, (cycle[:255], now)).fetchone() is None:
                return False
            self.backend.execute(sql.INSERT_NOTIFICATION,
                                 (now, "WARNING", agent, title, message, False, False)).fetchone()
        return True
