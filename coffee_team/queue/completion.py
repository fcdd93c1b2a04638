"""The end of a task's run: completion (with its follow-ups and metrics row), and an agent's
completion fused with its next claim.

CompletionMixin is mixed into MessageQueue (core.py); ``CompletionNeeds`` lists what it uses
of the other parts (the claim steps of core.py, the sending side of enqueue.py).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from coffee_team import otel
from coffee_team.errors import ContentError, UnstorableResult
from coffee_team.queue.content import encode_json
from coffee_team.queue.db import SqlBackend, database_errors


def _stored_result(result: Any) -> str:
    try:
        return encode_json(result, "result")
    except ContentError as exc:  # the handler's value, not the caller's arguments
        raise UnstorableResult(str(exc)) from None


class CompletionNeeds(Protocol):
    """What CompletionMixin uses from the rest of MessageQueue: its state (core.py), the
    claim steps (core.py) and the sending side (enqueue.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    lease_seconds: float
    _sql: Any  # backend.prepared: sql.py's statements by name, translated once
    _folded: bool  # backend.folded: PostgreSQL's one-statement variants (sql.PG_*)

    def _claim_rows(self, agent: str, limit: int, *,
                    ready_tried: bool = False) -> list[tuple]: ...
    def _claim_locked(self, agent: str, limit: int, now: float) -> list[tuple]: ...
    def _ready_params(self, agent: str, limit: int, now: float) -> tuple: ...
    def _tasks_from(self, rows: list[tuple], agent: str, limit: int) -> list: ...
    def _prepare_messages(self, messages: Iterable[Mapping[str, Any]],
                          trace: Optional[str] = None) -> list[tuple]: ...
    def _enqueue_locked(self, rows: list[tuple],
                        sent_from: Optional[int] = None) -> tuple[list[int], list[tuple]]: ...
    def _wake_recipients(self, rows: list[tuple]) -> None: ...
    def _released_by(self, task_id: int) -> list[str]: ...


class CompletionMixin:
    """Needs CompletionNeeds from the rest of MessageQueue."""

    def mark_completed(self, task_id: int, result: Any = None, *, agent: Optional[str] = None,
                       follow_ups: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Complete an in-progress task (optionally only if ``agent`` holds it).

        ``follow_ups`` (dicts of send()'s arguments) are enqueued in the same transaction, so
        a task's messages exist if and only if it completed: a crash can never send them twice.
        They continue the trace of the span that is current (the agent's handling of the task).
        """
        result_json = _stored_result(result)
        with otel.sending("follow-ups") if follow_ups else otel.OFF as trace:
            return self._finish(task_id, "completed", result=result_json, agent=agent,
                                follow_ups=self._prepare_messages(follow_ups, trace))

    def complete_and_claim(self, task_id: int, result: Any = None, *, agent: str,
                           follow_ups: Iterable[Mapping[str, Any]] = (),
                           limit: int = 1) -> tuple[bool, list]:
        """mark_completed(task_id, result, agent=agent, follow_ups=...) then claim(agent, limit),
        in one transaction (on PostgreSQL without follow-ups, one statement): (completed, the
        tasks claimed).  The claim happens whether or not the completion did (the task may have
        been cancelled or requeued meanwhile), exactly as the two calls in a row would do."""
        result_json = _stored_result(result)
        with otel.sending("follow-ups") if follow_ups else otel.OFF as trace:
            return self._complete_and_claim(task_id, result_json, agent,
                                            self._prepare_messages(follow_ups, trace), limit)

    def _complete_and_claim(self, task_id: int, result_json: str, agent: str, rows: list,
                            limit: int) -> tuple[bool, list]:
        now, backend, sent = self.clock(), self.backend, ()
        finish = ("completed", now, result_json, None, task_id, agent)
        one_statement = not rows and (self._folded or (
            limit == 1 and backend.complete_and_claim_one is not None))
        dependents = 0
        if self._folded and not rows:
            fused = backend.run(self._sql.PG_COMPLETE_AND_CLAIM,
                                finish + self._ready_params(agent, limit, now)).fetchall()
            completed = bool(fused[0][0])
            claimed = [row[1:] for row in fused if row[1] is not None]
        elif one_statement:  # SQLite: both rows in one UPDATE (sql_sqlite.COMPLETE_AND_CLAIM)
            completed, claimed = False, []
            for row in backend.run(backend.complete_and_claim_one, (
                    task_id, agent, now, result_json, now + self.lease_seconds)).fetchall():
                if row[0] == "completed":
                    completed, dependents = True, row[1]
                else:
                    claimed.append(row[2:])
        else:
            released: list[tuple] = []
            with backend.write_transaction():
                completed = self._finish_locked(finish, now, released)
                if completed and rows:
                    _, sent = self._enqueue_locked(rows)
                claimed = self._claim_locked(agent, limit, now)
            self._wake_recipients([*sent, *released])
        # The completion is committed: an error from here on must not make a caller retry the
        # whole call (it would find the task no longer held and report its result lost); the
        # caller's next claim() takes over, as after a claim that failed.
        try:
            if dependents:  # tasks sent after it that its end released (the trigger's)
                self._wake_recipients([(None, r) for r in self._released_by(task_id)])
            if one_statement and not claimed:
                # paused, a lease expired, or nothing due: claim()'s slow path
                claimed = self._claim_rows(agent, limit, ready_tried=True)
            return completed, self._tasks_from(claimed, agent, limit)
        except database_errors():
            return completed, []

    def _finish(self, task_id: int, status: str, *, result: Optional[str] = None,
                error: Optional[str] = None, agent: Optional[str] = None,
                follow_ups: list[tuple] = ()) -> bool:
        now, sent, released = self.clock(), (), []
        params = (status, now, result, error, task_id, agent)
        if not follow_ups and (self._folded and agent is not None or (
                status == "completed" and self.backend.metric_by_trigger)):
            # one statement (its metrics row folded in): its own transaction
            finished = self._finish_locked(params, now, released)
        else:
            with self.backend.write_transaction():
                finished = self._finish_locked(params, now, released)
                if finished and follow_ups:
                    _, sent = self._enqueue_locked(follow_ups)
        self._wake_recipients([*sent, *released])
        return finished

    def _finish_locked(self, params: tuple, now: float, released: Optional[list] = None
                       ) -> bool:
        """Finish a task in progress (sql.FINISH_BY's parameters; agent None: whoever holds
        it) and record its duration in metrics. True if it was in progress (for the agent).
        Tasks sent after it that its end released (the dependency trigger) go into
        ``released`` as rows for _wake_recipients (PostgreSQL's trigger NOTIFYs them)."""
        backend = self.backend
        if self._folded and params[-1] is not None:
            return backend.run(self._sql.PG_FINISH_BY_WITH_METRIC, params).fetchone() \
                is not None
        # fetchall: the statement ends here (outside a transaction, so does its own)
        if params[-1] is None:
            rows = backend.run(self._sql.FINISH, params[:-1]).fetchall()
        else:
            rows = backend.run(self._sql.FINISH_BY, params).fetchall()
        if not rows:
            return False
        claimed_by, task_type, claimed_at, dependents = rows[0]
        if params[0] != "completed" or not backend.metric_by_trigger:
            backend.run(self._sql.ADD_METRIC, (claimed_by, task_type,
                                              max(0.0, (now - claimed_at) * 1000.0), now))
        if dependents and released is not None:
            released += [(None, r) for r in self._released_by(params[4])]
        return True
