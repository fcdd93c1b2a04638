"""Task control: handler failures with retries, cancel, retry, pause, escalation.

ControlMixin is mixed into MessageQueue; ``ControlNeeds`` lists what it uses of the other
parts. The rules (which transition is allowed,
the backoff schedule) are coffee_team.taskstate's pure functions; this module only reads a
row, applies a rule and writes the outcome guarded by what it read, in one write transaction,
so a task is always in exactly one state and a racing writer makes the guard miss instead of
being overwritten.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional, Protocol

from coffee_team.clock import WALL_STEP
from coffee_team.errors import TaskNotFound, TaskStateError
from coffee_team.queue.content import check_name
from coffee_team.queue.db import SqlBackend
from coffee_team.taskstate import NO_RETRY, QUEUED_STATES, RetryPolicy, TransitionError
from coffee_team.taskstate import after_failure
from coffee_team.taskstate import escalated_priority, transition


class ControlNeeds(Protocol):
    """What ControlMixin uses from the rest of MessageQueue: its state and wake-ups
    (core.py), backpressure (enqueue.py), the task listing (reporting.py) and the notice of
    a task failed for good (failures.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once
    _wake: Any  # wakes waiters after commit (wake.WakeSockets / PgWake), or None
    _tx_wake: Optional[Callable[[SqlBackend, Iterable[str]], None]]  # NOTIFY, or None
    retry: dict[str, RetryPolicy]
    jitter: Callable[[], float]
    escalate_after: Optional[float]

    def _reserve(self, rows: list[tuple], inserting: bool = False) -> None: ...
    def _released_by(self, task_id: int) -> list[str]: ...
    def _withdraw_task_approval(self, task_id: int, why: str) -> None: ...
    def _failed_for_good(self, agent: str, task_id: int, task_type: str,
                         error: Optional[str], now: float) -> None: ...
    def list_tasks(self, status: Optional[str] = None, agent: Optional[str] = None,
                   limit: int = 100, task_id: Optional[int] = None,
                   before_id: Optional[int] = None) -> list[dict]: ...


class ControlMixin:
    """Needs ControlNeeds from the rest of MessageQueue."""

    # -- handler failures -------------------------------------------------
    def mark_failed(self, task_id: int, error: str, *, agent: Optional[str] = None,
                    permanent: bool = False) -> bool:
        """Record a failed attempt: back to pending after a backoff while the recipient's
        retry policy allows (never for a ``permanent`` error), else failed. Every attempt's
        error is kept in ``errors``. False if the task is not in progress (for ``agent``):
        e.g. cancelled meanwhile."""
        error, now, backend = str(error), self.clock(), self.backend
        with backend.write_transaction():
            row = backend.run(self._sql.FAILING_TASK, (task_id,)).fetchone()
            if row is None or row[4] != "in_progress" or (agent is not None and row[1] != agent):
                return False
            recipient, holder, task_type, claimed_at, _, failures, errors = row
            outcome = after_failure(self.retry.get(recipient, NO_RETRY), failures, error, now,
                                    self.jitter(), permanent)
            history = json.loads(errors) if errors else []
            history.append({"attempt": outcome.failures, "at": now, "error": error})
            history_json = json.dumps(history)
            if outcome.status == "pending":
                statement, first = self._sql.FAIL_TO_RETRY, outcome.run_after
            else:
                statement, first = self._sql.FAIL_FINAL, now
            changed = backend.run(statement, (
                first, outcome.failures, history_json, error, task_id, holder,
                failures)).rowcount
            if not changed:
                return False
            if outcome.status == "pending":  # pending again: the depth bound must cover it
                backend.run(self._sql.ADD_PENDING, (recipient, 1)).fetchone()
            else:
                self._failed_for_good(recipient, task_id, task_type, error, now)
            backend.run(self._sql.ADD_METRIC, (holder, task_type,
                                                  max(0.0, (now - claimed_at) * 1000.0), now))
        if outcome.status == "failed":
            self._wake_released(task_id)  # tasks sent after it with on_dependency_failure run
        return True

    # -- control ----------------------------------------------------------
    def get_task(self, task_id: int) -> dict:
        """Everything about one task (content, result, errors, attempts, timings, holder)."""
        rows = self.list_tasks(task_id=task_id)
        if not rows:
            raise TaskNotFound(f"no task with id {task_id}")
        return rows[0]

    def cancel_task(self, task_id: int) -> str:
        """awaiting_approval, pending or in_progress → cancelled at once; returns the state it
        left. A holder's later renew_lease / mark_completed / mark_failed then finds it not in
        progress; a request for its approval is withdrawn."""
        def apply(status: str, recipient: str, _key, _run_after) -> int:
            changed = self.backend.run(self._sql.CANCEL_TASK,
                                       (self.clock(), task_id, status)).rowcount
            if changed and status in QUEUED_STATES:  # keep the depth bound tight
                self.backend.run(self._sql.ADD_PENDING, (recipient, -1)).fetchone()
            if changed and status == "awaiting_approval":
                self._withdraw_task_approval(task_id, "the task was cancelled")
            return changed
        was = self._control(task_id, "cancel", apply)[0]
        self._wake_released(task_id)
        return was

    def _wake_released(self, task_id: int) -> None:
        """After a commit that ended ``task_id``: wake the recipients of the tasks its end
        released (SQLite; PostgreSQL's dependency trigger NOTIFYs them at the commit)."""
        if self._wake and self._tx_wake is None:
            released = self._released_by(task_id)
            if released:
                self._wake.notify(set(released))

    def retry_task(self, task_id: int) -> str:
        """failed or cancelled → pending now, attempts reset (the errors history stays); so is
        a pending task waiting for its delay or backoff (e.g. one set while the clock was
        ahead: task retry releases it)."""
        def apply(status: str, recipient: str, dedupe_key, run_after) -> int:
            now = self.clock()
            if status == "pending" and run_after <= now:
                raise TaskStateError(f"task {task_id} is pending and due already: "
                                     f"nothing to release")
            if status != "pending":  # a pending one is counted and holds its key already
                if dedupe_key is not None and self.backend.run(
                        self._sql.LIVE_DEDUPE, (recipient, dedupe_key)).fetchone():
                    raise TaskStateError(f"task {task_id}: another live task has its "
                                         f"dedupe_key {dedupe_key!r}")
                self._reserve([(None, recipient)])  # backpressure applies as to a send
            changed = self.backend.run(self._sql.RETRY_TASK, (now, task_id, status)).rowcount
            if changed and self._tx_wake:
                self._tx_wake(self.backend, {recipient})
            return changed
        was, recipient, _, _ = self._control(task_id, "retry", apply)
        if self._wake:
            self._wake.notify({recipient})
        return was

    def _control(self, task_id: int, action: str, apply) -> tuple:
        """Read the state, check the transition, apply it guarded by that state; a writer in
        between (PostgreSQL) makes the guard miss, and the read is done again."""
        for _ in range(5):
            with self.backend.write_transaction():
                row = self.backend.run(self._sql.CONTROLLED_TASK, (task_id,)).fetchone()
                if row is None:
                    raise TaskNotFound(f"no task with id {task_id}")
                try:
                    transition(row[0], action)
                except TransitionError as exc:
                    raise TaskStateError(f"task {task_id}: {exc}") from None
                if apply(*row):
                    return tuple(row)
        raise TaskStateError(f"task {task_id} keeps changing state; try again")

    def bring_back(self) -> int:
        """Tasks stamped in the future (more than clock.WALL_STEP ahead: sent while the wall
        clock was ahead, which then went back) come back to now, their delays kept: else they
        would wait for the clock to catch up. Returns how many rows moved."""
        now, backend = self.clock(), self.backend
        limit = now + WALL_STEP
        with backend.write_transaction():
            rows = backend.run(self._sql.BRING_BACK, (limit, now, limit, now, limit, now, limit,
                                                      limit)).fetchall()
            woken = {recipient for recipient, status in rows if status == "pending"}
            if woken and self._tx_wake:
                self._tx_wake(self.backend, woken)
        if woken and self._wake:
            self._wake.notify(woken)
        return len(rows)

    # -- pause ------------------------------------------------------------
    def pause_agent(self, agent: str, reason: str = "", until: Optional[float] = None) -> None:
        """Claim nothing new for ``agent`` (its current task finishes) until resumed or
        ``until``; stored, so it survives restarts of the agent and of supervisord."""
        check_name(agent, "agent")
        with self.backend.write_transaction():
            self.backend.run(self._sql.PAUSE_AGENT,
                             (agent, self.clock(), until, str(reason or "")[:1000]))

    def resume_agent(self, agent: str) -> bool:
        """Lift a pause; True if there was one. Wakes the agent at once."""
        with self.backend.write_transaction():
            removed = self.backend.run(self._sql.RESUME_AGENT, (agent,)).rowcount
            if removed and self._tx_wake:
                self._tx_wake(self.backend, {agent})
        if removed and self._wake:
            self._wake.notify({agent})
        return bool(removed)

    def fail_open_tasks(self, agent: str, reason: str) -> int:
        """Every pending or in-progress task of ``agent`` becomes failed with ``reason``
        (an agent removed from the team: its work is reported, never silently lost)."""
        with self.backend.write_transaction():
            return self.backend.run(self._sql.FAIL_OPEN_TASKS,
                                    (self.clock(), reason, agent)).rowcount

    def pauses(self) -> dict[str, dict]:
        """{agent: {paused_at, paused_until, reason}} for the pauses in force now."""
        rows = self.backend.run(self._sql.ACTIVE_PAUSES, (self.clock(),)).fetchall()
        return {r[0]: {"paused_at": r[1], "paused_until": r[2], "reason": r[3]} for r in rows}

    # -- escalation -------------------------------------------------------
    def escalate_pending(self) -> list[int]:
        """Raise every pending task that waited ``escalate_after`` seconds (since it came due
        or was last raised) one priority step toward 0; the first raise of a task leaves one
        silent INFO notification. Returns the ids raised. Off unless escalate_after is set."""
        after = self.escalate_after
        if not after:
            return []
        now, raised, backend = self.clock(), [], self.backend
        with backend.write_transaction():
            for task_id, recipient, task_type, priority, escalated_at, run_after in backend.run(
                    self._sql.ESCALATION_CANDIDATES, (now - after,)).fetchall():
                new = escalated_priority(priority, escalated_at or run_after, now, after)
                if new is None or not backend.run(self._sql.ESCALATE_TASK, (
                        new, now, task_id, priority)).rowcount:
                    continue
                raised.append(task_id)
                if escalated_at is None:
                    title = f"task {task_id} ({task_type}) escalated"
                    backend.run(self._sql.INSERT_NOTIFICATION, (
                        now, "INFO", recipient, title, f"{title} to priority {new}: pending for"
                        f" {now - run_after:.0f}s", False, False)).fetchone()
        return raised
